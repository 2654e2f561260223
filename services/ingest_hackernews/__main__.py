"""``python -m services.ingest_hackernews``: the same as ``veille run ingest-hackernews``."""

from veille.cli import main

main(["run", "ingest-hackernews"])
