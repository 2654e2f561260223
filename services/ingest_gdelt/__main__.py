"""``python -m services.ingest_gdelt``: the same as ``veille run ingest-gdelt``."""

from veille.cli import main

main(["run", "ingest-gdelt"])
