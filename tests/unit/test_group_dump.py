"""A group's KV value reuses the JSON of entries it already wrote, and still says exactly what the group holds."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.notifier import model
from services.notifier.grouping import add_alerts, finalize
from services.notifier.model import AlertEntry, GroupState, Notification
from veille.models import AlertRaised

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _alert(i: int, status: str = "firing", **extra: object) -> AlertRaised:
    return AlertRaised(
        id=f"a-{i}",
        watch="acme",
        kind="negative_mention",
        status=status,  # type: ignore[arg-type]
        summary=f'Mention n°{i} — « quoted » "and" \\ escaped',
        raised_at=NOW,
        started_at=NOW,
        **extra,  # type: ignore[arg-type]
    )


def _group(alerts: dict[str, AlertEntry]) -> GroupState:
    return GroupState(
        target="crm.webhook.0",
        receiver="crm",
        integration="webhook",
        group_key='{}:{watch="acme"}',
        group_labels={"watch": "acme"},
        group_wait=0,
        group_interval=60,
        repeat_interval=3600,
        alerts=alerts,
        recent=[(1_764_000_000, "0123456789abcdef" * 3)],
    )


def _same(state: GroupState) -> None:
    written = state.dump()
    assert json.loads(written) == json.loads(state.model_dump_json())
    assert GroupState.model_validate_json(written) == state


def test_the_value_written_is_the_group_as_pydantic_writes_it() -> None:
    _same(_group({}))
    entries = {
        f"a-{i}": AlertEntry(alert=_alert(i, labels={"région": "Île-de-France"}), first_seen=NOW) for i in range(30)
    }
    state = _group(entries)
    _same(state)
    _same(state)  # the second time from the entries' kept JSON


def test_an_entry_that_changes_is_written_as_it_is_now() -> None:
    state = _group(
        {"a-1": AlertEntry(alert=_alert(1), first_seen=NOW), "a-2": AlertEntry(alert=_alert(2), first_seen=NOW)}
    )
    state.dump()
    told = state.model_copy(
        update={"alerts": {**state.alerts, "a-1": state.alerts["a-1"].model_copy(update={"notified": "firing"})}}
    )
    assert json.loads(told.dump())["alerts"]["a-1"]["notified"] == "firing"
    assert json.loads(state.dump())["alerts"]["a-1"]["notified"] == "none"
    _same(told)
    with pytest.raises(ValidationError):  # frozen: a change is a new entry, never an edit of a written one
        state.alerts["a-2"].notified = "firing"  # type: ignore[misc]


def test_a_group_through_batches_and_a_notification_is_written_as_it_is_each_time() -> None:
    state = _group({})
    for batch in range(5):
        alerts = [_alert(batch * 40 + i) for i in range(40)] + [_alert(batch * 40 - 3, status="resolved")]
        state, _ = add_alerts(state, alerts, NOW + timedelta(seconds=batch))
        _same(state)
    told = [entry.alert for entry in state.alerts.values()][:50]
    notification = Notification(
        id="msg_1",
        target=state.target,
        receiver=state.receiver,
        integration="webhook",
        group_key=state.group_key,
        status="firing",
        seq=state.seq,
        alerts=told,
        created_at=NOW,
    )
    state = finalize(state, notification, NOW + timedelta(seconds=9))
    assert sum(entry.notified == "firing" for entry in state.alerts.values()) == len(told)
    _same(state)


def test_the_kept_json_is_of_the_entries_alive_and_survives_many_groups_written_in_turn() -> None:
    groups = [
        _group({f"a-{g}-{i}": AlertEntry(alert=_alert(g * 100 + i), first_seen=NOW) for i in range(100)})
        for g in range(60)
    ]
    for group in groups:  # 6,000 entries: more than any fixed table emptied when full would keep
        group.dump()
    held = len(model._ENTRY_JSON)
    assert held >= 6_000
    for group in groups:  # a second round finds every entry's JSON
        _same(group)
    assert len(model._ENTRY_JSON) == held
    del groups, group
    gc.collect()
    assert len(model._ENTRY_JSON) <= held - 6_000  # freed entries take their JSON with them
