"""Reports built from the results store alone (never from models)."""

from __future__ import annotations

from robustlab.report.html import write_report

__all__ = ["write_report"]
