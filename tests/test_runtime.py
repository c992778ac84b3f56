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


@pytest.mark.skipif(not _GLIBC, reason="mallopt is glibc's")
def test_the_first_perturb_call_tunes_the_allocator_like_the_command_line() -> None:
    # library users get the CLI's allocator settings without a setup call; the opt-out and a host's own settings hold
    code = (
        "import torch, robustlab.runtime as r\n"
        "from robustlab.perturb import perturb\n"
        "{pre}\n"
        "before = r._applied\n"
        "perturb(torch.rand(1, 3, 8, 8), 'brightness', 1)\n"
        "print('BEFORE', before, 'AFTER', r._applied)"
    )

    def run(pre: str, **env: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code.format(pre=pre)],
            capture_output=True,
            text=True,
            check=True,
            env={**{k: v for k, v in os.environ.items() if k != "ROBUSTLAB_MALLOC"}, **env},
        )
        return proc.stdout.strip()

    assert run("") == f"BEFORE None AFTER {(256 << 20, 1 << 30)}"
    assert run("", ROBUSTLAB_MALLOC="system") == "BEFORE None AFTER None"
    own = "r.tune_allocator(mmap_threshold=64 << 20)"
    assert run(own) == f"BEFORE {(64 << 20, 1 << 30)} AFTER {(64 << 20, 1 << 30)}"
