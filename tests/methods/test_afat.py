"""AFAT: exact patch counts, the clipped straight-through gradient, the min–max directions, λ = 0 as plain
training, timm ``test_vit`` and the 32-px ViT, ablations and errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.data import ArrayDataset
from robustlab.methods import METHODS, AFATConfig, AFATLoss, train_afat
from robustlab.methods.afat import (
    PatchCorruptor,
    alignment_loss,
    block_outputs,
    corrupt_patches,
    keep_mask,
)
from robustlab.models import create_model
from robustlab.models.classifier import Classifier
from robustlab.rng import make_generator
from robustlab.train import fit

CLASSES = [f"class_{i}" for i in range(10)]


def test_vit_64(seed: int = 0) -> Classifier:
    """timm ``test_vit`` (16-px patches) at 64 px: a 4 x 4 grid, 16 patches."""
    import timm

    torch.manual_seed(seed)  # test-only: timm constructors take no generator
    net = timm.create_model("test_vit", pretrained=False, img_size=64, num_classes=10)
    return Classifier(net, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(3, 64, 64), class_names=CLASSES,
                      name="test_vit@64", family="vit").eval()  # fmt: skip


test_vit_64.__test__ = False  # a helper, not a test


def vit32(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)  # test-only
    return create_model("cifar:vit_tiny_patch4", pretrained=False)


def batch(n: int = 4, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_alignment_loss_is_the_mean_over_blocks_of_elementwise_mse() -> None:
    clean = [torch.zeros(2, 3, 4), torch.ones(2, 3, 4)]
    corrupted = [torch.full((2, 3, 4), 2.0), torch.ones(2, 3, 4)]
    assert float(alignment_loss(clean, corrupted)) == pytest.approx((4.0 + 0.0) / 2)


# ----------------------------------------------------------------------------------------------------- min–max


def _sgd_nesterov_first_step(param: torch.Tensor, grad: torch.Tensor, cfg: AFATConfig) -> torch.Tensor:
    """The parameter after SGD's first step (empty momentum buffer) with Nesterov momentum and weight decay."""
    d = grad + cfg.adversary_weight_decay * param
    return param - cfg.adversary_lr * (d + cfg.adversary_momentum * d)


def _reference_total_loss(model: Classifier, corruptor: PatchCorruptor, images, labels, cfg: AFATConfig):
    """CE + λ·L_align written out from the public pieces, with C's weights as leaves: an independent check."""
    weights = {n: p.detach().clone().requires_grad_() for n, p in corruptor.named_parameters()}
    scores = torch.func.functional_call(corruptor, weights, (model.normalize(images),))
    keep = keep_mask(scores, cfg.rho)
    # AFATLoss draws the noise of its first step from make_generator(seed, "afat_step", 0)
    fill = corrupt_patches(images, keep, corruptor.patch_size, generator=make_generator(cfg.seed, "afat_step", 0))
    logits, tokens = block_outputs(model, torch.cat([images, fill]))
    n = len(images)
    align = alignment_loss([t[:n] for t in tokens], [t[n:] for t in tokens])
    return F.cross_entropy(logits[:n], labels) + cfg.lam * align, list(weights.values())


