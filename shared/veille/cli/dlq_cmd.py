"""``veille dlq list|replay``: look at the dead-letter stream and send entries back to be processed.

A dead letter keeps the original payload and the subject it came from. ``replay`` publishes the
payload again on that subject: a dead-lettered *notification* (kind ``notification``) goes to the
notifier's replay subject and is delivered again with the same ``webhook-id``; a poison *message*
goes back to its stream (after you fixed what made it fail). Replayed entries are deleted from
the dead-letter stream unless ``--keep`` is given; replaying the same entry twice within the
target stream's duplicate window publishes it once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from dataclasses import dataclass
from typing import Any

import click

__all__ = ["DeadLetterEntry", "dlq", "list_dead_letters", "replay_dead_letters"]


@dataclass(frozen=True)
class DeadLetterEntry:
    """One entry of the dead-letter stream with its stream sequence."""

    seq: int
    letter: Any  # veille.models.DeadLettered


async def list_dead_letters(js: Any, *, service: str | None = None, kind: str | None = None) -> list[DeadLetterEntry]:
    """Every dead letter in the stream, oldest first, optionally filtered by service and kind."""
    from nats.js.errors import NotFoundError

    from veille import bus
    from veille.models import DeadLettered

    info = await js.stream_info(bus.DEADLETTER.name)
    out: list[DeadLetterEntry] = []
    if not info.state.messages:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await js.get_msg(bus.DEADLETTER.name, seq)
        except NotFoundError:
            continue
        try:
            letter = DeadLettered.model_validate_json(raw.data or b"")
        except ValueError:
            continue
        if service is not None and letter.service != service:
            continue
        if kind is not None and letter.error_kind != kind:
            continue
        out.append(DeadLetterEntry(seq, letter))
    return out


async def replay_dead_letters(js: Any, entries: list[DeadLetterEntry], *, keep: bool = False) -> list[int]:
    """Publish each entry's payload again on its original subject; return the sequences replayed."""
    from veille import bus

    done: list[int] = []
    for entry in entries:
        letter = entry.letter
        headers = {k: v for k, v in letter.headers.items() if k.lower() != "nats-msg-id"}
        headers["Nats-Msg-Id"] = f"replay:{bus.DEADLETTER.name}:{entry.seq}"
        headers["Veille-Replayed-From"] = str(entry.seq)
        await js.publish(letter.subject, base64.b64decode(letter.payload), headers=headers, timeout=10.0)
        if not keep:
            await js.delete_msg(bus.DEADLETTER.name, entry.seq)
        done.append(entry.seq)
    return done


def _run(url: str | None, work: Any) -> Any:
    async def main() -> Any:
        from veille.natsauth import connect_cli

        client = await connect_cli(url)
        try:
            return await work(client.jetstream())
        finally:
            await client.close()

    return asyncio.run(main())


_nats_option = click.option("--nats-url", envvar="VEILLE_NATS_URL", default=None, help="NATS server URL(s).")
_service_option = click.option("--service", default=None, help="Only dead letters from this service (notifier, ...).")
_kind_option = click.option("--kind", default=None, help="Only this kind (notification, invalid_json, ...).")


@click.group()
def dlq() -> None:
    """Inspect and replay the dead-letter stream (failed notifications and unprocessable messages)."""


@dlq.command("list")
@_service_option
@_kind_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, payload included.")
@_nats_option
def list_cmd(service: str | None, kind: str | None, as_json: bool, nats_url: str | None) -> None:
    """List dead letters, oldest first: sequence, time, service, kind, receiver, attempts and reason."""

    async def work(js: Any) -> list[DeadLetterEntry]:
        return await list_dead_letters(js, service=service, kind=kind)

    entries: list[DeadLetterEntry] = _run(nats_url, work)
    if as_json:
        for entry in entries:
            click.echo(json.dumps({"seq": entry.seq, **entry.letter.model_dump(mode="json")}))
        return
    if not entries:
        click.echo("no dead letters")
        return
    for entry in entries:
        letter = entry.letter
        target = f" → {letter.receiver}" if letter.receiver else ""
        reason = " ".join(letter.reason.split())[:160]
        click.echo(
            f"{entry.seq:>6}  {letter.dead_at:%Y-%m-%d %H:%M:%S}  {letter.service}/{letter.error_kind}{target}"
            f"  ×{letter.attempts}  {reason}"
        )


@dlq.command("replay")
@click.argument("sequences", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter (after the filters).")
@_service_option
@_kind_option
@click.option("--keep", is_flag=True, help="Keep the entries in the dead-letter stream.")
@_nats_option
def replay_cmd(
    sequences: tuple[int, ...],
    replay_all: bool,
    service: str | None,
    kind: str | None,
    keep: bool,
    nats_url: str | None,
) -> None:
    """Send dead letters back to be processed again: give their SEQUENCES (see `veille dlq list`) or --all."""
    if not sequences and not replay_all:
        raise click.UsageError("give the sequence numbers to replay, or --all")

    async def work(js: Any) -> tuple[list[int], list[int]]:
        entries = await list_dead_letters(js, service=service, kind=kind)
        if not replay_all:
            wanted = set(sequences)
            missing = sorted(wanted - {e.seq for e in entries})
            entries = [e for e in entries if e.seq in wanted]
        else:
            missing = []
        return await replay_dead_letters(js, entries, keep=keep), missing

    done, missing = _run(nats_url, work)
    for seq in done:
        click.echo(f"replayed {seq}")
    if missing:
        click.echo(f"no such dead letter: {', '.join(map(str, missing))}", err=True)
        sys.exit(1)
    if not done:
        click.echo("nothing to replay")
