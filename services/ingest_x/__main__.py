"""``python -m services.ingest_x``: the same as ``veille run ingest-x``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("ingest-x", "services.ingest_x.app"))
