"""Task: combine the subbands of a time step, frequency ascending."""

from __future__ import annotations

from prefect import task

from ovro_ingest.combine import combine_frequencies as combine
from ovro_ingest.models import LoadedTimeStep, TimeStepPlan
from tasks.cache import PURE
from tasks.refusals import refusals_as_failed_states


@task(name="combine_frequencies", task_run_name="combine-{step.key}", cache_policy=PURE, persist_result=True)
@refusals_as_failed_states
def combine_frequencies(step: LoadedTimeStep, keep_bad_beams: bool = False) -> TimeStepPlan:
    """Order the subbands by frequency; reject duplicate frequencies and mixed grids; leave out invalid beams."""
    return combine(step, keep_bad_beams)
