"""AFAT: adversarial feature alignment for vision transformers.

A small *patch-corruption model* C scores the patches of each image; the ⌊ρ·N⌋ lowest-scoring patches are
replaced by uniform noise, ``x̂ = M ⊙ x + (1 − M) ⊙ δ``. The classifier F is trained on

    CE(F(x), y) + λ · L_align(x, x̂),     L_align = mean over blocks of MSE(F_l(x), F_l(x̂)),

while C is trained to *maximise* λ · L_align (Alg. 1: F descends, C ascends), so the corruptions always hit the
patches that currently disturb the intermediate attention layers the most.

How this module maps the paper onto robustlab:

- :class:`AFATLoss` is a ``loss_fn`` for :func:`robustlab.train.fit`; fit stays generic. C and its own optimiser
  (SGD, lr 1e-4, momentum 0.9, Nesterov, weight decay 0.05) live in the loss object. C's forward runs on a
  detached *copy* of its weights, and a hook on those copies receives C's gradient during fit's single backward
  pass; the hook negates it, clips its norm to 5 and steps C's optimiser. That is Alg. 1 exactly — both updates
  use the gradients of the same forward — without a second backward pass and without fit knowing about C.
- Binarisation (:func:`keep_mask`): a hard top-k, occluding exactly ``⌊ρ·N + 1e-9⌋`` patches per image (the
  epsilon only absorbs float error, e.g. 0.29·100). The reference code thresholds at ``torch.quantile(scores, ρ)``,
  which occludes ``⌊ρ·(N − 1)⌋ + 1`` patches for non-integer ``ρ·(N − 1)`` (20 instead of 19 at N = 196); a hard
  top-k is also exact under ties. Backward is straight-through with the incoming gradient clipped to [−1, 1].
- Noise δ ~ U[0, 1] is drawn in **pixel space** (robustlab's image contract). The reference code draws it in the
  model's *normalised* space, i.e. pixels ``mean + std · U[0, 1]``; ``noise_space="normalized"`` reproduces that.
- C reads the model's normalised input (what the reference's C sees) and has no bias anywhere.
- Ablations (paper, Tables 4–6): ``selection="random"`` (random patches, no C), ``occlusion="drop"`` (PatchDrop:
  the occluded tokens are removed from the sequence and the alignment runs over the kept tokens; timm ViTs only),
  ``objective="ce"`` (C maximises λ · CE(F(x̂), y) instead of λ · L_align), ``detach_clean=True`` (the clean
  features are a fixed target).

Resume: :class:`AFATLoss` has ``state_dict`` / ``load_state_dict`` (C's weights, its optimiser, the step counters),
which fit writes into every checkpoint, so ``train_afat(..., checkpoint=P, resume=True)`` continues C exactly where
it stopped; the noise of step ``t`` comes from a generator seeded by ``(seed, t)`` and is redrawn identically.

Under torchrun, C's gradient is averaged over the ranks (in a process group of its own) before each ascent step,
so every rank keeps the same C, as DDP keeps the same ViT.

Under fp16 AMP, fit tells the loss its gradient scaler's factor (``loss_scale``) before each backward pass, and C's
gradient is divided by it, so C steps as in full precision; a step whose gradient overflowed is skipped, as the
scaler skips the ViT's. The PatchDrop ablation (which runs the blocks itself, outside the DDP wrapper) is
single-process only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab import rng
from robustlab.data._base import ImageDataset
from robustlab.methods._registry import METHODS
from robustlab.models.classifier import Classifier
from robustlab.models.patch_corruptor import (
    PatchCorruptor,
    _classifier,
    load_corruptor,
    patch_geometry,
    save_corruptor,
)
from robustlab.models.probes import _vit_parts
from robustlab.perturb.occlusion import corrupt_patches, keep_mask, occluded_count
from robustlab.train import distributed
from robustlab.train.fit import Callback, FitResult, fit

__all__ = [
    "AFATConfig",
    "AFATLoss",
    "AFATResult",
    "PatchCorruptor",
    "alignment_loss",
    "block_outputs",
    "corrupt_patches",
    "keep_mask",
    "load_corruptor",
    "occluded_count",
    "patch_geometry",
    "save_corruptor",
    "train_afat",
]

# C (PatchCorruptor, save / load_corruptor) and patch_geometry live in robustlab.models.patch_corruptor, the mask
# and fill ops (keep_mask, corrupt_patches, occluded_count) in robustlab.perturb.occlusion, so that evaluation uses
# them without importing a training method; __all__ re-exports them from here

SELECTIONS = ("learned", "random")
OCCLUSIONS = ("noise", "drop")
OBJECTIVES = ("align", "ce")
NOISE_SPACES = ("pixel", "normalized")


@dataclass
class AFATConfig:
    """Settings of AFAT; defaults are the paper's (section 4 and Fig. 6)."""

    rho: float = 0.1
    """Occlusion ratio ρ: the fraction of patches C occludes per image, in (0, 1)."""
    lam: float = 5e-3
    """Weight λ of the alignment loss (>= 0); 0 is plain cross-entropy training."""
    selection: str = "learned"
    """``"learned"`` (the corruption model C) or ``"random"`` (ablation: uniformly random patches)."""
    occlusion: str = "noise"
    """``"noise"`` (replace patches by uniform noise) or ``"drop"`` (ablation: PatchDrop, remove their tokens)."""
    objective: str = "align"
    """What C maximises: ``"align"`` (λ · L_align) or ``"ce"`` (ablation: λ · CE on the corrupted images)."""
    noise_space: str = "pixel"
    """``"pixel"``: δ ~ U[0, 1] pixels; ``"normalized"``: δ ~ U[0, 1] after normalisation (the reference code)."""
    detach_clean: bool = False
    """Treat the clean block outputs as a constant target (ablation; the paper back-propagates through both)."""
    adversary_lr: float = 1e-4
    """Learning rate of C's SGD (constant)."""
    adversary_momentum: float = 0.9
    """Nesterov momentum of C's SGD."""
    adversary_weight_decay: float = 0.05
    """Weight decay of C's SGD."""
    adversary_clip: float = 5.0
    """Norm to which C's gradient is clipped before its ascent step."""
    seed: int = 0
    """Seed of C's initial weights and of the per-step noise / random patches."""

    def __post_init__(self) -> None:
        if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) or not 0.0 < self.rho < 1.0:
            raise ValueError(f"rho (--rho) must be a fraction of patches in (0, 1), e.g. 0.1; got {self.rho!r}")
        if (
            isinstance(self.lam, bool)
            or not isinstance(self.lam, (int, float))
            or not (math.isfinite(self.lam) and self.lam >= 0)
        ):
            raise ValueError(f"lam (--lam) must be a finite number >= 0 (paper: 0.005); got {self.lam!r}")
        for name, allowed in (("selection", SELECTIONS), ("occlusion", OCCLUSIONS), ("objective", OBJECTIVES),
                              ("noise_space", NOISE_SPACES)):  # fmt: skip
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} (--{name.replace('_', '-')}) must be one of {', '.join(allowed)}; "
                                 f"got {value!r}")  # fmt: skip
        if self.selection == "random" and self.objective != "align":
            raise ValueError("objective='ce' trains C; it cannot be combined with selection='random'")
        for name in ("adversary_lr", "adversary_momentum", "adversary_weight_decay", "adversary_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.adversary_clip == 0:
            raise ValueError("adversary_clip must be > 0 (the norm C's gradient is clipped to)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------- features, loss


def block_outputs(model: nn.Module, images: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Logits and every transformer block's output tokens from one forward (batch first, prefix tokens included).

    Lighter than :func:`robustlab.models.vit_probe`: attention stays fused and is not captured. ``model`` may be
    a DDP wrapper around a Classifier; the forward goes through the wrapper so gradients are synchronised.

    Shape:
        images ``(B, C, H, W)`` -> logits ``(B, K)``, tokens ``[(B, T, D)] * blocks``.
    """
    parts = _vit_parts(_classifier(model))
    outputs: list[Tensor] = []

    def keep(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        outputs.append(output if parts.batch_first else output.transpose(0, 1))

    handles = [block.register_forward_hook(keep) for block in parts.blocks]
    try:
        logits = model(images)
    finally:
        for handle in handles:
            handle.remove()
    return logits, outputs


def alignment_loss(clean: list[Tensor], corrupted: list[Tensor], *, detach_clean: bool = False) -> Tensor:
    """L_align (eq. 2): the mean over blocks of the element-wise MSE between clean and corrupted block outputs.

    Shape:
        two lists of ``(B, T, D)`` -> ``()``.
    """
    if len(clean) != len(corrupted) or not clean:
        raise ValueError(f"need the same, non-zero number of blocks, got {len(clean)} and {len(corrupted)}")
    terms = [F.mse_loss(hat.float(), (ref.detach() if detach_clean else ref).float())
             for ref, hat in zip(clean, corrupted, strict=True)]  # fmt: skip
    return torch.stack(terms).mean()


class _TimmViT(Protocol):
    """The parts of a timm VisionTransformer that PatchDrop runs itself."""

    patch_embed: nn.Module
    patch_drop: nn.Module
    norm_pre: nn.Module
    blocks: nn.Sequential
    norm: nn.Module
    num_prefix_tokens: int

    def _pos_embed(self, x: Tensor) -> Tensor: ...

    def forward_head(self, x: Tensor) -> Tensor: ...


def _timm_vit(clf: Classifier) -> _TimmViT:
    # cast: AFATLoss.prepare refuses occlusion="drop" unless the network has timm's _pos_embed (a timm ViT)
    return cast(_TimmViT, clf.net)


def _dropped_block_outputs(clf: Classifier, images: Tensor, keep: Tensor) -> list[Tensor]:
    """PatchDrop: run a timm ViT on the prefix tokens plus the kept patch tokens only.

    The kept tokens are multiplied by their keep values (all 1) so the straight-through gradient reaches C.
    """
    net = _timm_vit(clf)
    tokens = net._pos_embed(net.patch_embed(clf.normalize(images)))
    prefix = int(net.num_prefix_tokens)
    kept = _kept_indices(keep)
    weights = keep.gather(1, kept).to(tokens.dtype).unsqueeze(-1)
    patches = tokens[:, prefix:].gather(1, kept.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])) * weights
    x = net.norm_pre(net.patch_drop(torch.cat([tokens[:, :prefix], patches], dim=1)))
    outputs = []
    for block in net.blocks:
        x = block(x)
        outputs.append(x)
    return outputs


def _kept_indices(keep: Tensor) -> Tensor:
    """Indices of the kept patches of each row, in grid order (every row keeps the same number)."""
    count = int(keep[0].detach().sum().round())
    return keep.detach().argsort(dim=1, descending=True, stable=True)[:, :count].sort(dim=1).values


# ------------------------------------------------------------------------------------------------------------ loss


class AFATLoss:
    """The AFAT objective as a ``loss_fn`` for :func:`robustlab.train.fit`, holding C and C's optimiser.

    ``loss_fn(model, images, labels)`` returns ``(CE(F(x), y) + λ · L_align, clean logits)``; when fit back-
    propagates that loss, C takes its ascent step from the same gradients (see the module docstring). With
    ``lam == 0`` it is exactly :func:`robustlab.train.fit`'s default cross-entropy (no corrupted forward).

    Attributes:
        config: the :class:`AFATConfig`.
        corruptor: C, created on the first call from the model's patch grid (or passed in).
        optimizer: C's SGD.
        steps: calls so far (the noise of call ``t`` is seeded by ``(seed, t)``).
        align_history: L_align of every call, as floats.
        adversary_steps: ascent steps C has taken.

    Example:
        >>> afat = AFATLoss(AFATConfig(rho=0.1, lam=5e-3))
        >>> fit(model, train, epochs=10, lr=1e-3, optimizer="adamw", loss_fn=afat)  # doctest: +SKIP
    """

    def __init__(self, config: AFATConfig | None = None, *, corruptor: PatchCorruptor | None = None) -> None:
        self.config = config or AFATConfig()
        self.corruptor = corruptor
        self.optimizer: torch.optim.Optimizer | None = None
        self.steps = 0
        self.adversary_steps = 0
        # the factor on this backward pass's gradients (fp16 AMP's loss scale), set by fit before each backward
        self.loss_scale: Tensor | float = 1.0
        self.align_history: list[float] = []
        self._pending: dict[str, Any] | None = None
        self._group: Any = None  # the process group that averages C's gradient under torchrun
        if corruptor is not None:
            self._make_optimizer()

    def _make_optimizer(self) -> None:
        cfg = self.config
        assert self.corruptor is not None
        self.optimizer = torch.optim.SGD(
            self.corruptor.parameters(), lr=cfg.adversary_lr, momentum=cfg.adversary_momentum, nesterov=True,
            weight_decay=cfg.adversary_weight_decay,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """C's weights and optimiser state and the step counters, for :func:`robustlab.train.fit`'s checkpoints."""
        return {
            "config": asdict(self.config),
            "corruptor": None if self.corruptor is None else self.corruptor.state_dict(),
            "geometry": None if self.corruptor is None else [self.corruptor.patch_size, list(self.corruptor.grid)],
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "steps": self.steps,
            "adversary_steps": self.adversary_steps,
            "align_history": list(self.align_history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; C itself is rebuilt for the model on the next call if needed.

        Raises:
            ValueError: a state saved with different AFAT settings, or one that is not an AFATLoss state.
        """
        if not isinstance(state, dict) or "adversary_steps" not in state:
            raise ValueError("not an AFATLoss state (expected the dict AFATLoss.state_dict() returns)")
        saved = state.get("config", {})
        current = asdict(self.config)
        changed = sorted(k for k in current if k in saved and saved[k] != current[k])
        if changed:
            raise ValueError(f"the saved AFAT state was trained with other settings: {', '.join(changed)} "
                             f"({', '.join(f'{k}={saved[k]!r}' for k in changed)})")  # fmt: skip
        self.steps = int(state["steps"])
        self.adversary_steps = int(state["adversary_steps"])
        self.align_history = [float(v) for v in state["align_history"]]
        self._pending = state if state["corruptor"] is not None else None
        if self._pending is not None and self.corruptor is not None:
            self._apply_pending()

    def _apply_pending(self) -> None:
        state, self._pending = self._pending, None
        assert state is not None and self.corruptor is not None
        patch, grid = state["geometry"]
        if (self.corruptor.patch_size, list(self.corruptor.grid)) != (patch, list(grid)):
            raise ValueError(f"the saved corruption model has patch {patch} and grid {tuple(grid)}, but this "
                             f"model has patch {self.corruptor.patch_size} and grid {self.corruptor.grid}")  # fmt: skip
        self.corruptor.load_state_dict(state["corruptor"])
        if self.optimizer is None:
            self._make_optimizer()
        assert self.optimizer is not None
        self.optimizer.load_state_dict(state["optimizer"])

    def prepare(self, model: nn.Module) -> PatchCorruptor:
        """Check the model and build (or check) C for its patch grid; called by the first ``__call__``.

        Raises:
            ValueError: a non-ViT model, a grid that ρ leaves without occluded patches, a C of another grid,
                or PatchDrop on a model that is not a timm VisionTransformer.
        """
        clf = _classifier(model)
        patch, grid = patch_geometry(clf)
        occluded_count(self.config.rho, grid[0] * grid[1])
        if self.config.occlusion == "drop" and not callable(getattr(clf.net, "_pos_embed", None)):
            raise ValueError(f"occlusion='drop' (PatchDrop) needs a timm VisionTransformer; {clf.name} is not one")
        if self.corruptor is None:
            generator = rng.make_generator(self.config.seed, "afat_corruptor")
            self.corruptor = PatchCorruptor(patch, grid, clf.input_size[0], generator=generator)
            self._make_optimizer()
        elif (self.corruptor.patch_size, self.corruptor.grid) != (patch, grid):
            raise ValueError(f"the corruptor was built for patch {self.corruptor.patch_size} and grid "
                             f"{self.corruptor.grid}, but {clf.name} has patch {patch} and grid {grid}")  # fmt: skip
        self.corruptor.to(clf.device)
        if self._group is None and _multi_process():
            self._group = dist.new_group()  # collective: every rank reaches this on its first loss call
        if self._pending is not None:  # a resumed run: C continues from its checkpoint
            self._apply_pending()
        return self.corruptor

    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.config
        if cfg.lam == 0:
            logits = model(images)
            return F.cross_entropy(logits, labels), logits
        clf = _classifier(model)
        needs_group = self._group is None and _multi_process()
        fresh = self.corruptor is None or self.steps == 0 or self._pending is not None or needs_group
        corruptor = self.corruptor
        if fresh or corruptor is None:  # fresh covers a missing corruptor; the second test narrows the type
            corruptor = self.prepare(clf)
        generator = rng.make_generator(cfg.seed, "afat_step", self.steps)
        self.steps += 1
        n = len(images)

        copies: list[Tensor] = []
        if cfg.selection == "learned":
            # C runs on copies of its weights: fit's backward fills the copies' gradients (caught by the hook
            # below) and C's in-place update can never clash with tensors saved for that backward
            copies = [p.detach().clone().requires_grad_() for p in corruptor.parameters()]
            names = [name for name, _ in corruptor.named_parameters()]
            scores = torch.func.functional_call(
                corruptor, dict(zip(names, copies, strict=True)), (clf.normalize(images),)
            )
        else:
            scores = rng.rand((n, corruptor.num_patches), generator=generator, device=images.device)
        keep = keep_mask(scores.float(), cfg.rho)

        if cfg.occlusion == "drop":
            logits, clean = block_outputs(model, images)
            kept = _kept_indices(keep)
            prefix = int(_timm_vit(clf).num_prefix_tokens)
            index = torch.cat([torch.arange(prefix, device=kept.device).expand(n, -1), kept + prefix], dim=1)
            clean = [t.gather(1, index.unsqueeze(-1).expand(-1, -1, t.shape[-1])) for t in clean]
            corrupted = _dropped_block_outputs(clf, images, keep)
            corrupted_logits = None
        else:
            fill = corrupt_patches(images, keep, corruptor.patch_size, fill=cfg.noise_space, mean=clf.mean,
                                   std=clf.std, generator=generator)  # fmt: skip
            both, outputs = block_outputs(model, torch.cat([images, fill]))
            logits, corrupted_logits = both[:n], both[n:]
            clean, corrupted = [t[:n] for t in outputs], [t[n:] for t in outputs]
        align = alignment_loss(clean, corrupted, detach_clean=cfg.detach_clean)
        loss = F.cross_entropy(logits, labels) + cfg.lam * align
        self.align_history.append(float(align.detach()))

        if copies and torch.is_grad_enabled():
            if cfg.objective == "align":
                # d loss / d C = λ · d L_align / d C (the clean CE does not depend on C): Alg. 1, line 8
                torch.autograd.graph.register_multi_grad_hook(copies, self._ascend_scaled)
            else:
                if corrupted_logits is None:
                    corrupted_logits = _classifier_head_logits(clf, corrupted)
                adversary = cfg.lam * F.cross_entropy(corrupted_logits, labels)
                self._ascend(torch.autograd.grad(adversary, copies, retain_graph=True, allow_unused=True), 1.0)
        return loss, logits

    def _ascend_scaled(self, grads: Any) -> None:
        """The ascent step from fit's backward pass, whose gradients carry the fp16 loss scale."""
        self._ascend(grads, self.loss_scale)

    def _ascend(self, grads: Any, scale: Tensor | float) -> None:
        """One ascent step of C: unscale and negate its gradient, clip the norm, step C's SGD."""
        assert self.corruptor is not None and self.optimizer is not None
        params = list(self.corruptor.parameters())
        grads = [torch.zeros_like(p) if g is None else g.detach() / scale for p, g in zip(params, grads, strict=True)]
        if self._group is not None:
            # under torchrun every rank sees its own shard: average C's gradient so all ranks keep one C (as DDP
            # does for the ViT). A group of its own keeps this collective out of DDP's bucket order
            for g in grads:
                dist.all_reduce(g, group=self._group)
                g.div_(dist.get_world_size(self._group))
        if any(not torch.isfinite(g).all() for g in grads):
            return  # an fp16 overflow step, which fit's GradScaler skips too (on every rank alike)
        for p, g in zip(params, grads, strict=True):
            p.grad = -g.to(p.dtype)
        nn.utils.clip_grad_norm_(params, self.config.adversary_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.adversary_steps += 1


def _multi_process() -> bool:
    """Running under torchrun with more than one rank (C's gradient is then averaged over the ranks)."""
    return distributed.is_distributed() and distributed.world_size() > 1


def _classifier_head_logits(clf: Classifier, tokens: list[Tensor]) -> Tensor:
    """Logits of a timm ViT from its last block's tokens (the PatchDrop path runs the blocks itself)."""
    net = _timm_vit(clf)
    return net.forward_head(net.norm(tokens[-1]))


# ------------------------------------------------------------------------------------------------- save and train


@dataclass
class AFATResult:
    """What :func:`train_afat` did."""

    fit: FitResult
    """The training loop's result (epochs, steps, per-epoch history)."""
    corruptor: PatchCorruptor | None
    """The trained C (None when ``lam == 0``, which builds no C)."""
    config: AFATConfig
    """The settings used."""
    align_history: list[float] = field(default_factory=list)
    """L_align of every training step."""
    adversary_steps: int = 0
    """Ascent steps C took."""


@METHODS.register(name="afat")
def train_afat(
    model: Classifier,
    train_data: ImageDataset,
    *,
    config: AFATConfig | None = None,
    epochs: int,
    lr: float,
    callback: Callback | None = None,
    **fit_kwargs: Any,
) -> AFATResult:
    """Train a vision transformer with AFAT on :func:`robustlab.train.fit`.

    Args:
        model: a ViT classifier (any timm ViT, ``cifar:vit_tiny_patch4``); trained in place.
        train_data: training samples.
        config: AFAT's settings (default: the paper's ρ = 0.1, λ = 5e-3).
        epochs, lr, callback: as :func:`robustlab.train.fit`.
        **fit_kwargs: any other argument of :func:`robustlab.train.fit` (``optimizer``, ``augment``,
            ``checkpoint``, ``val_data`` ...) except ``loss_fn``.

    Returns:
        An :class:`AFATResult`.

    Shape:
        as :func:`robustlab.train.fit`; images ``(B, C, H, W)`` at the model's input size.

    Raises:
        ValueError: bad settings, a non-ViT model, or anything :func:`robustlab.train.fit` refuses.

    Example:
        >>> result = train_afat(create_model("cifar:vit_tiny_patch4", pretrained=False), train,
        ...                     config=AFATConfig(rho=0.1, lam=5e-3), epochs=100, lr=5e-4,
        ...                     optimizer="adamw", weight_decay=0.05)  # doctest: +SKIP
    """
    if "loss_fn" in fit_kwargs:
        raise ValueError("train_afat builds its own loss_fn; use AFATLoss with robustlab.train.fit to combine")
    config = config or AFATConfig()
    loss = AFATLoss(config)
    loss.prepare(model)
    result = fit(model, train_data, epochs=epochs, lr=lr, loss_fn=loss, callback=callback, **fit_kwargs)
    corruptor = loss.corruptor if config.lam > 0 else None
    return AFATResult(result, corruptor, config, loss.align_history, loss.adversary_steps)
