from __future__ import annotations

import sys
from pathlib import Path

# the imagecorruptions reference harness lives with the benchmarks
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
