"""The classifier's compiled inner loops (``_speedups.c``), or the reason they are not used.

They are the linear sentiment scorer's (below) and the near-duplicate stories' (:mod:`veille.stories`
checks those against its own code at import and uses them only if they agree).

``pip install`` (and so ``make install``) compiles ``_speedups.c`` when a C compiler is there
(``hatch_build.py``). :mod:`veille.sentiment.linear` then sums a text's remembered chunk entries and a
new word's character n-grams in C, on the same Python objects and in the same order as its own code,
so every score is equal to the bit either way; only the speed differs. The module is not used when
it is missing (no compiler at install, or run from a source tree never installed), when it was built
from another version of ``_speedups.c`` (a stale build: its ``SOURCE_HASH`` is checked against the file
beside it), or when ``VEILLE_PURE_PYTHON`` is set to ``1``. :data:`STATUS` says which, for the logs.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from types import ModuleType

__all__ = ["MODULE", "STATUS", "accept", "load", "refuse"]


def _source_hash() -> str | None:
    """The sha256 of ``_speedups.c`` beside this file (``None`` when it was not installed)."""
    try:
        data = resources.files("veille.sentiment").joinpath("_speedups.c").read_bytes()
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest()


def load() -> tuple[ModuleType | None, str]:
    """Return the compiled module (or ``None``) and a line saying which scorer runs and why."""
    if os.environ.get("VEILLE_PURE_PYTHON", "").strip() in ("1", "true", "yes"):
        return None, "pure Python (VEILLE_PURE_PYTHON is set)"
    try:
        from veille.sentiment import _speedups
    except ImportError as exc:
        return None, f"pure Python (no compiled module: {exc}; `make install` builds it with a C compiler)"
    expected = _source_hash()
    built = getattr(_speedups, "SOURCE_HASH", "")
    if expected is not None and built != expected:
        return None, "pure Python (the compiled module is stale: built from another _speedups.c; `make install`)"
    module: ModuleType = _speedups
    return module, "compiled (C inner loops)"


MODULE, STATUS = load()
"""What :mod:`veille.sentiment.linear` uses: the compiled module or ``None``, and why."""


def accept(assumed: dict[str, object]) -> ModuleType | None:
    """:data:`MODULE` if it was written for these constants of the Python scorer (its ``ASSUMED``:
    the n-gram lengths, the negator's role and ending, the look-ups kept, where a token keeps its kind),
    else ``None``, with :data:`STATUS` saying why: a module that assumes other constants would score
    differently, and the pure-Python scorer is used instead."""
    global MODULE, STATUS
    built_for = getattr(MODULE, "ASSUMED", None)
    if MODULE is not None and built_for != assumed:
        MODULE, STATUS = None, f"pure Python (the compiled module assumes {built_for}, not {assumed})"
    return MODULE


def refuse(reason: str) -> None:
    """Stop using the module (:data:`MODULE` ``None``), with :data:`STATUS` saying why: a check by its user
    found it computes otherwise than the Python code."""
    global MODULE, STATUS
    MODULE, STATUS = None, f"pure Python ({reason})"
