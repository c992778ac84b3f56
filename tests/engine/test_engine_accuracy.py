from __future__ import annotations

import warnings

import pytest
import torch

import robustlab.engine.accuracy as accuracy_module
from robustlab.engine import evaluate_accuracy, predict, resolve_amp


def test_exact_accuracy_on_hand_set_weights(red_vs_blue_model, colour_dataset, expected_predictions) -> None:
    labels = colour_dataset.labels.tolist()
    expected_correct = sum(p == y for p, y in zip(expected_predictions, labels, strict=True))
    assert 0 < expected_correct < len(labels)
    for batch_size in (1, 4, 36, 37, 256):
        result = evaluate_accuracy(red_vs_blue_model, colour_dataset, batch_size=batch_size)
        assert result == (expected_correct, 37)


def test_predict_returns_indices_in_order(red_vs_blue_model, colour_dataset, expected_predictions) -> None:
    indices, predictions = predict(red_vs_blue_model, colour_dataset, batch_size=5)
    assert indices.tolist() == list(range(37)) and indices.dtype == torch.int64
    assert predictions.tolist() == expected_predictions


def test_indices_select_a_subset(red_vs_blue_model, colour_dataset, expected_predictions) -> None:
    chosen = [30, 2, 17, 2]
    labels = colour_dataset.labels.tolist()
    correct = sum(expected_predictions[i] == labels[i] for i in chosen)
    assert evaluate_accuracy(red_vs_blue_model, colour_dataset, indices=chosen, batch_size=3) == (correct, 4)
    indices, predictions = predict(red_vs_blue_model, colour_dataset, indices=chosen)
    assert indices.tolist() == chosen and predictions.tolist() == [expected_predictions[i] for i in chosen]
    assert evaluate_accuracy(red_vs_blue_model, colour_dataset, indices=[]) == (0, 0)


def test_simulated_ranks_split_the_work_without_overlap(
    red_vs_blue_model, colour_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the wiring of the sharding, without processes; the real two-process run is in tests/train
    seen: list[int] = []
    for rank in range(3):
        monkeypatch.setattr(accuracy_module, "dist_rank_world", lambda rank=rank: (rank, 3))
        indices, _ = predict(red_vs_blue_model, colour_dataset, batch_size=4)
        seen += indices.tolist()
    assert seen == list(range(37))


def test_mode_is_left_alone_and_train_mode_warns(red_vs_blue_model, colour_dataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_accuracy(red_vs_blue_model, colour_dataset)
    assert not red_vs_blue_model.training
    red_vs_blue_model.train()
    with pytest.warns(UserWarning, match="train mode"):
        evaluate_accuracy(red_vs_blue_model, colour_dataset)
    assert red_vs_blue_model.training


def test_progress_callback_and_no_gradients(red_vs_blue_model, colour_dataset) -> None:
    events: list[dict] = []
    evaluate_accuracy(red_vs_blue_model, colour_dataset, batch_size=16, callback=events.append)
    assert [(e["kind"], e["done"], e["total"]) for e in events] == [
        ("eval_batch", 16, 37), ("eval_batch", 32, 37), ("eval_batch", 37, 37),
    ]  # fmt: skip
    assert all(p.grad is None for p in red_vs_blue_model.parameters())


def test_bf16_autocast_on_cpu(red_vs_blue_model, colour_dataset) -> None:
    correct, count = evaluate_accuracy(red_vs_blue_model, colour_dataset, amp="bf16")
    assert count == 37 and 0 <= correct <= 37


def test_resolve_amp() -> None:
    cpu = torch.device("cpu")
    assert resolve_amp(None, cpu) is None and resolve_amp(False, cpu) is None
    assert resolve_amp(True, cpu) == torch.bfloat16
    assert resolve_amp("fp16", cpu) == torch.float16 and resolve_amp("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="amp"):
        resolve_amp("fp8", cpu)


def test_bad_inputs_raise(red_vs_blue_model, colour_dataset) -> None:
    with pytest.raises(ValueError, match="indices must lie in"):
        evaluate_accuracy(red_vs_blue_model, colour_dataset, indices=[0, 37])
    with pytest.raises(ValueError, match="model must be"):
        evaluate_accuracy(lambda x: x, colour_dataset)
    with pytest.raises(ValueError, match="dataset must be"):
        evaluate_accuracy(red_vs_blue_model, torch.zeros(3, 3, 8, 8))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_accuracy(red_vs_blue_model, colour_dataset, batch_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(red_vs_blue_model, colour_dataset) -> None:
    cpu = evaluate_accuracy(red_vs_blue_model, colour_dataset)
    assert evaluate_accuracy(red_vs_blue_model, colour_dataset, device="cuda", amp=False) == cpu


def test_perturb_sees_device_images_and_dataset_indices(red_vs_blue_model, colour_dataset) -> None:
    seen: list[int] = []

    def swap_red_and_blue(images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        seen.extend(indices.tolist())
        return images[:, [2, 1, 0]]

    clean = evaluate_accuracy(red_vs_blue_model, colour_dataset, batch_size=10)
    swapped = evaluate_accuracy(red_vs_blue_model, colour_dataset, batch_size=10, perturb=swap_red_and_blue)
    # swapping the channels flips every prediction of the hand-set model
    assert swapped == (37 - clean[0], 37) and seen == list(range(37))
    with pytest.raises(ValueError, match="perturb must return"):
        evaluate_accuracy(red_vs_blue_model, colour_dataset, perturb=lambda images, indices: images[:1])
