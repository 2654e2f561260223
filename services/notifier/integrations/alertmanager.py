"""Alertmanager: veille's alerts posted to an existing Alertmanager's ``/api/v2/alerts``, as Prometheus does.

A team that pages through Alertmanager routes veille's alerts there like any other: Alertmanager
groups, inhibits, silences and pages with its own configuration; veille only keeps it told.

The body is the OpenAPI ``postableAlerts`` (``api/v2/openapi.yaml``): a list of ``labels``,
``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``. How veille keeps Alertmanager right:

- **Identity.** Alertmanager identifies an alert by its label set. Each alert carries
  ``alert_id`` (veille's deterministic id, :func:`~services.notifier.payload.alertmanager_labels`),
  so 500 negative mentions stay 500 alerts instead of being merged into one, and a spike's
  resolution (same id, same labels) closes the alert that fired.
- **Renewal.** An alert posted without ``endsAt`` is resolved by Alertmanager after its
  ``resolve_timeout`` (5 min by default), which a spike firing for an hour must not be. So a firing
  alert is posted with ``endsAt`` = now + ``ends_after`` (4 x ``resend_interval`` by default,
  Prometheus' rule) and posted again every ``resend_interval`` while it fires. The notifier's
  grouping drives this: for an ``alertmanager`` integration the route's timings become
  :func:`posting_route` — ``group_wait`` and ``group_interval`` 0 (Alertmanager groups by
  itself; veille forwards at once, as Prometheus does) and ``repeat_interval`` = ``resend_interval``.
  Every notification of a group carries all of the group's active alerts, so each post (a new
  alert, a repeat) renews them all. If veille stops (or its group dies after 24 h,
  ``MAX_FIRING_AGE``), Alertmanager resolves the alert ``ends_after`` after the last post.
- **Events.** A single negative mention is notified once (it is an event, not a state): it is posted
  once, with the same ``endsAt``, and Alertmanager resolves it when that passes.
- **Resolution.** A resolved alert is posted with ``endsAt`` = now: Alertmanager resolves it at
  once (and tells its receivers with ``send_resolved``).
- **Silences and quiet hours.** An alert a veille silence mutes is not renewed, so it ends in
  Alertmanager ``ends_after`` later; quiet hours are refused by ``check-config`` on a receiver with
  an Alertmanager (they would hold renewals back): mute in Alertmanager instead.
- **Counted alerts.** A group keeps at most 100 waiting single mentions; the ones beyond are only
  counted and cannot be posted. With ``group_wait`` 0 a group rarely holds more than the mentions
  that arrive during one POST.

Delivery is the other integrations': one deadline (``timeout``), at most 4 KiB of the answer read,
no redirect followed, 5xx/408/429 and transport errors retried; Alertmanager answers 400 when it
refuses an alert (not retried: the notification is dead-lettered with its reason).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import httpx

from services.notifier.delivery import post
from services.notifier.model import Clock, IntegrationKind, Notification
from services.notifier.payload import (
    alertmanager_annotations,
    alertmanager_labels,
    encode,
    generator_url,
    go_time,
)
from services.notifier.routing import ResolvedRoute
from veille.config import AlertmanagerReceiver
from veille.models import AlertRaised

__all__ = ["AlertmanagerIntegration", "postable_alerts", "posting_route"]

_PROTECTED = {"content-type", "content-length"}


def posting_route(route: ResolvedRoute, config: AlertmanagerReceiver) -> ResolvedRoute:
    """The timings a group posting to an Alertmanager runs on: at once, and again every ``resend_interval``."""
    return dataclasses.replace(
        route, group_wait=timedelta(0), group_interval=timedelta(0), repeat_interval=config.resend_interval
    )


def _postable(alert: AlertRaised, now: datetime, lifetime: timedelta, external_url: str) -> dict[str, Any]:
    starts = alert.started_at
    if starts > now:  # a bucket's end ahead of this clock: Alertmanager refuses endsAt before startsAt
        starts = now
    ends = now + lifetime if alert.status == "firing" else now
    out: dict[str, Any] = {
        "labels": alertmanager_labels(alert),
        "annotations": alertmanager_annotations(alert),
        "startsAt": go_time(starts),
        "endsAt": go_time(ends),
    }
    url = generator_url(alert, external_url)
    if url:  # an empty generatorURL is left out (the field is an optional uri)
        out["generatorURL"] = url
    return out


def postable_alerts(
    notification: Notification, *, now: datetime, lifetime: timedelta, external_url: str = ""
) -> list[dict[str, Any]]:
    """The ``postableAlerts`` body for every alert of ``notification`` (all of them, none left out)."""
    return [_postable(alert, now, lifetime, external_url) for alert in notification.alerts]


class AlertmanagerIntegration:
    """Posts a notification's alerts to one Alertmanager."""

    kind: IntegrationKind = "alertmanager"

    def __init__(
        self, config: AlertmanagerReceiver, client: httpx.AsyncClient, *, clock: Clock, external_url: str = ""
    ) -> None:
        self.config = config
        self.client = client
        self.clock = clock
        self.external_url = external_url
        self.url = config.alerts_url()
        self.timeout = config.timeout.total_seconds()
        self.lifetime = config.lifetime()
        self.headers = {k: v for k, v in config.headers.items() if k.lower() not in _PROTECTED}
        self.headers["content-type"] = "application/json"
        authorization = config.authorization()  # secrets read once, at start, like the other receivers'
        if authorization:  # the credentials configured win over an Authorization among the headers
            self.headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
            self.headers["authorization"] = authorization

    async def send(self, notification: Notification) -> None:
        """POST the alerts once, ``endsAt`` computed now; raise DeliveryError on failure."""
        body = postable_alerts(notification, now=self.clock(), lifetime=self.lifetime, external_url=self.external_url)
        if not body:
            return  # only counted alerts: nothing Alertmanager could hold
        await post(
            self.client,
            self.url,
            content=encode(body),
            headers=dict(self.headers),
            timeout=self.timeout,
            what="alertmanager",
        )
