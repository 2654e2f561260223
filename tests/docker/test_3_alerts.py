"""Mentions through the real containers: feed -> ingest-rss -> classifier -> notifier -> webhook.

The feed and the webhook receiver are loopback stand-ins on the compose network (compose.test.yml);
the configuration is deploy/test/veille.yaml. A delivery is checked as a receiver would: its Standard
Webhooks signature (https://www.standardwebhooks.com, "Verifying webhooks": base64 HMAC-SHA256 over
"{webhook-id}.{webhook-timestamp}.{body}" with the base64 key after "whsec_") verifies with the
shared secret, written here from the specification rather than taken from veille's own code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from tests.docker.conftest import WEBHOOK_SECRET, Stack, docker, wait_for
from veille import bus

LINK = "https://actu.example.fr/{slug}"
FRENCH_NEGATIVE = {
    "id": "urn:uuid:7b0e4a56-2f7e-4d38-9c55-2d3c0b9e0a01",
    "title": "Acme Corp : panne géante, les clients sont furieux",
    "summary": "Service catastrophique, support lamentable : la pire semaine pour les clients d'Acme Corp.",
    "link": LINK.format(slug="acme-panne-geante"),
}
FRENCH_NEUTRAL = {
    "id": "urn:uuid:7b0e4a56-2f7e-4d38-9c55-2d3c0b9e0a02",
    "title": "Acme Corp publie son rapport trimestriel",
    "summary": "Le rapport paraîtra mardi.",
    "link": LINK.format(slug="acme-rapport-trimestriel"),
}

# A burst of angry mentions, each its own story (different words, so no two are near duplicates), each
# scored about -0.85 or below by the learned model (threshold -0.6 in deploy/test/veille.yaml).
COMPLAINTS = [
    ("panne", "Encore une panne chez Acme Corp : service nul, clients scandalisés, c'est une honte."),
    ("factures", "Acme Corp facture deux fois ses clients : arnaque honteuse, colère et plaintes en série."),
    ("support", "Le support d'Acme Corp est lamentable : des heures d'attente, aucune réponse, quel mépris."),
    ("excedes", "Acme Corp : support inexistant, clients excédés, c'est nul, vraiment la honte, terrible."),
    ("fuite", "Fuite de données chez Acme Corp : scandale, négligence grave, les clients sont indignés."),
    ("outage", "Acme Corp outage again: terrible service, furious customers, a disgrace."),
    ("refund", "Acme Corp refuses refunds: awful, dishonest, customers are angry and disgusted."),
    ("app", "The new Acme Corp app is a disaster: crashes, lost data, horrible experience, hate it."),
    ("horreur", "Acme Corp : quelle horreur, arnaque scandaleuse, je déteste, service pourri et lamentable."),
    ("securite", "Acme Corp ignore les failles de sécurité : irresponsable, dangereux, une catastrophe."),
    ("billing", "Acme Corp billing mess: charged twice, rude agents, worst company ever, terrible."),
    ("rappel", "Rappel de produits défectueux chez Acme Corp : clients blessés, colère, un désastre absolu."),
]


def signature_ok(delivery: dict[str, Any]) -> bool:
    """Whether the delivery's webhook-signature verifies with the shared secret (Standard Webhooks)."""
    headers = delivery["headers"]
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + delivery["raw"]
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, candidate) for candidate in headers["webhook-signature"].split())


def negative_alerts(delivery: dict[str, Any]) -> list[dict[str, Any]]:
    """The negative-mention alerts a veille webhook body lists."""
    body = json.loads(delivery["raw"])
    return [alert for alert in body["data"]["alerts"] if alert["kind"] == "negative_mention"]


def alerted_links(stack: Stack) -> list[str]:
    """The link of every negative-mention alert delivered so far, once per listing."""
    return [
        sample["url"]
        for delivery in stack.deliveries()
        for alert in negative_alerts(delivery)
        for sample in alert["samples"][:1]
    ]


def feed_polls(stack: Stack) -> int:
    """How many times the feed was fetched (the stand-in's access log)."""
    logs = docker("logs", stack.container("feed")).stderr
    return logs.count("GET /feed.atom")


def let_it_settle(stack: Stack, polls: int = 5) -> None:
    """Wait for several more polls of the feed, time enough for the services to (wrongly) send again."""
    start = feed_polls(stack)
    wait_for(lambda: feed_polls(stack) >= start + polls, 60, f"{polls} more polls of the feed")
    time.sleep(3)


