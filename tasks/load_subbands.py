"""Task: open the subbands of a time step lazily and read their header facts."""

from __future__ import annotations

from prefect import task

from ovro_ingest.load import load_subbands as load_subbands_of
from ovro_ingest.models import LoadedTimeStep, ReadableTimeStep
from tasks.cache import PURE
from tasks.refusals import refusals_as_failed_states


@task(name="load_subbands", task_run_name="load-{step.key}", cache_policy=PURE, persist_result=True)
@refusals_as_failed_states
def load_subbands(step: ReadableTimeStep) -> LoadedTimeStep:
    """Describe every subband of ``step`` (pixels stay on disk)."""
    return load_subbands_of(step)
