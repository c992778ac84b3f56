"""Training checkpoints: atomic writes, ``weights_only`` reads, global RNG state.

A checkpoint is a plain dict of tensors and Python scalars/containers, so :func:`torch.load` reads it with
``weights_only=True`` (no pickled code runs when loading a file from elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "robustlab.train/1"
"""Value of the ``"format"`` key; bumped when the layout changes incompatibly."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the previous checkpoint intact.

    The state goes to a temporary file in the same directory (same filesystem, so the rename is atomic), is
    flushed to disk, and then replaces ``path`` with :func:`os.replace`.

    Args:
        path: destination file; missing parent directories are created.
        state: tensors and plain Python values only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU, with ``weights_only=True``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a robustlab training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist; run without resume=True to start training from scratch"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or truncated files
        raise ValueError(f"could not read checkpoint {str(path)!r} with weights_only=True: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{str(path)!r} is not a robustlab training checkpoint (format {found!r}, expected {FORMAT!r})"
        )
    return state


def get_rng_state() -> dict[str, Any]:
    """The global CPU (and CUDA) generator states.

    robustlab's own draws use explicit generators, but layers such as dropout or drop-path draw from the
    global generators; saving their state is what makes a resumed run continue exactly.
    """
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states from :func:`get_rng_state` (CUDA states only when the device count matches)."""
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
