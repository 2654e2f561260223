"""Run a benchmark's child process under cProfile (``bench/e2e_bench.py --profile-children DIR``).

Python imports ``sitecustomize`` at start-up when this folder is on ``PYTHONPATH``; e2e_bench puts it
there, with ``VEILLE_BENCH_PROFILE`` naming the folder for the stats, only for the children it profiles.
The stats are written at a clean exit (SIGTERM, as the supervisor stops its children) to
``$VEILLE_BENCH_PROFILE/$VEILLE_INSTANCE-PID.prof``; read them with ``python -m pstats``.
"""

from __future__ import annotations

import os

_target = os.environ.get("VEILLE_BENCH_PROFILE")
if _target:
    import atexit
    import cProfile

    _profiler = cProfile.Profile()

    def _dump() -> None:
        _profiler.disable()
        name = os.environ.get("VEILLE_INSTANCE", "child")
        _profiler.dump_stats(os.path.join(_target, f"{name}-{os.getpid()}.prof"))

    atexit.register(_dump)
    _profiler.enable()
