"""veille's services, one package each; ``veille run NAME`` starts one."""

from __future__ import annotations

__all__ = ["SERVICES"]

# service name -> module holding ``create_app(settings, ...)``
SERVICES: dict[str, str] = {
    "ingest-rss": "services.ingest_rss.app",
    "ingest-hackernews": "services.ingest_hackernews.app",
    "ingest-bluesky": "services.ingest_bluesky.app",
    "ingest-mastodon": "services.ingest_mastodon.app",
    "ingest-gdelt": "services.ingest_gdelt.app",
    "ingest-reddit": "services.ingest_reddit.app",
    "ingest-x": "services.ingest_x.app",
    "classifier": "services.classifier.app",
    "notifier": "services.notifier.app",
    "archive": "services.archive.app",
    "console": "services.console.app",
}
