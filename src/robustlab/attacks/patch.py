"""Patch-Fool (Fu et al., ICLR 2022): rewrite whole patches of a ViT's input to fool its self-attention.

The attack, as in the paper and its reference code (GATECH-EIC/Patch-Fool, ``main.py``):

1. **Attention-aware patch selection.** Score each patch token by the attention it receives, summed over layers,
   heads and queries (the paper's rule; the released code reads a single layer, ``selection_layer=4``), and take the
   top ``num_patches``.
2. **Initialisation.** The selected patches are replaced by uniform noise (unconstrained Patch-Fool) or, with an
   L-inf budget ``eps`` (Mild-Patch-Fool), by ``x + U(-eps, eps)``.
3. **Optimisation** with Adam (lr decayed by 0.95 every 10 steps, 250 steps) ascending
   ``CE(f(x'), y) + w * sum_l L_attn^l`` where ``L_attn^l`` is the mean over queries of the log of the
   head-averaged attention that layer ``l`` pays to the (first) adversarial patch: each layer is pushed to look at
   the patch. The two gradients are combined with PCGrad (Yu et al. 2020): where a layer's attention gradient
   conflicts with the CE gradient (negative inner product), its component along the CE gradient is removed first.

Differences from the reference code, on purpose: the attack lives in [0, 1] pixel space (the default Adam step 0.05
is the reference's 0.22 in ImageNet-normalised units times the ImageNet std, 0.226); the attention loss covers every
layer by default (the code attacks layers 1 .. L/2 - 1 of DeiT; pass ``attention_layers`` to do the same); and the
PCGrad projection divides by the squared norm of the CE gradient, as PCGrad defines it (the code divides by the norm).

The token grid and prefix tokens come from :func:`robustlab.models.vit_probe`, so any timm ViT works at its own
input size and patch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab import rng
from robustlab.attacks import _common as c
from robustlab.attacks._registry import ATTACKS
from robustlab.models.classifier import Classifier
from robustlab.models.probes import ViTProbe, vit_probe
from robustlab.rng import Generators

__all__ = ["patch_fool", "patch_pixel_mask", "select_patches"]

# Adam as in the reference (torch.optim.Adam defaults)
_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def _check_layer(layer: object, num_blocks: int, name: str) -> int:
    if isinstance(layer, float) and layer.is_integer():
        layer = int(layer)
    if isinstance(layer, bool) or not isinstance(layer, int) or not -num_blocks <= layer < num_blocks:
        raise ValueError(
            f"{name} must be an integer block index in [-{num_blocks}, {num_blocks}) "
            f"(the model has {num_blocks} blocks), got {layer!r}"
        )
    return layer % num_blocks


def _patch_scores(probe: ViTProbe, layer: int | None) -> Tensor:
    """Attention received by each patch token, summed over queries, heads and layers (or one layer)."""
    layers = (
        probe.attentions
        if layer is None
        else [probe.attentions[_check_layer(layer, probe.num_blocks, "selection_layer")]]
    )
    prefix = probe.num_prefix_tokens
    return torch.stack([a[..., prefix:].float().sum(dim=(1, 2)) for a in layers]).sum(dim=0)


def select_patches(
    model: Classifier,
    images: Tensor,
    *,
    num_patches: int = 1,
    selection_layer: int | None = None,
) -> Tensor:
    """Patch-Fool's attention-aware patch selection: the patches that receive the most attention.

    Args:
        model: a vision transformer :func:`robustlab.models.vit_probe` can read.
        images: pixels in [0, 1] at the model's input size.
        num_patches: how many patches per image.
        selection_layer: score with this block only (the reference code uses block 4); default: sum over all
            blocks, as in the paper.

    Returns:
        Patch indices in row-major order of the token grid, most attended first.

    Shape:
        images ``(N, C, H, W)`` -> ``(N, num_patches)`` int64.

    Raises:
        ValueError: not a readable ViT, bad images, ``num_patches`` outside ``1 .. h * w``, or a bad layer.
    """
    num_patches = c.check_positive_int(num_patches, "num_patches")
    with torch.no_grad():
        probe = vit_probe(model, images)
    grid = probe.grid
    if num_patches > grid[0] * grid[1]:
        raise ValueError(f"num_patches={num_patches} exceeds the {grid[0]}x{grid[1]} token grid")
    scores = _patch_scores(probe, selection_layer)
    return scores.topk(num_patches, dim=1).indices


def patch_pixel_mask(patches: Tensor, grid: tuple[int, int], patch_size: tuple[int, int]) -> Tensor:
    """Pixel mask of the given patches (True inside a selected patch).

    Args:
        patches: patch indices in row-major grid order.
        grid: ``(h, w)`` patches per column and row.
        patch_size: ``(ph, pw)`` pixels per patch.

    Returns:
        A boolean mask broadcastable over channels.

    Shape:
        patches ``(N, k)`` -> ``(N, 1, h * ph, w * pw)``.
    """
    n = patches.shape[0]
    cells = torch.zeros(n, grid[0] * grid[1], dtype=torch.bool, device=patches.device)
    cells.scatter_(1, patches, True)
    cells = cells.view(n, *grid)
    return cells.repeat_interleave(patch_size[0], dim=1).repeat_interleave(patch_size[1], dim=2).unsqueeze(1)


def _pcgrad(attention_grad: Tensor, ce_grad: Tensor) -> Tensor:
    """Per image: drop the component of ``attention_grad`` along ``ce_grad`` where the two conflict."""
    a, g = attention_grad.flatten(1), ce_grad.flatten(1)
    dot = (a * g).sum(dim=1)
    squared = (g * g).sum(dim=1)
    coef = torch.where(dot < 0, dot / squared.clamp_min(1e-30), torch.zeros_like(dot))
    return (a - coef.unsqueeze(1) * g).view_as(attention_grad)


def _check_patches(patches: object, n: int, count: int) -> Tensor:
    if not isinstance(patches, Tensor) or patches.dtype != torch.int64 or patches.ndim != 2 or patches.shape[0] != n:
        got = f"shape {tuple(patches.shape)} {patches.dtype}" if isinstance(patches, Tensor) else type(patches).__name__
        raise ValueError(f"patches must be an int64 tensor (N, k) = ({n}, k) of patch indices, got {got}")
    if patches.shape[1] < 1:
        raise ValueError("patches must name at least one patch per image")
    if patches.numel() and (int(patches.min()) < 0 or int(patches.max()) >= count):
        raise ValueError(
            f"patch indices must lie in [0, {count}) for this token grid, "
            f"got range [{int(patches.min())}, {int(patches.max())}]"
        )
    return patches


@ATTACKS.register
def patch_fool(
    model: Classifier,
    images: Tensor,
    labels: Tensor,
    *,
    num_patches: int = 1,
    steps: int = 250,
    step_size: float = 0.05,
    attention_weight: float = 0.002,
    eps: float | None = None,
    patches: Tensor | None = None,
    selection_layer: int | None = None,
    attention_layers: Sequence[int] | None = None,
    lr_decay: float = 0.95,
    decay_every: int = 10,
    generator: Generators = None,
) -> Tensor:
    """Patch-Fool (Fu et al. 2022): optimise whole patches of a ViT's input against CE and its attention.

    See the module docstring for the algorithm. Only the selected patches change; every output pixel stays in
    [0, 1], and with ``eps`` within ``eps`` of the clean pixel (Mild-Patch-Fool, L-inf). The model's mode is not
    changed and gradients come from ``torch.autograd.grad`` only.

    Args:
        model: a vision transformer :func:`robustlab.models.vit_probe` can read (any timm ViT, open_clip ViT
            towers, ``cifar:vit_tiny_patch4``).
        images: clean pixels in [0, 1] at the model's input size.
        labels: true classes.
        num_patches: patches to perturb per image (the paper's default and AFAT's evaluation: 1).
        steps: Adam steps (reference: 250).
        step_size: Adam's learning rate in [0, 1] pixel units (reference: 0.22 in ImageNet-normalised units).
        attention_weight: weight ``w`` of the attention-distraction loss (reference: 0.002); 0 gives a CE-only
            patch attack.
        eps: optional L-inf budget on the patch pixels (Mild-Patch-Fool); None leaves the patches free in [0, 1].
        patches: patch indices ``(N, k)`` (row-major in the token grid) to attack instead of the attention-selected
            ones; the attention loss targets ``patches[:, 0]``.
        selection_layer: select patches by this block's attention (the reference code uses 4); default: all
            blocks summed, as in the paper.
        attention_layers: blocks whose attention is pushed to the patch; default: every block.
        lr_decay: multiply the learning rate by this every ``decay_every`` steps (reference: 0.95 every 10).
        decay_every: see ``lr_decay``.
        generator: draws the initial patch noise; one generator or one per image.

    Returns:
        Adversarial images, equal to ``images`` outside the selected patches.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: not a readable ViT, bad images or labels, bad numbers (steps < 1, negative step size, weight
            or eps), bad patch indices or layers, an image size that the token grid does not divide.

    Warns:
        UserWarning: model in train mode; outputs that look like probabilities; a randomised forward pass;
            images with an all-zero input gradient.
    """
    what = "patch_fool"
    c.check_model(model, what)  # returns model itself; vit_probe checks that it is a Classifier
    images, labels = c.check_inputs(model, images, labels, what)
    steps = c.check_positive_int(steps, "steps")
    decay_every = c.check_positive_int(decay_every, "decay_every")
    step_size = c.check_nonnegative(step_size, "step_size")
    attention_weight = c.check_nonnegative(attention_weight, "attention_weight")
    lr_decay = c.check_nonnegative(lr_decay, "lr_decay")
    if eps is not None:
        eps = c.check_nonnegative(eps, "eps", " (an L-inf budget on the patch pixels, e.g. 16/255)")
        c.warn_if_pixel_scale(eps)
    generator = c.check_generators(generator, images.shape[0])
    n = images.shape[0]
    if n == 0:
        return images.detach().clone()

    with c.gradients_enabled():
        x, labels = c.as_normal_tensor(images), c.as_normal_tensor(labels)
        c.warn_once_per_call(model, x, what)
        with torch.no_grad():
            probe = vit_probe(model, x)
        grid, prefix, blocks = probe.grid, probe.num_prefix_tokens, probe.num_blocks
        height, width = x.shape[-2:]
        if height % grid[0] or width % grid[1]:
            raise ValueError(f"images {height}x{width} are not divided by the model's {grid[0]}x{grid[1]} token grid")
        if not isinstance(probe.logits, Tensor) or probe.logits.ndim != 2:
            raise ValueError("patch_fool needs a model that returns logits (N, K)")
        c.check_label_range(labels, probe.logits.shape[1])
        c.warn_if_probabilities(probe.logits, what)
        if patches is None:
            num_patches = c.check_positive_int(num_patches, "num_patches")
            if num_patches > grid[0] * grid[1]:
                raise ValueError(f"num_patches={num_patches} exceeds the {grid[0]}x{grid[1]} token grid")
            patches = _patch_scores(probe, selection_layer).topk(num_patches, dim=1).indices
        else:
            patches = _check_patches(patches, n, grid[0] * grid[1]).to(x.device)
        del probe
        layers = (
            list(range(blocks))
            if attention_layers is None
            else sorted({_check_layer(layer, blocks, "attention_layers entries") for layer in attention_layers})
        )
        mask = patch_pixel_mask(patches, grid, (height // grid[0], width // grid[1]))
        # the column of the attention matrix that belongs to the first adversarial patch, per image
        column = (patches[:, 0] + prefix).view(n, 1, 1, 1)

        if eps is None:
            delta = rng.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            low, high = torch.zeros_like(x), torch.ones_like(x)
        else:
            low, high = (x - eps).clamp_(0, 1), (x + eps).clamp_(0, 1)
            delta = x + rng.uniform(x.shape, -eps, eps, generator=generator, device=x.device, dtype=x.dtype)
        delta = torch.max(torch.min(delta, high), low)
        first, second = torch.zeros_like(x), torch.zeros_like(x)  # Adam moments

        for step in range(steps):
            delta.requires_grad_(True)
            adv = torch.where(mask, delta, x)
            probe = vit_probe(model, adv)
            ce = F.cross_entropy(probe.logits, labels, reduction="sum")
            if attention_weight > 0 and layers:
                (ce_grad,) = torch.autograd.grad(ce, delta, retain_graph=True)
                grad = ce_grad.clone()
                for i, layer in enumerate(layers):
                    attention = probe.attentions[layer]  # (N, heads, T, T)
                    to_patch = attention.gather(3, column.expand(-1, attention.shape[1], attention.shape[2], 1))
                    distraction = to_patch.squeeze(3).mean(dim=1).clamp_min(1e-12).log().mean(dim=1).sum()
                    (attention_grad,) = torch.autograd.grad(distraction, delta, retain_graph=i < len(layers) - 1)
                    grad.add_(_pcgrad(attention_grad, ce_grad), alpha=attention_weight)
            else:
                (ce_grad,) = torch.autograd.grad(ce, delta)
                grad = ce_grad
            del probe, adv, ce
            delta.requires_grad_(False)
            if step == 0:
                c.warn_if_zero_gradients(ce_grad, what)
            with torch.no_grad():
                # Adam ascent (bias-corrected), elementwise, so each image's update is its own
                t = step + 1
                first.mul_(_BETAS[0]).add_(grad, alpha=1 - _BETAS[0])
                second.mul_(_BETAS[1]).addcmul_(grad, grad, value=1 - _BETAS[1])
                lr = step_size * lr_decay ** (step // decay_every)
                denominator = (second / (1 - _BETAS[1] ** t)).sqrt_().add_(_ADAM_EPS)
                delta.addcdiv_(first, denominator, value=lr / (1 - _BETAS[0] ** t))
                delta = torch.max(torch.min(delta, high), low)
        return torch.where(mask, delta, x).detach()
