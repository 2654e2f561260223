"""``python -m services.ingest_mastodon``: the same as ``veille run ingest-mastodon``."""

from veille.cli import main

main(["run", "ingest-mastodon"])
