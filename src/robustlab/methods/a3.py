"""A3 (reconstructed): activation amplification / attenuation for adversarial robustness (seed paper 002).

The A3 paper's text and code are not public; seed 002 states only the design constraints. Everything below is a
**reconstruction** that satisfies those constraints, and every reconstructed choice is a parameter:

- The module sits on a post-ReLU feature map ``a`` ``(N, C, H, W)``. It owns one mask logit per channel
  (``theta``, ``C`` parameters). Training draws a relaxed mask ``M = sigmoid((theta + logistic noise) / tau)``
  (Gumbel-sigmoid, ``tau = 0.1``); inference uses ``M = 1[sigmoid(theta) > 0.5]``.
- A per-sample magnitude factor ``s = log(sum(a) / sum of the entries above the 90th percentile)`` (the top 10 %,
  chosen without gradient) says how spread out the activation mass is.
- Output ``a * exp(sign * beta * s * M)``: ``sign = +1`` amplifies (training only, to build negatives),
  ``sign = -1`` attenuates (the deployed model). With the same mask and factor one undoes the other (exactly in
  real arithmetic, to float rounding in practice).
- Modules are hooked onto named stages (:func:`attach` / :func:`detach`); the backbone's code is untouched, and a
  detached model is bit-identical to the original.
- Training (:func:`a3_loss`, :func:`train_a3`): x' = PGD-10 against the attenuated eval-mode model; base loss
  PGD-AT or TRADES; InfoNCE (anchor attenuated feature of x', positive attenuated feature of x, negatives the
  amplified features of x'); a ranking hinge on the true-class log-probability (attenuated > plain > amplified);
  and a degradation term pushing the amplified model to the top wrong class.
"""

from __future__ import annotations

import copy
import difflib
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks import pgd
from robustlab.data._base import ImageDataset, iter_batches
from robustlab.methods._registry import METHODS
from robustlab.models.classifier import Classifier
from robustlab.rng import make_generator

log = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "A3Attachment",
    "A3Config",
    "A3LossConfig",
    "A3Module",
    "A3TrainResult",
    "a3_loss",
    "a3_mode",
    "a3_scale",
    "added_parameters",
    "attach",
    "attach_from_spec",
    "default_layers",
    "degradation_loss",
    "detach",
    "get_attachment",
    "info_nce_loss",
    "magnitude_factor",
    "ranking_loss",
    "robust_accuracy",
    "set_mode",
    "train_a3",
]

MODES = ("attenuate", "amplify", "off")
"""``attenuate`` (the deployed model, sign -1), ``amplify`` (sign +1, builds negatives), ``off`` (identity)."""
_SIGNS = {"attenuate": -1.0, "amplify": 1.0, "off": 0.0}
ATTRIBUTE = "a3"
"""Name of the :class:`A3Attachment` on the host network (``classifier.net.a3``); its state is saved with it."""


