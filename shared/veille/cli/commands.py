"""The list of sub-commands registered on ``veille``; each lives in its own module."""

from __future__ import annotations

import click

__all__ = ["ALL"]

ALL: list[click.Command] = []
