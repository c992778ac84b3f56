"""Bring your own model: a network from your own file or module, wrapped in the pixel contract.

Two front doors:

- :func:`wrap_model` wraps an ``nn.Module`` you already have, in one call: it takes [0, 1] pixels afterwards and
  normalises them itself, as every robustlab model does (DESIGN.md, contract 2).
- :func:`create_custom_model` builds one from a spec ``path/to/file.py:ClassName`` or ``package.module:factory``
  (what ``robustlab eval --model`` accepts), loads ``weights`` with ``weights_only=True`` and wraps it. The spec,
  with the file's absolute path, is recorded as the model's ``arch``, so :func:`~robustlab.models.save_checkpoint`
  can save it and ``create_model("file:<checkpoint>")`` rebuilds it (the file or module must still be there).

Normalisation is the one thing robustlab cannot guess: a network trained on normalised input and fed [0, 1]
pixels still runs, and reports a wrong accuracy (15.0 % instead of 45.3 % in the issue that asked for this). So
``mean`` / ``std`` come from the caller or from the network's own timm-style ``pretrained_cfg`` / ``default_cfg``;
with neither, the network gets plain pixels and a warning says so.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustlab.models._common import resolve_class_names
from robustlab.models._weights import load_into, read_state_dict
from robustlab.models.classifier import Classifier

_IDENTITY = (0.0, 0.0, 0.0)


def is_custom_spec(spec: str, known_schemes: Sequence[str] = ()) -> bool:
    """Whether ``spec`` names user code: ``<file>.py:<name>`` or ``<importable module>:<name>``.

    Args:
        spec: a model spec.
        known_schemes: robustlab's own schemes (``cifar``, ``timm``, ``file``...), which always win.
    """
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name.isidentifier() or target in known_schemes:
        return False
    if target.endswith(".py"):
        return True
    if not all(part.isidentifier() for part in target.split(".")):
        return False
    try:
        return importlib.util.find_spec(target) is not None
    except (ImportError, ValueError):
        return False


def _import_target(spec: str) -> tuple[Any, str]:
    """The object a custom spec names, and the spec with a file's path made absolute (what ``arch`` records)."""
    target, _, name = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{target}: no such Python file (--model expects path/to/file.py:ClassName)")
        # one module name per file, so two files that both define TinyNet never collide
        module_name = f"robustlab_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        module = sys.modules.get(module_name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            if module_spec is None or module_spec.loader is None:
                raise ValueError(f"{path}: cannot be imported as a Python module")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module  # dataclasses and pickling look modules up here
            try:
                module_spec.loader.exec_module(module)
            except Exception:
                del sys.modules[module_name]
                raise
        resolved = f"{path}:{name}"
    else:
        module = importlib.import_module(target)
        resolved = spec
    if not hasattr(module, name):
        public = sorted(k for k, v in vars(module).items() if not k.startswith("_") and callable(v))
        raise ValueError(f"{target} defines no {name!r}; it has {', '.join(public) or 'no public callables'}")
    return getattr(module, name), resolved


def _config_of(net: nn.Module) -> dict[str, Any]:
    # timm models (and anything written in their style) carry their preprocessing facts with them
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(net, attr, None)
        if isinstance(cfg, dict):
            return cfg
    return {}


def _infer_classes(net: nn.Module, input_size: tuple[int, int, int], spec: str) -> int:
    try:
        with torch.no_grad():
            logits = net(torch.zeros(1, *input_size, device=next(net.parameters(), torch.zeros(0)).device))
    except Exception as e:  # the user's network: any failure means the input size does not fit it
        raise ValueError(f"{spec}: a forward on a {tuple(input_size)} image failed ({e}); pass the input size "
                         "it expects (input_size= / --input-size)") from None  # fmt: skip
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{spec}: the network must return logits (N, K), got {shape}")
    return int(logits.shape[1])


def _size3(input_size: int | Sequence[int], spec: str) -> tuple[int, int, int]:
    size = [int(input_size)] if isinstance(input_size, int) else [int(v) for v in input_size]
    if len(size) == 1:
        size = [3, size[0], size[0]]
    elif len(size) == 2:
        size = [3, *size]
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"{spec}: input_size must be S, (H, W) or (C, H, W) with positive sizes, got {input_size!r}")
    return size[0], size[1], size[2]


def wrap_model(
    net: nn.Module,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    input_size: int | Sequence[int],
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    name: str = "",
    arch: str = "",
) -> Classifier:
    """Wrap a network that expects normalised input so it takes [0, 1] pixels, as every robustlab model does.

    Args:
        net: the network; takes ``(images - mean) / std``, returns logits.
        mean: per-channel mean the network was trained with (``(0, 0, 0)`` with ``std=(1, 1, 1)`` for a network
            that takes plain [0, 1] pixels).
        std: per-channel standard deviation.
        input_size: ``S``, ``(H, W)`` or ``(C, H, W)`` the network expects.
        class_names: one name per output (default ``class_0 ..``; names let class folders map by name).
        num_classes: the output count when no names are given (default: one forward on a blank image).
        name: what the store records for this model.
        arch: a buildable spec (``path/to/file.py:ClassName``) that :func:`save_checkpoint` records.

    Returns:
        A :class:`Classifier` in eval mode on the network's device.

    Shape:
        The returned model maps ``(N, C, H, W)`` floats in [0, 1] to ``(N, K)`` logits.

    Raises:
        ValueError: not a module, mean / std / input size that disagree, class names that disagree with the
            outputs, or a network that does not return ``(N, K)`` logits.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> model = wrap_model(net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=8)
        >>> model(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 4])
    """
    label = name or type(net).__name__
    if not isinstance(net, nn.Module):
        raise ValueError(f"wrap_model needs a torch.nn.Module, got {type(net).__name__}")
    if isinstance(net, Classifier):
        raise ValueError(f"{label} is already a robustlab Classifier (it normalises itself); use it as it is")
    size = _size3(input_size, label)
    net.eval()
    outputs = _infer_classes(net, size, label)
    names = resolve_class_names(class_names, num_classes if class_names is not None or num_classes else outputs,
                                default=[], spec=label)  # fmt: skip
    if len(names) != outputs:
        raise ValueError(f"{label} has {outputs} outputs but {len(names)} classes were given (class_names / "
                         "num_classes / --num-classes)")  # fmt: skip
    model = Classifier(net, mean=mean, std=std, input_size=size, class_names=names, name=name)
    model.arch = arch
    device = next(net.parameters(), None)
    return model.to(device.device).eval() if device is not None else model.eval()


