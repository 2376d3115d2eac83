"""Task: discover the time steps of an input directory."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from ovro_ingest.discover import discover_time_steps
from ovro_ingest.models import TimeStepFiles
from tasks.cache import DISCOVERY


@task(name="discover", task_run_name="discover", cache_policy=DISCOVERY, persist_result=True)
def discover(input_dir: str, exclude: tuple[str, ...] = ()) -> list[TimeStepFiles]:
    """Group the FITS files under ``input_dir`` into time steps (files of other names are skipped)."""
    found = discover_time_steps(input_dir, exclude=tuple(Path(p) for p in exclude))
    logger = get_run_logger()
    n_files = sum(len(step.files) for step in found.time_steps)
    logger.info("found %d time steps (%d files) in %s", len(found.time_steps), n_files, input_dir)
    if found.skipped:
        logger.warning(
            "skipped %d file(s) whose names follow neither OVRO-LWA convention: %s",
            len(found.skipped),
            ", ".join(Path(p).name for p in found.skipped),
        )
    return found.time_steps