def _choice(value: object, known: Sequence[str], what: str) -> str:
    if value in known:
        return str(value)
    close = difflib.get_close_matches(str(value), list(known), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {what} {value!r}.{hint} Known: {', '.join(known)}")


@dataclass
class A3Config:
    """Settings of one A3 (reconstructed) module; the defaults are the reconstruction's.

    Every field is saved in the checkpoint, so ``create_model("file:...")`` rebuilds the same modules.
    """

    tau: float = 0.1
    """Temperature of the Gumbel-sigmoid training mask (smaller: closer to a hard 0/1 mask)."""
    threshold: float = 0.5
    """Inference mask: channel on where ``sigmoid(theta) > threshold``."""
    percentile: float = 0.9
    """The magnitude factor compares the total activation with the mass above this percentile (the top 1 - p)."""
    beta: float = 1.0
    """Strength of the scaling, ``exp(sign * beta * s * M)``."""
    use_factor: bool = True
    """False replaces the magnitude factor ``s`` by 1 (the "no magnitude factor" ablation)."""
    fixed_mask: bool = False
    """True draws a random 0/1 mask once (seeded) and never trains it (the "fixed random mask" ablation)."""
    init_logit: float = 0.0
    """Initial mask logit of every channel (0: each channel on with probability 1/2 in training)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0 < self.percentile < 1:
            raise ValueError(f"percentile must be in (0, 1) (0.9 is the 90th percentile), got {self.percentile}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not math.isfinite(self.init_logit):
            raise ValueError(f"init_logit must be finite, got {self.init_logit}")


# --- the module ------------------------------------------------------------------------------------------------


def magnitude_factor(activations: Tensor, percentile: float = 0.9, eps: float = 1e-12) -> Tensor:
    """Per-sample factor ``s = log(sum(a) / sum of the entries above the sample's percentile)``.

    "Above the percentile" is the top ``round((1 - percentile) * n)`` entries (at least one), which is well
    defined under ties (ReLU maps are full of zeros). ``s`` is 0 when those entries hold all the mass and
    reaches ``log(1 / (1 - percentile))`` (log 10 by default) when the mass is spread evenly. Which entries are
    on top is chosen without gradient; gradients flow through the two sums.

    Args:
        activations: non-negative (post-ReLU) feature maps.
        percentile: in (0, 1).
        eps: keeps an all-zero map at ``s = 0``.

    Returns:
        The factor of each sample, in ``[0, log(1 / (1 - percentile))]`` for non-negative maps.

    Shape:
        ``(N, ...)`` -> ``(N,)``.
    """
    flat = activations.flatten(1)
    k = max(1, round((1 - percentile) * flat.shape[1]))
    top = flat.topk(k, dim=1, sorted=False).values.sum(dim=1)
    return torch.log((flat.sum(dim=1) + eps) / (top + eps))


def a3_scale(activations: Tensor, mask: Tensor, factor: Tensor, sign: float, beta: float = 1.0) -> Tensor:
    """``activations * exp(sign * beta * factor * mask)``: the A3 rescaling for a given mask and factor.

    ``sign = +1`` amplifies, ``-1`` attenuates; for the same mask and factor the two are inverse maps.

    Args:
        activations: feature maps.
        mask: per-channel mask, one for all samples ``(C,)`` or one per sample ``(N, C)``.
        factor: per-sample factor ``(N,)``.
        sign: +1, -1 (or 0 for the identity).
        beta: strength.

    Shape:
        activations ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    n, c = activations.shape[:2]
    extra = (1,) * (activations.ndim - 2)
    m = mask.reshape((-1, c) + extra)
    s = factor.reshape((n, 1) + extra)
    return activations * torch.exp((sign * beta) * s * m)


class A3Module(nn.Module):
    """One A3 (reconstructed) module: a learnable channel mask and a magnitude-derived scale.

    Args:
        channels: channels ``C`` of the feature map it rescales.
        config: settings, see :class:`A3Config`.
        generator: draws the fixed random mask when ``config.fixed_mask`` (otherwise unused).

    Attributes:
        mode: one of :data:`MODES`; ``"attenuate"`` unless switched with :func:`set_mode` / :func:`a3_mode`.
        generator: draws the training mask's logistic noise; None uses torch's global generator. The A3 training
            loss sets a fresh one per step.

    Shape:
        forward: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, config: A3Config | None = None, *, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.config = config or A3Config()
        self.channels = channels
        if self.config.fixed_mask:
            on = torch.rand(channels, generator=generator) < 0.5
            # +-10: sigmoid is 0 or 1 to float precision, so the training and inference masks agree
            logits = torch.where(on, 10.0, -10.0)
        else:
            logits = torch.full((channels,), float(self.config.init_logit))
        self.logits = nn.Parameter(logits, requires_grad=not self.config.fixed_mask)
        self.mode = "attenuate"
        self.generator: torch.Generator | None = None

    def mask(self, batch: int) -> Tensor:
        """The mask: relaxed Gumbel-sigmoid ``(batch, C)`` in training, hard ``(C,)`` in eval / fixed."""
        cfg = self.config
        if self.training and not cfg.fixed_mask:
            u = torch.rand(batch, self.channels, generator=self.generator).to(self.logits.device)
            u = u.clamp(1e-6, 1 - 1e-6)
            noise = torch.log(u) - torch.log1p(-u)  # logistic = difference of two Gumbels
            return torch.sigmoid((self.logits + noise) / cfg.tau)
        return (torch.sigmoid(self.logits) > cfg.threshold).to(self.logits.dtype)

    def factor(self, activations: Tensor) -> Tensor:
        if not self.config.use_factor:
            return activations.new_ones(activations.shape[0])
        return magnitude_factor(activations, self.config.percentile)

    def forward(self, activations: Tensor, *, mode: str | None = None) -> Tensor:
        mode = self.mode if mode is None else mode
        sign = _SIGNS[mode]
        if sign == 0.0:
            return activations
        if activations.ndim != 4 or activations.shape[1] != self.channels:
            raise ValueError(
                f"A3 module expects feature maps (N, {self.channels}, H, W), got shape {tuple(activations.shape)}"
            )
        mask = self.mask(activations.shape[0]).to(activations.dtype)
        return a3_scale(activations, mask, self.factor(activations), sign, self.config.beta)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mode={self.mode!r}, {self.config}"


class A3Attachment(nn.Module):
    """The A3 modules of one model and the hooks that apply them; lives at ``host.a3`` (saved with the host).

    Built by :func:`attach`; removed by :func:`detach`. ``layers`` are module names of the model passed to
    :func:`attach` (e.g. ``"net.layer3"``), in the order given; the last one provides the features used by the
    contrastive loss.
    """

    def __init__(self, layers: Sequence[str], channels: Sequence[int], config: A3Config, seed: int) -> None:
        super().__init__()
        self.layers = list(layers)
        self.config = config
        self.seed = seed
        self.blocks = nn.ModuleDict({
            _key(name): A3Module(c, config, generator=make_generator(seed, "a3_fixed_mask", name))
            for name, c in zip(layers, channels, strict=True)
        })  # fmt: skip
        self.handles: list[Any] = []
        self.captured: dict[str, Tensor] | None = None

    def spec(self) -> dict[str, Any]:
        """What :func:`attach_from_spec` needs to rebuild these modules (stored in checkpoints)."""
        return {
            "method": "a3 (reconstructed)",
            "layers": list(self.layers),
            "channels": [b.channels for b in self.blocks.values()],
            "config": asdict(self.config),
            "seed": self.seed,
        }

    def modules_in_order(self) -> list[A3Module]:
        return [self.blocks[_key(name)] for name in self.layers]  # type: ignore[misc]


def _key(layer: str) -> str:
    return layer.replace(".", "__")


def _host(model: nn.Module) -> nn.Module:
    """Where the attachment lives: the Classifier's network (so checkpoints save it), else the model itself."""
    return model.net if isinstance(model, Classifier) else model


def get_attachment(model: nn.Module) -> A3Attachment | None:
    """The model's :class:`A3Attachment` (also through a DDP wrapper), or None."""
    return next((m for m in model.modules() if isinstance(m, A3Attachment)), None)


def _resolve_layers(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    named = dict(model.named_modules())
    out: dict[str, nn.Module] = {}
    for name in layers:
        full = name
        if full not in named and isinstance(model, Classifier) and f"net.{name}" in named:
            full = f"net.{name}"  # "layer3" is accepted for "net.layer3"
        if full not in named or not full:
            matches = difflib.get_close_matches(name, [n for n in named if n], n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
            raise ValueError(
                f"{type(model).__name__} has no submodule {name!r} to attach A3 to.{hint} "
                "Names are those of model.named_modules(), e.g. 'net.layer3'."
            )
        if full.split(".")[-1] == ATTRIBUTE or isinstance(named[full], (A3Module, A3Attachment)):
            raise ValueError(f"{name!r} is part of A3 itself; name a layer of the backbone")
        out[full] = named[full]
    if len(out) != len(layers):
        raise ValueError(f"layers must name distinct modules, got {list(layers)}")
    return out


@torch.no_grad()
def _probe(model: nn.Module, modules: dict[str, nn.Module], input_size: Sequence[int] | None) -> dict[str, Tensor]:
    """One eval-mode forward on random pixels; the output of each module. Modes are restored afterwards."""
    size = input_size if input_size is not None else getattr(model, "input_size", None)
    if size is None:
        raise ValueError("pass input_size=(C, H, W): the model does not say what input it takes")
    outputs: dict[str, Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _a, out, name=name: outputs.__setitem__(name, out))
        for name, m in modules.items()
    ]
    was = {m: m.training for m in model.modules()}
    try:
        model.eval()  # BatchNorm must not learn from the probe
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x = torch.rand(2, *size, generator=torch.Generator().manual_seed(0)).to(device)
        model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in was.items():
            m.training = training
    return outputs


def default_layers(model: nn.Module, stages: int = 1, *, input_size: Sequence[int] | None = None) -> list[str]:
    """The last ``stages`` stages of a CNN: direct children of the network with a 4-D output.

    For a CIFAR ResNet (``stages=1``) this is ``["net.layer3"]``; ``stages=2`` adds the stage before. A network
    with a single 4-D child that is a ``Sequential`` (``cifar:small_cnn``'s ``features``) is searched one level
    down.

    Raises:
        ValueError: ``stages`` < 1 or more stages asked for than found.
    """
    if not isinstance(stages, int) or stages < 1:
        raise ValueError(f"stages must be an integer >= 1, got {stages!r}")
    host = _host(model)
    prefix = "net." if host is not model else ""
    children = {prefix + n: m for n, m in host.named_children() if not isinstance(m, A3Attachment)}
    outs = _probe(model, children, input_size)
    spatial = [n for n in children if isinstance(outs.get(n), Tensor) and outs[n].ndim == 4]
    if len(spatial) == 1 and isinstance(children[spatial[0]], nn.Sequential) and len(children[spatial[0]]) > 1:
        inner = {f"{spatial[0]}.{n}": m for n, m in children[spatial[0]].named_children()}
        outs = _probe(model, inner, input_size)
        spatial = [n for n in inner if isinstance(outs.get(n), Tensor) and outs[n].ndim == 4]
    if len(spatial) < stages:
        raise ValueError(f"asked for the last {stages} stage(s) but found only {spatial}; pass layers= explicitly")
    return spatial[-stages:]


def attach(
    model: nn.Module,
    layers: Sequence[str] | str | None = None,
    *,
    config: A3Config | None = None,
    stages: int = 1,
    seed: int = 0,
    input_size: Sequence[int] | None = None,
) -> A3Attachment:
    """Hook A3 (reconstructed) modules onto the outputs of named layers, in attenuation mode.

    The modules are registered at ``model.net.a3`` for a :class:`Classifier` (``model.a3`` otherwise), so they
    are trained by any optimiser over ``model.parameters()`` and saved by ``save_checkpoint``, which records
    :meth:`A3Attachment.spec` so that ``create_model("file:...")`` re-attaches them.

    Args:
        model: the classifier (its code is not modified).
        layers: module names (``"net.layer3"``, or ``"layer3"`` for a Classifier); None picks
            :func:`default_layers` with ``stages``.
        config: module settings (:class:`A3Config`), shared by all modules.
        stages: with ``layers=None``, how many final stages get a module (1: after the last; 2: also before).
        seed: seeds the fixed random mask (``config.fixed_mask``).
        input_size: ``(C, H, W)`` for a probe forward that reads the channel counts; default
            ``model.input_size``.

    Returns:
        The attachment (also reachable with :func:`get_attachment`).

    Raises:
        ValueError: an unknown layer name (with close matches), a model that already has A3 attached, a layer
            whose output is not a 4-D feature map, or invalid settings.

    Warns:
        UserWarning: a layer's probe output has negative values (A3's factor assumes post-ReLU maps).

    Example:
        >>> model = create_model("cifar:resnet20", pretrained=False)
        >>> attachment = attach(model, ["net.layer3"])
        >>> added_parameters(model)
        64
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"attach needs a torch.nn.Module, got {type(model).__name__}")
    if get_attachment(model) is not None:
        raise ValueError("this model already has A3 attached; call detach(model) first")
    config = config or A3Config()
    if not isinstance(config, A3Config):
        raise ValueError(f"config must be an A3Config, got {type(config).__name__}")
    if layers is None:
        layers = default_layers(model, stages, input_size=input_size)
    elif isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise ValueError("layers must name at least one module, e.g. ['net.layer3']")
    modules = _resolve_layers(model, layers)
    outs = _probe(model, modules, input_size)
    channels = []
    for name in modules:
        out = outs.get(name)
        if not isinstance(out, Tensor) or out.ndim != 4:
            shape = None if not isinstance(out, Tensor) else tuple(out.shape)
            raise ValueError(f"A3 needs a layer with a feature-map output (N, C, H, W); {name!r} gives {shape}")
        if float(out.min()) < 0:
            warnings.warn(
                f"{name!r} outputs negative values; A3's magnitude factor assumes a post-ReLU map "
                "(attach after a stage that ends in ReLU)",
                stacklevel=2,
            )
        channels.append(int(out.shape[1]))
    attachment = A3Attachment(list(modules), channels, config, seed)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    attachment.to(device)
    attachment.train(model.training)  # a new module starts in train mode; it must follow the model's mode
    host = _host(model)
    if isinstance(host, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        # a container would run (or list) the attachment as one of its layers
        raise ValueError(
            f"A3 cannot be stored inside a {type(host).__name__} network; wrap the network in an nn.Module "
            "subclass (the attachment is saved as its attribute 'a3')"
        )
    host.add_module(ATTRIBUTE, attachment)
    for name, module in modules.items():
        hook = _ApplyA3(name, attachment)
        attachment.handles.append(module.register_forward_hook(hook))
    return attachment


class _ApplyA3:
    """The forward hook: rescale a layer's output with its A3 module.

    An object rather than a closure so that ``copy.deepcopy(model)`` gives hooks that use the copy's modules.
    """

    def __init__(self, name: str, attachment: A3Attachment) -> None:
        self.name = name
        self.attachment = attachment

    def __call__(self, _module: nn.Module, _args: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise ValueError(f"A3 expects {self.name!r} to return a tensor, got {type(output).__name__}")
        out = self.attachment.blocks[_key(self.name)](output)
        if self.attachment.captured is not None:
            self.attachment.captured[self.name] = out
        return out


def attach_from_spec(model: nn.Module, spec: dict[str, Any]) -> A3Attachment:
    """Re-attach the modules described by :meth:`A3Attachment.spec` (what loading a checkpoint calls)."""
    try:
        known = {f.name for f in fields(A3Config)}
        config = A3Config(**{k: v for k, v in dict(spec["config"]).items() if k in known})
        return attach(model, list(spec["layers"]), config=config, seed=int(spec.get("seed", 0)))
    except (KeyError, TypeError) as e:
        raise ValueError(f"corrupt A3 record in checkpoint: {spec!r} ({e})") from e


def detach(model: nn.Module) -> None:
    """Remove the hooks and the modules of :func:`attach`; the model computes exactly what it did before.

    Raises:
        ValueError: the model has no A3 attached.
    """
    attachment = get_attachment(model)
    if attachment is None:
        raise ValueError("this model has no A3 attached")
    for handle in attachment.handles:
        handle.remove()
    attachment.handles.clear()
    for module in model.modules():
        if getattr(module, ATTRIBUTE, None) is attachment:
            delattr(module, ATTRIBUTE)
            break


def added_parameters(model: nn.Module) -> int:
    """Number of parameters A3 adds to ``model`` (one mask logit per channel per module); 0 when detached."""
    attachment = get_attachment(model)
    return 0 if attachment is None else sum(p.numel() for p in attachment.parameters())


def set_mode(model: nn.Module, mode: str) -> None:
    """Switch every A3 module of ``model`` to ``"attenuate"``, ``"amplify"`` or ``"off"``.

    Raises:
        ValueError: unknown mode, or no A3 attached.
    """
    mode = _choice(mode, MODES, "A3 mode")
    attachment = get_attachment(model)
    if attachment is None:
        raise ValueError("this model has no A3 attached; call attach(model, layers) first")
    for block in attachment.modules_in_order():
        block.mode = mode


@contextmanager
def a3_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run the ``with`` block in ``mode``, then restore each module's previous mode (also on errors)."""
    attachment = get_attachment(model)
    if attachment is None:
        raise ValueError("this model has no A3 attached; call attach(model, layers) first")
    before = [b.mode for b in attachment.modules_in_order()]
    set_mode(model, mode)
    try:
        yield
    finally:
        for block, old in zip(attachment.modules_in_order(), before, strict=True):
            block.mode = old


def _forward(model: nn.Module, images: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """Logits and the pooled output of the last A3 module, in ``mode``."""
    attachment = get_attachment(model)
    assert attachment is not None  # checked by the callers
    attachment.captured = {}
    try:
        with a3_mode(model, mode):
            logits = model(images)
        maps = attachment.captured.get(attachment.layers[-1])
    finally:
        attachment.captured = None
    if maps is None:
        raise ValueError(f"A3 layer {attachment.layers[-1]!r} did not run in the forward pass")
    return logits, maps.flatten(2).mean(dim=2)


# --- losses -----------------------------------------------------------------------------------------------------


def info_nce_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, temperature: float = 0.1) -> Tensor:
    """InfoNCE with one positive per anchor and a shared pool of negatives (cosine similarities / temperature).

    ``-log(exp(cos(a_i, p_i) / t) / (exp(cos(a_i, p_i) / t) + sum_j exp(cos(a_i, n_j) / t)))``, averaged. Always
    positive; small when each anchor is closer to its positive than to every negative.

    Shape:
        anchor, positive ``(N, D)``, negatives ``(M, D)`` -> ``()``.
    """
    a = F.normalize(anchor, dim=1)
    pos = (a * F.normalize(positive, dim=1)).sum(dim=1, keepdim=True)
    neg = a @ F.normalize(negatives, dim=1).T
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(a), dtype=torch.long, device=a.device))


def _true_log_prob(logits: Tensor, labels: Tensor) -> Tensor:
    return F.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)


