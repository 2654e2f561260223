"""``python -m services.console``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("console", "services.console.app"))