@pytest.mark.parametrize("make", [vit32, test_vit_64], ids=["vit_tiny_patch4", "test_vit"])
def test_corruptor_ascends_alignment_while_vit_descends_total_loss(make) -> None:
    model = make()
    images, labels = batch(4, model.input_size[1])
    cfg = AFATConfig(lam=0.5, adversary_lr=1e-2)
    afat = AFATLoss(cfg)
    afat.prepare(model)
    before = copy.deepcopy(afat.corruptor)
    expected, weights = _reference_total_loss(model, before, images, labels, cfg)
    grads = torch.autograd.grad(expected, weights)  # = λ · d L_align / d C

    loss, _ = afat(model, images, labels)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    opt.zero_grad()
    loss.backward()  # fit's single backward: C takes its ascent step inside it
    assert afat.adversary_steps == 1

    clip = min(1.0, cfg.adversary_clip / float(torch.cat([g.flatten() for g in grads]).norm()))
    moved = list(zip(before.parameters(), grads, afat.corruptor.parameters(), strict=True))
    for p0, g, p1 in moved:
        # ascent = SGD (Nesterov, weight decay) on the negated, norm-clipped gradient
        torch.testing.assert_close(p1, _sgd_nesterov_first_step(p0.detach(), -g * clip, cfg), rtol=1e-4, atol=1e-7)
    # the weight-decay-free part of the step raises λ·L_align to first order
    decay = cfg.adversary_lr * (1 + cfg.adversary_momentum) * cfg.adversary_weight_decay
    ascent = sum(float(((p1 - p0) + decay * p0).detach().mul(g).sum())
                 for p0, g, p1 in moved)  # fmt: skip
    assert ascent > 0

    # the ViT's step lowers the total loss at the same corruption (same C, same noise)
    opt.step()
    with torch.no_grad():
        after, _ = _reference_total_loss(model, before, images, labels, cfg)
    assert float(after) < float(loss.detach())


def test_lam_zero_is_plain_cross_entropy_training() -> None:
    images, labels = batch(12, 64)
    data = ArrayDataset(images, labels, class_names=CLASSES, name="synthetic", split="train")
    plain, afat0, afat = test_vit_64(), test_vit_64(), test_vit_64()
    settings = dict(epochs=1, lr=1e-3, batch_size=6, optimizer="adamw")
    fit(plain, data, **settings)
    loss = AFATLoss(AFATConfig(lam=0.0))
    fit(afat0, data, loss_fn=loss, **settings)
    train_afat(afat, data, config=AFATConfig(rho=0.25, lam=0.5), **settings)
    same = [torch.equal(a, b) for a, b in zip(plain.state_dict().values(), afat0.state_dict().values(), strict=True)]
    assert all(same) and loss.align_history == []
    assert not torch.equal(plain.net.blocks[0].attn.qkv.weight, afat.net.blocks[0].attn.qkv.weight)


def test_train_afat_on_test_vit_steps_c_once_per_step() -> None:
    images, labels = batch(8, 64)
    data = ArrayDataset(images, labels, class_names=CLASSES, name="synthetic", split="train")
    model = test_vit_64()
    result = train_afat(model, data, config=AFATConfig(rho=0.25), epochs=2, lr=1e-3, batch_size=4,
                        optimizer="adamw")  # fmt: skip
    assert METHODS.get("afat") is train_afat
    assert result.fit.steps == 4 == result.adversary_steps == len(result.align_history)
    assert not model.training and result.corruptor.grid == (4, 4)


def test_loss_is_deterministic_under_a_seed() -> None:
    model = test_vit_64()
    images, labels = batch(4, 64)
    one = AFATLoss(AFATConfig(rho=0.25, seed=5))(model, images, labels)[0].detach()
    two = AFATLoss(AFATConfig(rho=0.25, seed=5))(model, images, labels)[0].detach()
    other = AFATLoss(AFATConfig(rho=0.25, seed=6))(model, images, labels)[0].detach()
    assert float(one) == float(two) != float(other)


# ---------------------------------------------------------------------------------------------------- ablations


def test_random_selection_leaves_c_untouched() -> None:
    model = test_vit_64()
    images, labels = batch(4, 64)
    afat = AFATLoss(AFATConfig(rho=0.25, selection="random", lam=1.0))
    afat.prepare(model)
    before = copy.deepcopy(afat.corruptor.state_dict())
    loss, _ = afat(model, images, labels)
    loss.backward()
    assert afat.adversary_steps == 0 and afat.align_history[0] > 0
    assert all(torch.equal(before[k], v) for k, v in afat.corruptor.state_dict().items())


