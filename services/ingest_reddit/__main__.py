"""``python -m services.ingest_reddit``: the same as ``veille run ingest-reddit``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("ingest-reddit", "services.ingest_reddit.app"))
