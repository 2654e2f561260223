"""structlog configured once: JSON lines when not on a terminal, readable console output on one."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["LINE_PREFIX_WIDTH", "configure_logging", "get_logger", "line_prefix"]

LINE_PREFIX_WIDTH = 12
"""Width of the name column ``veille up`` puts before each line of its children and of its own."""


def line_prefix(name: str) -> str:
    """``"  ingest-rss | "``: the column that says which process of ``veille up`` wrote a line."""
    return f"{name:>{LINE_PREFIX_WIDTH}} | "


def _drop_none(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """On a terminal a key whose value is None says nothing (``retry_after=None``): leave it out."""
    for key in [key for key, value in event_dict.items() if value is None]:
        del event_dict[key]
    return event_dict


def configure_logging(service: str, *, level: str = "info", fmt: str = "auto", prefix: str | None = None) -> None:
    """Configure structlog and the standard library root logger for ``service``.

    ``prefix`` goes before every line (``veille up`` gives its own lines the name column of its
    children's, see :func:`line_prefix`).
    """
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[Any] = (
        [structlog.processors.JSONRenderer()]
        if json_output
        else [_drop_none, structlog.dev.ConsoleRenderer(colors=False)]
    )
    if prefix:
        rendering.append(lambda _, __, line: prefix + line)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            *rendering,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING) if numeric < logging.WARNING else numeric)


def get_logger(name: str | None = None) -> Any:
    """Return a structlog logger (bound to ``name`` when given)."""
    logger = structlog.get_logger()
    return logger.bind(logger=name) if name else logger