def ranking_loss(
    attenuated: Tensor, plain: Tensor, amplified: Tensor, labels: Tensor, margin: float = 0.1
) -> Tensor:
    """Hinge ranking of the true class's log-probability: attenuated > plain > amplified, each by ``margin``.

    ``mean(relu(m - (lp_att - lp_plain))) + mean(relu(m - (lp_plain - lp_amp)))``; zero once both gaps exceed
    the margin.

    Shape:
        three logits ``(N, K)``, labels ``(N,)`` -> ``()``.
    """
    lp_att, lp_plain, lp_amp = (_true_log_prob(z, labels) for z in (attenuated, plain, amplified))
    return F.relu(margin - (lp_att - lp_plain)).mean() + F.relu(margin - (lp_plain - lp_amp)).mean()


def degradation_loss(amplified: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the amplified logits towards each sample's top wrong class (chosen without gradient).

    Shape:
        amplified ``(N, K)``, labels ``(N,)`` -> ``()``.
    """
    others = amplified.detach().scatter(1, labels.unsqueeze(1), float("-inf"))
    return F.cross_entropy(amplified, others.argmax(dim=1))


@dataclass
class A3LossConfig:
    """Settings of the A3 (reconstructed) training objective; weights 0 switch terms off (the ablations)."""

    at: str = "pgd"
    """Base adversarial training: ``"pgd"`` (Madry PGD-AT) or ``"trades"``."""
    eps: float = 8 / 255
    """L-inf radius of the training attack, in [0, 1] pixel units."""
    step_size: float = 2 / 255
    """Step of the training attack."""
    steps: int = 10
    """Steps of the training attack (random start)."""
    trades_beta: float = 6.0
    """Weight of TRADES' KL term."""
    contrastive_weight: float = 1.0
    """Weight of the InfoNCE term."""
    temperature: float = 0.1
    """InfoNCE temperature."""
    ranking_weight: float = 1.0
    """Weight of the ranking hinge."""
    margin: float = 0.1
    """Margin of the ranking hinge (on log-probabilities)."""
    degradation_weight: float = 0.5
    """Weight of CE(amplified logits, top wrong class)."""

    def __post_init__(self) -> None:
        self.at = _choice(self.at, ("pgd", "trades"), "adversarial training method (at)")
        for name in ("eps", "step_size", "trades_beta", "contrastive_weight", "ranking_weight", "margin",
                     "degradation_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def uses_amplified(self) -> bool:
        return self.contrastive_weight > 0 or self.ranking_weight > 0 or self.degradation_weight > 0


def _trades_attack(model: nn.Module, images: Tensor, cfg: A3LossConfig, generator: torch.Generator) -> Tensor:
    """TRADES' inner maximisation: PGD on KL(p(x) || p(x')) from a small Gaussian start (Zhang et al. 2019)."""
    with torch.no_grad():
        p_nat = F.softmax(model(images), dim=1)
    start = 0.001 * torch.randn(images.shape, generator=generator).to(images.device)
    adv = (images + start).clamp(0, 1)
    for _ in range(cfg.steps):
        adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(adv), dim=1), p_nat, reduction="sum")
        (grad,) = torch.autograd.grad(kl, adv)
        with torch.no_grad():
            adv = adv + cfg.step_size * grad.sign()
            adv = torch.min(torch.max(adv, images - cfg.eps), images + cfg.eps).clamp(0, 1)
    return adv.detach()


