from __future__ import annotations

import pytest
import torch
from explain_helpers import rand_images

from robustlab.explain import attention_maps, attention_stability, cam, cam_stability, map_cosine
from robustlab.models import Classifier


@pytest.mark.parametrize("method", ["cam", "grad_cam"])
def test_cam_stability(cnn: Classifier, method: str) -> None:
    clean = rand_images(3, 32)
    torch.testing.assert_close(cam_stability(cnn, clean, clean, method=method), torch.ones(3))
    perturbed = (clean + 0.3 * rand_images(3, 32, seed=1)).clamp(0, 1)
    score = cam_stability(cnn, clean, perturbed, method=method)
    assert score.shape == (3,) and (score <= 1 + 1e-6).all() and (score >= -1 - 1e-6).all()
    # the clean top-1 class is explained on both images
    reference = cam(cnn, clean)
    moved = cam(cnn, perturbed, labels=reference.classes)
    if method == "cam":
        torch.testing.assert_close(score, map_cosine(reference.raw, moved.raw))


def test_cam_stability_errors(cnn: Classifier) -> None:
    clean = rand_images(2, 32)
    with pytest.raises(ValueError, match="method must be one of"):
        cam_stability(cnn, clean, clean, method="gradcam")
    with pytest.raises(ValueError, match="same shape"):
        cam_stability(cnn, clean, clean[:1])


def test_attention_stability(vit: Classifier) -> None:
    clean = rand_images(2, 64)
    torch.testing.assert_close(attention_stability(vit, clean, clean), torch.ones(2, 6, 2))
    perturbed = clean.clone()
    perturbed[:, :, :16, :16] = rand_images(2, 16, seed=3)  # occlude one patch with noise, as AFAT does
    score = attention_stability(vit, clean, perturbed, layers=[0, -1])
    assert score.shape == (2, 2, 2) and (score < 1).any() and (score > 0).all()
    center_clean = attention_maps(vit, clean, query="center", layers=[0, -1])
    center_moved = attention_maps(vit, perturbed, query="center", layers=[0, -1])
    expected = torch.nn.functional.cosine_similarity(center_clean.flatten(3), center_moved.flatten(3), dim=3)
    torch.testing.assert_close(score, expected)
