"""``python -m services.archive``: the same as ``veille run archive``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("archive", "services.archive.app"))
