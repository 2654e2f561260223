"""The name issue 17 gives the notifier-beside-Alertmanager bench: runs ``bench/notifier_bench.py`` (same options).

PYTHONPATH=shared:. python bench/notifier_vs_alertmanager.py [--alerts 20000] [--groups 10] [--runs 3]
"""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_name("notifier_bench.py")), run_name="__main__")