async def _stream_counts(js: Any) -> dict[str, int]:
    return {name: (await js.stream_info(name)).state.messages for name in (bus.MENTIONS.name, bus.CLASSIFIED.name)}


def stream_counts(stack: Stack) -> dict[str, int]:
    """Messages in the mentions and classified streams (JetStream dedups on the mention id)."""
    counts: dict[str, int] = stack.nats_call(_stream_counts)
    return counts


def test_a_negative_french_mention_reaches_the_webhook_signed_once(stack: Stack) -> None:
    """Of two French entries only the angry one alerts: one signed delivery, never repeated."""
    stack.write_feed([FRENCH_NEGATIVE, FRENCH_NEUTRAL])
    wait_for(lambda: FRENCH_NEGATIVE["link"] in alerted_links(stack), 120, "the French mention's webhook")
    let_it_settle(stack)
    deliveries = stack.deliveries()
    assert len(deliveries) == 1, [d["raw"][:300] for d in deliveries]
    delivery = deliveries[0]
    assert delivery["path"] == "/hooks/crm"
    assert signature_ok(delivery), "the signature verifies with the shared secret"
    (alert,) = negative_alerts(delivery)
    assert alert["watch"] == "acme" and alert["lang"] == "fr"
    assert alert["samples"][0]["title"] == FRENCH_NEGATIVE["title"]
    assert FRENCH_NEUTRAL["link"] not in alerted_links(stack)
    assert stream_counts(stack) == {bus.MENTIONS.name: 2, bus.CLASSIFIED.name: 2}


def restart_count(stack: Stack, service: str) -> int:
    return int(stack.inspect(service)["RestartCount"])


# SIGKILL the service's own process (the child of docker-init, pid 1): a crash, as the OOM killer does it.
CRASH = """
import os, signal
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) not in (1, os.getpid()) and b"run" in open(f"/proc/{pid}/cmdline", "rb").read():
        os.kill(int(pid), signal.SIGKILL)
"""


def test_killing_classifier_and_notifier_mid_burst_loses_and_repeats_nothing(stack: Stack) -> None:
    """Both die during a burst and come back; every alert arrives once, every mention is classified once.

    The classifier crashes (its process SIGKILLed): Docker restarts it by itself (``restart:
    unless-stopped``). The notifier is ``docker kill``ed: Docker takes that as a deliberate stop and
    does not restart it (checked), so ``docker compose up -d`` does, as an operator would.
    """
    before = stream_counts(stack)
    delivered_before = alerted_links(stack)
    burst = [
        {
            "id": f"urn:uuid:0c7f2d1e-5a4b-4c3d-8e9f-{i:012d}",
            "title": f"Acme Corp : {slug}",
            "summary": text,
            "link": LINK.format(slug=f"burst-{slug}"),
        }
        for i, (slug, text) in enumerate(COMPLAINTS)
    ]
    crashes = restart_count(stack, "classifier")
    notifier = stack.container("notifier")
    stack.write_feed([*burst, FRENCH_NEGATIVE, FRENCH_NEUTRAL])

    # Kill the classifier once it has started on the burst, the notifier once it has started sending.
    wait_for(
        lambda: stream_counts(stack)[bus.CLASSIFIED.name] > before[bus.CLASSIFIED.name],
        120,
        "the classifier to start on the burst",
        interval=0.2,
    )
    stack.exec("classifier", "python", "-c", CRASH, check=False)
    wait_for(lambda: len(alerted_links(stack)) > len(delivered_before), 180, "a first alert of the burst", interval=0.2)
    docker("kill", notifier)

    wait_for(lambda: restart_count(stack, "classifier") > crashes, 60, "Docker to restart the crashed classifier")
    state = json.loads(docker("inspect", notifier).stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137, state
    stack.run("up", "-d", "--no-build")
    stack.wait_healthy(180)
    links = [entry["link"] for entry in burst]
    try:
        wait_for(lambda: set(links) <= set(alerted_links(stack)), 180, "every alert of the burst")
    except AssertionError as exc:
        missing = sorted(set(links) - set(alerted_links(stack)))
        raise AssertionError(f"{exc}: missing {missing}; streams {stream_counts(stack)}") from None
    let_it_settle(stack)

    alerted = alerted_links(stack)
    assert sorted(alerted) == sorted([*delivered_before, *links]), "each alert delivered exactly once"
    assert all(signature_ok(d) for d in stack.deliveries())
    total = before[bus.MENTIONS.name] + len(burst)
    assert stream_counts(stack) == {bus.MENTIONS.name: total, bus.CLASSIFIED.name: total}
