"""When to poll next: the interval with jitter when all is well, backoff when it is not."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "jittered"]


def jittered(interval: float, jitter: float, rand: Callable[[], float] = random.random) -> float:
    """``interval`` spread uniformly by ±``jitter`` (a fraction), so pollers do not move in step."""
    if interval <= 0:
        return 0.0
    return max(0.0, interval * (1.0 + jitter * (2.0 * rand() - 1.0)))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter that honours a server's ``Retry-After``."""

    base: float = 5.0
    factor: float = 2.0
    maximum: float = 1800.0
    jitter: float = 0.2

    def delay(
        self,
        failures: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first).

        A ``Retry-After`` from the server is a floor: never retry sooner than it asked.
        """
        exponent = max(0, failures - 1)
        computed = min(self.maximum, self.base * self.factor**exponent)
        computed = jittered(computed, self.jitter, rand)
        if retry_after is not None:
            return max(retry_after, min(computed, self.maximum))
        return computed
