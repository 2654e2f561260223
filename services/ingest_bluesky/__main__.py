"""``python -m services.ingest_bluesky``: the same as ``veille run ingest-bluesky``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("ingest-bluesky", "services.ingest_bluesky.app"))
