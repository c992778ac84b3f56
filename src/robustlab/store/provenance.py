"""Provenance recorded with every run: the time, robustlab's and torch's versions, and the git commit.

Nothing here imports torch: a store used by a report or a results export must not pay for it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

__all__ = ["git_sha", "package_version", "torch_version", "utc_now"]


def utc_now() -> str:
    """The current UTC time as ISO 8601 text with milliseconds, as the ``runs`` table stores it."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def package_version(name: str) -> str | None:
    """The installed distribution ``name``'s version from its metadata, or ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_version() -> str | None:
    """torch's own ``__version__`` with its local build tag (``2.14.1+cu130``, ``2.13.0+cpu``).

    The wheel metadata drops the tag (``2.14.1``), which hides whether a result came from a CUDA or a CPU build.
    The store never imports torch for this: it takes the loaded module's attribute, or reads ``torch/version.py``.
    """
    loaded = sys.modules.get("torch")
    if loaded is not None and isinstance(getattr(loaded, "__version__", None), str):
        return str(loaded.__version__)
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, flags=re.MULTILINE)
        if found:
            return found.group(1)
    return package_version("torch")


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the robustlab checkout this code runs from, or ``None`` (installed wheel, no git)."""
    package_dir = Path(__file__).resolve().parent
    # an installed robustlab inside a virtualenv inside some project's repository would report that project's
    # commit, which says nothing about the robustlab code; only a source checkout has a meaningful sha
    if "site-packages" in package_dir.parts or "dist-packages" in package_dir.parts:
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and sha else None
