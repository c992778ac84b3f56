"""Architecture attributes of timm models (noise study): stem, anti-aliasing, pooling, resolution, normalisation.

Models are built on the meta device (``pretrained=False``), so no weights are downloaded and no memory is
allocated: only module structure and timm's pretrained config are read. Every attribute is either known or the
explicit string ``"unknown"``. Attributes that depend only on the architecture are cached per architecture; the
pretrained tag changes only the config (resolution, mean/std) and the pretraining source.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from robustlab._checks import did_you_mean

log = logging.getLogger(__name__)

UNKNOWN = "unknown"

# Tag / name fragments -> pretraining source. Rule based on timm's tag vocabulary: contrastive language-image
# pretraining (CLIP, OpenCLIP/LAION, DFN, MetaCLIP, DataComp, SigLIP/WebLI) is "clip"; masked-image or
# self-distillation pretraining (MAE, DINO, DINOv2, iBOT, MoCo, ...) is "self_supervised"; everything else
# (in1k, in21k, in22k, ig1b, jft, semi-/weakly-supervised ssl/swsl) is "supervised".
_CLIP_MARKERS = ("clip", "openai", "laion", "dfn", "metaclip", "datacomp", "webli", "siglip", "merged2b", "commonpool")
_SSL_MARKERS = ("dino", "mae", "moco", "simclr", "byol", "ibot", "ijepa", "mim", "data2vec", "beit")

COLUMNS = (
    "tag", "architecture", "family", "stem_kernel", "stem_stride", "antialiased", "global_pool", "input_size",
    "mean", "std", "min_std", "pretraining", "num_params", "error",
)  # fmt: skip


@dataclass(frozen=True)
class Attributes:
    """Attributes of one pretrained tag. Numbers are ``int``/``float``; ``"unknown"`` where not determinable.

    Args:
        tag: ``architecture.pretrained_tag`` as in ``timm.list_pretrained()``.
        architecture: the timm architecture name.
        family: ``"cnn"``, ``"vit"`` or ``"hybrid"`` (``robustlab.models.timm_models.timm_family``).
        stem_kernel: kernel size (height) of the first convolution or patch embedding.
        stem_stride: its stride (height).
        antialiased: a blur / anti-aliasing layer sits in the downsampling path (timm ``aa_layer``, BlurPool).
        global_pool: ``"avg"``, ``"max"``, ``"avgmax"``, ``"token"``, ``"attention"``, ``"none"`` or unknown.
        input_size: native input height in pixels (pretrained config).
        mean: normalisation mean per channel (pretrained config).
        std: normalisation std per channel (pretrained config).
        min_std: ``min(std)``; ``1 / min_std`` is the normalisation's Lipschitz factor.
        pretraining: ``"clip"``, ``"self_supervised"`` or ``"supervised"`` (from the tag and name).
        num_params: parameter count.
        error: why the model could not be built (attributes then unknown), else ``""``.
    """

    tag: str
    architecture: str
    family: str | Any = UNKNOWN
    stem_kernel: int | str = UNKNOWN
    stem_stride: int | str = UNKNOWN
    antialiased: bool | str = UNKNOWN
    global_pool: str = UNKNOWN
    input_size: int | str = UNKNOWN
    mean: tuple[float, ...] | str = UNKNOWN
    std: tuple[float, ...] | str = UNKNOWN
    min_std: float | str = UNKNOWN
    pretraining: str = UNKNOWN
    num_params: int | str = UNKNOWN
    error: str = ""

    def as_row(self) -> dict[str, Any]:
        """Flat dict for CSV / pandas (tuples joined by ``/``)."""
        row = asdict(self)
        for key in ("mean", "std"):
            if isinstance(row[key], tuple):
                row[key] = "/".join(f"{v:.8g}" for v in row[key])
        return row

    @property
    def complete(self) -> bool:
        """Every attribute set (known or explicitly unknown) and the model was built."""
        return not self.error and all(getattr(self, f.name) is not None for f in fields(self))


def pretraining_source(tag: str) -> str:
    """``"clip"``, ``"self_supervised"`` or ``"supervised"`` from a timm ``architecture.tag`` name.

    Example:
        >>> pretraining_source("vit_base_patch16_clip_224.openai")
        'clip'
    """
    text = tag.lower()
    if any(m in text for m in _CLIP_MARKERS):
        return "clip"
    if any(m in text for m in _SSL_MARKERS):
        return "self_supervised"
    return "supervised"


def _first(value: Any) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


def stem_geometry(net: nn.Module) -> tuple[int | str, int | str]:
    """``(kernel, stride)`` of the first layer that sees pixels: the patch embedding or the first convolution."""
    patch_embed = getattr(net, "patch_embed", None)
    if patch_embed is not None and getattr(patch_embed, "backbone", None) is None:
        proj = getattr(patch_embed, "proj", None)
        if isinstance(proj, nn.Conv2d):
            return _first(proj.kernel_size), _first(proj.stride)
        size = getattr(patch_embed, "patch_size", None)
        if size is not None:
            return _first(size), _first(size)
    for module in net.modules():  # registration order: the stem comes first in timm models
        if isinstance(module, nn.Conv2d):
            return _first(module.kernel_size), _first(module.stride)
    return UNKNOWN, UNKNOWN


def has_antialiasing(net: nn.Module) -> bool:
    """Blur pooling or a timm ``aa`` layer (anything but ``Identity``) in the network."""
    for name, module in net.named_modules():
        kind = type(module).__name__.lower()
        if "blur" in kind or "antialias" in kind:
            return True
        if name.rsplit(".", 1)[-1] in ("aa", "blur_pool") and not isinstance(module, nn.Identity):
            return True
    return False


_POOL_NAMES = {"avg": "avg", "fast": "avg", "avgmax": "avgmax", "catavgmax": "avgmax", "max": "max",
               "token": "token", "cls": "token", "tok": "token", "map": "attention", "attn": "attention", "": "none",
               "avg_token": "avg"}  # fmt: skip


def _pool_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _POOL_NAMES.get(value.lower(), UNKNOWN)
    pool_type = getattr(value, "pool_type", None)
    if isinstance(pool_type, str):
        return _POOL_NAMES.get(pool_type.lower(), UNKNOWN)
    if isinstance(value, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d, nn.AvgPool2d)):
        return "avg"
    if isinstance(value, (nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool1d, nn.MaxPool2d)):
        return "max"
    if isinstance(value, nn.Module) and "attention" in type(value).__name__.lower():
        return "attention"
    return None


def global_pool_type(net: nn.Module) -> str:
    """How the final feature map becomes one vector: avg / max / avgmax / token / attention / none / unknown."""
    if getattr(net, "attn_pool", None) is not None:
        return "attention"
    for owner in (net, getattr(net, "head", None)):
        if isinstance(owner, nn.Module) or owner is net:
            kind = _pool_kind(getattr(owner, "global_pool", None))
            if kind is not None:
                return kind
    for module in reversed(list(net.modules())):
        kind = _pool_kind(getattr(module, "global_pool", None))
        if kind is not None:
            return kind
        if type(module).__name__ == "SelectAdaptivePool2d":
            return _pool_kind(module) or UNKNOWN
        if "attentionpool" in type(module).__name__.lower():
            return "attention"
    return UNKNOWN


@dataclass(frozen=True)
class _ArchAttributes:
    family: str
    stem_kernel: int | str
    stem_stride: int | str
    antialiased: bool | str
    global_pool: str
    num_params: int | str
    error: str = ""


@functools.cache
def _architecture_attributes(architecture: str) -> _ArchAttributes:
    import timm

    from robustlab.models.timm_models import timm_family

    try:
        with torch.device("meta"):
            net = timm.create_model(architecture, pretrained=False)
    except Exception as exc:  # noqa: BLE001 - any build failure becomes an explicit 'unknown' row
        log.warning("cannot build %s on the meta device: %s", architecture, exc)
        return _ArchAttributes(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, f"{type(exc).__name__}: {exc}")
    kernel, stride = stem_geometry(net)
    return _ArchAttributes(
        family=timm_family(net),
        stem_kernel=kernel,
        stem_stride=stride,
        antialiased=has_antialiasing(net),
        global_pool=global_pool_type(net),
        num_params=int(sum(p.numel() for p in net.parameters())),
    )


def _known_or_error(tag: str) -> None:
    import timm

    arch = tag.split(".", 1)[0]
    if arch not in timm.list_models():
        hint = did_you_mean(arch, timm.list_models(), n=5, cutoff=0.6)
        raise ValueError(f"unknown timm architecture {arch!r}.{hint} See timm.list_models().")


def model_attributes(tag: str) -> Attributes:
    """Attributes of one timm model, ``"architecture"`` or ``"architecture.pretrained_tag"``.

    Without a tag the architecture's default pretrained config is used (if it has one).

    Raises:
        ValueError: an unknown architecture (with close matches).

    Example:
        >>> model_attributes("resnet50.a1_in1k").stem_kernel
        7
    """
    from timm.models import get_pretrained_cfg

    name = tag.removeprefix("timm:")
    _known_or_error(name)
    architecture = name.split(".", 1)[0]
    arch = _architecture_attributes(architecture)
    cfg = get_pretrained_cfg(name, allow_unregistered=True) if "." in name else get_pretrained_cfg(name)
    input_size: int | str = UNKNOWN
    mean: tuple[float, ...] | str = UNKNOWN
    std: tuple[float, ...] | str = UNKNOWN
    min_std: float | str = UNKNOWN
    if cfg is not None:
        if getattr(cfg, "input_size", None):
            input_size = int(cfg.input_size[1])
        if getattr(cfg, "mean", None) is not None:
            mean = tuple(float(v) for v in cfg.mean)
        if getattr(cfg, "std", None) is not None:
            std = tuple(float(v) for v in cfg.std)
            min_std = min(std) if std else UNKNOWN
    full = name if "." in name else (f"{name}.{cfg.tag}" if cfg is not None and cfg.tag else name)
    return Attributes(
        tag=full,
        architecture=architecture,
        family=arch.family,
        stem_kernel=arch.stem_kernel,
        stem_stride=arch.stem_stride,
        antialiased=arch.antialiased,
        global_pool=arch.global_pool,
        input_size=input_size,
        mean=mean,
        std=std,
        min_std=min_std,
        pretraining=pretraining_source(full),
        num_params=arch.num_params,
        error=arch.error,
    )


def attribute_table(
    tags: Iterable[str] | None = None,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> list[Attributes]:
    """Attributes for many timm models; default every tag in ``timm.list_pretrained()``.

    Architectures are built once each (cached), so the tag loop costs one meta build per architecture.

    Args:
        tags: timm names (with or without tags).
        callback: receives ``{"kind": "model", "done": i, "total": n, "description": tag}`` after each tag.
    """
    import timm

    names = list(timm.list_pretrained() if tags is None else tags)
    rows = []
    for i, name in enumerate(names, 1):
        rows.append(model_attributes(name))
        if callback is not None:
            callback({"kind": "model", "done": i, "total": len(names), "description": name})
    return rows


_ATTRIBUTE_FIELDS = ("family", "stem_kernel", "stem_stride", "antialiased", "global_pool", "input_size", "mean",
                     "std", "pretraining", "num_params")  # fmt: skip


def coverage(rows: Sequence[Attributes]) -> dict[str, float]:
    """Share of rows whose model was built and whose attributes are all determined.

    Returns:
        ``{"built": share built without error, "determined": share with no attribute 'unknown',
        "per_attribute_<name>": share determined for that attribute}`` (all in [0, 1]).

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("coverage needs at least one row")
    n = len(rows)
    out = {
        "built": sum(not r.error for r in rows) / n,
        "determined": sum(all(getattr(r, f) != UNKNOWN for f in _ATTRIBUTE_FIELDS) for r in rows) / n,
    }
    for f in _ATTRIBUTE_FIELDS:
        out[f"per_attribute_{f}"] = sum(getattr(r, f) != UNKNOWN for r in rows) / n
    return out


