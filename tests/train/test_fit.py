from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustlab.engine import evaluate_accuracy
from robustlab.train import fit, lr_at, random_crop_flip


def test_learns_a_separable_task(make_model, make_data, capsys) -> None:
    model = make_model(seed=2)  # an initialisation that predicts one class for everything
    train, test = make_data(96, seed=1), make_data(64, seed=2)
    correct, count = evaluate_accuracy(model, test)
    assert correct / count == 0.5

    result = fit(model, train, val_data=test, epochs=4, lr=0.05, batch_size=16, seed=0, device="cpu")

    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.7
    assert result.history[-1]["val_acc"] > 0.9
    correct, count = evaluate_accuracy(model, test)
    assert count == 64 and correct / count == result.history[-1]["val_acc"]
    assert (result.epochs, result.steps, result.timed_out) == (4, 4 * 6, False)
    assert result.train_loss == losses[-1]
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert not model.training
    assert capsys.readouterr() == ("", "")  # the library never prints


def test_events_come_in_order_and_count_every_step(make_model, make_data) -> None:
    events: list[dict] = []
    fit(make_model(), make_data(20, 0), epochs=2, lr=0.01, batch_size=8, callback=events.append, device="cpu")
    kinds = [e["kind"] for e in events]
    assert kinds == ["epoch_start", "step", "step", "step", "epoch_end"] * 2
    steps = [e for e in events if e["kind"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 7))
    assert all(e["total"] == 6 and math.isfinite(e["loss"]) for e in steps)
    assert set(events[4]) >= {"epoch", "train_loss", "train_acc", "val_acc", "lr", "seconds"}


def test_events_are_the_typed_progress_events_and_still_read_like_the_old_dicts(make_model, make_data) -> None:
    from robustlab.progress import EpochDone, EpochStarted, TrainStep

    events: list = []
    result = fit(make_model(), make_data(20, 0), epochs=1, lr=0.01, batch_size=8, callback=events.append,
                 device="cpu")  # fmt: skip
    assert [type(e) for e in events] == [EpochStarted, TrainStep, TrainStep, TrainStep, EpochDone]
    start, step, end = events[0], events[1], events[-1]
    assert (start.epoch, start.epochs) == (1, 1) and (step.step, step.total, step.epoch) == (1, 3, 1)
    assert math.isfinite(step.loss) and step.loss == step["loss"] and "lr" in step and "val_acc" not in step
    # the epoch's event is its history entry, field for field, and copies into the dict callbacks used to get
    assert {k: v for k, v in {**end}.items() if k != "kind"} == result.history[0]
    assert dict(end)["kind"] == "epoch_end" and end.get("val_acc") is None and "val_acc" in end


def test_lr_follows_warmup_then_cosine(make_model, make_data) -> None:
    events: list[dict] = []
    fit(
        make_model(), make_data(32, 0), epochs=3, lr=0.1, batch_size=8, warmup_steps=4,
        callback=events.append, device="cpu",
    )  # fmt: skip
    lrs = [e["lr"] for e in events if e["kind"] == "step"]
    assert len(lrs) == 12
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # strictly decreasing after warm-up
    assert lrs[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_lr_at_constant_and_fractional_warmup(make_model, make_data) -> None:
    assert [lr_at(s, lr=1.0, warmup=0, total=5, schedule="constant") for s in range(5)] == [1.0] * 5
    events: list[dict] = []
    fit(
        make_model(), make_data(32, 0), epochs=2, lr=0.2, batch_size=8, warmup_epochs=0.5,
        schedule="constant", callback=events.append, device="cpu",
    )  # fmt: skip
    lrs = [e["lr"] for e in events if e["kind"] == "step"]
    assert lrs == pytest.approx([0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])  # 0.5 epoch = 2 steps


def test_model_mode_is_restored_after_an_exception(make_model, make_data) -> None:
    seen_training: list[bool] = []

    def failing_loss(model, images, labels):
        seen_training.append(model.training)
        if len(seen_training) == 3:
            raise RuntimeError("boom")
        return F.cross_entropy(model(images), labels)

    model = make_model()
    with pytest.raises(RuntimeError, match="boom"):
        fit(model, make_data(40, 0), epochs=2, lr=0.1, batch_size=8, loss_fn=failing_loss, device="cpu")
    assert seen_training == [True, True, True]
    assert not model.training and not any(m.training for m in model.modules())


def test_validation_leaves_train_mode_for_the_next_epoch(make_model, make_data) -> None:
    modes: list[bool] = []

    def loss(model, images, labels):
        modes.append(model.training)
        return F.cross_entropy(model(images), labels)

    fit(make_model(), make_data(16, 0), val_data=make_data(8, 1), epochs=2, lr=0.1, batch_size=8,
        loss_fn=loss, device="cpu")  # fmt: skip
    assert modes == [True] * 4


def test_loss_without_logits_reports_no_train_accuracy(make_model, make_data) -> None:
    def loss(model, images, labels):
        return F.cross_entropy(model(images), labels)

    result = fit(make_model(), make_data(16, 0), epochs=1, lr=0.1, batch_size=8, loss_fn=loss, device="cpu")
    assert result.history[0]["train_acc"] is None and result.history[0]["val_acc"] is None
    assert math.isfinite(result.train_loss)


def test_non_scalar_loss_is_rejected(make_model, make_data) -> None:
    def per_sample(model, images, labels):
        return F.cross_entropy(model(images), labels, reduction="none")

    model = make_model()
    with pytest.raises(ValueError, match="scalar"):
        fit(model, make_data(16, 0), epochs=1, lr=0.1, batch_size=8, loss_fn=per_sample, device="cpu")
    assert not model.training


def test_same_seed_same_weights_other_seed_other_weights(make_model, make_data) -> None:
    def train(seed: int) -> dict[str, torch.Tensor]:
        model = make_model()
        fit(model, make_data(40, 0), epochs=2, lr=0.1, batch_size=8, seed=seed, augment=random_crop_flip,
            device="cpu")  # fmt: skip
        return model.state_dict()

    a, b, c = train(0), train(0), train(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_frozen_parameters_stay_put_and_weight_decay_skips_1d(make_model, make_data) -> None:
    model = make_model()
    conv = model.net[0]
    conv.weight.requires_grad_(False)
    frozen = conv.weight.detach().clone()
    fit(model, make_data(16, 0), epochs=1, lr=0.1, batch_size=8, device="cpu")
    assert torch.equal(conv.weight, frozen)

    model.net.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, make_data(16, 0), epochs=1, lr=0.1, device="cpu")


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizers_grad_clip_and_drop_last(make_model, make_data, optimizer: str) -> None:
    result = fit(
        make_model(), make_data(20, 0), epochs=2, lr=0.01, batch_size=8, optimizer=optimizer, grad_clip=0.5,
        drop_last=True, device="cpu",
    )  # fmt: skip
    assert result.steps == 2 * 2  # 20 samples, batches of 8: the short third batch is dropped
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    with pytest.raises(ValueError, match="drop_last"):
        fit(make_model(), make_data(4, 0), epochs=1, lr=0.1, batch_size=8, drop_last=True, device="cpu")


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(make_model, make_data, amp: str) -> None:
    model = make_model()
    result = fit(model, make_data(32, 0), val_data=make_data(16, 1), epochs=2, lr=0.05, batch_size=8, amp=amp,
                 device="cpu")  # fmt: skip
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, weights stay float32
