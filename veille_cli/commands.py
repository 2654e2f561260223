"""The list of sub-commands registered on ``veille``; each lives in its own module."""

from __future__ import annotations

import click

from veille_cli.asyncapi_cmd import asyncapi
from veille_cli.backtest_cmd import backtest
from veille_cli.demo_cmd import demo
from veille_cli.dlq_cmd import dlq
from veille_cli.natsusers_cmd import nats_users
from veille_cli.run_cmd import check_config, run
from veille_cli.secret_cmd import secret
from veille_cli.sentiment_cmd import sentiment
from veille_cli.silence_cmd import silence
from veille_cli.topology_cmd import topology
from veille_cli.up_cmd import up

__all__ = ["ALL"]

ALL: list[click.Command] = [
    up,
    demo,
    run,
    check_config,
    asyncapi,
    backtest,
    sentiment,
    silence,
    dlq,
    topology,
    secret,
    nats_users,
]
