"""Webhook bodies: veille's own versioned schema, and Alertmanager's version 4 for existing receivers.

The veille body follows the Standard Webhooks envelope (``type``, ``timestamp``, ``data``) and is
described by ``schema/notification-v1.schema.json``; a compatible change adds optional fields, an
incompatible one bumps ``version`` and the ``type`` suffix. Bodies are deterministic for a given
notification, so a retry sends the same bytes (only the signature's timestamp changes).

The Alertmanager body is what Alertmanager 0.25 itself posts to a webhook (``notify/webhook``'s
``Message`` around ``template.Data``): the same keys in the same order, the same types, and the same
rules — ``commonLabels`` and ``commonAnnotations`` are what every listed alert carries,
``fingerprint`` is Prometheus' hash of the label set, a firing alert's ``endsAt`` is the zero time
(Alertmanager hides an end not reached yet), ``receiver`` is escaped as Go's ``regexp.QuoteMeta``
does, and label and annotation maps are written with sorted keys (Go writes a map so).
:func:`alertmanager_labels` and :func:`alertmanager_annotations` are also what the ``alertmanager``
receiver posts to ``/api/v2/alerts``, so both speak of an alert the same way.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from services.notifier.model import MAX_GROUP_ALERTS, Notification
from services.notifier.render import linkable_url
from veille.models import AlertRaised

__all__ = [
    "MAX_ALERTS",
    "SCHEMA_VERSION",
    "ZERO_TIME",
    "alertmanager_annotations",
    "alertmanager_body",
    "alertmanager_labels",
    "encode",
    "fingerprint",
    "generator_url",
    "go_time",
    "quote_meta",
    "veille_body",
]

SCHEMA_VERSION = "1"
MAX_ALERTS = MAX_GROUP_ALERTS
ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero ``time.Time`` as JSON: what Alertmanager writes as the ``endsAt`` of a firing alert."""


def _alert(alert: AlertRaised) -> dict[str, Any]:
    data = alert.model_dump(mode="json", exclude={"schema_version"})
    return data


def veille_body(notification: Notification, *, external_url: str = "") -> dict[str, Any]:
    """The veille v1 body (see the JSON Schema shipped next to this module).

    ``truncated_alerts`` counts the alerts left out: the ones over :data:`MAX_ALERTS` and the ones
    the group only counted; ``firing_count`` includes them. ``external_url`` is the configuration's
    ``external_url`` (empty when unset).
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


# ---------------------------------------------------------------- Alertmanager's vocabulary

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")
_GO_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _label_name(name: str) -> str:
    """``name`` as a valid Prometheus label name (``[a-zA-Z_][a-zA-Z0-9_]*``): others become ``_``."""
    if _LABEL_NAME.fullmatch(name):
        return name
    name = _NOT_IN_NAME.sub("_", name) or "_"
    return name if not name[0].isdigit() else "_" + name


def alertmanager_labels(alert: AlertRaised) -> dict[str, str]:
    """The label set that identifies ``alert`` in Alertmanager.

    ``alertname`` is the kind (``negative_mention``, ``volume_spike``, ``negative_spike``); then
    the watch's own labels, ``watch``, ``kind``, ``severity``, ``lang`` and ``source`` when known,
    and ``alert_id``: veille's deterministic id, so that each mention is its own alert (without it
    500 negative mentions of a watch share one label set and Alertmanager merges them into one)
    and a resolution carries the same labels as the alert it resolves. Names are made valid
    Prometheus label names; empty values are left out (Alertmanager drops them).
    """
    labels = {_label_name(k): v for k, v in alert.labels.items()}
    labels.update(
        {
            "watch": alert.watch,
            "kind": alert.kind,
            "severity": alert.severity,
            "lang": alert.lang or "",
            "source": alert.source or "",
            "alert_id": alert.id,
        }
    )
    return {"alertname": alert.kind} | {k: v for k, v in labels.items() if v != "" and k != "alertname"}


def alertmanager_annotations(alert: AlertRaised) -> dict[str, str]:
    """What ``alert`` says, as annotations: ``summary`` and ``description`` (the names Alertmanager's
    default templates and most receivers read), the first mention's URL and the detector's numbers."""
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


def generator_url(alert: AlertRaised, external_url: str = "") -> str:
    """Where the alert comes from: veille's ``external_url`` (as Prometheus links to itself), else the
    first mention's URL; empty when neither is a clean http(s) URL (Alertmanager refuses a bad ``uri``)."""
    if linkable_url(external_url):
        return external_url
    url = alert.samples[0].url if alert.samples else None
    return url if url and linkable_url(url) else ""


_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1


def fingerprint(labels: dict[str, str]) -> str:
    """Prometheus' fingerprint of a label set, as Alertmanager shows it (16 hex digits).

    FNV-1a (64 bits) over the names in sorted order, each name and value followed by the byte 0xff
    (``prometheus/common/model``'s ``labelSetToFingerprint``), so it equals the ``fingerprint``
    Alertmanager gives the same alert.
    """
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
            h = ((h ^ 0xFF) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def go_time(value: datetime | None) -> str:
    """A time as Go's ``encoding/json`` writes a UTC ``time.Time``: RFC 3339, the fraction without
    trailing zeros, ``Z``; None is Go's zero time."""
    if value is None:
        return ZERO_TIME
    value = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def quote_meta(text: str) -> str:
    """Go's ``regexp.QuoteMeta``: Alertmanager escapes the receiver name this way in its webhooks."""
    return _GO_META.sub(r"\\\1", text)


def _kv(labels: dict[str, str]) -> dict[str, str]:
    """A label or annotation map in the order Go's ``encoding/json`` writes a ``map`` (sorted keys)."""
    return dict(sorted(labels.items()))


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    common = dict(maps[0])
    for other in maps[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return _kv(common)


def alertmanager_body(notification: Notification, *, external_url: str = "") -> dict[str, Any]:
    """The Alertmanager webhook body, version 4, as Alertmanager 0.25 posts it (see the module docstring)."""
    alerts, left_out = notification.listed(MAX_ALERTS)
    items: list[dict[str, Any]] = []
    label_sets: list[dict[str, str]] = []
    annotation_sets: list[dict[str, str]] = []
    for a in alerts:
        labels = _kv(alertmanager_labels(a))
        annotations = _kv(alertmanager_annotations(a))
        label_sets.append(labels)
        annotation_sets.append(annotations)
        items.append(
            {
                "status": a.status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": go_time(a.started_at),
                "endsAt": ZERO_TIME if a.status == "firing" else go_time(a.ends_at or a.raised_at),
                "generatorURL": generator_url(a, external_url),
                "fingerprint": fingerprint(labels),
            }
        )
    group_labels = _kv({_label_name(k): v for k, v in notification.group_labels.items() if v and k != "language"})
    return {
        "receiver": quote_meta(notification.receiver),
        "status": notification.status,
        "alerts": items,
        "groupLabels": group_labels,
        "commonLabels": _common(label_sets),
        "commonAnnotations": _common(annotation_sets),
        "externalURL": external_url,
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": left_out,
    }


def encode(body: Any) -> bytes:
    """Compact, deterministic JSON bytes (keys in insertion order, UTF-8)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
