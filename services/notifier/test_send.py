"""``veille test-send RECEIVER``: send one sample notification through a receiver's real integrations.

For whoever sets up a receiver (a CRM developer, an ops team wiring Slack): it reads the
configuration, builds a sample alert of the chosen kind and language, and sends it once — no
retry, no NATS, no grouping — through exactly the integration code the notifier uses (the same
headers, signature, body, time-out and redirect refusal), then prints one line per integration:
``sent`` with the receiver's HTTP status and the start of its answer, or ``FAILED`` with the reason.
The exit status is 0 when every integration accepted the notification, 1 when one failed, 2 for a
usage or configuration mistake.

The sample is marked as a test so that a receiver can ignore it: the label ``test="true"`` on the
alert (so in ``common_labels`` and ``group_labels`` too), a summary starting with ``[TEST]``, an
alert id starting with ``test-``; each run has a fresh ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

if TYPE_CHECKING:
    import httpx

    from services.notifier.model import Notification
    from veille.config import Receiver, VeilleConfig
    from veille.models import AlertRaised

__all__ = ["TEST_LABEL", "sample_alert", "sample_notification", "test_send"]

Kind = Literal["negative_mention", "volume_spike", "negative_spike"]
KINDS: tuple[Kind, ...] = ("negative_mention", "volume_spike", "negative_spike")
TEST_LABEL = ("test", "true")
"""The label every test notification carries (``labels.test == "true"``): a receiver may drop it."""

_MENTION: dict[str, tuple[str, str, str]] = {
    "en": (
        "news.example",
        "Test mention: is the veille integration working?",
        "This is a sample negative mention sent by `veille test-send` to check that notifications arrive. "
        "It is not about anything that happened.",
    ),
    "fr": (
        "actualites.example",
        "Mention de test : l'intégration veille fonctionne-t-elle ?",
        "Ceci est une mention négative d'exemple envoyée par `veille test-send` pour vérifier que les "
        "notifications arrivent. Elle ne parle d'aucun événement réel.",
    ),
}
# The classifier writes summaries in English whatever the mention's language; so does the sample.
_SUMMARY = {
    "negative_mention": "[TEST] Negative mention of {watch} on {site}: {title}",
    "volume_spike": "[TEST] 120 mentions of {watch} in 2 h, expected 30 (4.0×); 3 stories, 60% negative",
    "negative_spike": "[TEST] 72 negative mentions of {watch} in 2 h, expected 9 (8.0×); 2 stories, 90% negative",
}


def sample_alert(
    kind: Kind, *, watch: str, lang: str, now: datetime, status: Literal["firing", "resolved"] = "firing"
) -> AlertRaised:
    """A test alert shaped like the classifier's, marked with :data:`TEST_LABEL` and ``[TEST]``."""
    from veille.models import AlertRaised, SampleMention

    site, title, body = _MENTION[lang]
    token = secrets.token_hex(8)
    started = now - timedelta(hours=2) if kind != "negative_mention" else now
    sample = SampleMention(
        id=f"test:{token}",
        source="rss",
        url=f"https://{site}/veille-test-{token}",
        title=title,
        text=body,
        sentiment="negative",
        published_at=started,
    )
    fields: dict[str, Any] = {
        "id": f"test-{token}",
        "watch": watch,
        "kind": kind,
        "status": "firing",
        "severity": "info" if kind == "negative_mention" else "critical" if kind == "negative_spike" else "warning",
        "summary": _SUMMARY[kind].format(watch=watch, site=site, title=title),
        "lang": lang if kind == "negative_mention" else None,
        "source": "rss" if kind == "negative_mention" else None,
        "samples": [sample],
        "started_at": started,
        "raised_at": now,
        "labels": {TEST_LABEL[0]: TEST_LABEL[1], "watch": watch, "kind": kind},
    }
    if kind == "negative_mention":
        fields.update(statistic=-0.9, threshold=-0.3, negative_share=1.0, mention_count=1, story_count=1)
        fields["top_sources"] = [site]
    else:
        observed, expected = (120.0, 30.0) if kind == "volume_spike" else (72.0, 9.0)
        fields.update(observed=observed, expected=expected, statistic=7.5, threshold=3.0)
        fields.update(negative_share=0.6 if kind == "volume_spike" else 0.9, mention_count=120, story_count=3)
        fields.update(top_terms=["test", "veille"], top_sources=[site])
    alert = AlertRaised.model_validate(fields)
    if status == "resolved":
        what = "negative mentions" if kind == "negative_spike" else "mentions"
        was = alert.summary.removeprefix("[TEST] ")
        summary = f"[TEST] Resolved after 2 h: {what} of {watch} back to normal. Was: {was}"
        alert = alert.model_copy(update={"status": "resolved", "summary": summary, "ends_at": now})
    return alert


def sample_notification(
    receiver: str, target: str, integration: str, alert: AlertRaised, now: datetime
) -> Notification:
    """A one-alert notification for ``target``, with a fresh id (a receiver dropping repeats keeps each run)."""
    from services.notifier.model import Notification

    labels = {TEST_LABEL[0]: TEST_LABEL[1], "watch": alert.watch, "kind": alert.kind}
    return Notification.model_validate(
        {
            "id": "msg_" + secrets.token_hex(13),
            "target": target,
            "receiver": receiver,
            "integration": integration,
            "group_key": f"test-send:{target}",
            "group_labels": labels,
            "status": alert.status,
            "seq": 0,
            "alerts": [alert],
            "created_at": now,
        }
    )


def _default_watch(config: VeilleConfig) -> str:
    return config.watches[0].name if config.watches else "veille-test"


