"""The route tree, as in Alertmanager: pure functions from an alert to the routes it takes.

Each node has matchers on the alert's labels (``watch``, ``kind``, ``severity``, ``lang``,
``source`` and the watch's own labels), a receiver and grouping settings that children inherit.
An alert walks the tree depth first: the deepest matching nodes win; ``continue: true`` on a node
lets the search go on to its next siblings. When no child matches, the node itself is the route.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from services.notifier.model import alert_labels
from veille.config import DEFAULT_ROUTE, Matcher, Route
from veille.models import AlertRaised

__all__ = ["ResolvedRoute", "group_key_for", "match_routes"]

_DEFAULT_GROUP_BY = DEFAULT_ROUTE.group_by or ["watch", "kind"]
_DEFAULT_WAIT = DEFAULT_ROUTE.group_wait or timedelta(seconds=30)
_DEFAULT_INTERVAL = DEFAULT_ROUTE.group_interval or timedelta(minutes=5)
_DEFAULT_REPEAT = DEFAULT_ROUTE.repeat_interval or timedelta(hours=4)


@dataclass(frozen=True)
class ResolvedRoute:
    """A route an alert takes, with every setting inherited down to it."""

    path: str
    receiver: str
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta


@dataclass(frozen=True)
class _Inherited:
    receiver: str | None
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta

    def child(self, route: Route) -> _Inherited:
        return _Inherited(
            receiver=route.receiver if route.receiver is not None else self.receiver,
            group_by=tuple(route.group_by) if route.group_by is not None else self.group_by,
            group_wait=route.group_wait if route.group_wait is not None else self.group_wait,
            group_interval=route.group_interval if route.group_interval is not None else self.group_interval,
            repeat_interval=route.repeat_interval if route.repeat_interval is not None else self.repeat_interval,
        )


_ROOT = _Inherited(None, tuple(_DEFAULT_GROUP_BY), _DEFAULT_WAIT, _DEFAULT_INTERVAL, _DEFAULT_REPEAT)


def _matches(route: Route, labels: dict[str, str]) -> bool:
    return all(Matcher.parse(text).matches(labels) for text in route.matchers)


def _walk(route: Route, path: str, inherited: _Inherited, labels: dict[str, str]) -> list[ResolvedRoute]:
    here = inherited.child(route)
    found: list[ResolvedRoute] = []
    for index, child in enumerate(route.routes):
        if not _matches(child, labels):
            continue
        found.extend(_walk(child, f"{path}.{index}", here, labels))
        if not child.continue_:
            break
    if found or here.receiver is None:
        return found
    return [
        ResolvedRoute(
            path=path,
            receiver=here.receiver,
            group_by=here.group_by,
            group_wait=here.group_wait,
            group_interval=here.group_interval,
            repeat_interval=here.repeat_interval,
        )
    ]


def match_routes(root: Route, alert: AlertRaised) -> list[ResolvedRoute]:
    """Return the routes ``alert`` takes through the tree (the root route when nothing deeper matches)."""
    labels = alert_labels(alert)
    if not _matches(root, labels):
        return []
    return _walk(root, "root", _ROOT, labels)


def group_key_for(route: ResolvedRoute, alert: AlertRaised) -> tuple[str, dict[str, str]]:
    """Return the group key and the group labels of ``alert`` on ``route``.

    ``group_by: ["..."]`` groups by every label, that is one group per alert.
    """
    labels = alert_labels(alert)
    if "..." in route.group_by:
        group_labels = {"alert": alert.id}
    else:
        group_labels = {name: labels.get(name, "") for name in route.group_by}
    key = f"{route.path}:{json.dumps(group_labels, sort_keys=True, separators=(',', ':'))}"
    return key, group_labels
