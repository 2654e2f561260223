"""``python -m services.classifier``: the same as ``veille run classifier``."""

import sys

from veille.service import run_app_module

sys.exit(run_app_module("classifier", "services.classifier.app"))
