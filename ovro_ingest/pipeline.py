"""The five steps chained as plain functions, without Prefect (for tests, scripts and benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

from ovro_ingest.combine import combine_frequencies
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.headers import make_readable
from ovro_ingest.load import load_subbands
from ovro_ingest.models import AppendReceipt, ReadableTimeStep, TimeStepFiles
from ovro_ingest.store import StoreSettings, append_time_step


def ingest_time_step(
    step: TimeStepFiles,
    store: str | os.PathLike[str],
    fixed_dir: str | None = None,
    settings: StoreSettings | None = None,
) -> AppendReceipt:
    """Fix, load, combine and append one time step."""
    readable = ReadableTimeStep(key=step.key, files=tuple(make_readable(f, fixed_dir) for f in step.files))
    return append_time_step(store, combine_frequencies(load_subbands(readable)), settings)


def ingest_directory(
    input_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    fixed_dir: str | None = None,
    settings: StoreSettings | None = None,
) -> list[AppendReceipt]:
    """Ingest every time step under ``input_dir``, in time order, one after the other."""
    exclude = (Path(fixed_dir),) if fixed_dir else ()
    steps = discover_time_steps(input_dir, exclude=exclude).time_steps
    return [ingest_time_step(step, store, fixed_dir, settings) for step in steps]
