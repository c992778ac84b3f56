from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from robustlab.train import FitConfig, fit

BAD = [
    ("epochs", {"epochs": 0}),
    ("epochs", {"epochs": 1.5}),
    ("epochs", {"epochs": True}),
    ("lr", {"lr": 0}),
    ("lr", {"lr": -0.1}),
    ("lr", {"lr": float("nan")}),
    ("batch_size", {"batch_size": 0}),
    ("optimizer", {"optimizer": "adam"}),
    ("momentum", {"momentum": 1.0}),
    ("weight_decay", {"weight_decay": -1e-4}),
    ("warmup_epochs", {"warmup_epochs": -1}),
    ("warmup_steps", {"warmup_steps": -1}),
    ("warmup_steps", {"warmup_steps": 10, "warmup_epochs": 1}),
    ("schedule", {"schedule": "cosin"}),
    ("grad_clip", {"grad_clip": 0.0}),
    ("amp", {"amp": "fp32"}),
    ("drop_last", {"drop_last": "yes"}),
    ("seed", {"seed": 1.5}),
    ("checkpoint", {"checkpoint": ""}),
    ("resume", {"resume": True}),
    ("max_time", {"max_time": -1}),
    ("num_workers", {"num_workers": -2}),
]


@pytest.mark.parametrize(("field", "changes"), BAD, ids=[f"{f}-{v}" for f, v in BAD])
def test_bad_values_raise_naming_the_field(field: str, changes: dict) -> None:
    kwargs = {"epochs": 2, "lr": 0.1, **changes}
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}\b"):
        FitConfig(**kwargs)


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(ValueError, match="Did you mean 'adamw'"):
        FitConfig(epochs=1, lr=0.1, optimizer="adam")
    with pytest.raises(ValueError, match="Did you mean 'cosine'"):
        FitConfig(epochs=1, lr=0.1, schedule="cosin")


def test_defaults_and_round_trip(tmp_path: Path) -> None:
    cfg = FitConfig(epochs=3, lr=0.1, checkpoint=tmp_path / "c.pt", amp="bf16")
    assert (cfg.batch_size, cfg.optimizer, cfg.schedule, cfg.seed) == (128, "sgd", "cosine", 0)
    # a Path becomes text so that the config can live in a weights_only checkpoint
    assert cfg.checkpoint == str(tmp_path / "c.pt")
    data = cfg.to_dict()
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in data.values())
    assert FitConfig(**data) == cfg


def test_changed_fields_ignore_run_control() -> None:
    cfg = FitConfig(epochs=3, lr=0.1)
    stored = FitConfig(epochs=5, lr=0.2, max_time=10.0).to_dict()
    assert cfg.changed_fields(stored) == ["lr"]


def test_every_field_has_a_docstring() -> None:
    text = inspect.getsource(FitConfig)
    for name in FitConfig.__dataclass_fields__:
        assert re.search(rf"\n    {name}: [^\n]+\n    \"\"\"", text), f"field {name} lacks a docstring"


def test_fit_validates_before_training(make_model, make_data) -> None:
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="^epochs"):
        fit(model, make_data(8, 0), epochs=0, lr=0.1, device="cpu")
    with pytest.raises(ValueError, match="train_data"):
        fit(model, [1, 2, 3], epochs=1, lr=0.1, device="cpu")
    with pytest.raises(ValueError, match="loss_fn"):
        fit(model, make_data(8, 0), epochs=1, lr=0.1, loss_fn="ce", device="cpu")
    assert all(v.equal(before[k]) for k, v in model.state_dict().items())
