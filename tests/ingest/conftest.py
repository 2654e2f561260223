"""Fixtures for the ingestor tests (helpers live in ``ingest_helpers``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ingest_helpers import LoopbackServer


@pytest.fixture
async def http_server() -> AsyncIterator[LoopbackServer]:
    """A loopback HTTP server with no routes yet."""
    server = LoopbackServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
