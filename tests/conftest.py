from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import robustlab  # noqa: F401  (applies the torchvision import workaround first)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder (``ROBUSTLAB_DATA``); tests marked ``realdata`` skip without it."""
    root = os.environ.get("ROBUSTLAB_DATA")
    if not root:
        pytest.skip("ROBUSTLAB_DATA is not set")
    # absolute, so tests that change directory (the README runs with ROBUSTLAB_DATA=../shared/data) still find it
    path = Path(root).resolve()
    if not path.is_dir():
        pytest.skip(f"ROBUSTLAB_DATA={root} is not a directory")
    return path


@pytest.fixture
def torchrun():
    """``torchrun(worker, out_dir, timeout=...)``: run ``worker`` on two local processes (gloo) and return stdout.

    The workers get a session of their own, so a hang ends with all of them killed and the test failing with the
    tail of their stderr; a non-zero exit fails the test with both streams.
    """
    import signal
    import subprocess
    import sys

    def run(worker: Path, out: Path, *, timeout: int = 180) -> str:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(worker)]
        proc = subprocess.Popen([*cmd, str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"torchrun did not finish in {timeout} s:\n{stderr[-5000:]}")
        assert proc.returncode == 0, stdout[-3000:] + stderr[-5000:]
        return stdout

    return run
