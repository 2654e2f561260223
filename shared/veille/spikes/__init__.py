"""Spike detection on mention volume: an online per-watch detector, NAB scoring and backtests."""

from __future__ import annotations

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