def create_custom_model(
    spec: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | Sequence[int] | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> Classifier:
    """Build your own network from ``path/to/file.py:ClassName`` or ``package.module:factory`` and wrap it.

    The class or factory is called with ``num_classes=`` when it takes that argument and a count is known, else
    with no arguments; it may also return a ready :class:`Classifier`. A module-level ``nn.Module`` instance is
    used as it is.

    Args:
        spec: the file or module and the name in it.
        weights: a state dict for the network (safetensors or torch, read with ``weights_only=True``; a
            ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper and a ``module.`` prefix are unwrapped).
        mean: per-channel mean the network expects (default: its ``pretrained_cfg``, else none: plain pixels,
            with a warning).
        std: per-channel std (same default).
        input_size: ``S``, ``(H, W)`` or ``(C, H, W)`` (default: its ``pretrained_cfg``, else 3 x 224 x 224).
        num_classes: outputs (default: the factory's own default, read off one forward).
        class_names: one name per output.

    Returns:
        A :class:`Classifier` in eval mode whose ``arch`` is the spec with the file's absolute path.

    Raises:
        FileNotFoundError: no such Python file, or no such weights file.
        ValueError: a name the file does not define, a factory that does not return a module, weights that do
            not fit, bad mean / std / input size.
        ImportError: the module cannot be imported.

    Warns:
        UserWarning: neither ``mean`` / ``std`` nor a ``pretrained_cfg``: the network gets [0, 1] pixels as they
            are, which is right only if it was trained on them.
    """
    if (mean is None) != (std is None):
        raise ValueError(f"{spec}: pass both mean and std (--mean and --std), or neither")
    target, resolved = _import_target(spec)
    if isinstance(target, nn.Module):
        net = target
    elif callable(target):
        count = len(class_names) if class_names is not None else num_classes
        try:
            takes_count = "num_classes" in inspect.signature(target).parameters
        except (TypeError, ValueError):  # builtins and some C extensions have no signature
            takes_count = False
        net = target(num_classes=count) if takes_count and count is not None else target()
    else:
        raise ValueError(f"{spec} is a {type(target).__name__}; expected an nn.Module class, factory or instance")
    base = net.net if isinstance(net, Classifier) else net
    if not isinstance(base, nn.Module):
        raise ValueError(f"{spec} returned a {type(net).__name__}, not a torch.nn.Module")
    if weights is not None:
        state = read_state_dict(weights)
        if all(k.startswith("net.") for k in state):  # saved from a wrapped model: the network is its .net
            state = {k[len("net.") :]: v for k, v in state.items()}
        load_into(base, state, weights)
    if isinstance(net, Classifier):  # the factory already knows its pixel contract
        net.arch = resolved
        return net.eval()
    cfg = _config_of(net)
    if mean is None:
        mean, std = cfg.get("mean"), cfg.get("std")
    if input_size is None:
        input_size = cfg.get("input_size", (3, 224, 224))
    size = _size3(input_size, spec)
    if mean is None or std is None:
        warnings.warn(
            f"{spec}: no mean / std given and the network carries no pretrained_cfg, so it gets [0, 1] pixels "
            "unnormalised; if it was trained on normalised input, pass them (--mean 0.485,0.456,0.406 --std "
            "0.229,0.224,0.225 on the command line, mean= / std= in Python), or the numbers will be wrong",
            UserWarning,
            stacklevel=2,
        )
        mean, std = _IDENTITY[: size[0]], (1.0,) * size[0]
    return wrap_model(net, mean=mean, std=std, input_size=size, class_names=class_names, num_classes=num_classes,
                      name=spec, arch=resolved)  # fmt: skip


_WARNED: set[type] = set()


def warn_if_unwrapped(model: nn.Module, what: str) -> None:
    """Warn once per network class when a plain ``nn.Module`` (not a :class:`Classifier`) meets robustlab's pixels.

    robustlab hands every model [0, 1] pixels; a network trained on normalised input then runs without error and
    gives wrong numbers. The warning names the fix (:func:`wrap_model`); a network that really takes plain pixels
    can say so by wrapping with ``mean=(0, 0, 0), std=(1, 1, 1)``.
    """
    kind = type(model)
    if isinstance(model, Classifier) or kind in _WARNED:
        return
    _WARNED.add(kind)
    warnings.warn(
        f"{what} got a plain {kind.__name__}, not a robustlab Classifier: it is fed [0, 1] pixels as they are. If "
        "it expects normalised input, wrap it once: robustlab.models.wrap_model(net, mean=..., std=..., "
        "input_size=...) (mean=(0, 0, 0), std=(1, 1, 1) if it really takes [0, 1] pixels)",
        UserWarning,
        stacklevel=3,
    )
