"""A-TPT: attention-guided test-time prompt tuning of a frozen CLIP, with TPT, R-TPT and zero-shot baselines.

Per test image, only the prompt's context vectors are tuned (reset to ``ctx_init`` first, for every sample):

1. views: view 0 is the image itself (already resized and centre-cropped to the model's input); ``n_views - 1``
   random-resized-crop + flip bases, each paired with an AugMix image (3 chains, Dirichlet(1, 1, 1), depth 1-3,
   severity 1), all as one batch;
2. attention (``mixing="attention"``): each base view's token-gradient rollout (ViT towers; the explained class is the
   view's top-1 zero-shot class under the initial prompt) or Grad-CAM (ResNet towers), and the mix
   ``(1 - lambda) * base + lambda * augmix`` with ``lambda = m_high`` on the top ``ratio`` of attention pixels,
   ``m_low`` elsewhere;
3. keep the lowest-entropy ``select_ratio`` of the views and take ``steps`` AdamW steps (lr 5e-3) on their mean
   per-view entropy (TPT: the entropy of their mean prediction);
4. predict with the tuned prompt: A-TPT fuses the selected views with ``softmax(-TV(A_i) / tau)`` of their attention
   maps' anisotropic total variation on the patch grid; R-TPT fuses all views with cosine-neighbour reliability
   weights; TPT reads view 0; zero-shot reads view 0 with the initial prompt and tunes nothing.

:class:`TestTimeTuner` holds the prompt (the only state); :mod:`robustlab.methods.atpt_attacks` attacks it.

Example:
    >>> model = create_model("openclip:ViT-B-16/openai", class_names=names)
    >>> tuner = TestTimeTuner(model, tta_config("atpt"))
    >>> result = tuner.adapt(image, generator=make_generator(0, "views", 17))
    >>> result.prediction, result.weight_entropy
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab._checks import check_choice, did_you_mean
from robustlab.methods.atpt_prompt import DEFAULT_CTX_INIT, PromptLearner, adamw_steps, clip_tokenizer, encode_images
from robustlab.methods.atpt_views import (
    ATTENTION_KINDS,
    apply_affine,
    attention_maps,
    attention_mix,
    entropy,
    marginal_entropy,
    rtpt_weights,
    sample_resized_crops,
    straight_through_augmix,
    tv_weights,
    weight_entropy,
)
from robustlab.models.classifier import Classifier

TTA_METHODS = ("atpt", "tpt", "rtpt", "zeroshot")
MIXINGS = ("attention", "full", "none")
LOSSES = ("per_view", "marginal")
FUSIONS = ("tv", "rtpt", "uniform", "view0")

# method -> (mixing, loss, fusion); A-TPT per the paper, TPT and R-TPT per their papers' fine-grained settings
METHOD_DEFAULTS: dict[str, dict[str, str]] = {
    "atpt": {"mixing": "attention", "loss": "per_view", "fusion": "tv"},
    "tpt": {"mixing": "full", "loss": "marginal", "fusion": "view0"},
    "rtpt": {"mixing": "full", "loss": "per_view", "fusion": "rtpt"},
    "zeroshot": {"mixing": "none", "loss": "per_view", "fusion": "view0"},
}


@dataclass(frozen=True)
class TTAConfig:
    """One test-time method and its hyper-parameters (defaults: the A-TPT paper's ViT setting).

    Attributes:
        method: ``"atpt"``, ``"tpt"``, ``"rtpt"`` or ``"zeroshot"``; fills ``mixing``, ``loss``, ``fusion`` left
            as None (:data:`METHOD_DEFAULTS`).
        n_views: views per image including view 0 (64 in TPT / R-TPT / A-TPT).
        select_ratio: fraction of lowest-entropy views kept for the loss (0.1; at least one view).
        steps: AdamW steps on the prompt (1).
        lr: AdamW learning rate (5e-3).
        weight_decay: AdamW weight decay (torch's default 0.01, as TPT's ``AdamW(params, lr)``).
        ctx_init: the initial prompt words (the learned context replaces them).
        crop_scale: area range of the random resized crops (torchvision's default).
        augmix_severity: AugMix operation severity (1).
        augmix_width: AugMix chains (3).
        mixing: ``"attention"`` (A-TPT), ``"full"`` (plain AugMix views; the "no attention-guided mixing"
            ablation) or ``"none"`` (crops and flips only).
        attention: the ViT attention map (:data:`robustlab.methods.atpt_views.ATTENTION_KINDS`); ``"gradient"`` is
            the "no token-gradient refinement" ablation, ``"token_gradient_all_layers"`` the "no last-two-layer
            averaging" one. ResNet towers always use Grad-CAM.
        ratio: share ``r`` of pixels counted as high attention (paper ``r``; code value 0.2).
        m_high: AugMix share on high-attention pixels (paper ``m_high``; 0.2, so they keep 80 % of the base view).
        m_low: AugMix share elsewhere (paper ``m_low``; 0.8).
        quantile: the rollout's clipping quantile (0.99).
        loss: ``"per_view"`` (mean entropy of the selected views; A-TPT, R-TPT) or ``"marginal"`` (TPT).
        fusion: ``"tv"`` (A-TPT paper), ``"rtpt"`` (R-TPT's cosine-neighbour weights, as the A-TPT code),
            ``"uniform"`` (the "uniform fusion" ablation) or ``"view0"`` (predict from view 0 alone).
        tv_temperature: ``tau`` in ``softmax(-TV / tau)`` (1, the paper's plain softmax).
        rtpt_neighbours: neighbours per view in the R-TPT weights (20).
        rtpt_temperature: softmax temperature of the R-TPT weights (0.01, this library's choice).
        attention_batch: views per attention backward pass (memory only; results change by float rounding at most).
    """

    method: str = "atpt"
    n_views: int = 64
    select_ratio: float = 0.1
    steps: int = 1
    lr: float = 5e-3
    weight_decay: float = 0.01
    ctx_init: str = DEFAULT_CTX_INIT
    crop_scale: tuple[float, float] = (0.08, 1.0)
    augmix_severity: int = 1
    augmix_width: int = 3
    mixing: str | None = None
    attention: str = "token_gradient"
    ratio: float = 0.2
    m_high: float = 0.2
    m_low: float = 0.8
    quantile: float = 0.99
    loss: str | None = None
    fusion: str | None = None
    tv_temperature: float = 1.0
    rtpt_neighbours: int = 20
    rtpt_temperature: float = 0.01
    attention_batch: int = 16

    def __post_init__(self) -> None:
        method = check_choice(self.method, TTA_METHODS, "method (--method)")
        for name, choices in (("mixing", MIXINGS), ("loss", LOSSES), ("fusion", FUSIONS)):
            value = getattr(self, name)
            object.__setattr__(
                self, name, check_choice(METHOD_DEFAULTS[method][name] if value is None else value, choices, name)
            )
        check_choice(self.attention, ATTENTION_KINDS, "attention")
        if not isinstance(self.n_views, int) or self.n_views < 2:
            raise ValueError(f"n_views must be an integer >= 2 (view 0 plus augmented views), got {self.n_views!r}")
        if not 0 < self.select_ratio <= 1:
            raise ValueError(f"select_ratio must lie in (0, 1], got {self.select_ratio!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {self.lr!r} and {self.weight_decay!r}")
        if not 0 < self.ratio <= 1 or not 0 <= self.m_high <= 1 or not 0 <= self.m_low <= 1:
            raise ValueError(
                f"need 0 < ratio <= 1 and m_high, m_low in [0, 1]; got ratio={self.ratio}, "
                f"m_high={self.m_high}, m_low={self.m_low}"
            )
        if not isinstance(self.attention_batch, int) or self.attention_batch < 1:
            raise ValueError(f"attention_batch must be an integer >= 1, got {self.attention_batch!r}")
        if self.tv_temperature <= 0 or self.rtpt_temperature <= 0 or self.rtpt_neighbours < 1:
            raise ValueError("tv_temperature and rtpt_temperature must be > 0 and rtpt_neighbours >= 1")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale!r}")

    @property
    def n_selected(self) -> int:
        """How many views the entropy selection keeps (TPT: ``int(n_views * select_ratio)``, at least 1)."""
        return max(1, int(self.n_views * self.select_ratio))

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the method's defaults (for run records)."""
        base = TTAConfig(method=self.method)
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(base, f.name)}  # fmt: skip


def tta_config(method: str = "atpt", **overrides: Any) -> TTAConfig:
    """A :class:`TTAConfig` for ``method`` with keyword overrides (unknown keys raise with close matches)."""
    names = [f.name for f in dataclasses.fields(TTAConfig)]
    for key in overrides:
        if key not in names:
            hint = did_you_mean(key, names, n=2, cutoff=0.6)
            raise ValueError(f"unknown test-time option {key!r}.{hint} Known: {', '.join(names)}")
    return TTAConfig(method=method, **overrides)


@dataclass
class TTAResult:
    """What one test-time adaptation returns.

    Attributes:
        probs: the fused class probabilities, differentiable in the image when asked for.
        prediction: ``argmax probs``.
        ctx: the tuned context vectors (the initial ones for zero-shot).
        weights: fusion weights over the fused views (sum to 1).
        weight_entropy: entropy of ``weights`` in nats.
        selected: indices of the views kept by the entropy selection.

    Shape:
        probs ``(K,)``; ctx ``(n_ctx, width)``; weights ``(B,)``.
    """

    probs: Tensor
    prediction: int
    ctx: Tensor
    weights: Tensor
    weight_entropy: float
    selected: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


def prompt_classifier(model: Classifier, ctx_init: str = DEFAULT_CTX_INIT) -> Classifier:
    """A zero-shot classifier sharing ``model``'s CLIP whose text weights are the initial prompt ``"{ctx_init} {c}."``.

    Its logits equal :class:`PromptLearner`'s at the initial context, so the attention maps explain the same
    zero-shot scores the tuning starts from.
    """
    from robustlab.models.openclip_models import ZeroShotCLIP

    words = ctx_init.replace("_", " ").strip()
    clip = model.net.get_submodule("clip")
    net = ZeroShotCLIP(clip, clip_tokenizer(model), model.class_names, templates=(f"{words} {{}}.",))
    clf = Classifier(
        net, mean=model.mean.flatten().tolist(), std=model.std.flatten().tolist(), input_size=model.input_size,
        class_names=model.class_names, name=model.name, crop_pct=model.crop_pct, interpolation=model.interpolation,
        family=model.family,
    )  # fmt: skip
    return clf.to(model.mean.device)


class TestTimeTuner(nn.Module):
    """Test-time prompt tuning of a frozen zero-shot CLIP classifier; the prompt is its only state.

    Args:
        model: ``create_model("openclip:<arch>/<tag>", class_names=[...])``; never modified (its mode included).
        config: the method and its options (:func:`tta_config`).

    Attributes:
        learner: the :class:`PromptLearner` (its ``ctx`` holds the last sample's tuned prompt).
        zero_shot: :func:`prompt_classifier` of ``model`` (explained by the attention maps).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, model: Classifier, config: TTAConfig | None = None) -> None:
        super().__init__()
        if not isinstance(model, Classifier) or getattr(getattr(model, "net", None), "clip", None) is None:
            raise ValueError(
                "TestTimeTuner needs a zero-shot CLIP classifier: create_model('openclip:<arch>/<tag>', "
                "class_names=[...]) (offline: pass weights=<local open_clip checkpoint>)"
            )
        self.model = model
        self.config = config or TTAConfig()
        self.learner = PromptLearner(model, ctx_init=self.config.ctx_init)
        self.zero_shot = prompt_classifier(model, self.config.ctx_init)
        # eval-mode flags set directly: Module.eval() would recurse into the user's model, whose mode is theirs
        for module in (self, self.learner, self.zero_shot, self.zero_shot.net):
            module.training = False

    @property
    def num_classes(self) -> int:
        return len(self.model.class_names)

    def views(self, image: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The ``n_views`` views of one image (view 0 = the image), batched and drawn from ``generator``.

        Differentiable in ``image`` (the AugMix part by straight-through identity, BPDA).

        Shape:
            ``(C, H, W)`` -> ``(n_views, C, H, W)``.
        """
        cfg = self.config
        theta = sample_resized_crops(cfg.n_views - 1, scale=cfg.crop_scale, generator=generator)
        bases = apply_affine(image, theta)
        if cfg.mixing == "none":
            mixed = bases
        else:
            augmented = straight_through_augmix(
                bases, severity=cfg.augmix_severity, width=cfg.augmix_width, generator=generator
            )
            if cfg.mixing == "full":
                mixed = augmented
            else:
                maps = self.attention(bases)
                mixed = attention_mix(bases, augmented, maps, ratio=cfg.ratio, m_high=cfg.m_high, m_low=cfg.m_low)
        return torch.cat([image.unsqueeze(0), mixed])

    def attention(self, images: Tensor) -> Tensor:
        """Attention maps ``(N, h, w)`` in [0, 1] of the initial-prompt zero-shot top-1 class (detached)."""
        cfg = self.config
        maps = []
        for chunk in images.detach().split(cfg.attention_batch):
            with torch.no_grad():
                labels = self.zero_shot(chunk).argmax(dim=1)
            maps.append(attention_maps(self.zero_shot, chunk, labels, cfg.attention, cfg.quantile))
        return torch.cat(maps)

    def prompt_logits(self, images: Tensor, ctx: Tensor | None = None) -> Tensor:
        """CLIP logits of [0, 1] images under the context ``ctx`` (default: the learner's current one)."""
        return self.learner.logits(encode_images(self.model, images), ctx)

    def adapt(
        self,
        image: Tensor,
        *,
        generator: torch.Generator | None = None,
        reset: bool = True,
        differentiable: bool = False,
    ) -> TTAResult:
        """Adapt the prompt to one image and predict it.

        Args:
            image: one image, pixels in [0, 1], at the model's input size (already resized + centre-cropped).
            generator: draws the views (one per sample keeps samples independent).
            reset: reset the prompt to its initial value first (always, except to reproduce a stale-prompt bug).
            differentiable: keep the graph from ``image`` to ``probs``, through the views, the features and the
                tuning step (second-order); attention masks, the entropy selection and the TV / R-TPT fusion
                weights are treated as constants. For adaptive attacks.

        Returns:
            A :class:`TTAResult`; afterwards ``learner.ctx`` holds the tuned context.

        Shape:
            image ``(C, H, W)`` -> probs ``(K,)``.
        """
        if image.ndim != 3:
            raise ValueError(f"adapt takes one image (C, H, W), got shape {tuple(image.shape)}")
        if not differentiable:
            return self._adapt(image, generator, reset, differentiable)
        # the fused scaled-dot-product kernels have no second derivative; the math kernel has
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            return self._adapt(image, generator, reset, differentiable)

    def _adapt(self, image: Tensor, generator: torch.Generator | None, reset: bool, differentiable: bool) -> TTAResult:
        cfg = self.config
        if reset:
            self.learner.reset()
        ctx0 = self.learner.ctx.detach().clone()
        with torch.enable_grad() if differentiable else torch.no_grad():
            if cfg.method == "zeroshot":
                probs = self.prompt_logits(image.unsqueeze(0), ctx0)[0].softmax(dim=-1)
                return TTAResult(
                    probs,
                    int(probs.argmax()),
                    ctx0,
                    torch.ones(1, device=probs.device),
                    0.0,
                    torch.zeros(1, dtype=torch.long),
                )
            views = self.views(image, generator=generator)
            features = encode_images(self.model, views)
        with torch.no_grad():
            start = self.learner.logits(features, ctx0)
        selected = entropy(start).topk(cfg.n_selected, largest=False).indices
        chosen = features[selected]

        def loss_fn(ctx: Tensor) -> Tensor:
            logits = self.learner.logits(chosen, ctx)
            return marginal_entropy(logits) if cfg.loss == "marginal" else entropy(logits).mean()

        with torch.enable_grad():
            ctx = adamw_steps(
                ctx0, loss_fn, steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, create_graph=differentiable
            )
        with torch.no_grad():
            self.learner.ctx.copy_(ctx.detach())
        with torch.enable_grad() if differentiable else torch.no_grad():
            if cfg.fusion == "view0":
                probs = self.learner.logits(features[:1], ctx)[0].softmax(dim=-1)
                weights = torch.ones(1, device=probs.device)
            else:
                fused = selected if cfg.fusion in ("tv", "uniform") else torch.arange(len(views))
                probs_each = self.learner.logits(features[fused], ctx).softmax(dim=-1)
                if cfg.fusion == "tv":
                    weights = tv_weights(self.attention(views[fused]), cfg.tv_temperature)
                elif cfg.fusion == "rtpt":
                    weights = rtpt_weights(features[fused].detach(), cfg.rtpt_neighbours, cfg.rtpt_temperature)
                else:
                    weights = torch.full((len(fused),), 1.0 / len(fused))
                weights = weights.to(probs_each.device).detach()
                probs = (weights[:, None] * probs_each).sum(dim=0)
        if not differentiable:
            probs, ctx = probs.detach(), ctx.detach()
        return TTAResult(probs, int(probs.argmax()), ctx, weights, weight_entropy(weights), selected.cpu())

    def predict(self, images: Tensor, *, generators: list[torch.Generator] | None = None) -> tuple[Tensor, Tensor]:
        """Adapt to each image in turn (prompt reset for every one); predictions and fusion-weight entropies.

        Shape:
            images ``(N, C, H, W)`` -> ``(N,)`` int64 predictions, ``(N,)`` float entropies.
        """
        if generators is not None and len(generators) != len(images):
            raise ValueError(f"got {len(generators)} generators for {len(images)} images")
        preds, entropies = [], []
        for i, image in enumerate(images):
            result = self.adapt(image, generator=None if generators is None else generators[i])
            preds.append(result.prediction)
            entropies.append(result.weight_entropy)
        return torch.tensor(preds, dtype=torch.long), torch.tensor(entropies)
