"""Run a benchmark's child process under cProfile (``bench/e2e_bench.py --profile-children DIR``).

Python imports ``sitecustomize`` at start-up when this folder is on ``PYTHONPATH``; e2e_bench puts it
there, with ``VEILLE_BENCH_PROFILE`` naming the folder for the stats, only for the children it profiles.
The stats so far are written to ``$VEILLE_BENCH_PROFILE/$VEILLE_INSTANCE-PID.prof`` on SIGUSR2 (the
bench sends it when publishing ends, before stopping the stack, so a child slow to stop under load
still leaves its profile) and again at a clean exit. Read them with ``python -m pstats``.
"""

from __future__ import annotations

import os

_target = os.environ.get("VEILLE_BENCH_PROFILE")
if _target:
    import atexit
    import cProfile
    import signal
    from types import FrameType

    _profiler = cProfile.Profile()

    def _dump() -> None:
        _profiler.disable()
        name = os.environ.get("VEILLE_INSTANCE", "child")
        _profiler.dump_stats(os.path.join(_target, f"{name}-{os.getpid()}.prof"))

    def _on_usr2(_signum: int, _frame: FrameType | None) -> None:
        _dump()
        _profiler.enable()

    signal.signal(signal.SIGUSR2, _on_usr2)
    atexit.register(_dump)
    _profiler.enable()
