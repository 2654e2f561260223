"""``python -m services.ingest_gdelt``: the same as ``veille run ingest-gdelt``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("ingest-gdelt", "services.ingest_gdelt.app"))