def test_patch_drop_aligns_over_kept_tokens_and_trains_c() -> None:
    model = test_vit_64()
    images, labels = batch(4, 64)
    afat = AFATLoss(AFATConfig(rho=0.25, occlusion="drop", lam=1.0))
    afat.prepare(model)
    before = copy.deepcopy(afat.corruptor)
    # the dropped forward sees 1 class token + 16 − 4 patch tokens
    seen = []
    hook = model.net.blocks[0].register_forward_hook(lambda m, a, o: seen.append(o.shape[1]))
    loss, _ = afat(model, images, labels)
    hook.remove()
    assert seen == [17, 13]
    loss.backward()
    assert afat.adversary_steps == 1
    assert not torch.equal(before.linear.weight, afat.corruptor.linear.weight)


def test_ce_objective_moves_c_and_detach_clean_keeps_the_value() -> None:
    model = test_vit_64()
    images, labels = batch(4, 64)
    afat = AFATLoss(AFATConfig(rho=0.25, objective="ce", lam=1.0))
    afat.prepare(model)
    before = copy.deepcopy(afat.corruptor.linear.weight)
    loss, _ = afat(model, images, labels)
    assert afat.adversary_steps == 1 and not torch.equal(before, afat.corruptor.linear.weight)
    attached = AFATLoss(AFATConfig(rho=0.25, lam=1.0))(model, images, labels)[0].detach()
    detached = AFATLoss(AFATConfig(rho=0.25, lam=1.0, detach_clean=True))(model, images, labels)[0].detach()
    assert float(attached) == pytest.approx(float(detached))


def test_block_outputs_match_the_plain_forward() -> None:
    model = vit32()
    images, _ = batch(2)
    logits, tokens = block_outputs(model, images)
    assert torch.allclose(logits, model(images)) and len(tokens) == 6 and tokens[0].shape == (2, 65, 192)


# ------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("rho", [0.0, 1.0, -0.1, 1.5, "0.1", True, float("nan")])
def test_bad_rho_is_refused(rho) -> None:
    with pytest.raises(ValueError, match="rho"):
        AFATConfig(rho=rho)


@pytest.mark.parametrize("lam", [-1e-3, float("nan"), float("inf"), "0.005"])
def test_bad_lam_is_refused(lam) -> None:
    with pytest.raises(ValueError, match="lam"):
        AFATConfig(lam=lam)


def test_unknown_ablation_names_are_refused() -> None:
    with pytest.raises(ValueError, match="selection"):
        AFATConfig(selection="greedy")
    with pytest.raises(ValueError, match="occlusion"):
        AFATConfig(occlusion="blur")
    with pytest.raises(ValueError, match="objective"):
        AFATConfig(objective="kl")
    with pytest.raises(ValueError, match="random"):
        AFATConfig(selection="random", objective="ce")


def test_non_vit_models_and_too_small_rho_are_refused() -> None:
    torch.manual_seed(0)
    cnn = create_model("cifar:small_cnn", pretrained=False)
    with pytest.raises(ValueError, match="vision transformers"):
        AFATLoss().prepare(cnn)
    with pytest.raises(ValueError, match="Classifier"):
        AFATLoss().prepare(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="occludes no patch"):
        AFATLoss(AFATConfig(rho=0.05)).prepare(test_vit_64())  # 0.05 · 16 < 1
    images, labels = batch(4)
    data = ArrayDataset(images, labels, class_names=CLASSES, name="synthetic", split="train")
    with pytest.raises(ValueError, match="vision transformers"):
        train_afat(cnn, data, epochs=1, lr=0.1)
    with pytest.raises(ValueError, match="loss_fn"):
        train_afat(vit32(), data, epochs=1, lr=0.1, loss_fn=lambda m, x, y: x.sum())


# ------------------------------------------------------------------------------------------------------ resume


class _Stop(Exception):
    pass


