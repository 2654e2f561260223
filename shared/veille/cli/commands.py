"""The list of sub-commands registered on ``veille``; each lives in its own module."""

from __future__ import annotations

import click

from veille.cli.asyncapi_cmd import asyncapi
from veille.cli.backtest_cmd import backtest
from veille.cli.demo_cmd import demo
from veille.cli.dlq_cmd import dlq
from veille.cli.run_cmd import check_config, run
from veille.cli.secret_cmd import secret
from veille.cli.sentiment_cmd import sentiment
from veille.cli.silence_cmd import silence
from veille.cli.topology_cmd import topology
from veille.cli.up_cmd import up

__all__ = ["ALL"]

ALL: list[click.Command] = [up, demo, run, check_config, asyncapi, backtest, sentiment, silence, dlq, topology, secret]
