"""`robustlab explain`: a PNG grid of images, perturbed images and their maps; clear errors; nothing overwritten."""

from __future__ import annotations

from PIL import Image
from typer.testing import CliRunner

from robustlab.cli import app

runner = CliRunner()


def test_explain_writes_a_grid_for_a_cnn_and_a_vit(tmp_path) -> None:
    for model, method in (("cifar:resnet20", "cam"), ("cifar:vit_tiny_patch4", "attention_rollout")):
        out = tmp_path / f"{method}.png"
        args = ["explain", "--model", model, "--random-init", "--data", "digits", "--n", "3", "--corruption",
                "gaussian_noise", "--severity", "5", "--out", str(out), "--db", str(tmp_path / "e.db")]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert method in result.output and "mean cosine" in result.output
        with Image.open(out) as image:
            assert image.width > 200 and image.height > 100


def test_explain_errors_are_one_line(tmp_path) -> None:
    out = tmp_path / "x.png"
    out.write_bytes(b"keep me")
    base = ["explain", "--model", "cifar:resnet20", "--random-init", "--data", "digits", "--db", str(tmp_path / "e.db")]
    exists = runner.invoke(app, [*base, "--out", str(out)])
    assert exists.exit_code == 1 and "--overwrite" in exists.output and out.read_bytes() == b"keep me"
    method = runner.invoke(app, [*base, "--out", str(tmp_path / "y.png"), "--method", "gradcam"])
    assert method.exit_code == 1 and "grad_cam" in method.output and "Traceback" not in method.output
    index = runner.invoke(app, [*base, "--out", str(tmp_path / "z.png"), "--indices", "0,99999"])
    assert index.exit_code == 1 and "--indices" in index.output
