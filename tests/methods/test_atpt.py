"""A-TPT / TPT / R-TPT test-time prompt tuning on tiny random open_clip models (ViT and ResNet towers)."""

from __future__ import annotations

import pytest
import torch
from atpt_helpers import register_tiny_clips

import robustlab  # noqa: F401  (torchvision import workaround before open_clip)
from robustlab.methods.atpt import TestTimeTuner, TTAConfig, tta_config
from robustlab.methods.atpt_attacks import TTAAttackConfig, evaluate_tta, evaluate_tta_dataset
from robustlab.methods.atpt_prompt import PromptLearner, adamw_steps
from robustlab.methods.atpt_views import (
    attention_mix,
    rtpt_weights,
    tv_weights,
    weight_entropy,
)
from robustlab.models import Classifier, create_model
from robustlab.rng import make_generator

CLASSES = ["cat", "dog", "car", "ship", "bird"]
FAST = {"n_views": 4, "select_ratio": 0.5}


@pytest.fixture(scope="module")
def archs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    pytest.importorskip("open_clip")
    return register_tiny_clips(tmp_path_factory.mktemp("atpt_clip_configs"))


@pytest.fixture(scope="module")
def vit_clip(archs: dict[str, str]) -> Classifier:
    torch.manual_seed(0)  # open_clip initialises from the global generator; tests only
    return create_model(f"openclip:{archs['vit']}", pretrained=False, class_names=CLASSES)


@pytest.fixture(scope="module")
def rn_clip(archs: dict[str, str]) -> Classifier:
    torch.manual_seed(0)
    return create_model(f"openclip:{archs['resnet']}", pretrained=False, class_names=CLASSES)


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(seed))


def test_adamw_steps_equal_torch_adamw() -> None:
    start = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    target = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        return ((x - target) ** 3).abs().sum()

    for steps in (1, 3):
        param = torch.nn.Parameter(start.clone())
        optimiser = torch.optim.AdamW([param], lr=5e-3)
        for _ in range(steps):
            optimiser.zero_grad()
            loss_fn(param).backward()
            optimiser.step()
        ours = adamw_steps(start, loss_fn, steps=steps, lr=5e-3, weight_decay=0.01)
        torch.testing.assert_close(ours, param.detach(), atol=1e-7, rtol=1e-6)


