"""Task: make the files of a time step readable (fixed copies only where needed)."""

from __future__ import annotations

from prefect import get_run_logger, task

from ovro_ingest.headers import make_time_step_readable
from ovro_ingest.models import ReadableTimeStep, TimeStepFiles
from tasks.cache import FIXING
from tasks.refusals import refusals_as_failed_states


@task(name="fix_headers", task_run_name="fix-{step.key}", cache_policy=FIXING, persist_result=True)
@refusals_as_failed_states
def fix_headers(step: TimeStepFiles, fixed_dir: str | None, keep_bad_checksums: bool = False) -> ReadableTimeStep:
    """Return the files of ``step`` as the loader should open them (a failed CHECKSUM/DATASUM refuses a file)."""
    readable = make_time_step_readable(step, fixed_dir, keep_bad_checksums)
    for file in readable.files:
        if file.corrections:
            get_run_logger().info("%s: %s", file.source.name, "; ".join(file.corrections))
    return readable
