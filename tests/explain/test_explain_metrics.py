from __future__ import annotations

import pytest
import torch

from robustlab.explain import attention_cosine, map_cosine, topk_iou, total_variation


def maps(n: int = 3, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, *(shape or (1, 6, 6))), generator=torch.Generator().manual_seed(seed))


def test_cosine_similarity() -> None:
    a = maps()
    torch.testing.assert_close(map_cosine(a, a), torch.ones(3))
    torch.testing.assert_close(map_cosine(a, 1e-9 * a), torch.ones(3))  # scale invariant, even tiny maps
    torch.testing.assert_close(map_cosine(a, -a), -torch.ones(3))
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    y = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(map_cosine(x, y), torch.tensor([0.5]))
    torch.testing.assert_close(map_cosine(torch.zeros(2, 4), maps(2, 4)), torch.zeros(2))


def test_attention_cosine() -> None:
    clean = maps(2, 3, 4, 5, 5)
    torch.testing.assert_close(attention_cosine(clean, clean), torch.ones(2, 3, 4))
    perturbed = clean.clone()
    perturbed[:, 1, 2] = 0  # one head of one layer loses everything
    expected = torch.ones(2, 3, 4)
    expected[:, 1, 2] = 0
    torch.testing.assert_close(attention_cosine(clean, perturbed), expected)
    torch.testing.assert_close(attention_cosine(clean, perturbed, average=True), torch.full((2,), 11 / 12))
    with pytest.raises(ValueError, match=r"\(N, L, heads, h, w\)"):
        attention_cosine(clean[:, 0], clean[:, 0])


def test_topk_iou() -> None:
    a = maps()
    torch.testing.assert_close(topk_iou(a, a, fraction=0.2), torch.ones(3))
    left = torch.zeros(1, 1, 4, 4)
    left[..., :2] = 1 + torch.arange(8.0).view(4, 2)
    right = left.flip(-1)
    torch.testing.assert_close(topk_iou(left, right, fraction=0.5), torch.zeros(1))  # disjoint halves
    # top-4 of 16 (fraction 0.25): x keeps 0..3; y keeps 2..5 -> 2 shared / 6 in the union
    x = torch.arange(16.0, 0, -1).view(1, 16)
    y = torch.roll(x, 2, dims=1)
    torch.testing.assert_close(topk_iou(x, y, fraction=0.25), torch.tensor([2 / 6]))
    torch.testing.assert_close(topk_iou(x, y, fraction=1.0), torch.ones(1))
    with pytest.raises(ValueError, match="fraction"):
        topk_iou(x, y, fraction=0.0)
    with pytest.raises(ValueError, match="same shape"):
        topk_iou(x, y[:, :8])


def test_total_variation() -> None:
    torch.testing.assert_close(total_variation(torch.full((2, 5, 7), 0.3)), torch.zeros(2))
    a = torch.tensor([[[0.0, 1.0, 3.0], [2.0, 2.0, 0.0]]])
    # rows: |2-0| + |2-1| + |0-3| = 6; columns: |1-0| + |3-1| + |2-2| + |0-2| = 5
    torch.testing.assert_close(total_variation(a), torch.tensor([11.0]))
    torch.testing.assert_close(total_variation(a.unsqueeze(1)), torch.tensor([11.0]))  # (N, 1, h, w) too
    checker = (torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4)) % 2
    torch.testing.assert_close(total_variation(checker.float().unsqueeze(0)), torch.tensor([24.0]))  # 2 * 4 * 3
    with pytest.raises(ValueError, match="total_variation"):
        total_variation(torch.zeros(4, 4))


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        map_cosine(maps(2), maps(3))
    with pytest.raises(ValueError, match="floating"):
        map_cosine(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="two torch.Tensors"):
        map_cosine([1.0], [1.0])  # type: ignore[arg-type]