def test_prompt_learner_starts_at_the_zero_shot_prompt(vit_clip: Classifier) -> None:
    tuner = TestTimeTuner(vit_clip, tta_config("zeroshot"))
    assert tuner.learner.n_ctx == 4  # "a photo of a"
    assert [name for name, _ in tuner.learner.named_parameters()] == ["ctx"]
    images = _images(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(tuner.prompt_logits(images, tuner.learner.init_ctx), tuner.zero_shot(images),
                                   atol=1e-4, rtol=1e-4)  # fmt: skip
    assert not vit_clip.training and not tuner.training


@pytest.mark.parametrize("method", ["atpt", "tpt"])
def test_prompt_reset_makes_samples_independent(vit_clip: Classifier, method: str) -> None:
    first, second = _images(2, 32, seed=3)
    tuner = TestTimeTuner(vit_clip, tta_config(method, **FAST))
    alone = tuner.adapt(second, generator=make_generator(0, "v", 1))
    tuner.adapt(first, generator=make_generator(0, "v", 0))
    assert not torch.equal(tuner.learner.ctx, tuner.learner.init_ctx)  # the first sample tuned the prompt
    after = tuner.adapt(second, generator=make_generator(0, "v", 1))
    torch.testing.assert_close(after.probs, alone.probs)
    torch.testing.assert_close(after.ctx, alone.ctx)
    # the stale-prompt order (no reset) does depend on the previous sample
    tuner.adapt(first, generator=make_generator(0, "v", 0))
    stale = tuner.adapt(second, generator=make_generator(0, "v", 1), reset=False)
    assert not torch.allclose(stale.ctx, alone.ctx)


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_only_the_context_vectors_change(vit_clip: Classifier, rn_clip: Classifier, tower: str) -> None:
    model, size = (vit_clip, 32) if tower == "vit" else (rn_clip, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuner = TestTimeTuner(model, tta_config("atpt", **FAST))
    result = tuner.adapt(_images(1, size)[0], generator=make_generator(0))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    moved = (result.ctx - tuner.learner.init_ctx).abs()
    # one AdamW step from a fresh state moves every coordinate by about lr (plus a weight-decay term)
    assert moved.max() <= 5e-3 * 1.01 + 1e-6 and moved.max() > 1e-3
    assert not model.training


def test_views_are_batched_seeded_and_start_with_the_image(vit_clip: Classifier) -> None:
    image = _images(1, 32)[0]
    for mixing in ("attention", "full", "none"):
        tuner = TestTimeTuner(vit_clip, tta_config("atpt", n_views=6, mixing=mixing))
        views = tuner.views(image, generator=make_generator(5, "views"))
        assert views.shape == (6, 3, 32, 32) and 0 <= views.min() and views.max() <= 1
        assert torch.equal(views[0], image)
        again = tuner.views(image, generator=make_generator(5, "views"))
        assert torch.equal(views, again)
        other = tuner.views(image, generator=make_generator(6, "views"))
        assert not torch.equal(views[1:], other[1:])
        assert len({tuple(v.flatten()[:8].tolist()) for v in views[1:]}) == 5  # every view differs


def test_attention_mix_by_hand() -> None:
    base, augmented = torch.zeros(1, 1, 2, 5), torch.ones(1, 1, 2, 5)
    maps = torch.arange(10.0).view(1, 2, 5)
    mixed = attention_mix(base, augmented, maps, ratio=0.2, m_high=0.2, m_low=0.8)
    # the two most attended pixels (values 8 and 9) take 20 % of the AugMix image, the others 80 %
    expected = torch.full((1, 1, 2, 5), 0.8)
    expected[0, 0, 1, 3:] = 0.2
    torch.testing.assert_close(mixed, expected)


def test_fusion_weights_sum_to_one_and_prefer_coherent_views() -> None:
    smooth = torch.linspace(0, 1, 16).view(1, 4, 4)
    noisy = torch.rand((3, 4, 4), generator=torch.Generator().manual_seed(0))
    weights = tv_weights(torch.cat([smooth, noisy]))
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert weights.argmax() == 0  # the smooth map has the lowest total variation
    features = torch.nn.functional.normalize(torch.randn(10, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    features[:9] = torch.nn.functional.normalize(features[0] + 0.1 * features[:9], dim=1)  # one outlier (9)
    weights = rtpt_weights(features, neighbours=4)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert weights.argmin() == 9
    assert weight_entropy(torch.full((4,), 0.25)) == pytest.approx(torch.log(torch.tensor(4.0)).item())


@pytest.mark.parametrize("tower", ["vit", "resnet"])
@pytest.mark.parametrize("method", ["zeroshot", "tpt", "rtpt", "atpt"])
def test_every_method_on_both_towers(vit_clip: Classifier, rn_clip: Classifier, tower: str, method: str) -> None:
    model, size = (vit_clip, 32) if tower == "vit" else (rn_clip, 64)
    tuner = TestTimeTuner(model, tta_config(method, **FAST))
    result = tuner.adapt(_images(1, size, seed=4)[0], generator=make_generator(1))
    torch.testing.assert_close(result.probs.sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(result.weights.sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    expected = {"zeroshot": 1, "tpt": 1, "rtpt": 4, "atpt": tuner.config.n_selected}[method]
    assert result.weights.shape == (expected,) and 0 <= result.prediction < len(CLASSES)


@pytest.mark.parametrize("attention", ["gradient", "token_gradient_all_layers"])
def test_attention_ablations_run(vit_clip: Classifier, attention: str) -> None:
    tuner = TestTimeTuner(vit_clip, tta_config("atpt", attention=attention, fusion="uniform", **FAST))
    maps = tuner.attention(_images(3, 32))
    assert maps.shape == (3, 4, 4) and maps.min() >= 0 and maps.max() <= 1
    result = tuner.adapt(_images(1, 32)[0], generator=make_generator(0))
    torch.testing.assert_close(result.weights, torch.full((2,), 0.5))


def test_attention_batch_is_memory_only(vit_clip: Classifier) -> None:
    images = _images(5, 32, seed=2)
    small = TestTimeTuner(vit_clip, tta_config("atpt", attention_batch=2)).attention(images)
    whole = TestTimeTuner(vit_clip, tta_config("atpt", attention_batch=16)).attention(images)
    torch.testing.assert_close(small, whole, atol=1e-4, rtol=1e-3)  # batch size changes only float rounding


def test_differentiable_adaptation_reaches_the_image(vit_clip: Classifier) -> None:
    tuner = TestTimeTuner(vit_clip, tta_config("atpt", **FAST))
    image = _images(1, 32)[0].requires_grad_(True)
    result = tuner.adapt(image, generator=make_generator(0), differentiable=True)
    (grad,) = torch.autograd.grad(result.probs[0].log(), image)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    plain = tuner.adapt(image.detach(), generator=make_generator(0))
    torch.testing.assert_close(result.probs.detach(), plain.probs, atol=1e-5, rtol=1e-4)


def test_adaptive_attack_never_beats_the_paper_attack(vit_clip: Classifier) -> None:
    # R-TPT keeps this test fast; A-TPT's differentiable path is checked in test_differentiable_adaptation_...
    tuner = TestTimeTuner(vit_clip, tta_config("rtpt", n_views=4, select_ratio=0.5))
    images = _images(4, 32, seed=7)
    labels = torch.tensor([tuner.adapt(x, generator=make_generator(0, "tta-views", i)).prediction
                           for i, x in enumerate(images)])  # fmt: skip
    labels[3] = (labels[3] + 1) % len(CLASSES)  # one point the defence gets wrong even on clean data
    attack = TTAAttackConfig(eps=16 / 255, steps=3, adaptive_steps=1, eot=1)
    outcome = evaluate_tta(tuner, images, labels, attacks=("pgd", "adaptive", "pgd_stale"), attack_config=attack)
    assert outcome.accuracy("clean") == 0.75
    robust_pgd = outcome.predictions["pgd"] == labels
    robust_adaptive = outcome.predictions["adaptive"] == labels
    assert not (robust_adaptive & ~robust_pgd).any()
    assert outcome.accuracy("adaptive") <= outcome.accuracy("pgd")
    assert set(outcome.seconds) == {"clean", "pgd", "pgd_stale", "adaptive"}


def test_dataset_evaluation_does_not_depend_on_batch_size(vit_clip: Classifier) -> None:
    from robustlab.data import ArrayDataset

    images = _images(3, 32, seed=9)
    dataset = ArrayDataset(images, [0, 1, 2], class_names=CLASSES, name="toy")
    tuner = TestTimeTuner(vit_clip, tta_config("rtpt", **FAST))
    one = evaluate_tta_dataset(tuner, dataset, seed=3, batch_size=1)
    whole = evaluate_tta_dataset(tuner, dataset, seed=3, batch_size=3)
    direct = evaluate_tta(tuner, images, torch.tensor([0, 1, 2]), seed=3)
    assert torch.equal(one.predictions["clean"], whole.predictions["clean"])
    assert torch.equal(one.predictions["clean"], direct.predictions["clean"])
    torch.testing.assert_close(one.weight_entropy["clean"], direct.weight_entropy["clean"])


def test_clear_errors(vit_clip: Classifier) -> None:
    with pytest.raises(ValueError, match="Did you mean 'atpt'"):
        tta_config("atpt_")
    with pytest.raises(ValueError, match="fusion must be one of"):
        tta_config("atpt", fusion="mean")
    with pytest.raises(ValueError, match="unknown test-time option 'view'"):
        tta_config("atpt", view=3)
    with pytest.raises(ValueError, match="n_views"):
        TTAConfig(n_views=1)
    with pytest.raises(ValueError, match="zero-shot CLIP classifier"):
        TestTimeTuner(create_model("cifar:small_cnn", pretrained=False))
    with pytest.raises(ValueError, match="plain text tower"):
        PromptLearner(create_model("cifar:small_cnn", pretrained=False))
    with pytest.raises(ValueError, match=r"one image \(C, H, W\)"):
        TestTimeTuner(vit_clip, tta_config("tpt", **FAST)).adapt(_images(2, 32))
