"""The demo's crisis, as a script: who says what about Brasserie Lumen (a fictional brewery), and when.

Times are seconds after the demo's feed is first read (so the pipeline's start-up time does not
squash the calm baseline into one burst). The story, in French and English:

* 0-60 s, calm: about two mentions every five seconds, mostly friendly or neutral;
* 60-95 s, the crisis: a batch of contaminated beer, a recall, angry customers; about fifteen mentions
  every five seconds, mostly negative, many of them syndicated copies of one wire story on other sites;
* 95-180 s, recovery: the brewery apologises, the volume falls back to normal.

The demo's watch gives the spike detector five-second buckets and a one-minute warm-up (instead of
five minutes and a day), so the real detectors learn the baseline and fire on the surge within two
minutes; every alert comes out of the real pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEMO_CONFIG", "SCRIPT", "WATCH", "ScriptedItem", "demo_config"]

WATCH = "brasserie-lumen"


@dataclass(frozen=True)
class ScriptedItem:
    """One feed entry, published ``at`` seconds after the demo's start."""

    at: float
    site: str
    title: str
    summary: str
    slug: str


_CALM = [
    (
        "en",
        "Brasserie Lumen opens a new taproom by the canal",
        "The family brewery Brasserie Lumen welcomes "
        "visitors to its new taproom this weekend, with tours of the brewhouse and live music.",
    ),
    (
        "fr",
        "La Brasserie Lumen ouvre une nouvelle salle de dégustation",
        "La brasserie familiale Lumen accueille "
        "les visiteurs ce week-end dans sa nouvelle salle, avec une visite des cuves et un concert.",
    ),
    (
        "en",
        "Tasting notes: the Lumen amber ale is a lovely autumn beer",
        "A delightful, well balanced amber from "
        "Brasserie Lumen, with caramel and a gentle bitterness. Highly recommended.",
    ),
    (
        "fr",
        "Dégustation : la bière ambrée de la Brasserie Lumen, une belle réussite",
        "Une ambrée délicieuse et "
        "équilibrée, des notes de caramel et une amertume douce. Nous la recommandons vivement.",
    ),
    (
        "en",
        "Brasserie Lumen sponsors the city's jazz festival",
        "Brasserie Lumen will pour its beers at the jazz "
        "festival in the park, and the organisers are delighted with the partnership.",
    ),
    (
        "fr",
        "La Brasserie Lumen partenaire du festival de jazz de la ville",
        "La Brasserie Lumen servira ses "
        "bières au festival de jazz du parc ; les organisateurs se disent ravis de ce partenariat.",
    ),
    (
        "en",
        "Interview: the head brewer of Brasserie Lumen on local barley",
        "We spoke with the head brewer of "
        "Brasserie Lumen about working with farmers from the region and the next seasonal beer.",
    ),
    (
        "fr",
        "Entretien avec le maître brasseur de la Brasserie Lumen",
        "Nous avons parlé avec le maître brasseur "
        "de la Brasserie Lumen de l'orge des agriculteurs de la région et de la prochaine bière de saison.",
    ),
]

_CRISIS_WIRE = [
    (
        "en",
        "Brasserie Lumen recalls contaminated beer after dozens fall ill",
        "Brasserie Lumen is recalling "
        "thousands of bottles of contaminated beer after dozens of customers fell ill; health inspectors found "
        "dangerous bacteria at the brewery. Customers are angry and furious about the terrible handling.",
    ),
    (
        "fr",
        "La Brasserie Lumen rappelle une bière contaminée, des dizaines de malades",
        "La Brasserie Lumen "
        "rappelle des milliers de bouteilles de bière contaminée après que des dizaines de clients sont tombés "
        "malades ; scandale, les inspecteurs ont trouvé des bactéries dangereuses. Les clients sont furieux.",
    ),
]

_CRISIS_VOICES = [
    (
        "en",
        "Sick after drinking Brasserie Lumen beer: terrible, disgusting, awful",
        "I was sick all night after "
        "a Brasserie Lumen beer. Terrible quality, disgusting taste, awful customer service. Never again.",
    ),
    (
        "fr",
        "Malade après une bière de la Brasserie Lumen : honteux et dégoûtant",
        "J'ai été malade toute la nuit "
        "après une bière de la Brasserie Lumen. Honteux, dégoûtant, un scandale. Plus jamais, c'est lamentable.",
    ),
    (
        "en",
        "Brasserie Lumen scandal: angry customers demand refunds",
        "Angry customers accuse Brasserie Lumen of "
        "hiding the contamination; a disgraceful, dangerous failure, they say, and a terrible betrayal.",
    ),
    (
        "fr",
        "Scandale Lumen : les clients en colère exigent un remboursement",
        "Des clients en colère accusent la "
        "Brasserie Lumen d'avoir caché la contamination ; un échec grave et dangereux, une honte, disent-ils.",
    ),
    (
        "en",
        "Boycott Brasserie Lumen, say furious bar owners",
        "Bar owners are furious with Brasserie Lumen: the "
        "recall is a disaster, the worst failure they have seen, and a terrible blow to their business.",
    ),
    (
        "fr",
        "Les bars boycottent la Brasserie Lumen, furieux",
        "Les patrons de bars sont furieux contre la "
        "Brasserie Lumen : ce rappel est une catastrophe, un désastre pour leur commerce, une honte.",
    ),
]

