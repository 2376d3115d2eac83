"""Task: make the files of a time step readable (fixed copies only where needed)."""

from __future__ import annotations

from prefect import get_run_logger, task

from ovro_ingest.headers import make_readable
from ovro_ingest.models import ReadableTimeStep, TimeStepFiles
from tasks.cache import FIXING


@task(name="fix_headers", task_run_name="fix-{step.key}", cache_policy=FIXING, persist_result=True)
def fix_headers(step: TimeStepFiles, fixed_dir: str | None, keep_bad_checksums: bool = False) -> ReadableTimeStep:
    """Return the files of ``step`` as the loader should open them (a failed CHECKSUM/DATASUM refuses a file)."""
    files = tuple(make_readable(source, fixed_dir, keep_bad_checksums) for source in step.files)
    for readable in files:
        if readable.corrections:
            get_run_logger().info("%s: %s", readable.source.name, "; ".join(readable.corrections))
    return ReadableTimeStep(key=step.key, files=files)
