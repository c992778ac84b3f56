"""`robustlab tta` end to end on a tiny random open_clip model loaded through --weights, with the store records."""

from __future__ import annotations

import pytest
import torch
from atpt_helpers import register_tiny_clips
from typer.testing import CliRunner

import robustlab  # noqa: F401  (torchvision import workaround before open_clip)
from robustlab.cli import app
from robustlab.models import create_model
from robustlab.store import Store

runner = CliRunner()


def _one_line(output: str) -> str:
    return " ".join(output.split())  # rich wraps long messages at the terminal width


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    pytest.importorskip("open_clip")
    arch = register_tiny_clips(tmp_path_factory.mktemp("atpt_cli_configs"))["vit"]
    torch.manual_seed(0)  # open_clip initialises from the global generator; tests only
    model = create_model(f"openclip:{arch}", pretrained=False, class_names=[str(i) for i in range(10)])
    path = tmp_path_factory.mktemp("atpt_cli_weights") / "tiny_clip.pt"
    torch.save(model.net.clip.state_dict(), path)
    return arch, str(path)


def test_tta_runs_end_to_end_and_records_every_method(tmp_path, clip_weights) -> None:
    arch, weights = clip_weights
    db = tmp_path / "r.db"
    result = runner.invoke(app, ["tta", "--method", "atpt,tpt,rtpt,zeroshot", "--model", f"openclip:{arch}",
                                 "--weights", weights, "--data", "digits", "--n", "2", "--views", "4",
                                 "--attack", "pgd,adaptive", "--steps", "1", "--adaptive-steps", "1", "--eot", "1",
                                 "--db", str(db), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "s/image" in result.output
    with Store(db) as store:
        runs = store.runs()
        rows = store.results()
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
    metrics = {f"{m}_{kind}" for m in ("atpt", "tpt", "rtpt", "zeroshot") for kind in ("accuracy", "weight_entropy")}
    assert set(rows["metric"]) == metrics
    assert set(rows["perturbation"]) == {"clean", "pgd", "adaptive"}
    assert len(rows) == 4 * 3 * 2 and (rows["n"] == 2).all()
    accuracy = rows[rows["metric"] == "atpt_accuracy"].set_index("perturbation")["value"]
    assert accuracy["adaptive"] <= accuracy["pgd"]


def test_tta_random_init_labels_numbers_as_pipeline_checks(tmp_path, clip_weights) -> None:
    arch, _ = clip_weights
    result = runner.invoke(
        app,
        [
            "tta",
            "--method",
            "zeroshot",
            "--model",
            f"openclip:{arch}",
            "--random-init",
            "--data",
            "digits",
            "--n",
            "2",
            "--db",
            str(tmp_path / "r.db"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "not results" in result.output


def test_tta_takes_the_method_as_a_word_as_in_the_design(tmp_path, clip_weights) -> None:
    # DESIGN.md writes `robustlab tta atpt`; the issue writes `robustlab tta --method atpt`: both work
    arch, weights = clip_weights
    db = tmp_path / "r.db"
    common = ["--model", f"openclip:{arch}", "--weights", weights, "--data", "digits", "--n", "1", "--views", "2",
              "--db", str(db), "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, ["tta", "zeroshot", *common])
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        assert set(store.results()["metric"]) == {"zeroshot_accuracy", "zeroshot_weight_entropy"}
    clash = runner.invoke(app, ["tta", "tpt", "--method", "atpt", *common])
    assert clash.exit_code == 1 and "given twice" in _one_line(clash.output)


def test_tta_errors_are_one_line(tmp_path, clip_weights, monkeypatch) -> None:
    arch, weights = clip_weights
    db = str(tmp_path / "r.db")
    common = ["--model", f"openclip:{arch}", "--data", "digits", "--n", "1", "--db", db, "--device", "cpu"]
    bad = runner.invoke(app, ["tta", "--method", "atpx", "--weights", weights, *common])
    assert bad.exit_code == 1 and "Did you mean 'atpt'" in _one_line(bad.output) and "Traceback" not in bad.output
    bad = runner.invoke(app, ["tta", "--attack", "cw", "--weights", weights, *common])
    assert bad.exit_code == 1 and "pgd_stale" in bad.output
    bad = runner.invoke(app, ["tta", "--weights", str(tmp_path / "missing.pt"), *common])
    assert bad.exit_code == 1 and "no such file" in _one_line(bad.output)
    bad = runner.invoke(app, ["tta", "--method", "tpt", "--model", "timm:resnet18", "--data", "digits"])
    assert bad.exit_code == 1 and "openclip:" in bad.output

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("could not fetch open_clip weights for tag 'openai'")

    monkeypatch.setattr("robustlab.models.create_model", offline)
    bad = runner.invoke(app, ["tta", "--model", "openclip:ViT-B-32/openai", "--data", "digits", "--db", db])
    assert bad.exit_code == 1 and "--weights PATH" in _one_line(bad.output)


def test_tta_reads_a_coop_split_file(tmp_path, clip_weights) -> None:
    import json

    from PIL import Image

    arch, weights = clip_weights
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    entries = []
    for i, (label, name) in enumerate([(0, "cat"), (1, "dog_house"), (0, "cat")]):
        pixels = torch.randint(0, 256, (40, 48, 3), generator=torch.Generator().manual_seed(i), dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(root / "a" / f"{i}.png")
        entries.append([f"a/{i}.png", label, name])
    split = tmp_path / "split_zhou_Toy.json"
    split.write_text(json.dumps({"train": [], "val": [], "test": entries}))
    db = tmp_path / "r.db"
    result = runner.invoke(app, ["tta", "--method", "tpt", "--model", f"openclip:{arch}", "--weights", weights,
                                 "--data", str(root), "--split-file", str(split), "--views", "4",
                                 "--batch-size", "2", "--db", str(db), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        rows = store.results()
    assert set(rows["dataset"]) == {"Toy"} and (rows["n"] == 3).all()
    (root / "a" / "2.png").unlink()
    bad = runner.invoke(app, ["tta", "--model", f"openclip:{arch}", "--weights", weights, "--data", str(root),
                              "--split-file", str(split), "--db", str(db)])  # fmt: skip
    assert bad.exit_code == 1 and "missing" in _one_line(bad.output)