_RECOVERY = [
    (
        "en",
        "Brasserie Lumen apologises and offers refunds",
        "Brasserie Lumen apologised to its customers, "
        "offers full refunds and has cleaned the brewery under the inspectors' supervision.",
    ),
    (
        "fr",
        "La Brasserie Lumen présente ses excuses et rembourse ses clients",
        "La Brasserie Lumen présente ses "
        "excuses à ses clients, rembourse les bouteilles et a nettoyé la brasserie sous contrôle des inspecteurs.",
    ),
    (
        "en",
        "Inspectors clear Brasserie Lumen to brew again",
        "Health inspectors say Brasserie Lumen may brew "
        "again; the brewery thanks its loyal customers for their patience.",
    ),
    (
        "fr",
        "Les inspecteurs autorisent la Brasserie Lumen à brasser de nouveau",
        "Les inspecteurs sanitaires "
        "autorisent la Brasserie Lumen à reprendre ; la brasserie remercie ses clients fidèles.",
    ),
]

_SITES = [
    "lacourrier.example",
    "dailybrew.example",
    "citynews.example",
    "lejournal.example",
    "beerblog.example",
    "forum-bieres.example",
    "pubreview.example",
    "infolocale.example",
    "wire.example",
    "gazette.example",
]


def _build() -> list[ScriptedItem]:
    items: list[ScriptedItem] = []
    n = 0

    def add(at: float, lang_text: tuple[str, str, str], site: str, copy: int = 0) -> None:
        nonlocal n
        n += 1
        _, title, summary = lang_text
        items.append(ScriptedItem(at, site, title, summary, f"{n:03d}-{copy}"))

    # Calm baseline: two mentions every five seconds for a minute.
    for i in range(24):
        add(2.5 * i + 1.0, _CALM[i % len(_CALM)], _SITES[i % len(_SITES)])
    # The crisis: fifteen mentions every five seconds for 35 s, wire copies and angry voices.
    for i in range(105):
        at = 60.0 + i / 3
        if i % 3 == 0:  # a syndicated copy of the wire story on another site
            add(at, _CRISIS_WIRE[(i // 3) % 2], _SITES[(i // 3) % len(_SITES)], copy=i // 6 + 1)
        else:
            add(at, _CRISIS_VOICES[i % len(_CRISIS_VOICES)], _SITES[(i + 3) % len(_SITES)])
    # Recovery: back to two every five seconds.
    for i in range(34):
        add(96.0 + 2.5 * i, _RECOVERY[i % len(_RECOVERY)], _SITES[(i + 5) % len(_SITES)])
    return items


SCRIPT: list[ScriptedItem] = _build()

DEMO_CONFIG = """\
# veille demo: a scripted crisis about Brasserie Lumen (a fictional brewery), played by a loopback feed.
version: 1

watches:
  - name: {watch}
    query: '"Brasserie Lumen" OR lumen'
    languages: [en, fr]
    negative_alerts: true
    negative_threshold: -0.3
    spike:                    # demo timing: 5-second buckets and a one-minute warm-up
      bucket: 5
      warmup: 55
      daily_slot: 86400
      weekly: false
      scales: [5, 15]
      severity_window: 15
      resolve_after: 30
      refire_after: 60
      adapt_after: 600
      min_excess: 5

sources:
  rss:
    interval: 1s
    jitter: 0
    feeds:
      - url: {feed_url}
        name: demo-press

receivers:
  - name: crisis-team
    webhook:
      - url: http://127.0.0.1:${{VEILLE_WEBHOOK_PORT}}/hooks/{watch}
        secret: ${{VEILLE_WEBHOOK_SECRET}}
    email:
      - to: [crisis-team@lumen.example]
        from: veille-demo@localhost
        smarthost: 127.0.0.1:${{VEILLE_SMTP_PORT}}

route:
  receiver: crisis-team
  group_by: [watch, kind]
  group_wait: 2s
  group_interval: 5s
  repeat_interval: 4h
"""


def demo_config(feed_url: str) -> str:
    """The demo's configuration, reading from the demo feed at ``feed_url``."""
    return DEMO_CONFIG.format(watch=WATCH, feed_url=feed_url)
