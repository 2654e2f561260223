"""``python -m services.ingest_reddit``: the same as ``veille run ingest-reddit``."""

from veille.cli import main

main(["run", "ingest-reddit"])