def test_interrupted_afat_run_resumes_c_and_its_optimiser_exactly(tmp_path) -> None:
    images, labels = batch(8, 64, seed=3)
    data = ArrayDataset(images, labels, class_names=CLASSES, name="synthetic", split="train")
    settings = {"epochs": 2, "lr": 1e-3, "batch_size": 4, "optimizer": "sgd", "momentum": 0.9}
    config = AFATConfig(rho=0.25, lam=0.5, adversary_lr=0.05)

    straight_model = test_vit_64()
    straight = train_afat(straight_model, data, config=config, **settings)

    def stop_after_first_epoch(event: dict) -> None:
        if event["kind"] == "epoch_end" and event["epoch"] == 1:
            raise _Stop

    ckpt = tmp_path / "afat.pt"
    with pytest.raises(_Stop):
        train_afat(test_vit_64(), data, config=config, checkpoint=ckpt, callback=stop_after_first_epoch, **settings)
    resumed_model = test_vit_64(seed=9)  # a new process starts from other weights: the checkpoint must set them
    resumed = train_afat(resumed_model, data, config=config, checkpoint=ckpt, resume=True, **settings)

    for a, b in zip(straight_model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.corruptor.state_dict().values(), resumed.corruptor.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.adversary_steps == straight.adversary_steps == 4
    assert resumed.align_history == straight.align_history


def test_resume_refuses_other_afat_settings_and_a_plain_checkpoint(tmp_path) -> None:
    images, labels = batch(4, 64)
    data = ArrayDataset(images, labels, class_names=CLASSES, name="synthetic", split="train")
    settings = {"epochs": 1, "lr": 1e-3, "batch_size": 4}
    ckpt = tmp_path / "afat.pt"
    train_afat(test_vit_64(), data, config=AFATConfig(rho=0.25), checkpoint=ckpt, **settings)
    with pytest.raises(ValueError, match="other settings: rho"):
        train_afat(test_vit_64(), data, config=AFATConfig(rho=0.5), checkpoint=ckpt, resume=True, **settings)
    plain = tmp_path / "plain.pt"
    fit(test_vit_64(), data, checkpoint=plain, **settings)
    with pytest.raises(ValueError, match="holds no loss_fn state"):
        train_afat(test_vit_64(), data, config=AFATConfig(rho=0.25), checkpoint=plain, resume=True, **settings)
    with pytest.raises(ValueError, match="stateful loss_fn"):
        fit(test_vit_64(), data, checkpoint=ckpt, resume=True, **settings)


def test_under_fp16_amp_c_steps_by_its_true_gradient_not_the_loss_scale() -> None:
    # fp16 autocast with fit's GradScaler (2**16 at the start) on the CPU: C's hook sees scaled gradients. Unscaled,
    # C's first step has the size of the full-precision step; left scaled, it would be 2**16 times larger up to
    # the norm clip.
    images, labels = batch(4, 64)
    data = ArrayDataset(images, labels, class_names=CLASSES, name="synthetic", split="train")
    moves = {}
    for amp in (False, "fp16"):
        corruptor = PatchCorruptor(16, (4, 4), generator=torch.Generator().manual_seed(3))
        start = [p.detach().clone() for p in corruptor.parameters()]
        loss = AFATLoss(AFATConfig(rho=0.25, lam=1.0), corruptor=corruptor)
        fit(test_vit_64(), data, loss_fn=loss, epochs=1, lr=1e-3, batch_size=4, optimizer="adamw", amp=amp)
        assert loss.adversary_steps == 1
        moves[amp] = torch.cat([(p.detach() - s).flatten() for p, s in zip(corruptor.parameters(), start, strict=True)])
    full, half = float(moves[False].norm()), float(moves["fp16"].norm())
    assert full > 0
    assert 0.5 < half / full < 2  # fp16 rounding changes the direction of so small a gradient, not its size
