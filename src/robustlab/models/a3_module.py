"""A3 (reconstructed) plug-in modules: the channel mask and magnitude scale, attached to a model by hooks.

This is the model side of A3: the module (:class:`A3Module`), the attachment that hooks modules
onto named layers (:func:`attach` / :func:`detach`), the mode switch (:func:`set_mode` / :func:`a3_mode`) and the
re-attachment from a checkpoint record (:func:`attach_from_spec`). It lives in the model layer because a saved
model carries its A3 modules: ``create_model("file:...")`` rebuilds them without knowing the training method.
The losses and the training recipe are in :mod:`robustlab.methods.a3`, which also re-exports every name here.

The design (mask, magnitude factor, amplify / attenuate) is described in :mod:`robustlab.methods.a3`. A
detached model is bit-identical to the original.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from robustlab._checks import check_choice, did_you_mean
from robustlab.models.classifier import Classifier
from robustlab.rng import make_generator

__all__ = [
    "ATTRIBUTE",
    "MODES",
    "A3Attachment",
    "A3Config",
    "A3Module",
    "a3_mode",
    "a3_scale",
    "added_parameters",
    "attach",
    "attach_from_spec",
    "default_layers",
    "detach",
    "get_attachment",
    "magnitude_factor",
    "set_mode",
]

MODES = ("attenuate", "amplify", "off")
"""``attenuate`` (the deployed model, sign -1), ``amplify`` (sign +1, builds negatives), ``off`` (identity)."""
_SIGNS = {"attenuate": -1.0, "amplify": 1.0, "off": 0.0}
ATTRIBUTE = "a3"
"""Name of the :class:`A3Attachment` on the host network (``classifier.net.a3``); its state is saved with it."""


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
            hint = did_you_mean(name, [n for n in named if n])
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
    only = children[spatial[0]] if len(spatial) == 1 else None
    if isinstance(only, nn.Sequential) and len(only) > 1:
        inner = {f"{spatial[0]}.{n}": m for n, m in only.named_children()}
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
    mode = check_choice(mode, MODES, "A3 mode")
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
