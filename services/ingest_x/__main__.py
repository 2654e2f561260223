"""``python -m services.ingest_x``: the same as ``veille run ingest-x``."""

from veille.cli import main

main(["run", "ingest-x"])
