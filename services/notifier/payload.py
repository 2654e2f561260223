"""Webhook bodies: veille's own versioned schema, and Alertmanager's version 4 for existing receivers.

The veille body follows the Standard Webhooks envelope (``type``, ``timestamp``, ``data``) and is
described by ``schema/notification-v1.schema.json``; a compatible change adds optional fields, an
incompatible one bumps ``version`` and the ``type`` suffix. Bodies are deterministic for a given
notification, so a retry sends the same bytes (only the signature's timestamp changes).
"""

from __future__ import annotations

import json
from typing import Any

from services.notifier.model import MAX_GROUP_ALERTS, Notification, alert_labels
from veille.models import AlertRaised

__all__ = ["MAX_ALERTS", "SCHEMA_VERSION", "alertmanager_body", "encode", "veille_body"]

SCHEMA_VERSION = "1"
MAX_ALERTS = MAX_GROUP_ALERTS


def _alert(alert: AlertRaised) -> dict[str, Any]:
    data = alert.model_dump(mode="json", exclude={"schema_version"})
    return data


def veille_body(notification: Notification, *, external_url: str = "") -> dict[str, Any]:
    """The veille v1 body (see the JSON Schema shipped next to this module).

    ``truncated_alerts`` counts the alerts left out: the ones over :data:`MAX_ALERTS` and the ones
    the group only counted; ``firing_count`` includes them.
    """
    alerts, left_out = notification.listed(MAX_ALERTS)
    return {
        "type": f"veille.alerts.{notification.status}",
        "version": SCHEMA_VERSION,
        "timestamp": notification.created_at.isoformat(),
        "data": {
            "notification_id": notification.id,
            "receiver": notification.receiver,
            "status": notification.status,
            "group_key": notification.group_key,
            "group_labels": notification.group_labels,
            "common_labels": notification.common_labels(),
            "firing_count": len(notification.firing) + notification.truncated,
            "resolved_count": len(notification.resolved),
            "truncated_alerts": left_out,
            "alerts": [_alert(a) for a in alerts],
            "external_url": external_url,
        },
    }


def _annotations(alert: AlertRaised) -> dict[str, str]:
    out = {"summary": alert.summary}
    if alert.samples:
        first = alert.samples[0]
        out["description"] = (first.title or first.text)[:500]
        if first.url:
            out["mention_url"] = first.url
    for name in ("observed", "expected", "statistic", "threshold", "negative_share"):
        value = getattr(alert, name)
        if value is not None:
            out[name] = f"{value:g}"
    out["mention_count"] = str(alert.mention_count)
    return out


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else "0001-01-01T00:00:00Z"


def alertmanager_body(notification: Notification, *, external_url: str = "") -> dict[str, Any]:
    """The Alertmanager webhook body, version 4, so existing Alertmanager receivers work unchanged."""
    alerts, left_out = notification.listed(MAX_ALERTS)
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": left_out,
        "status": notification.status,
        "receiver": notification.receiver,
        "groupLabels": notification.group_labels,
        "commonLabels": notification.common_labels(),
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": {k: v for k, v in alert_labels(a).items() if v != "" and k != "language"}
                | {"alertname": a.kind},
                "annotations": _annotations(a),
                "startsAt": _iso(a.started_at),
                "endsAt": _iso(a.ends_at if a.status == "firing" else (a.ends_at or a.raised_at)),
                "generatorURL": (a.samples[0].url or "") if a.samples else "",
                "fingerprint": a.id.removeprefix("alert-")[:16],
            }
            for a in alerts
        ],
    }


def encode(body: Any) -> bytes:
    """Compact, deterministic JSON bytes (keys in insertion order, UTF-8)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
