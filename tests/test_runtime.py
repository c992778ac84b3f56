"""robustlab.runtime.tune_allocator: glibc heap settings for batch-sized tensors."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from robustlab.runtime import tune_allocator

_GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize("bad", [0, -5, 2**31, 1.5, True, "1M"])
def test_bad_thresholds_are_refused_with_the_name(bad: object) -> None:
    with pytest.raises(ValueError, match="mmap_threshold"):
        tune_allocator(mmap_threshold=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trim_threshold"):
        tune_allocator(trim_threshold=bad)  # type: ignore[arg-type]


def test_environment_opt_out_keeps_glibc_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLAB_MALLOC", "system")
    assert tune_allocator() is False


@pytest.mark.skipif(not _GLIBC, reason="mallopt is glibc's")
def test_glibc_accepts_the_settings_in_a_fresh_process() -> None:
    # a subprocess, so that the test process keeps whatever allocator settings it had
    code = "from robustlab.runtime import tune_allocator as t; print(t(), t())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


@pytest.mark.skipif(not _GLIBC, reason="mallopt is glibc's")
def test_the_command_line_tunes_the_allocator_unless_told_not_to() -> None:
    code = (
        "import robustlab.runtime as r, robustlab.cli as c, sys; sys.argv = ['robustlab', '--help']\n"
        "try:\n    c.main()\nexcept SystemExit:\n    pass\nprint('APPLIED', r._applied is not None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "APPLIED True" in out
    env_out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ROBUSTLAB_MALLOC": "system"},
    ).stdout
    assert "APPLIED False" in env_out
