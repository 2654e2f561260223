"""veille's services, one package each; ``veille run NAME`` starts one."""

from __future__ import annotations

__all__ = ["SERVICES"]

# service name -> module holding ``create_app(settings, ...)``
SERVICES: dict[str, str] = {
    "ingest-rss": "services.ingest_rss.app",
    "classifier": "services.classifier.app",
    "notifier": "services.notifier.app",
}