def write_attributes_csv(rows: Sequence[Attributes], path: Any) -> None:
    """Write the table as CSV with the :data:`COLUMNS` header."""
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_row())


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def spec_attributes(spec: str, *, data_dir: Any = None) -> Attributes:
    """Attributes of any robustlab model spec (``cifar:resnet20``, ``efficientnet_lite0``, ``timm:resnet50``...).

    timm names go through :func:`model_attributes` (meta device, pretrained config). Other specs are built
    without weights and read by :func:`classifier_attributes`.

    Raises:
        ValueError: an unknown spec (from ``create_model``).
    """
    import torch

    from robustlab.models import create_model

    if spec.startswith("timm:"):
        return model_attributes(spec.removeprefix("timm:"))
    # zero-shot CLIP needs class names; two placeholders do, the image tower does not depend on them
    names = ["a", "b"] if spec.startswith("openclip:") else None
    with torch.device("cpu"):
        clf = create_model(spec, pretrained=False, data_dir=data_dir, class_names=names)
    return classifier_attributes(spec, clf)


def classifier_attributes(spec: str, clf: Any) -> Attributes:
    """Attributes of an already built :class:`~robustlab.models.Classifier` (as a study holds while it measures).

    timm specs read timm's pretrained config (:func:`model_attributes`); other models are read from the
    classifier: its network's stem and pooling, and its own input size and normalisation.

    Args:
        spec: the model spec it was built from.
        clf: the classifier, on any device.

    Returns:
        Its attributes (``"unknown"`` where not determinable).
    """
    if spec.startswith("timm:"):
        return model_attributes(spec.removeprefix("timm:"))
    net = clf.net
    visual = getattr(getattr(net, "clip", None), "visual", None)
    if visual is not None:  # an open_clip tower: read the image encoder, not the text side
        net = visual
    kernel, stride = stem_geometry(net)
    config = clf.data_config
    std = tuple(float(v) for v in config["std"])
    pool = global_pool_type(net)
    if pool == UNKNOWN and isinstance(getattr(net, "pool_type", None), str):  # open_clip VisionTransformer
        pool = _POOL_NAMES.get(net.pool_type.lower(), UNKNOWN)
    if visual is not None:  # CLIP is the pretraining; the family is the tower's architecture
        family = "cnn" if hasattr(net, "layer1") else "vit"
    else:
        family = getattr(clf, "family", None) or ("vit" if hasattr(net, "patch_embed") else "cnn")
    return Attributes(
        tag=spec,
        architecture=spec,
        family=family,
        stem_kernel=kernel,
        stem_stride=stride,
        antialiased=has_antialiasing(net),
        global_pool=pool if pool != UNKNOWN else _pool_from_forward(net, int(config["input_size"][-1])),
        input_size=int(config["input_size"][-2]),
        mean=tuple(float(v) for v in config["mean"]),
        std=std,
        min_std=min(std),
        pretraining=pretraining_source(spec),
        num_params=sum(p.numel() for p in net.parameters()),
    )


