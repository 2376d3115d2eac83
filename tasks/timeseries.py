"""Tasks of the time-series store: plan an update, stage its blocks (dask, memory-bounded), commit them."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ovro_ingest.handle import Store
from ovro_ingest.timeseries import (
    DEFAULT_MAX_MEMORY,
    WINDOW_TIME_STEPS,
    StagedUpdate,
    TimeSeriesPlan,
    TimeSeriesReceipt,
    commit_update,
    plan_update,
    stage_update,
)
from tasks.cache import TIMESERIES_COMMIT, TIMESERIES_STAGING
from tasks.refusals import refusals_as_failed_states


@task(name="plan_timeseries", task_run_name="plan", cache_policy=NO_CACHE)
@refusals_as_failed_states
def plan_timeseries(archive: Store, timeseries: Store, until: int | None = None) -> TimeSeriesPlan:
    """The next window to copy, from where the time-series store first differs from the archive (created when missing).

    ``until``: no further than this time index (where the archive ended at the update's first plan).
    """
    plan = plan_update(archive, timeseries, window=WINDOW_TIME_STEPS, until=until)
    if not plan.up_to_date:
        get_run_logger().info(
            "time-series store %d time steps; copying time steps %d..%d", plan.n_before, plan.start, plan.n_archive - 1
        )
    return plan


@task(
    name="stage_timeseries",
    task_run_name="stage-{plan.start}-{plan.n_archive}",
    cache_policy=TIMESERIES_STAGING,
    persist_result=True,
)
@refusals_as_failed_states
def stage_timeseries(plan: TimeSeriesPlan, workers: int = 2, max_memory: int = DEFAULT_MAX_MEMORY) -> StagedUpdate:
    """Copy the archive's time steps ``plan.start..plan.n_archive`` into the staging area (pixels stay in dask and Zarr)."""
    staged = stage_update(plan, workers=workers, max_memory=max_memory)
    get_run_logger().info("staged %.2f GB in %.1f s", staged.bytes_copied / 1e9, staged.seconds)
    return staged


@task(
    name="commit_timeseries",
    task_run_name="commit-{staged.plan.start}-{staged.plan.n_archive}",
    cache_policy=TIMESERIES_COMMIT,
    persist_result=True,
)
@refusals_as_failed_states
def commit_timeseries(staged: StagedUpdate) -> TimeSeriesReceipt:
    """Make the staged blocks part of the time-series store (journaled; the consolidated metadata commits)."""
    return commit_update(staged)
