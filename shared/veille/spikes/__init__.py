"""Spike detection on mention volume: an online per-watch detector, NAB scoring and backtests.

The names below load their module on first use (PEP 562), so that ``veille.config`` (which needs
:class:`DetectorSettings` only) does not pull in the backtests and the message models: a command
such as ``veille check-config`` starts faster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only; at run time, __getattr__ below
    from veille.spikes import nab
    from veille.spikes.backtest import AlertRow, SeriesFormatError, backtest_series, write_alerts_csv
    from veille.spikes.detector import Decision, DetectorSettings, SpikeDetector

__all__ = [
    "AlertRow",
    "Decision",
    "DetectorSettings",
    "SeriesFormatError",
    "SpikeDetector",
    "backtest_series",
    "nab",
    "write_alerts_csv",
]

_HOME = {
    "AlertRow": "veille.spikes.backtest",
    "SeriesFormatError": "veille.spikes.backtest",
    "backtest_series": "veille.spikes.backtest",
    "write_alerts_csv": "veille.spikes.backtest",
    "Decision": "veille.spikes.detector",
    "DetectorSettings": "veille.spikes.detector",
    "SpikeDetector": "veille.spikes.detector",
}


def __getattr__(name: str) -> Any:
    if name == "nab":
        return importlib.import_module("veille.spikes.nab")
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'veille.spikes' has no attribute {name!r}")
