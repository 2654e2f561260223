"""Spike detection on mention volume: an online per-watch detector, NAB scoring and backtests."""

from __future__ import annotations

from veille.spikes import nab

__all__ = ["nab"]