def stored_or_built_attributes(
    store: Any, models: Sequence[str], *, data_dir: Any = None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each model's attributes from the store; models a store written before attributes were stored are built
    without weights (:func:`spec_attributes`) and their attributes stored, so the report finds them next time.

    Args:
        store: an open :class:`robustlab.store.Store`.
        models: model specs.
        data_dir: where checkpoint specs find their data, as for ``create_model``.

    Returns:
        ``(attributes, failures)``: name -> value per model found or built, and per model that could not be built
        (a moved checkpoint, an unknown spec) the reason.
    """
    found = store.attributes(model=list(models))
    failures: dict[str, str] = {}
    for model in models:
        if model in found:
            continue
        try:
            found[model] = stored_attributes(spec_attributes(model, data_dir=data_dir))
        except (ValueError, OSError, RuntimeError, ImportError) as err:
            failures[model] = f"{type(err).__name__}: {err}"
            continue
        store.add_attributes(model, found[model])
    return found, failures


def stored_attributes(attributes: Attributes) -> dict[str, Any]:
    """The attributes as the results store keeps them (name -> JSON value; tuples become lists)."""
    return {name: value for name, value in asdict(attributes).items() if name not in ("tag", "architecture")}


def _pool_from_forward(net: nn.Module, input_size: int) -> str:
    """Global pooling of networks that pool in code (no pooling module): probed on the head.

    A head that changes when the feature map's positions are shuffled keeps the layout (``"none"``, a flattening
    head). Otherwise it is ``"avg"`` when it is affine in the features, ``"max"`` when it is not.
    """
    import torch

    if not (hasattr(net, "forward_features") and hasattr(net, "forward_head")):
        return UNKNOWN
    # probe on the network's own device (a study reads a model it already moved to the GPU); draws stay on CPU
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # timm-style methods, present (checked above) but unknown to nn.Module's type
        features: Callable[[torch.Tensor], torch.Tensor] = net.forward_features  # type: ignore[assignment]
        head: Callable[[torch.Tensor], torch.Tensor] = net.forward_head  # type: ignore[assignment]
        shape = features(torch.zeros(1, 3, input_size, input_size, device=device)).shape
        if len(shape) != 4:
            return UNKNOWN
        a, b = (torch.randn(shape, generator=gen).to(device) for _ in range(2))
        order = torch.randperm(shape[2] * shape[3], generator=gen).to(device)
        shuffled = a.flatten(2)[..., order].view(shape)
        if not torch.allclose(head(a), head(shuffled), atol=1e-5):
            return "none"
        zeros = torch.zeros(shape, device=device)
        affine = torch.allclose(head(a + b) + head(zeros), head(a) + head(b), atol=1e-4)
    return "avg" if affine else "max"
