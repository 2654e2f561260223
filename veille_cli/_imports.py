"""Start-up cost of the command line: what a command imports, and when.

Every command module imports only click and the standard library at its top; what a command needs
(pydantic models, nats-py, the services) is imported inside the command, so ``veille --help``
and ``veille check-config`` do not pay for NATS, HTTP clients or the sentiment model
(``tests/unit/test_cli_startup.py`` checks it; ``bench/cli_startup.py`` measures it).
"""

from __future__ import annotations

import os
import sys

__all__ = ["import_nats_for"]


def import_nats_for(nats_url: str | None) -> None:
    """Import nats-py without its WebSocket transport when no server URL is a WebSocket one.

    nats-py imports aiohttp (for ``ws://`` and ``wss://`` servers only) whenever it is installed,
    and aiohttp is the larger part of nats-py's import time: a third of a second of CPU on every
    ``veille silence`` or ``veille dlq`` call. With ``nats://`` or ``tls://`` URLs (``--nats-url``,
    else ``VEILLE_NATS_URL``) it is hidden while nats-py loads, then visible again, so that only
    nats-py's WebSocket transport is left out of this process. Nothing happens when nats-py or
    aiohttp is already loaded.
    """
    if "nats" in sys.modules or "aiohttp" in sys.modules:
        return
    urls = nats_url if nats_url is not None else os.environ.get("VEILLE_NATS_URL", "")
    if any(url.strip().lower().startswith(("ws://", "wss://")) for url in urls.split(",")):
        return
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # `import aiohttp` raises ImportError
    try:
        import nats.aio.transport  # noqa: F401  # binds its `aiohttp` to None for this process
    finally:
        del sys.modules["aiohttp"]
