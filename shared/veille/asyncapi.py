"""The AsyncAPI document of every message on the bus, generated from the models and ``veille.bus``.

FastStream renders it: a documentation broker declares, for each service, what it receives and
sends, with the pydantic model of each message. ``veille asyncapi`` prints it; the committed copy
in ``docs/asyncapi.yaml`` is checked against the code by a test.
"""

from __future__ import annotations

from typing import Any

import yaml
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI

from veille import __version__, bus
from veille.models import AlertRaised, DeadLettered, MentionClassified, MentionIngested

__all__ = ["build_spec", "render_yaml"]


def _placeholder(subject: str, token: str) -> str:
    return subject.rsplit(".", 1)[0] + "." + "{" + token + "}"


def build_spec() -> AsyncAPI:
    """Build the AsyncAPI specification object."""
    broker = NatsBroker(
        "nats://127.0.0.1:4222",
        description="veille's NATS JetStream bus. Every message is JSON; `Nats-Msg-Id` carries its stable id.",
    )
    mentions = _placeholder(bus.mention_subject("x"), "source")
    classified = _placeholder(bus.classified_subject("x"), "source")
    alerts = _placeholder(bus.alert_subject("x"), "watch")
    dead = bus.deadletter_subject("x", "y").rsplit(".", 2)[0] + ".{service}.{kind}"

    async def classify_mention(mention: MentionIngested) -> None:
        """Receive."""

    async def route_alert(alert: AlertRaised) -> None:
        """Receive."""

    broker.publisher(
        mentions,
        schema=MentionIngested,
        title="publish_mention",
        description=f"Ingestors publish each new mention to stream {bus.MENTIONS.name}; "
        "Nats-Msg-Id is the stable mention id, so a mention seen twice is stored once.",
    )
    broker.subscriber(
        mentions,
        title="classify_mention",
        description=f"The classifier consumes {bus.MENTIONS.name} with the durable consumer "
        f"'{bus.CLASSIFIER_CONSUMER.durable}' shared by its replicas.",
    )(classify_mention)
    broker.publisher(
        classified,
        schema=MentionClassified,
        title="publish_classified_mention",
        description=f"The classifier publishes each mention with its language, sentiment, watches and story "
        f"to {bus.CLASSIFIED.name}.",
    )
    broker.publisher(
        alerts,
        schema=AlertRaised,
        title="raise_alert",
        description=f"The classifier raises alerts to {bus.ALERTS.name}; Nats-Msg-Id is the deterministic "
        "alert id, so a replay raises nothing twice.",
    )
    broker.subscriber(
        alerts,
        title="route_alert",
        description=f"The notifier consumes {bus.ALERTS.name}, stored as <subject>.<partition> (FNV-1a of the "
        f"watch mod {bus.NOTIFIER_PARTITIONS}), with one durable consumer per partition "
        f"('{bus.notifier_partition_consumer(0).durable}' ...), each held by one replica; routes, groups and delivers.",
    )(route_alert)
    broker.publisher(
        dead,
        schema=DeadLettered,
        title="dead_letter",
        description=f"Any service keeps what it cannot process in {bus.DEADLETTER.name}, with the reason.",
    )
    return AsyncAPI(
        broker,
        title="veille",
        version=__version__,
        description="Messages exchanged by veille's services.",
        schema_version="3.0.0",
    )


def render_yaml() -> str:
    """Render the specification as YAML text."""
    spec: Any = build_spec().to_specification()
    data = yaml.safe_load(spec.to_yaml())  # FastStream's order varies between runs: sort it
    return str(yaml.safe_dump(data, sort_keys=True, allow_unicode=True, width=100))