def _adversarial(model: nn.Module, images: Tensor, labels: Tensor, cfg: A3LossConfig, generator: Any) -> Tensor:
    """x' against ``model`` in eval mode (its mode is restored): PGD with random start, or TRADES' KL attack."""
    was_training = model.training
    model.eval()
    try:
        if cfg.at == "pgd":
            return pgd(model, images, labels, eps=cfg.eps, steps=cfg.steps, step_size=cfg.step_size,
                       random_start=True, generator=generator)  # fmt: skip
        return _trades_attack(model, images, cfg, generator or torch.Generator().manual_seed(0))
    finally:
        model.train(was_training)


def _base_loss(logits_adv: Tensor, logits_nat: Tensor | None, labels: Tensor, cfg: A3LossConfig) -> Tensor:
    if cfg.at == "pgd":
        return F.cross_entropy(logits_adv, labels)
    assert logits_nat is not None  # TRADES always computes the clean logits
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_nat, dim=1), reduction="batchmean")
    return F.cross_entropy(logits_nat, labels) + cfg.trades_beta * kl


def _base_only_loss(
    model: nn.Module, images: Tensor, labels: Tensor, cfg: A3LossConfig, generator: Any
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The plain PGD-AT / TRADES objective of a model without A3: the equal-recipe baseline."""
    adv = _adversarial(model, images, labels, cfg, generator)
    logits_adv = model(adv)
    base = _base_loss(logits_adv, model(images) if cfg.at == "trades" else None, labels, cfg)
    return base, logits_adv, {"base": float(base.detach())}


def a3_loss(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: A3LossConfig | None = None,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The A3 (reconstructed) training objective on one batch.

    x' is generated against the deployed model (eval mode, attenuation); the losses are then computed with the
    model in the mode it was given (train mode inside :func:`robustlab.train.fit`), so the mask is the relaxed
    Gumbel-sigmoid one and gradients reach the mask logits.

    Args:
        model: a model with A3 attached (or its DDP wrapper); without A3, only the base loss.
        images: clean pixels in [0, 1].
        labels: true classes.
        config: objective settings (:class:`A3LossConfig`).
        generator: draws the attack's random start and the training masks' noise.

    Returns:
        ``(loss, adversarial logits, parts)``; ``parts`` maps each term's name to its value.

    Shape:
        images ``(N, C, H, W)``, labels ``(N,)`` -> loss ``()``, logits ``(N, K)``.

    Raises:
        ValueError: no A3 attached while A3 terms are asked for (without A3 and with every A3 weight 0 this is the
            plain PGD-AT / TRADES loss, the equal-recipe baseline).
    """
    cfg = config or A3LossConfig()
    attachment = get_attachment(model)
    if attachment is None and (cfg.uses_amplified or cfg.contrastive_weight > 0):
        raise ValueError(
            "a3_loss needs a model with A3 attached (call attach(model, layers) first); without A3 only the base "
            "adversarial loss is defined: set contrastive_weight, ranking_weight and degradation_weight to 0"
        )
    if attachment is None:
        return _base_only_loss(model, images, labels, cfg, generator)
    for block in attachment.modules_in_order():
        block.generator = generator
    try:
        return _a3_terms(model, images, labels, cfg, generator)
    finally:
        for block in attachment.modules_in_order():
            block.generator = None


def _a3_terms(
    model: nn.Module, images: Tensor, labels: Tensor, cfg: A3LossConfig, generator: Any
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The terms of :func:`a3_loss` for a model with A3 attached."""
    with a3_mode(model, "attenuate"):  # x' against the deployed model: attenuation, hard mask, eval mode
        adv = _adversarial(model, images, labels, cfg, generator)

    parts: dict[str, float] = {}
    need_clean = cfg.at == "trades" or cfg.contrastive_weight > 0
    logits_adv, feat_adv = _forward(model, adv, "attenuate")
    if need_clean:
        logits_nat, feat_nat = _forward(model, images, "attenuate")
    base = _base_loss(logits_adv, logits_nat if need_clean else None, labels, cfg)
    total = base
    parts["base"] = float(base.detach())
    if cfg.uses_amplified:
        logits_amp, feat_amp = _forward(model, adv, "amplify")
        if cfg.contrastive_weight > 0:
            contrastive = info_nce_loss(feat_adv, feat_nat, feat_amp, cfg.temperature)
            total = total + cfg.contrastive_weight * contrastive
            parts["contrastive"] = float(contrastive.detach())
        if cfg.ranking_weight > 0:
            logits_plain, _ = _forward(model, adv, "off")
            ranking = ranking_loss(logits_adv, logits_plain, logits_amp, labels, cfg.margin)
            total = total + cfg.ranking_weight * ranking
            parts["ranking"] = float(ranking.detach())
        if cfg.degradation_weight > 0:
            degradation = degradation_loss(logits_amp, labels)
            total = total + cfg.degradation_weight * degradation
            parts["degradation"] = float(degradation.detach())
    return total, logits_adv, parts


# --- training ---------------------------------------------------------------------------------------------------


@dataclass
class A3TrainResult:
    """What :func:`train_a3` did."""

    history: list[dict[str, Any]] = field(default_factory=list)
    """One dict per epoch: epoch, lr, train_loss, train_acc (robust, on x'), parts (mean loss terms), val_clean,
    val_pgd20 (None without val data), seconds."""
    best_epoch: int | None = None
    """Epoch (1-based) with the highest PGD-20 accuracy on the validation data (None without it)."""
    best_pgd20: float | None = None
    """That accuracy."""
    best_state: dict[str, Tensor] | None = None
    """The classifier's state dict at ``best_epoch`` (the last epoch's without validation data)."""
    added_parameters: int = 0
    """Parameters A3 added to the backbone."""


def robust_accuracy(
    model: nn.Module,
    data: ImageDataset,
    *,
    eps: float = 8 / 255,
    steps: int = 20,
    step_size: float = 2 / 255,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Clean and PGD-``steps`` (L-inf, CE, random start) accuracy of ``model`` in its current mode."""
    correct_clean = correct_adv = count = 0
    for b, batch in enumerate(iter_batches(data, batch_size)):
        x, y = batch.images.to(device), batch.labels.to(device)
        with torch.no_grad():
            correct_clean += int((model(x).argmax(1) == y).sum())
        adv = pgd(model, x, y, eps=eps, steps=steps, step_size=step_size, generator=make_generator(seed, "val", b))
        with torch.no_grad():
            correct_adv += int((model(adv).argmax(1) == y).sum())
        count += len(y)
    return correct_clean / max(count, 1), correct_adv / max(count, 1)


@METHODS.register(name="a3")
def train_a3(
    model: nn.Module,
    train_data: ImageDataset,
    *,
    val_data: ImageDataset | None = None,
    epochs: int,
    lr: float = 0.1,
    milestones: Sequence[float] = (0.5, 0.75),
    decay: float = 0.1,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    loss_config: A3LossConfig | None = None,
    augment: Callable[..., Tensor] | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    max_time: float | None = None,
) -> A3TrainResult:
    """Adversarially train a model with A3 (reconstructed) attached, with SGD and a step-decay schedule.

    The schedule is run as one :func:`robustlab.train.fit` call per learning-rate phase (constant rate,
    momentum restarts at each decay). After every epoch the deployed (attenuated, eval-mode) model's clean and
    PGD-20 accuracy on ``val_data`` are measured; the best PGD-20 state is kept.

    Args:
        model: the classifier, with A3 attached (:func:`attach`); trained in place, left in eval mode with the
            last epoch's weights.
        train_data: training samples.
        val_data: samples for the per-epoch PGD-20 check (keep it small: 20 PGD steps per image).
        epochs: total epochs.
        lr: initial learning rate.
        milestones: fractions of ``epochs`` after which the rate is multiplied by ``decay``.
        decay: the step-decay factor.
        batch_size, momentum, weight_decay: SGD settings.
        loss_config: the objective (:class:`A3LossConfig`); all A3 weights 0 gives the equal-budget baseline
            objective on the same model.
        augment: ``augment(images, *, generator)`` per batch, e.g. :func:`robustlab.train.random_crop_flip`.
        seed: seeds shuffling, augmentation, attacks and masks.
        device: None picks CUDA when available.
        callback: receives :func:`robustlab.train.fit`'s events plus ``{"kind": "a3_epoch", **history entry}``.
        max_time: stop after this many seconds (checked after every step).

    Returns:
        An :class:`A3TrainResult`.

    Raises:
        ValueError: no A3 attached while A3 terms are asked for, or invalid settings.
    """
    from robustlab.train import fit

    cfg = loss_config or A3LossConfig()
    if get_attachment(model) is None and (cfg.uses_amplified or cfg.contrastive_weight > 0):
        raise ValueError(
            "train_a3 needs a model with A3 attached (call attach(model, layers) first); a model without A3 trains "
            "with the base loss only (A3LossConfig with contrastive/ranking/degradation weights 0)"
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if any(not 0 < m < 1 for m in milestones) or list(milestones) != sorted(milestones):
        raise ValueError(f"milestones must be increasing fractions in (0, 1), got {list(milestones)}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    bounds = sorted({0, *(round(m * epochs) for m in milestones), epochs})
    phases = [(b - a, lr * decay**k) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if b > a]
    result = A3TrainResult(added_parameters=added_parameters(model))
    step = [0]
    sums: dict[str, float] = {}
    started = time.monotonic()

    def loss_fn(net: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        loss, logits, parts = a3_loss(net, images, labels, cfg, generator=make_generator(seed, "a3_step", step[0]))
        step[0] += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        sums["_n"] = sums.get("_n", 0.0) + 1
        return loss, logits

    epoch_offset = 0
    for k, (phase_epochs, phase_lr) in enumerate(phases):
        def on_event(event: dict[str, Any], offset: int = epoch_offset) -> None:
            if "epoch" in event:
                event = {**event, "epoch": event["epoch"] + offset}
            if event.get("kind") == "epoch_end":
                n = max(sums.pop("_n", 1.0), 1.0)
                entry = {
                    "epoch": event["epoch"], "lr": event["lr"], "train_loss": event["train_loss"],
                    "train_acc": event["train_acc"], "parts": {k: v / n for k, v in sums.items()},
                    "val_clean": None, "val_pgd20": None, "seconds": event["seconds"],
                }  # fmt: skip
                sums.clear()
                if val_data is not None:
                    model.eval()  # fit switches back to train mode at the next epoch
                    entry["val_clean"], entry["val_pgd20"] = robust_accuracy(
                        model, val_data, batch_size=max(batch_size, 128), device=device, seed=seed
                    )
                    if result.best_pgd20 is None or entry["val_pgd20"] > result.best_pgd20:
                        result.best_pgd20, result.best_epoch = entry["val_pgd20"], entry["epoch"]
                        result.best_state = copy.deepcopy(model.state_dict())
                result.history.append(entry)
                log.info("A3 epoch %d: %s", entry["epoch"], entry)
                if callback is not None:
                    callback({"kind": "a3_epoch", **entry})
            elif callback is not None:
                callback(event)

        remaining = None if max_time is None else max_time - (time.monotonic() - started)
        if remaining is not None and remaining <= 0:
            break
        fit_result = fit(
            model, train_data, epochs=phase_epochs, lr=phase_lr, batch_size=batch_size, optimizer="sgd",
            momentum=momentum, weight_decay=weight_decay, schedule="constant", loss_fn=loss_fn, augment=augment,
            seed=seed + 1000 * k, device=device, callback=on_event, max_time=remaining,
        )  # fmt: skip
        epoch_offset += fit_result.epochs
        if fit_result.timed_out:
            break
    if result.best_state is None:
        result.best_state = copy.deepcopy(model.state_dict())
    model.eval()
    return result
