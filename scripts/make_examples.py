"""Write docs/examples/: the webhook bodies a receiver gets, one file per alert kind and status.

Every file is made by veille's own code, nothing is typed by hand: a scripted week-end of mentions
about a fictional brewery (a calm baseline, then a contamination story that turns the mentions
negative, then the recovery) is bucketed and stepped through the classifier's real surge detectors
(:class:`services.classifier.backtest.WatchReplay`, the same path as ``veille backtest``); the
negative mentions become alerts through the classifier's own ``negative_mention`` code; each alert
is routed and grouped by the notifier's route tree (the default ``group_by: [watch, kind]``); and
the body is what the webhook integration renders for that notification (``render_webhook_body``),
for ``format: veille`` and ``format: alertmanager``. The files are pretty-printed (the wire body is
the same JSON, compact, UTF-8).

    python scripts/make_examples.py            # rewrite docs/examples/
    python scripts/make_examples.py --check    # exit 1 if a committed file is not what this makes
    python scripts/make_examples.py --out DIR  # write (or --check) another directory

tests/notifier/test_crm_examples.py runs ``--check`` and validates every veille file against
services/notifier/schema/notification-v1.schema.json with a format checker.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "examples"

CONFIG = """
version: 1
watches:
  - name: brasserie-lumen
    query: '"Brasserie Lumen" OR "Lumen beer"'
    labels: {team: comms, brand: lumen}
receivers:
  - name: crm
    webhook:
      - url: https://crm.example.com/hooks/veille
route:
  receiver: crm
"""

START = datetime(2025, 11, 3, 0, 0, tzinfo=UTC)  # a Monday, in the past (mention times must be plausible)
CRISIS = START + timedelta(days=9, hours=9)  # Wednesday of the second week, 09:00 UTC
CRISIS_LENGTH = timedelta(hours=1, minutes=30)
END = CRISIS + timedelta(hours=15)

CALM = [
    ("en", "Brasserie Lumen opens a new taproom by the canal", "The family brewery welcomes visitors this weekend."),
    ("fr", "La Brasserie Lumen ouvre une salle de dégustation", "La brasserie familiale accueille les visiteurs."),
    ("en", "Tasting notes: the Lumen amber ale", "A well balanced amber with caramel and a gentle bitterness."),
    ("fr", "Dégustation : l'ambrée de la Brasserie Lumen", "Une ambrée équilibrée, des notes de caramel."),
]
ANGRY = [
    (
        "en",
        "Brasserie Lumen recalls its amber ale after contamination",
        "Brasserie Lumen is recalling every bottle of its amber ale brewed in October after customers fell ill. "
        "The brewery says a cleaning agent reached one batch.",
    ),
    (
        "fr",
        "Rappel massif chez Brasserie Lumen : des clients malades",
        "Brasserie Lumen rappelle toutes ses bouteilles d'ambrée brassées en octobre : plusieurs clients ont été "
        "malades, un produit de nettoyage aurait contaminé un lot. Scandaleux.",
    ),
    (
        "en",
        "Furious customers: Lumen beer made my family sick",
        "Never buying Lumen beer again. Three of us sick after one bottle, and the hotline hung up on me.",
    ),
]
GRUMBLES = [
    (
        "en",
        "Lumen taproom: slow service tonight",
        "Waited forty minutes for two beers at the Lumen taproom. Disappointing.",
    ),
    ("fr", "Brasserie Lumen : trop cher pour ce que c'est", "Huit euros la pinte à la Brasserie Lumen, c'est abusé."),
]
SITES = {"en": ["reuters.example", "bsky.app", "reddit.com"], "fr": ["lemonde.example", "lavoixdunord.example"]}


@dataclass(frozen=True)
class Example:
    """One file: its name and the notification it shows."""

    name: str
    notification: Any  # services.notifier.model.Notification


def _mentions(rng: random.Random) -> Iterator[tuple[Any, list[str]]]:
    """Classified mentions of the scripted week-end, in time order, with their terms."""
    from services.classifier.surges import mention_terms
    from veille.models import MentionClassified, MentionIngested

    bucket = START
    n = 0
    while bucket < END:
        crisis = CRISIS <= bucket < CRISIS + CRISIS_LENGTH
        hour = bucket.hour
        calm_rate = 2.0 + (4.0 if 8 <= hour < 20 else 0.0)
        count = rng.randint(45, 60) if crisis else _poisson(rng, calm_rate)
        for i in range(count):
            n += 1
            negative = rng.random() < (0.75 if crisis else 0.08)
            lang, title, text = rng.choice((ANGRY if crisis else GRUMBLES) if negative else CALM)
            story = hashlib.sha256(title.encode()).hexdigest()[:12]
            site = rng.choice(SITES[lang])
            at = bucket + timedelta(seconds=(i * 300) // max(count, 1))
            mention = MentionIngested(
                id=f"rss:{hashlib.sha256(f'{n}'.encode()).hexdigest()[:16]}",
                source="rss",
                url=f"https://{site}/{story}-{n}",  # type: ignore[arg-type]
                title=title,
                text=text,
                site=site,
                lang=lang,
                published_at=at,
                ingested_at=at,
            )
            classified = MentionClassified(
                mention=mention,
                lang=lang,
                sentiment="negative" if negative else "positive" if rng.random() < 0.5 else "neutral",
                sentiment_score=-0.87 if negative else 0.42,
                watches=["brasserie-lumen"],
                story_id=f"story-{story}",
                classified_at=at,
            )
            yield classified, mention_terms(f"{title} {text}")
        bucket += timedelta(minutes=5)


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: small means only)."""
    limit, k, p = 2.718281828459045**-mean, 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _alerts() -> list[Any]:
    """The alerts of the scripted week-end, in the order the classifier raises them."""
    from services.classifier.backtest import WatchReplay
    from services.classifier.logic import Classifier
    from veille.config import parse_config

    config = parse_config(CONFIG, env={})
    watch = config.watches[0]
    replay = WatchReplay(watch)
    negative: list[Any] = []
    for classified, terms in _mentions(random.Random(20251103)):
        replay.add(classified, terms)
        if classified.sentiment == "negative" and classified.sentiment_score <= watch.negative_threshold:
            alert = Classifier._negative_alert(watch, classified)
            # raised when classified, which the script makes the time the mention was ingested
            negative.append(alert.model_copy(update={"raised_at": classified.mention.ingested_at}))
    surges = replay.finish(until=END).alerts
    return surges + negative


