"""``python -m services.ingest_hackernews``: the same as ``veille run ingest-hackernews``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("ingest-hackernews", "services.ingest_hackernews.app"))
