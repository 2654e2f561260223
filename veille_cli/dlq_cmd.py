"""``veille dlq list|replay``: look at the dead-letter stream and send entries back to be processed.

A dead letter keeps the original payload and the subject it came from. ``replay`` publishes the
payload again on that subject: a dead-lettered *notification* (kind ``notification``) goes to the
notifier's replay subject and is delivered again with the same ``webhook-id``; a poison *message*
goes back to its stream (after you fixed what made it fail). Replayed entries are deleted from
the dead-letter stream unless ``--keep`` is given; replaying the same entry twice within the
target stream's duplicate window publishes it once.

A letter whose original was too big to embed keeps only its first bytes (``truncated``) and where
the original sits (stream and sequence): ``replay`` publishes the full original from there (checked
by its SHA-256), or, when it is gone, refuses that entry with the reason, keeps it and exits with
status 1. It never publishes a cut payload, and never deletes what it could not replay.

A ``malformed_item`` letter keeps the raw item a source served (not a mention): it is refused too,
and kept for the report to the developers; once the mapping is fixed, the source serves it again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

import click

from veille_cli._imports import import_nats_for

__all__ = ["DeadLetterEntry", "ReplayOutcome", "dlq", "list_dead_letters", "replay_dead_letters"]


@dataclass(frozen=True)
class DeadLetterEntry:
    """One entry of the dead-letter stream with its stream sequence."""

    seq: int
    letter: Any  # veille.models.DeadLettered


MALFORMED_ITEM = "malformed_item"
MALFORMED_ITEM_REFUSAL = (
    "a malformed source item is the raw item the source served, not a mention: it cannot be replayed "
    "(report it with `veille dlq list --kind malformed_item --json`; the source serves it again once fixed)"
)


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


@dataclass(frozen=True)
class ReplayOutcome:
    """What ``replay`` did with one dead letter: ``replayed``, or ``refused`` with the reason (kept)."""

    seq: int
    replayed: bool
    detail: str = ""


_TRUNCATED = re.compile(
    r"\[payload truncated to its first \d+ of (\d+) bytes, sha256 ([0-9a-f]{64})"
    r"(?:; the original is at (\S+)#(\d+))?"
)


def _truncation(letter: Any) -> tuple[int, str, str | None, int | None] | None:
    """(size, sha256, stream, sequence) of the original when the letter kept only its first bytes."""
    if letter.truncated:
        return letter.original_size or 0, letter.original_sha256 or "", letter.origin_stream, letter.origin_seq
    found = _TRUNCATED.search(letter.reason)  # a letter written before these fields existed
    if found is None:
        return None
    size, digest, stream, seq = found.groups()
    return int(size), digest, stream, int(seq) if seq else None


async def _original_payload(js: Any, entry: DeadLetterEntry) -> tuple[bytes | None, str]:
    """The payload to publish again, or None and why it cannot be (the letter kept only part of it)."""
    from nats.js.errors import NotFoundError

    letter = entry.letter
    kept = base64.b64decode(letter.payload)
    truncation = _truncation(letter)
    if truncation is None:
        return kept, ""
    size, digest, stream, seq = truncation
    what = f"dead letter {entry.seq} kept only the first {len(kept)} of {size} bytes of its payload"
    if stream is None or seq is None:
        return None, f"{what}, and the original is not kept anywhere else: it cannot be replayed"
    try:
        raw = await js.get_msg(stream, seq)
    except NotFoundError:
        return None, f"{what}, and the original ({stream}#{seq}) is no longer in its stream: it cannot be replayed"
    data = bytes(raw.data or b"")
    if hashlib.sha256(data).hexdigest() != digest:
        return None, f"{what}, and {stream}#{seq} now holds another message (sha256 differs): it cannot be replayed"
    return data, f"the full original from {stream}#{seq}"


async def replay_dead_letters(js: Any, entries: list[DeadLetterEntry], *, keep: bool = False) -> list[ReplayOutcome]:
    """Publish each entry's original payload again on its original subject; return what was done to each.

    A letter that kept its whole payload is published from the letter. One that kept only the first
    bytes (the original was too big to embed) is published from the original's stream and sequence,
    checked against its SHA-256; when the original is gone, it is *refused*: nothing is published,
    the letter stays, and the outcome says why. Only replayed letters are deleted (unless ``keep``).
    """
    from veille import bus

    done: list[ReplayOutcome] = []
    for entry in entries:
        letter = entry.letter
        if letter.error_kind == MALFORMED_ITEM:
            done.append(ReplayOutcome(entry.seq, False, MALFORMED_ITEM_REFUSAL))
            continue
        payload, detail = await _original_payload(js, entry)
        if payload is None:
            done.append(ReplayOutcome(entry.seq, False, detail))
            continue
        headers = {k: v for k, v in letter.headers.items() if k.lower() != "nats-msg-id"}
        headers["Nats-Msg-Id"] = f"replay:{bus.DEADLETTER.name}:{entry.seq}"
        headers["Veille-Replayed-From"] = str(entry.seq)
        await js.publish(letter.subject, payload, headers=headers, timeout=10.0)
        if not keep:
            await js.delete_msg(bus.DEADLETTER.name, entry.seq)
        done.append(ReplayOutcome(entry.seq, True, detail))
    return done


def _run(url: str | None, work: Any) -> Any:
    async def main() -> Any:
        from veille.natsauth import connect_cli

        client = await connect_cli(url)
        try:
            return await work(client.jetstream())
        finally:
            await client.close()

    import asyncio

    import_nats_for(url)
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

    async def work(js: Any) -> tuple[list[ReplayOutcome], list[int]]:
        entries = await list_dead_letters(js, service=service, kind=kind)
        if not replay_all:
            wanted = set(sequences)
            missing = sorted(wanted - {e.seq for e in entries})
            entries = [e for e in entries if e.seq in wanted]
        else:
            missing = []
        return await replay_dead_letters(js, entries, keep=keep), missing

    done, missing = _run(nats_url, work)
    refused = [outcome for outcome in done if not outcome.replayed]
    for outcome in done:
        if outcome.replayed:
            click.echo(f"replayed {outcome.seq}" + (f" ({outcome.detail})" if outcome.detail else ""))
        else:
            click.echo(f"refused {outcome.seq}: {outcome.detail}; the dead letter is kept", err=True)
    if missing:
        click.echo(f"no such dead letter: {', '.join(map(str, missing))}", err=True)
    if missing or refused:
        sys.exit(1)
    if not done:
        click.echo("nothing to replay")