def _notification(alerts: list[Any], *, seq: int = 0) -> Any:
    """The notification the notifier makes for ``alerts`` of one group on the default route."""
    from services.notifier.model import GroupState, Target
    from services.notifier.routing import group_key_for, match_routes
    from veille.config import parse_config

    config = parse_config(CONFIG, env={})
    route = match_routes(config.route, alerts[0])[0]
    key, labels = group_key_for(route, alerts[0])
    target = Target(route.receiver, "webhook")
    state = GroupState(
        target=target.id,
        receiver=route.receiver,
        integration="webhook",
        group_key=key,
        group_labels=labels,
        group_wait=route.group_wait.total_seconds(),
        group_interval=route.group_interval.total_seconds(),
        repeat_interval=route.repeat_interval.total_seconds(),
        seq=seq,
    )
    from services.notifier.grouping import build_notification

    last = max(a.raised_at for a in alerts)
    return build_notification(state, alerts, last + route.group_wait)


def examples() -> list[Example]:
    """Every example notification: each surge kind firing then resolved, and a group of negative mentions."""
    alerts = _alerts()
    out: list[Example] = []
    for kind in ("volume_spike", "negative_spike"):
        for status in ("firing", "resolved"):
            found = [a for a in alerts if a.kind == kind and a.status == status]
            if not found:
                raise SystemExit(f"the scripted crisis raised no {status} {kind}: adjust scripts/make_examples.py")
            out.append(Example(f"{kind}-{status}", _notification(found[:1], seq=0 if status == "firing" else 1)))
    mentions = [a for a in alerts if a.kind == "negative_mention" and a.raised_at >= CRISIS]
    if not mentions:
        raise SystemExit("the scripted crisis raised no negative_mention: adjust scripts/make_examples.py")
    # The start of the crisis: its first negative mentions, French and English together in one group.
    picked = [a for a in mentions if a.lang == "fr"][:1] + [a for a in mentions if a.lang == "en"][:2]
    out.append(Example("negative_mention-firing", _notification(sorted(picked, key=lambda a: a.raised_at))))
    return out


def render() -> dict[str, str]:
    """Path (relative to docs/examples/) to file text, for every example and both webhook formats."""
    from services.notifier.integrations.webhook import render_webhook_body
    from veille.config import WebhookReceiver

    out: dict[str, str] = {}
    made = examples()
    for fmt, folder in (("veille", ""), ("alertmanager", "alertmanager/")):
        hook = WebhookReceiver.model_validate({"url": "https://crm.example.com/hooks/veille", "format": fmt})
        for example in made:
            body, content_type = render_webhook_body(hook, example.notification)
            assert content_type == "application/json", content_type
            text = json.dumps(json.loads(body), indent=2, ensure_ascii=False) + "\n"
            out[f"{folder}{example.name}.json"] = text
    return out


def main(argv: list[str]) -> int:
    """Write the examples, or with ``--check`` say which committed ones differ (exit 1).

    ``--out DIR`` writes (or checks) DIR instead of docs/examples/.
    """
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else OUTPUT
    files = render()
    if "--check" in argv:
        stale = [name for name, text in files.items() if _read(out / name) != text]
        extra = sorted(str(p.relative_to(out)) for p in out.rglob("*.json") if str(p.relative_to(out)) not in files)
        for name in stale:
            print(f"{out / name} is out of date: run `make examples`", file=sys.stderr)
        for name in extra:
            print(f"{out / name} is not made by scripts/make_examples.py: remove it", file=sys.stderr)
        return 1 if stale or extra else 0
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files in {out}/")
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
