from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustlab.train import fit, load_checkpoint, random_crop_flip

SETTINGS = {
    "epochs": 2, "lr": 0.05, "batch_size": 8, "warmup_steps": 3, "schedule": "cosine", "seed": 5,
    "augment": random_crop_flip, "device": "cpu",
}  # fmt: skip


class Interrupt(Exception):
    pass


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:  # parameters and batch-norm buffers, bit for bit
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture
def straight(make_model, make_data):
    model = make_model()
    result = fit(model, make_data(44, 1), val_data=make_data(12, 2), **SETTINGS)
    return model, result


def test_interrupt_after_one_epoch_then_resume_equals_straight_run(straight, make_model, make_data, tmp_path):
    ckpt = tmp_path / "run" / "ckpt.pt"

    def stop_after_first_epoch(event: dict) -> None:
        if event["kind"] == "epoch_end" and event["epoch"] == 1:
            raise Interrupt

    model = make_model()
    with pytest.raises(Interrupt):
        fit(model, make_data(44, 1), val_data=make_data(12, 2), checkpoint=ckpt,
            callback=stop_after_first_epoch, **SETTINGS)  # fmt: skip
    assert load_checkpoint(ckpt)["epoch"] == 1

    fresh = make_model()  # a new process would start from a new model object
    result = fit(fresh, make_data(44, 1), val_data=make_data(12, 2), checkpoint=ckpt, resume=True, **SETTINGS)

    straight_model, straight_result = straight
    _assert_same_state(fresh, straight_model)
    assert _without_seconds(result.history) == _without_seconds(straight_result.history)
    assert (result.steps, result.epochs, result.train_loss) == (
        straight_result.steps, straight_result.epochs, straight_result.train_loss,
    )  # fmt: skip
    assert not fresh.training


def test_one_epoch_then_resume_for_one_more_equals_two_epochs(make_model, make_data, tmp_path):
    # with a constant schedule the length of the run does not shape the learning rate
    settings = {**SETTINGS, "schedule": "constant"}
    straight = make_model()
    expected = fit(straight, make_data(44, 1), **settings)

    ckpt = tmp_path / "ckpt.pt"
    fit(make_model(), make_data(44, 1), checkpoint=ckpt, **{**settings, "epochs": 1})
    resumed = make_model()
    result = fit(resumed, make_data(44, 1), checkpoint=ckpt, resume=True, **settings)

    _assert_same_state(resumed, straight)
    assert _without_seconds(result.history) == _without_seconds(expected.history)


def test_max_time_stops_after_a_step_then_resumes_mid_epoch(straight, make_model, make_data, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    events: list[dict] = []
    model = make_model()
    stopped = fit(model, make_data(44, 1), val_data=make_data(12, 2), checkpoint=ckpt, max_time=0,
                  callback=events.append, **SETTINGS)  # fmt: skip
    assert stopped.timed_out and stopped.steps == 1 and stopped.epochs == 0 and stopped.history == []
    assert [e["kind"] for e in events] == ["epoch_start", "step"]
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["batch"], state["step"]) == (0, 1, 1)
    assert not model.training

    # a few more time-limited calls, each one step, then run to the end
    for expected_step in (2, 3):
        again = fit(make_model(), make_data(44, 1), val_data=make_data(12, 2), checkpoint=ckpt, resume=True,
                    max_time=0, **SETTINGS)  # fmt: skip
        assert again.timed_out and again.steps == expected_step
    resumed = make_model()
    result = fit(resumed, make_data(44, 1), val_data=make_data(12, 2), checkpoint=ckpt, resume=True,
                 **SETTINGS)  # fmt: skip

    straight_model, straight_result = straight
    assert not result.timed_out
    _assert_same_state(resumed, straight_model)
    assert _without_seconds(result.history) == _without_seconds(straight_result.history)


def test_checkpoint_is_weights_only_and_written_atomically(make_model, make_data, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    model = make_model()
    fit(model, make_data(16, 1), epochs=2, lr=0.1, batch_size=8, checkpoint=ckpt, device="cpu")
    state = torch.load(ckpt, weights_only=True)
    assert {"model", "optimizer", "scaler", "epoch", "step", "rng", "config", "history"} <= set(state)
    assert (state["epoch"], state["batch"], state["step"]) == (2, 0, 4)
    assert state["config"]["lr"] == 0.1 and state["config"]["checkpoint"] == str(ckpt)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state["model"].items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary file left behind


def test_resume_that_is_already_done_trains_nothing(make_model, make_data, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    model = make_model()
    first = fit(model, make_data(16, 1), epochs=1, lr=0.1, batch_size=8, checkpoint=ckpt, device="cpu")
    again_model = make_model()
    again = fit(again_model, make_data(16, 1), epochs=1, lr=0.1, batch_size=8, checkpoint=ckpt, resume=True,
                device="cpu")  # fmt: skip
    _assert_same_state(again_model, model)
    assert again.steps == first.steps and again.history == first.history


def test_resume_errors_and_warnings(make_model, make_data, tmp_path):
    data = make_data(16, 1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit(make_model(), data, epochs=1, lr=0.1, checkpoint=tmp_path / "no.pt", resume=True, device="cpu")
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    with pytest.raises(ValueError, match="not a robustlab training checkpoint"):
        fit(make_model(), data, epochs=1, lr=0.1, checkpoint=junk, resume=True, device="cpu")

    ckpt = tmp_path / "ckpt.pt"
    fit(make_model(), data, epochs=1, lr=0.1, batch_size=8, checkpoint=ckpt, device="cpu")
    with pytest.warns(UserWarning, match="lr"):
        fit(make_model(), data, epochs=2, lr=0.2, batch_size=8, checkpoint=ckpt, resume=True, device="cpu")

    fit(make_model(), data, epochs=2, lr=0.1, batch_size=4, checkpoint=ckpt, max_time=0, device="cpu")
    with pytest.raises(ValueError, match="stopped inside epoch 1"):
        fit(make_model(), data, epochs=2, lr=0.1, batch_size=8, checkpoint=ckpt, resume=True, device="cpu")


def test_checkpoint_path_may_be_a_string(make_model, make_data, tmp_path: Path):
    ckpt = str(tmp_path / "nested" / "dir" / "c.pt")
    result = fit(make_model(), make_data(8, 1), epochs=1, lr=0.1, checkpoint=ckpt, device="cpu")
    assert result.checkpoint == ckpt and Path(ckpt).is_file()
