"""Patch occlusion: replace a fraction ρ of the non-overlapping p×p patches with noise (AFAT, eq. 1).

The corrupted image is ``x̂ = M·x + (1 − M)·δ`` where ``M`` keeps a patch (1) or occludes it (0) and ``δ`` is
uniform [0, 1] noise in pixel space. Here the returned mask is the complement, ``occluded = 1 − M`` (True where a
patch is replaced), which is the form a patch-corruption model predicts and the attention-stability metric needs.

:func:`patch_occlusion` is the primitive: random patches (exactly ``round(ρ · patches)`` per image, rounded half
up, chosen by each sample's own generator) or a given mask, which may be boolean or a float mask in [0, 1] — a
straight-through mask from a learned corruption model keeps its gradient. :func:`random_patch_occlusion` is the
same operation behind the common ``(images, severity)`` signature, so the evaluation engine and
``robustlab corrupt`` can sweep it like any corruption.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from robustlab import rng
from robustlab._checks import check_images, check_severity
from robustlab.perturb._profiles import resolve_profile
from robustlab.perturb._registry import PERTURBATIONS

__all__ = [
    "OCCLUSION_NOISE",
    "OCCLUSION_PATCH_SIZE",
    "OCCLUSION_RATIOS",
    "corrupt_patches",
    "keep_mask",
    "occluded_count",
    "patch_occlusion",
    "random_patch_occlusion",
]

# what fills an occluded patch: uniform [0, 1] noise as in AFAT, or black (zeros) as a noise-free control
OCCLUSION_NOISE = ("uniform", "zeros")

# robustlab's own severity scale (not part of any benchmark): AFAT trains and evaluates at ρ = 10 % (severity 2)
# and ablates ρ over 0..50 % (AFAT, section 5, "Occlusion ratio ρ").
OCCLUSION_RATIOS: dict[int, float] = {1: 0.05, 2: 0.10, 3: 0.20, 4: 0.30, 5: 0.50}

# the patch grid of the usual vision transformers at each profile's size: ViT-*/16 at 224 px (14 × 14 patches),
# ViT-*/4 at 32 px and ViT-*/8 at 64 px (8 × 8 patches)
OCCLUSION_PATCH_SIZE: dict[str, int] = {"imagenet": 16, "cifar": 4, "tiny": 8}


def _check_ratio(ratio: object) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise ValueError(f"ratio must be a number in [0, 1] (the fraction of patches to occlude), got {ratio!r}")
    value = float(ratio)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"ratio must lie in [0, 1] (the fraction of patches to occlude), got {ratio!r}")
    return value


def _check_patch_size(patch_size: object, height: int, width: int) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"patch_size={patch_size} must divide the image size {height}x{width} (non-overlapping patches); "
            f"choose a divisor of both, e.g. {math.gcd(height, width)}"
        )
    return patch_size


def _check_mask(mask: object, shape: tuple[int, int, int], device: torch.device) -> Tensor:
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a torch.Tensor of shape {shape} (True = occluded), got {type(mask).__name__}")
    if tuple(mask.shape) != shape:
        raise ValueError(
            f"mask must have shape (N, H/patch_size, W/patch_size) = {shape} (True = occluded), got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(f"mask must be bool (True = occluded) or float in [0, 1], got {mask.dtype} (use mask.bool())")
    if mask.is_floating_point() and mask.numel():
        lo, hi = float(mask.detach().min()), float(mask.detach().max())
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(f"a float mask must have values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return mask.to(device)


def _random_patches(
    n: int, patches: int, count: int, generator: torch.Generator | Sequence[torch.Generator] | None
) -> Tensor:
    """``count`` distinct patch indices per sample (CPU int64), uniformly among all subsets of that size."""
    scores = rng.rand((n, patches), generator=generator)  # per-sample rows when given a generator list
    return scores.argsort(dim=1)[:, :count]


def patch_occlusion(
    images: Tensor,
    ratio: float | None,
    *,
    patch_size: int = 16,
    mask: Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    noise: str = "uniform",
) -> tuple[Tensor, Tensor]:
    """Occlude a fraction ``ratio`` of the non-overlapping ``patch_size`` patches with noise (AFAT, eq. 1).

    Args:
        images: clean pixels.
        ratio: fraction ρ of patches to occlude; each image gets exactly ``round(ρ · patches)`` of them (rounded
            half up), chosen uniformly at random from its own generator. Ignored (may be None) when ``mask`` is
            given.
        patch_size: side p of the square patches; must divide H and W.
        mask: the patches to occlude instead of random ones, ``(N, H/p, W/p)``: bool (True = occluded) or float
            in [0, 1] (the occlusion weight ``1 − M``; a straight-through mask keeps its gradient).
        generator: one generator, or one per sample so a sample's patches and noise do not depend on its batch.
            Random patches draw their scores first, then noise for the chosen patches only; a given mask draws
            noise for the whole image.
        noise: ``"uniform"`` (U[0, 1] per pixel and channel, as AFAT) or ``"zeros"`` (black patches).

    Returns:
        ``(occluded_images, mask)``: the images with ``x̂ = (1 − m)·x + m·δ`` per patch (same dtype and device
        as ``images``), and the mask used (bool for random patches, else the given mask on the images' device).

    Shape:
        images ``(N, C, H, W)`` -> ``(N, C, H, W)``; mask ``(N, H/p, W/p)``.

    Raises:
        ValueError: bad images; ``ratio`` outside [0, 1] or missing without a mask; ``patch_size`` not a positive
            divisor of H and W; a mask of the wrong shape, dtype or range; an unknown ``noise``.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> y, m = patch_occlusion(x, 0.25, patch_size=8, generator=torch.Generator().manual_seed(0))
        >>> m.shape, int(m[0].sum())
        (torch.Size([2, 4, 4]), 4)
    """
    check_images(images)
    n, _, height, width = images.shape
    patch_size = _check_patch_size(patch_size, height, width)
    if noise not in OCCLUSION_NOISE:
        raise ValueError(f"noise must be one of {', '.join(repr(k) for k in OCCLUSION_NOISE)}, got {noise!r}")
    grid = (height // patch_size, width // patch_size)
    if mask is None:
        if ratio is None:
            raise ValueError("pass ratio (the fraction of patches to occlude) or an explicit mask")
        count = math.floor(_check_ratio(ratio) * grid[0] * grid[1] + 0.5)
        chosen = _random_patches(n, grid[0] * grid[1], count, generator)
        mask = torch.zeros(n, grid[0] * grid[1], dtype=torch.bool).scatter_(1, chosen, True)
        mask = mask.view(n, *grid).to(images.device)
        # noise is drawn for the chosen patches only (in the order of `chosen`): a tenth of the draws at ρ = 10 %
        shape = (n, count, images.shape[1], patch_size, patch_size)
        if noise == "uniform":
            fill = rng.rand(shape, generator=generator, device=images.device, dtype=images.dtype)
        else:
            fill = torch.zeros(shape, device=images.device, dtype=images.dtype)
        out = images.clone()
        # (N, C, gh, p, gw, p) view: sample, patch row and patch column index the chosen patches in place
        cells = out.view(n, images.shape[1], grid[0], patch_size, grid[1], patch_size)
        rows, cols = (chosen // grid[1]).to(images.device), (chosen % grid[1]).to(images.device)
        cells[torch.arange(n, device=images.device).unsqueeze(1), :, rows, :, cols, :] = fill
        return out, mask
    mask = _check_mask(mask, (n, *grid), images.device)
    if noise == "uniform":
        fill = rng.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    else:
        fill = torch.zeros_like(images)
    # one mask cell per patch -> one per pixel, broadcast over channels
    pixels = mask.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2).unsqueeze(1)
    if mask.dtype == torch.bool:
        out = torch.where(pixels, fill, images)
    else:
        weight = pixels.to(images.dtype)
        out = (1 - weight) * images + weight * fill
    return out, mask


def random_patch_occlusion(
    images: Tensor,
    severity: int,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    profile: str | None = None,
    patch_size: int | None = None,
) -> Tensor:
    """Random uniform-noise patch occlusion at a severity (ρ = 5, 10, 20, 30, 50 % for severities 1..5).

    The severity scale is robustlab's own (:data:`OCCLUSION_RATIOS`); AFAT's setting ρ = 10 % is severity 2.

    Args:
        images: clean pixels.
        severity: 1..5.
        generator: one generator, or one per sample.
        profile: picks the default patch size (16 px for ``"imagenet"``, 4 for ``"cifar"``, 8 for ``"tiny"``);
            default chosen from the image size.
        patch_size: overrides the profile's patch size.

    Returns:
        Occluded pixels, same shape, dtype and device.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, H, W)``.

    Raises:
        ValueError: bad images, severity or profile, or a patch size that does not divide the image.
    """
    check_images(images)
    severity = check_severity(severity)
    if patch_size is None:
        patch_size = OCCLUSION_PATCH_SIZE[resolve_profile(profile, images.shape[-2], images.shape[-1])]
    out, _ = patch_occlusion(images, OCCLUSION_RATIOS[severity], patch_size=patch_size, generator=generator)
    return out


# patch_occlusion returns (images, mask) and takes a ratio, so it is registered for lookup by name only; the
# severity wrapper is the one that fits perturb() and the corruption sweeps.
PERTURBATIONS.register(patch_occlusion)
PERTURBATIONS.register(random_patch_occlusion)


# --- AFAT's learned occlusion: a keep mask from patch scores, and the patch fill of eq. 1 ---


def occluded_count(rho: float, patches: int) -> int:
    """How many of ``patches`` patches AFAT occludes at ratio ``rho``: ``⌊ρ · N⌋`` (see the module docstring).

    Raises:
        ValueError: the count is 0 (ρ too small for this grid).
    """
    count = math.floor(rho * patches + 1e-9)
    if count < 1:
        raise ValueError(f"rho={rho} occludes no patch of {patches}; use rho >= {1 / patches:.4g} for this model")
    return count


class _KeepTopSTE(torch.autograd.Function):
    """Hard top-k keep mask; backward passes the gradient straight through, clipped to [−1, 1]."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, occluded: int) -> Tensor:
        lowest = scores.topk(occluded, dim=1, largest=False).indices
        return torch.ones_like(scores).scatter_(1, lowest, 0.0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad.clamp(-1.0, 1.0), None


def keep_mask(scores: Tensor, rho: float) -> Tensor:
    """Binarise patch scores: keep 1 for all but the ``⌊ρ·N⌋`` lowest-scoring patches of each row, which get 0.

    Differentiable by a straight-through estimator whose gradient is clipped to [−1, 1] (Hubara et al., 2016).

    Args:
        scores: patch scores, higher = keep.
        rho: occlusion ratio in (0, 1).

    Returns:
        The keep mask M (1 = keep, 0 = occlude), same dtype and device as ``scores``.

    Shape:
        ``(B, N)`` -> ``(B, N)``.

    Raises:
        ValueError: ``scores`` not 2-D floating point, or ``rho`` that occludes nothing.
    """
    if not isinstance(scores, Tensor) or scores.ndim != 2 or not scores.is_floating_point():
        raise ValueError(f"scores must be a float tensor (B, N), got {getattr(scores, 'shape', type(scores))}")
    return _KeepTopSTE.apply(scores, occluded_count(rho, scores.shape[1]))


def corrupt_patches(
    images: Tensor,
    keep: Tensor,
    patch_size: int,
    *,
    fill: str = "pixel",
    mean: Tensor | None = None,
    std: Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Tensor:
    """``x̂ = M ⊙ x + (1 − M) ⊙ δ`` with the per-patch mask expanded to pixels (eq. 1); gradients reach ``keep``.

    Args:
        images: clean pixels in [0, 1].
        keep: per-patch keep mask (1 keep, 0 occlude), row-major over the patch grid; may carry a gradient.
        patch_size: side p of the square patches.
        fill: ``"pixel"`` (δ ~ U[0, 1] pixels) or ``"normalized"`` (δ ~ U[0, 1] in normalised space, i.e. pixels
            ``mean + std · U[0, 1]``, as the reference code).
        mean, std: the model's normalisation (per channel), needed for ``fill="normalized"``.
        generator: draws δ (on the CPU, so values do not depend on the device); one per sample makes a sample's
            noise independent of its batch.

    Returns:
        Corrupted pixels, same shape, dtype and device as ``images``.

    Shape:
        images ``(B, C, H, W)``, keep ``(B, (H/p)·(W/p))`` -> ``(B, C, H, W)``.
    """
    b, c, height, width = images.shape
    grid = (height // patch_size, width // patch_size)
    if keep.shape != (b, grid[0] * grid[1]):
        raise ValueError(f"keep must have shape (B, patches) = {(b, grid[0] * grid[1])}, got {tuple(keep.shape)}")
    noise = rng.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    if fill == "normalized":
        if mean is None or std is None:
            raise ValueError("fill='normalized' needs the model's mean and std")
        noise = mean.view(1, -1, 1, 1).to(noise) + std.view(1, -1, 1, 1).to(noise) * noise
    elif fill != "pixel":
        raise ValueError(f"fill must be 'pixel' or 'normalized', got {fill!r}")
    pixels = keep.view(b, 1, *grid).repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)
    pixels = pixels.to(images.dtype)
    return pixels * images + (1 - pixels) * noise
