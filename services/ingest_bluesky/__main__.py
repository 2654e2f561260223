"""``python -m services.ingest_bluesky``: the same as ``veille run ingest-bluesky``."""

from veille.cli import main

main(["run", "ingest-bluesky"])
