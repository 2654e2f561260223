"""The project's data sets live beside the repository, in ``../shared/data`` (never copied into it).

A plain ``git clone`` has no such folder: tests that need it skip with a reason naming the path, through
``requires_shared_data``; every other test must not read it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """The path of ``parts`` under ``../shared/data`` (it may not exist)."""
    return SHARED_DATA.joinpath(*parts)


def requires_shared_data(*parts: str) -> pytest.MarkDecorator:
    """Skip the test (or module, as ``pytestmark``) when ``../shared/data/<parts>`` is absent."""
    path = shared_data(*parts)
    shown = "/".join(("../shared/data", *parts))
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"needs the project's data in {shown} ({path}), which is not beside this clone",
    )
