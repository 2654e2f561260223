"""Messages of veille's hot subscriptions handed straight to a function, past nats-py's per-message machinery.

nats-py reads the socket in one task and parses the protocol with :class:`nats.protocol.parser.Parser`. For
every ``MSG``/``HMSG`` it tries the ``MSG`` pattern before the ``HMSG`` one, fills a dict with the line's
arguments, awaits ``Client._process_msg`` (statistics, JetStream flow-control checks, headers parsed with a
per-character generator), builds a ``Msg``, queues it on the subscription, and the subscription's own task
takes it off the queue and awaits its callback. Profiled under ``bench/notifier_bench.py``, that is about a
fifth of the notifier's CPU (an alert delivered by its pull consumer) and more than half of the alerts
loader's (a stream ack of each publish): the same path carries every stream ack of
:class:`~veille.jetstream.StreamPublisher` and every message a :class:`~veille.jetstream.PullFetcher`
receives, in the classifier as in the notifier.

:func:`register` makes a subscription *direct*: its messages are parsed as nats-py parses them (the same
patterns, the same header rules) and given to a plain function, in the read loop, in the order they came:
no queue, no task switch, no coroutine per message. Everything else on the connection (other subscriptions,
``PING``/``PONG``, ``INFO``, ``-ERR``, requests) goes through nats-py's own code as before, and is parsed in
the same single pass, so nothing is reordered. It is for subscriptions veille made itself, with a callback
that never awaits: no ``max_msgs``, no JetStream subscription state (``_jsi``) and no request future, which
``_process_msg`` would otherwise handle (:func:`register` declines those; a direct subscription later given
a limit with ``unsubscribe(limit=N)`` goes back to nats-py's path, which counts it down). A handler's
exception goes to the client's error callback, as nats-py does with a callback's, but in a task of its own (at
most :data:`MAX_REPORTS` waiting; logged past that), so that the read loop never waits on it.

The parser of a connection becomes :class:`DirectParser` by changing its class in place (its buffer and state
kept). Like nats-py's own parser, it calls the client's private methods (``_process_msg``, ``_process_headers``,
``_build_message``, ``_process_ping`` ...) and reads its subscriptions (``_subs``): :func:`register` declines
under a nats-py release other than the one this was compared with (:data:`CHECKED_WITH`), and for a client
whose parser is not nats-py's; their subscriptions keep their callbacks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import cast

import nats.aio.client as nats_client
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.protocol import parser as nats_parser

__all__ = ["DirectParser", "parse_headers", "register", "unregister"]

log = structlog.get_logger("veille.natsdirect")

Handler = Callable[[Msg], None]
RawHandler = Callable[[bytes, bytes, dict[str, str] | None], None]
"""``(subject, payload, headers)``: for a handler that needs no ``Msg`` (no ack, no reply)."""

_AWAITING_CONTROL_LINE = nats_parser.AWAITING_CONTROL_LINE
_AWAITING_MSG_PAYLOAD = nats_parser.AWAITING_MSG_PAYLOAD
_MSG_RE = nats_parser.MSG_RE
_HMSG_RE = nats_parser.HMSG_RE
_OK_RE = nats_parser.OK_RE
_ERR_RE = nats_parser.ERR_RE
_PING_RE = nats_parser.PING_RE
_PONG_RE = nats_parser.PONG_RE
_INFO_RE = nats_parser.INFO_RE
_CRLF = b"\r\n"
_M = ord("M")
_H = ord("H")
_PLAIN_HEADER = b"NATS/1.0\r\n"  # a header block with no inline status
CHECKED_WITH = ("2.16.",)
"""nats-py releases whose parser and message path this module was compared with (tests/unit/test_natsdirect.py).
Under another, :func:`register` declines and nats-py's own path is used: its private parts may have changed."""
_SUPPORTED = str(getattr(nats_client, "__version__", "")).startswith(CHECKED_WITH)
_EMAIL_PARSER = getattr(nats_client, "parse_email", None) is not None  # fast_mail_parser installed: nats-py's way
_SPACE = re.compile(r"\s")  # str.isspace, as nats-py checks a header name (sre's Unicode space is Py_UNICODE_ISSPACE)