class _Answers:
    """Remembers, per request, the status and the first bytes of the body the integration reads."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.head = b""


def _recording_client(answers: _Answers, user_agent: str) -> httpx.AsyncClient:
    """The notifier's HTTP client (no redirects followed), its answers' status and start kept for the report."""
    import httpx

    from veille.httpclient import make_http_client

    class Tee(httpx.AsyncByteStream):
        def __init__(self, stream: httpx.AsyncByteStream) -> None:
            self.stream = stream

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self.stream:
                if len(answers.head) < 200:
                    answers.head += chunk[: 200 - len(answers.head)]
                yield chunk

        async def aclose(self) -> None:
            await self.stream.aclose()

    class Recording(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await super().handle_async_request(request)
            answers.status, answers.head = response.status_code, b""
            response.stream = Tee(response.stream)  # type: ignore[arg-type]
            return response

    return make_http_client(user_agent=user_agent, timeout=30.0, follow_redirects=False, transport=Recording())


def _snippet(head: bytes) -> str:
    text = head.decode("utf-8", "replace")
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:120]


async def _send(
    config: VeilleConfig,
    receiver: Receiver,
    *,
    only: str | None,
    kind: Kind,
    status: Literal["firing", "resolved"],
    lang: str,
    watch: str,
) -> list[tuple[str, bool]]:
    """Send the sample through each selected integration once; a report line for each, and whether it failed."""
    from services.notifier.app import build_integrations
    from services.notifier.delivery import DeliveryError
    from services.notifier.dispatcher import targets_of
    from veille.models import utcnow
    from veille.settings import ServiceSettings

    targets = [t for t in targets_of(receiver) if only is None or only in (t.kind, f"{t.kind}.{t.index}", t.id)]
    if not targets:
        kinds = ", ".join(f"{t.kind}.{t.index}" for t in targets_of(receiver)) or "none"
        raise click.UsageError(
            f"receiver {receiver.name!r} has no integration {only!r} (its integrations: {kinds})"
            if only
            else f"receiver {receiver.name!r} has no integration (no email, webhook, slack or teams entry)"
        )
    answers = _Answers()
    user_agent = os.environ.get("VEILLE_USER_AGENT") or str(ServiceSettings.model_fields["user_agent"].default)
    lines: list[tuple[str, bool]] = []
    async with _recording_client(answers, user_agent) as client:
        integrations = build_integrations(
            config.model_copy(update={"receivers": [receiver]}), http_client=client, clock=utcnow
        )
        for target in targets:
            now = utcnow()
            alert = sample_alert(kind, watch=watch, lang=lang, now=now, status=status)
            notification = sample_notification(receiver.name, target.id, target.kind, alert, now)
            answers.status, answers.head = None, b""
            started = time.monotonic()
            try:
                await integrations[target.id].send(notification)
            except DeliveryError as exc:
                later = " (the notifier would retry this)" if exc.retryable else ""
                lines.append((f"{target.id}: FAILED — {exc.reason}{later}", True))
                continue
            except Exception as exc:  # an integration bug must still end in one clear line
                lines.append((f"{target.id}: FAILED — {type(exc).__name__}: {exc}", True))
                continue
            took = time.monotonic() - started
            if answers.status is not None:
                answer = _snippet(answers.head)
                what = f"HTTP {answers.status}" + (f" {answer!r}" if answer else "")
            else:
                what = "accepted by the SMTP server" if target.kind == "email" else "accepted"
            lines.append((f"{target.id}: sent — {what} (id {notification.id}, {took:.2f} s)", False))
    return lines


@click.command("test-send")
@click.argument("receiver")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="VEILLE_CONFIG",
    default="veille.yaml",
    show_default=True,
    help="YAML configuration (or $VEILLE_CONFIG).",
)
@click.option("--kind", type=click.Choice(KINDS), default="negative_mention", show_default=True)
@click.option("--status", type=click.Choice(["firing", "resolved"]), default="firing", show_default=True)
@click.option(
    "--lang", type=click.Choice(["en", "fr"]), default="en", show_default=True, help="Language of the sample."
)
@click.option(
    "--integration",
    "only",
    default=None,
    help="Only this integration of the receiver: email, webhook, slack, teams, or webhook.1 for its second webhook.",
)
@click.option("--watch", default=None, help="Watch named in the sample (default: the configuration's first).")
def test_send(
    receiver: str,
    config_path: Path,
    kind: Kind,
    status: Literal["firing", "resolved"],
    lang: str,
    only: str | None,
    watch: str | None,
) -> None:
    """Send one sample notification to RECEIVER through its real integrations, once, and say what happened.

    The sample carries the label test="true" and a summary starting with [TEST], so a receiver can
    tell it from a real alert. Exit status: 0 when every integration accepted it, 1 when one failed,
    2 for a usage or configuration mistake.
    """
    from veille.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"veille test-send: {len(exc.problems)} mistake(s) in {config_path}", err=True)
        sys.exit(2)
    found = {r.name: r for r in config.receivers}
    if receiver not in found:
        known = ", ".join(sorted(found)) or "none"
        click.echo(f"veille test-send: no receiver {receiver!r} in {config_path} (receivers: {known})", err=True)
        sys.exit(2)
    lines = asyncio.run(
        _send(
            config,
            found[receiver],
            only=only,
            kind=kind,
            status=status,
            lang=lang,
            watch=watch or _default_watch(config),
        )
    )
    for line, failed in lines:
        click.echo(line, err=failed)
    sys.exit(1 if any(failed for _, failed in lines) else 0)
