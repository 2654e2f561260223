"""``python -m services.ingest_mastodon``: the same as ``veille run ingest-mastodon``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("ingest-mastodon", "services.ingest_mastodon.app"))
