"""Poison messages on every subject a service consumes, against the real classifier and notifier processes.

The server runs with ``max_payload: 4MB`` as in ``deploy/nats/nats.conf``, so a 2 MB message reaches
the services (over their own 1 MiB limit: dead-lettered ``too_large``) and a 10 MB one is refused by
the server itself. ``veille up``'s embedded server keeps NATS's default 1 MB max_payload, equal to the
services' limit: there an oversized message is refused at publish time and never reaches a service.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.errors import MaxPayloadError

from tests.faults.harness import Receiver, Stack, connect, eventually, read_stream, write_config
from veille import bus
from veille.messaging import MAX_KEPT_PAYLOAD
from veille.models import AlertRaised, DeadLettered, MentionIngested
from veille.natsserver import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SUBJECTS = {
    "mentions": (bus.mention_subject("rss"), "classifier"),
    "alerts": (bus.alert_subject("acme"), "notifier"),
    "replay": (bus.notify_replay_subject("crm.webhook.0"), "notifier"),
}


def poison() -> dict[str, tuple[bytes, str]]:
    """Each bad payload with the dead-letter kind it must get."""
    big = json.dumps({"id": "big", "source": "rss", "text": "x" * 2_000_000}).encode()
    huge_field = json.dumps({"id": "long", "source": "rss", "text": "y" * 1_000_100}).encode()
    return {
        "not-json": (b"this is not json {", "invalid_json"),
        "wrong-schema": (b'{"id": 42, "watch": [], "status": "maybe"}', "invalid_schema"),
        "json-array": (b"[1, 2, 3]", "invalid_schema"),
        "bad-utf8": (b'{"id": "x\xff\xfe\xfd"}', "invalid_utf8"),
        "2mb": (big, "too_large"),
        "1mb-field": (huge_field, "invalid_schema"),
    }


def raw_publish_refused(host: str, port: int, size: int) -> str:
    """Publish ``size`` bytes with the plain NATS protocol (no client-side check); return the server's answer."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.recv(4096)  # INFO
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        sock.recv(4096)  # PONG
        sock.sendall(f"PUB veille.mentions.ingested.rss {size}\r\n".encode())
        sock.settimeout(5)
        with contextlib.suppress(OSError):  # the server may close the connection before reading it all
            sock.sendall(b"z" * size + b"\r\n")
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
        return answer.decode("utf-8", "replace")


async def test_poison_on_every_subject_is_dead_lettered_and_services_go_on(tmp_path: Path) -> None:
    """Bad payloads on every consumed subject become dead letters with a reason; 10 MB is refused; valid ones flow."""
    conf = tmp_path / "nats.conf"
    conf.write_text("max_payload: 4MB\n", encoding="utf-8")
    server = NatsServerProcess(
        store_dir=tmp_path / "store", log_file=tmp_path / "nats.log", extra_args=["-c", str(conf)]
    )
    server.start()
    receiver = Receiver()
    await receiver.start()
    config = write_config(tmp_path / "veille.yaml", receiver.url)
    stack = Stack([server.url], config, tmp_path)
    nc = await connect([server.url])
    js = nc.jetstream()
    await bus.ensure_topology(js)
    await stack.start(["classifier", "notifier"])
    try:
        sent: dict[str, tuple[str, bytes, str]] = {}
        for where, (subject, _service) in SUBJECTS.items():
            for name, (payload, kind) in poison().items():
                msg_id = f"{where}-{name}"
                await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=10)
                sent[msg_id] = (subject, payload, kind)

        # 10 MB: nats-py refuses it against the server's advertised max_payload, and the server
        # itself refuses a raw publish of that size.
        with pytest.raises(MaxPayloadError):
            await nc.publish(bus.mention_subject("rss"), b"z" * 10 * 1024 * 1024)
        answer = await asyncio.to_thread(raw_publish_refused, "127.0.0.1", server.port, 10 * 1024 * 1024)
        assert "Maximum Payload" in answer, answer

        # Valid messages after the poison still go through both services.
        good = MentionIngested(id="rss:good", source="rss", text="Acme: terrible, awful, the worst service ever")
        await js.publish(bus.mention_subject("rss"), good.model_dump_json().encode(), headers={"Nats-Msg-Id": good.id})
        direct = AlertRaised(id="alert-direct", watch="globex", kind="negative_mention", summary="direct alert")
        await js.publish(
            bus.alert_subject("globex"), direct.model_dump_json().encode(), headers={"Nats-Msg-Id": direct.id}
        )

        async def letters() -> list[DeadLettered]:
            msgs = await read_stream(js, bus.DEADLETTER.name, "veille.dlq.>") if await _count(js) else []
            return [DeadLettered.model_validate_json(m.data) for m in msgs]

        async def all_dead_lettered() -> bool:
            return len(await letters()) >= len(sent)

        await eventually(all_dead_lettered, timeout=60, what=f"{len(sent)} dead letters")

        def delivered() -> set[str]:
            return set(receiver.firing_alerts())

        await eventually(lambda: "alert-direct" in delivered(), timeout=60, what="the direct alert delivered")
        await eventually(lambda: len(delivered()) >= 2, timeout=60, what="the good mention's alert delivered")
        found = await letters()
        for name in ("classifier", "notifier"):
            assert stack.deaths(name) == 0
    finally:
        await stack.stop()
        await nc.close()
        await receiver.stop()
        server.stop()

    by_id = {letter.headers.get("Nats-Msg-Id"): letter for letter in found}
    assert set(by_id) == set(sent), sorted(set(sent) ^ set(by_id))
    for msg_id, (subject, payload, kind) in sent.items():
        letter = by_id[msg_id]
        where = msg_id.split("-", 1)[0]
        assert letter.service == SUBJECTS[where][1], msg_id
        # An alert is stored on its partition's subject (veille.alerts.<watch>.<p>): a replay goes back there.
        stored = f"{subject}.{bus.alert_partition('acme')}" if where == "alerts" else subject
        assert letter.subject == stored
        assert letter.error_kind == kind, (msg_id, letter.error_kind, letter.reason)
        assert letter.reason, msg_id
        kept = base64.b64decode(letter.payload)
        if len(payload) <= MAX_KEPT_PAYLOAD:
            assert kept == payload
        else:  # too big to embed whole: the first bytes, and where the original still is
            assert payload.startswith(kept) and len(kept) == MAX_KEPT_PAYLOAD
            assert f"of {len(payload)} bytes" in letter.reason and "#" in letter.reason, letter.reason
    assert "1000000" in by_id["mentions-1mb-field"].reason.replace(",", "").replace("_", "")
    assert len(found) == len(sent), "one dead letter each, no repeats"
    assert datetime.now(UTC) >= max(letter.dead_at for letter in found)


async def _count(js: object) -> int:
    from tests.faults.harness import stream_count

    return await stream_count(js, bus.DEADLETTER.name)  # type: ignore[arg-type]
