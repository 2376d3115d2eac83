"""Tracebacks stay out of an operator's terminal unless asked for (``ovro-ingest -v``).

A failed time step is reported in one line naming the file and the fix; the full
traceback still goes to the Prefect API (the UI shows it) and appears on the console
with ``-v``. ``OVRO_INGEST_CONSOLE_TRACEBACKS=0`` (set by the CLI) applies this in
every process that runs tasks, Dask workers included.
"""

from __future__ import annotations

import logging
import os

ENVIRONMENT_VARIABLE = "OVRO_INGEST_CONSOLE_TRACEBACKS"


class WithoutTraceback(logging.Formatter):
    """Formats a record with another formatter, leaving out its exception and stack text."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.formatter = formatter

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None  # other handlers get them back below
        try:
            return self.formatter.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def console_handlers() -> list[logging.Handler]:
    """Every handler that writes to a terminal stream, on any logger."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    return [h for lg in loggers for h in getattr(lg, "handlers", []) if isinstance(h, PrefectConsoleHandler)]


def hide_console_tracebacks() -> None:
    """Wrap the formatter of every Prefect console handler in :class:`WithoutTraceback` (idempotent)."""
    import prefect.main  # noqa: F401  (Prefect sets up its logging, once per process, when this is imported)

    for handler in console_handlers():
        if not isinstance(handler.formatter, WithoutTraceback):
            handler.setFormatter(WithoutTraceback(handler.formatter or logging.Formatter()))


def apply_from_environment() -> None:
    """Hide tracebacks when ``OVRO_INGEST_CONSOLE_TRACEBACKS=0``."""
    if os.environ.get(ENVIRONMENT_VARIABLE) == "0":
        hide_console_tracebacks()
