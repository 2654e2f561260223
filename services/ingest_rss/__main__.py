"""``python -m services.ingest_rss``: the same as ``veille run ingest-rss``."""

from veille.cli import main

main(["run", "ingest-rss"])