def parse_headers(raw: bytes) -> dict[str, str] | None:
    """A header block without inline status (``NATS/1.0\\r\\nName: Value\\r\\n...``), as nats-py parses it.

    The same rules as ``Client._parse_header_lines`` (split on the first ``:``, names stripped and ASCII
    with no whitespace inside, values stripped and decoded as UTF-8 with replacement; an empty result is
    None), without a generator per name.
    """
    out: dict[str, str] = {}
    for line in raw[len(_PLAIN_HEADER) :].split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _SPACE.search(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out or None


class DirectParser(nats_parser.Parser):
    """nats-py's protocol parser, with the messages of registered subscriptions given straight to their handler."""

    direct: dict[int, tuple[Handler | RawHandler, bool]]

    async def parse(self, data: bytes = b"") -> None:
        """Parse what the socket gave, as :meth:`nats.protocol.parser.Parser.parse` does, in one pass."""
        self.buf.extend(data)
        while self.buf:
            buf = self.buf
            if self.state == _AWAITING_MSG_PAYLOAD:
                needed = self.needed
                if len(buf) < needed + 2:
                    break  # the rest of the payload is still on its way
                header_size = self.header_needed
                if header_size > 0:
                    headers: bytes | None = bytes(buf[:header_size])
                    payload = bytes(buf[header_size:needed])
                    self.header_needed = 0
                else:
                    headers = None
                    payload = bytes(buf[:needed])
                del buf[: needed + 2]
                self.state = _AWAITING_CONTROL_LINE
                arg = self.msg_arg
                sid = arg["sid"]
                entry = self.direct.get(sid)
                nc = self.nc
                sub = nc._subs.get(sid)
                if entry is None or (sub is not None and sub._max_msgs > 0):
                    # not registered, or given a limit since (``unsubscribe(limit=N)``): nats-py counts its
                    # messages and removes it at the limit; they go to the subscription's own callback
                    await nc._process_msg(sid, arg["subject"], arg["reply"], payload, headers)
                    continue
                stats = nc.stats  # what Client._process_msg does for a plain subscription, without the queue
                stats["in_msgs"] += 1
                stats["in_bytes"] += len(payload)
                if sub is None:  # unsubscribed: dropped, as nats-py drops it
                    self.direct.pop(sid, None)
                    continue
                sub._received += 1
                if headers is None:
                    parsed = None
                elif headers.startswith(_PLAIN_HEADER) and not _EMAIL_PARSER:
                    parsed = parse_headers(headers)
                else:  # an inline status (404, 408, 503 ...), or nats-py set to parse headers another way
                    parsed = await nc._process_headers(headers)
                handler, raw = entry
                try:
                    if raw:
                        cast(RawHandler, handler)(arg["subject"], payload, parsed)
                    else:
                        cast(Handler, handler)(nc._build_message(sid, arg["subject"], arg["reply"], payload, parsed))
                except Exception as exc:  # reported as nats-py reports a callback's error, outside the read loop
                    _report(nc, exc)
                continue
            first = buf[0]
            match = _MSG_RE.match(buf) if first == _M else _HMSG_RE.match(buf) if first == _H else None
            if match is not None:
                try:
                    groups = match.groups()
                    arg = self.msg_arg
                    arg["subject"] = groups[0]
                    arg["sid"] = int(groups[1])
                    arg["reply"] = groups[3] or b""
                    if first == _H:
                        self.header_needed = int(groups[4])
                    self.needed = int(groups[-1])
                except Exception:
                    raise ProtocolError("nats: malformed MSG") from None
                del buf[: match.end()]
                self.state = _AWAITING_MSG_PAYLOAD
                continue
            if not await self._control(buf):
                break

    async def _control(self, buf: bytearray) -> bool:
        """Handle one line that is not a message, as nats-py does; False when it is not all here yet."""
        nc = self.nc
        match = _OK_RE.match(buf)
        if match:
            del buf[: match.end()]
            return True
        match = _ERR_RE.match(buf)
        if match:
            await nc._process_err(match.groups()[0].decode().lower())
            del buf[: match.end()]
            return True
        match = _PING_RE.match(buf)
        if match:
            del buf[: match.end()]
            await nc._process_ping()
            return True
        match = _PONG_RE.match(buf)
        if match:
            del buf[: match.end()]
            await nc._process_pong()
            return True
        match = _INFO_RE.match(buf)
        if match:
            info = json.loads(match.groups()[0].decode())
            await nc._process_info(info)
            del buf[: match.end()]
            return True
        if len(buf) < nats_parser.MAX_CONTROL_LINE_SIZE and _CRLF in buf:
            raise ProtocolError("nats: unknown protocol")
        return False


_REPORTS: set[asyncio.Task[None]] = set()
MAX_REPORTS = 1_000
"""Error reports waiting for the client's error callback; over it, a handler's error is only logged."""


def _report(nc: NatsClient, exc: Exception) -> None:
    """Give a handler's error to the client's error callback in a task of its own.

    nats-py awaits it in the subscription's task; awaited here, in the read loop, an error callback that
    raised would stop the connection's reading, and one that flushed would wait for a PONG only this loop
    can read (found in review).
    """
    if len(_REPORTS) >= MAX_REPORTS:  # the callback is slower than the errors come: logged here instead
        log.warning("natsdirect.handler_failed", error=repr(exc), reports_pending=len(_REPORTS))
        return
    try:
        task: asyncio.Task[None] = asyncio.ensure_future(nc._error_cb(exc))
    except Exception as failure:  # an error callback that is not a coroutine function
        log.warning("natsdirect.handler_failed", error=repr(exc), callback_error=repr(failure))
        return
    _REPORTS.add(task)
    task.add_done_callback(_reported)


def _reported(task: asyncio.Task[None]) -> None:
    _REPORTS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("natsdirect.error_callback_failed", error=repr(task.exception()))


def register(client: NatsClient, sub: Subscription, handler: Handler | RawHandler, *, raw: bool = False) -> bool:
    """Give ``sub``'s messages to ``handler`` straight from the read loop; False if this client cannot.

    ``handler`` takes a ``Msg``, or with ``raw`` the message's subject, payload and headers (no ``Msg`` built).
    ``sub`` keeps its own callback, which is used for what was already queued and whenever this returns False:
    also for a subscription nats-py must see each message of (``max_msgs``, a JetStream subscription's flow
    control and heartbeats, an old-style request's future), and under a nats-py release not in
    :data:`CHECKED_WITH`.
    """
    if not _SUPPORTED or sub._max_msgs > 0 or sub._jsi is not None or sub._future is not None:
        return False
    parser = getattr(client, "_ps", None)
    if type(parser) is nats_parser.Parser:
        parser.__class__ = DirectParser
        cast(DirectParser, parser).direct = {}
    if not isinstance(parser, DirectParser):
        return False
    direct = parser.direct
    for sid in [sid for sid in direct if sid not in client._subs]:  # unsubscribed without unregister (drain, close)
        del direct[sid]
    direct[sub._id] = (handler, raw)
    return True


def unregister(client: NatsClient, sub: Subscription) -> None:
    """Stop handing ``sub``'s messages to its handler (before it is unsubscribed)."""
    parser = getattr(client, "_ps", None)
    if isinstance(parser, DirectParser):
        parser.direct.pop(sub._id, None)
