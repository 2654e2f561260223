"""``python -m services.ingest_rss``: the same as ``veille run ingest-rss``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("ingest-rss", "services.ingest_rss.app"))
