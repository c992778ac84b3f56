"""Bring your own model from the command line: path/to/file.py:ClassName with --weights, --mean, --std, evaluated
end to end, saved as a checkpoint and evaluated again; class folders labelled by the model's class names."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()

# a network "trained" on input normalised with this mean (std 1): class 0 = cool, 1 = warm
MEAN = (0.9, 0.5, 0.1)
TINYNET = textwrap.dedent("""
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, num_classes: int = 2) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(3, num_classes)

        def forward(self, x):
            return self.fc(self.pool(x).flatten(1))
""")


def _folder(root: Path, colours: dict[str, tuple[float, float, float]], per_class: int = 3) -> Path:
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        pixels = np.broadcast_to(np.round(np.array(colour) * 255).astype(np.uint8), (8, 8, 3))
        for i in range(per_class):
            Image.fromarray(np.ascontiguousarray(pixels)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def user_model(tmp_path) -> tuple[Path, Path, Path]:
    """(tinynet.py, weights.pt, data folder): warm (1.0, 0.5, 0.05) and cool (0.8, 0.5, 0.3) squares.

    Normalised, cool has R' - B' = -0.1 - 0.2 < 0 and warm 0.1 + 0.05 > 0, so the net gets both right; fed raw
    pixels it sees R - B > 0 on both and calls everything warm: 50 %.
    """
    code = tmp_path / "tinynet.py"
    code.write_text(TINYNET)
    weights = tmp_path / "weights.pt"
    w = torch.tensor([[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]])
    torch.save({"state_dict": {"fc.weight": w, "fc.bias": torch.zeros(2)}}, weights)
    data = _folder(tmp_path / "squares", {"cool": (0.8, 0.5, 0.3), "warm": (1.0, 0.5, 0.05)})
    return code, weights, data


def _clean(db: Path) -> tuple[float, int]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT value, n FROM results WHERE perturbation='clean'").fetchone()


def test_a_custom_model_file_is_evaluated_end_to_end(user_model, tmp_path) -> None:
    code, weights, data = user_model
    db = tmp_path / "byo.db"
    args = ["eval", "--model", f"{code}:TinyNet", "--weights", str(weights), "--mean", ",".join(map(str, MEAN)),
            "--std", "1,1,1", "--data", str(data), "--suite", "clean", "--db", str(db)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _clean(db) == (1.0, 6)
    # without the normalisation the same network still runs: the warning is what keeps 50 % from passing silently
    raw = tmp_path / "raw.db"
    with pytest.warns(UserWarning, match="unnormalised"):
        result = runner.invoke(app, [*args[:5], "--data", str(data), "--suite", "clean", "--db", str(raw)])
    assert result.exit_code == 0, result.output
    assert _clean(raw) == (0.5, 6)


def test_a_custom_model_saves_as_a_checkpoint_that_evaluates_the_same(user_model, tmp_path) -> None:
    from robustlab.models import create_custom_model, create_model, save_checkpoint

    code, weights, data = user_model
    model = create_custom_model(f"{code}:TinyNet", weights=weights, mean=MEAN, std=(1, 1, 1), input_size=8)
    assert model.arch == f"{code.resolve()}:TinyNet"
    path = save_checkpoint(model, tmp_path / "tiny.pt")
    again = create_model(f"file:{path}")
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(again(x), model(x))
    db = tmp_path / "ckpt.db"
    result = runner.invoke(app, ["eval", "--model", f"file:{path}", "--data", str(data), "--suite", "clean",
                                 "--db", str(db)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _clean(db) == (1.0, 6)


def test_custom_model_errors_are_one_line_and_name_the_fix(user_model, tmp_path) -> None:
    code, weights, data = user_model
    base = ["eval", "--data", str(data), "--suite", "clean", "--db", str(tmp_path / "x.db")]
    missing = runner.invoke(app, [*base, "--model", f"{code}:TinyNett"])
    assert missing.exit_code == 1 and "defines no 'TinyNett'; it has TinyNet" in " ".join(missing.output.split())
    builtin = runner.invoke(app, [*base, "--model", "cifar:small_cnn", "--random-init", "--mean", "0.5,0.5,0.5"])
    assert builtin.exit_code == 1 and "--mean describe your own network" in " ".join(builtin.output.split())
    wrong = runner.invoke(app, [*base, "--model", f"{code}:TinyNet", "--num-classes", "3", "--weights", str(weights)])
    assert wrong.exit_code == 1 and "fc.weight" in wrong.output  # a 3-class head cannot take 2-class weights


def test_class_folders_are_labelled_by_the_model_class_names(tmp_path) -> None:
    from robustlab.data import load_dataset, match_model_classes
    from robustlab.models import CIFAR10_CLASSES

    data = _folder(tmp_path / "pets", {"cat": (0.2, 0.2, 0.2), "Dog": (0.4, 0.4, 0.4)}, per_class=2)
    dataset = match_model_classes(load_dataset(str(data)), CIFAR10_CLASSES)
    # folders sort as "Dog", "cat" (0 and 1 by folder order); by name they are CIFAR-10's dog (5) and cat (3)
    assert dataset.get_batch([0, 1, 2, 3])[1].tolist() == [5, 5, 3, 3]
    assert dataset.class_names == list(CIFAR10_CLASSES)
    placeholder = match_model_classes(load_dataset(str(data)), ["class_0", "class_1"])
    assert placeholder.get_batch([0, 2])[1].tolist() == [0, 1]  # no names: the folder order stays
    bad = _folder(tmp_path / "odd", {"cat": (0.2, 0.2, 0.2), "kitten": (0.4, 0.4, 0.4)}, per_class=1)
    with pytest.raises(ValueError, match=r"class folder\(s\) kitten name no class of the model.*Rename"):
        match_model_classes(load_dataset(str(bad)), CIFAR10_CLASSES)
    result = runner.invoke(app, ["eval", "--model", "cifar:small_cnn", "--random-init", "--data", str(bad),
                                 "--suite", "clean", "--db", str(tmp_path / "x.db")])  # fmt: skip
    assert result.exit_code == 1 and "kitten" in result.output


def test_the_engine_loader_takes_your_own_network_for_library_workflows(user_model) -> None:
    from robustlab.engine.loading import load_model_and_data

    code, weights, data = user_model
    model, dataset = load_model_and_data(f"{code}:TinyNet", str(data), weights=weights, mean=MEAN, std=(1, 1, 1))
    assert model.input_size == (3, 8, 8)  # the data's size, as no size was given
    images, labels = dataset.get_batch(list(range(len(dataset))))
    assert (model(images).argmax(1) == labels).all()
    with pytest.raises(ValueError, match="mean, std describe your own network"):
        load_model_and_data("cifar:small_cnn", str(data), pretrained=False, mean=MEAN, std=(1, 1, 1))
