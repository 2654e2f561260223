"""``veille silence add|list|expire``: silences kept in the NATS KV bucket every notifier reads.

Examples::

    veille silence add watch=acme --for 2h --comment "known outage, comms is on it"
    veille silence add 'watch=~"acme|globex"' severity!=critical --for 30m
    veille silence list
    veille silence expire sil_0123456789abcdef0123
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from veille_cli._imports import import_nats_for

__all__ = ["silence"]

T = TypeVar("T")


def _with_store(url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Connect, open the silences bucket, run ``work(store)``, disconnect."""

    async def main() -> T:
        from services.notifier.silences import SilenceStore
        from veille.natsauth import connect_cli

        client = await connect_cli(url)
        try:
            store = await SilenceStore.open(client.jetstream())
            return await work(store)
        finally:
            await client.close()

    import asyncio

    import_nats_for(url)
    return asyncio.run(main())


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    from veille.durations import parse_duration

    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if duration.total_seconds() <= 0:
        raise click.BadParameter("must be longer than 0s")
    return duration


_nats_option = click.option("--nats-url", envvar="VEILLE_NATS_URL", default=None, help="NATS server URL(s).")


@click.group()
def silence() -> None:
    """Mute notifications matching label matchers for a while (shared by every notifier replica)."""


@silence.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--for", "duration", required=True, callback=_duration, help="How long: 30m, 2h, 1d.")
@click.option("--comment", "-c", default="", help="Why (shown by `veille silence list`).")
@click.option("--author", default=None, help="Who (default: the current user).")
@_nats_option
def add(matchers: tuple[str, ...], duration: timedelta, comment: str, author: str | None, nats_url: str | None) -> None:
    """Add a silence: MATCHERS are label matchers such as watch=acme, severity!=critical, source=~"x|y".

    Labels: watch, kind, severity, lang, source and the watch's own labels.
    """
    import_nats_for(nats_url)
    from services.notifier.silences import Silence
    from veille.config import Matcher
    from veille.models import utcnow

    for text in matchers:
        try:
            Matcher.parse(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="MATCHERS") from exc
    created = Silence.create(
        list(matchers), now=utcnow(), duration=duration, comment=comment, created_by=author or getpass.getuser()
    )

    async def work(store: Any) -> None:
        await store.put(created)

    _with_store(nats_url, work)
    click.echo(created.id)
    click.echo(f"silenced {' '.join(matchers)} until {created.ends_at:%Y-%m-%d %H:%M:%S} UTC", err=True)


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_nats_option
def list_(show_all: bool, as_json: bool, nats_url: str | None) -> None:
    """List active and pending silences (and expired ones with --all)."""
    from veille.durations import format_duration
    from veille.models import utcnow

    async def work(store: Any) -> list[Any]:
        result: list[Any] = await store.all()
        return result

    now = utcnow()
    silences = [s for s in _with_store(nats_url, work) if show_all or s.state(now) != "expired"]
    if as_json:
        for item in silences:
            click.echo(json.dumps({**item.model_dump(mode="json"), "state": item.state(now)}))
        return
    if not silences:
        click.echo("no silences" + ("" if show_all else " (expired ones: --all)"))
        return
    for item in silences:
        left = item.ends_at - now
        remaining = f"{format_duration(left)} left" if left.total_seconds() > 0 else "ended"
        click.echo(
            f"{item.id}  {item.state(now):8}  {' '.join(item.matchers)}  "
            f"until {item.ends_at:%Y-%m-%d %H:%M} UTC ({remaining})  by {item.created_by or '?'}"
            + (f"  — {item.comment}" if item.comment else "")
        )


@silence.command("expire")
@click.argument("silence_ids", nargs=-1, required=True)
@_nats_option
def expire(silence_ids: tuple[str, ...], nats_url: str | None) -> None:
    """End one or more silences now."""
    from veille.models import utcnow

    async def work(store: Any) -> list[str]:
        missing = []
        for silence_id in silence_ids:
            if await store.expire(silence_id, utcnow()) is None:
                missing.append(silence_id)
        return missing

    missing = _with_store(nats_url, work)
    for silence_id in silence_ids:
        if silence_id not in missing:
            click.echo(f"expired {silence_id}")
    if missing:
        click.echo(f"no such silence: {', '.join(missing)}", err=True)
        sys.exit(1)
