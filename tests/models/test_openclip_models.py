from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from models_helpers import no_hooks_left, rand_images

from robustlab.models import CIFAR10_CLASSES, cam_features, create_model, vit_probe
from robustlab.models.openclip_models import CLIP_TEMPLATES


@pytest.fixture
def clip_model(tiny_clip_arch: str):
    return create_model(f"openclip:{tiny_clip_arch}", pretrained=False, class_names=CIFAR10_CLASSES)


def test_logits_are_scaled_cosine_similarities(clip_model) -> None:
    images = rand_images(3, 32)
    clip = clip_model.net.clip
    with torch.no_grad():
        features = F.normalize(clip.encode_image(clip_model.normalize(images)), dim=-1)
        expected = clip.logit_scale.exp() * features @ clip_model.net.text_weights
        torch.testing.assert_close(clip_model(images), expected)
    assert clip_model.family == "clip" and clip_model.class_names == list(CIFAR10_CLASSES)


def test_text_weights_average_the_prompt_templates(clip_model, tiny_clip_arch: str) -> None:
    weights = clip_model.net.text_weights
    assert weights.shape == (32, 10)
    torch.testing.assert_close(weights.norm(dim=0), torch.ones(10))
    tokenizer = open_clip.get_tokenizer(tiny_clip_arch)
    with torch.no_grad():
        tokens = tokenizer([t.format("cat") for t in CLIP_TEMPLATES])
        prompts = F.normalize(clip_model.net.clip.encode_text(tokens))
    torch.testing.assert_close(weights[:, 3], F.normalize(prompts.mean(0), dim=0))


def test_clip_mean_and_std(clip_model) -> None:
    torch.testing.assert_close(clip_model.mean.flatten(), torch.tensor(open_clip.OPENAI_DATASET_MEAN))
    torch.testing.assert_close(clip_model.std.flatten(), torch.tensor(open_clip.OPENAI_DATASET_STD))
    assert clip_model.input_size == (3, 32, 32)


def test_vit_probe_reads_the_clip_image_tower(clip_model) -> None:
    probe = vit_probe(clip_model, rand_images(2, 32))
    assert probe.grid == (4, 4) and probe.num_prefix_tokens == 1 and probe.num_blocks == 2
    assert probe.tokens[0].shape == (2, 17, 32)
    assert probe.attentions[1].shape == (2, 2, 17, 17)
    torch.testing.assert_close(probe.attentions[0].sum(-1), torch.ones(2, 2, 17))
    assert no_hooks_left(clip_model)
    with torch.no_grad():
        torch.testing.assert_close(probe.logits, clip_model(rand_images(2, 32)))


def test_cam_is_refused_for_clip(clip_model) -> None:
    with pytest.raises(ValueError, match="vit_probe"):
        cam_features(clip_model, rand_images(1, 32))


def test_class_names_are_required(tiny_clip_arch: str) -> None:
    with pytest.raises(ValueError, match="class_names="):
        create_model(f"openclip:{tiny_clip_arch}", pretrained=False)


def test_unknown_architecture_and_tag() -> None:
    with pytest.raises(ValueError, match="'ViT-B-32'"):
        create_model("openclip:ViT-B-3/openai", class_names=["a"])
    with pytest.raises(ValueError, match="unknown pretrained tag 'nope'.*openai"):
        create_model("openclip:ViT-B-32/nope", class_names=["a"])
    with pytest.raises(ValueError, match="name a pretrained tag"):
        create_model("openclip:ViT-B-32", class_names=["a"])


def test_unfetchable_weights_explain_the_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("no network")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(RuntimeError, match="no network") as info:
        create_model("openclip:ViT-B-32/openai", class_names=["a"])
    assert "weights=" in str(info.value) and "pretrained=False" in str(info.value)
