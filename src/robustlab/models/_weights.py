"""Reading weight files safely and loading them into a network with errors that name the file and the keys.

Only two readers exist: ``safetensors`` and ``torch.load(..., weights_only=True)``. Neither can run code from
the file, so a checkpoint from an untrusted source cannot execute anything on load.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# Keys that wrap the state dict in common training checkpoints (akamaster, alpha-beta-CROWN, timm train
# scripts).
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_MAX_KEYS_SHOWN = 5


def read_file(path: str | os.PathLike[str]) -> tuple[Any, dict[str, str]]:
    """Read a weights file without unpickling arbitrary objects.

    Args:
        path: a ``.safetensors`` file or a torch file (``.pt``, ``.pth``, ``.th``, ``.bin``, ...).

    Returns:
        ``(content, metadata)``: for safetensors a ``dict[str, Tensor]`` and the header metadata; for torch
        files the loaded object (tensors, containers, numbers, strings only) and ``{}``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is unreadable, corrupt, or holds pickled objects other than plain data and
            tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            tensors: dict[str, Tensor] = {}
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as e:  # safetensors raises its own SafetensorError and OSError variants
            raise ValueError(f"cannot read {path} as safetensors (corrupt or truncated?): {e}") from e
        return tensors, metadata
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e)
        # torch words every refusal of its safe unpickler "Weights only load failed"; only an unsupported GLOBAL
        # (a class or function to import) is a pickled object, anything else is a damaged or foreign file
        if "GLOBAL" in text:
            raise ValueError(
                f"refusing to load {path}: it pickles Python objects other than tensors and plain data, "
                "and robustlab never unpickles arbitrary objects (that can run code). Re-save just the "
                "state dict (torch.save(model.state_dict(), path)) or use robustlab.models.save_checkpoint"
            ) from e
        raise ValueError(
            f"cannot read {path} as a torch file (corrupt, truncated or not a checkpoint): {_torch_reason(text)}"
        ) from e
    return content, {}


def _torch_reason(text: str) -> str:
    """The informative part of a torch.load error (its unpickler's finding, without the advice around it)."""
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else "unknown error"


def unwrap_state_dict(content: Any, path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Find the tensor mapping inside a loaded checkpoint and strip a ``DataParallel`` ``module.`` prefix.

    Args:
        content: what :func:`read_file` returned.
        path: the file, for error messages.

    Returns:
        A new ``{name: tensor}`` dict.

    Raises:
        ValueError: no state dict inside.
    """
    if isinstance(content, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    tensors_only = isinstance(content, Mapping) and all(isinstance(v, Tensor) for v in content.values())
    if not content or not tensors_only:
        raise ValueError(
            f"{path} holds no state dict (expected a mapping of parameter names to tensors, possibly under "
            f"one of the keys {', '.join(_WRAPPER_KEYS)})"
        )
    state = {str(k): v for k, v in content.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from a safetensors or torch file (:func:`read_file` + :func:`unwrap_state_dict`)."""
    content, _ = read_file(path)
    return unwrap_state_dict(content, path)


def _shown(keys: Iterable[str]) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - _MAX_KEYS_SHOWN} more)" if len(keys) > _MAX_KEYS_SHOWN else ""
    return ", ".join(keys[:_MAX_KEYS_SHOWN]) + more


def load_into(
    net: nn.Module,
    state: Mapping[str, Tensor],
    source: str | os.PathLike[str],
    *,
    skip_prefixes: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``net`` strictly, with an error that names the file and the offending keys.

    Args:
        net: the network to fill.
        state: the tensors to load.
        source: where ``state`` came from (for messages).
        skip_prefixes: keys starting with these are neither loaded nor required (e.g. a classifier being
            replaced).

    Raises:
        ValueError: missing, unexpected or wrongly shaped keys.
    """
    expected = {k: v for k, v in net.state_dict().items() if not k.startswith(skip_prefixes)}
    given = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    # BatchNorm fills num_batches_tracked itself when an older checkpoint lacks it.
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_shown(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_shown(unexpected)}")
        raise ValueError(
            f"{source} does not match {type(net).__name__} ({'; '.join(parts)}); "
            "is it a checkpoint of this architecture?"
        )
    wrong = [
        f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(
            f"{source} has tensors of the wrong shape for {type(net).__name__} (file vs model): "
            f"{_shown(wrong)}; check num_classes and the architecture"
        )
    net.load_state_dict(dict(given), strict=not skip_prefixes)
