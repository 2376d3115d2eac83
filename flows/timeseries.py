"""The ``timeseries`` flow: keep the time-series store up to date with the archive.

The recipe: hold the time-series store's writer lock (the archive is only read, and
ingests may append to it meanwhile), finish what an interrupted update left, then
window by window (an hour of time steps each): plan (from the first time index where
the two stores differ), stage the window's blocks, commit them; record the run. The
``timeseries/after-nightly`` deployment runs it whenever a run of ``ingest/nightly``
completes (a deployment trigger in prefect.yaml).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext

from ovro_ingest.errors import RequestRefused
from ovro_ingest.handle import Store
from ovro_ingest.store import record_run, remove_store
from ovro_ingest.timeseries import (
    DEFAULT_MAX_MEMORY,
    TimeSeriesReceipt,
    combined,
    default_timeseries_path,
    holding_timeseries,
    prepare_timeseries,
    run_record,
    settle_timeseries,
    up_to_date,
)
from tasks.refusals import called, refusals_as_failed_states
from tasks.timeseries import commit_timeseries, plan_timeseries, stage_timeseries


@flow(name="timeseries", persist_result=True)
@refusals_as_failed_states
def timeseries(
    archive: str | None = None,
    timeseries: str | None = None,
    settings_block: str | None = None,
    wait_for_lock: float = 0.0,
    workers: int | None = None,
    max_memory_mb: int | None = None,
    rebuild: bool = False,
) -> TimeSeriesReceipt:
    """Bring the time-series store up to date with the archive.

    Parameters
    ----------
    archive : str, optional
        The archive store (default: the settings block's ``store``).
    timeseries : str, optional
        The time-series store (default: the block's ``timeseries_store``, else
        ``<archive>.timeseries.zarr`` beside the archive); created on first use.
    settings_block : str, optional
        Name of a saved ``IngestSettings`` block (the deployment uses "nightly").
    wait_for_lock : float
        Seconds to wait when another update holds the time-series store (default: fail at once).
    workers : int, optional
        Threads that copy pixels (default 2).
    max_memory_mb : int, optional
        Pixels in flight while copying, in MiB, all threads together (default 512).
    rebuild : bool
        Delete the time-series store first and make it again from the archive (after the
        archive was rebuilt, say).

    Returns
    -------
    TimeSeriesReceipt
        What was copied, or that the store was up to date.
    """
    archive, timeseries = resolve_stores(archive, timeseries, settings_block)
    logger = get_run_logger()
    run = FlowRunContext.get().flow_run
    who = f"timeseries flow run {run.name!r} ({run.id})"
    memory = DEFAULT_MAX_MEMORY if max_memory_mb is None else max_memory_mb * 2**20
    with holding_timeseries(archive, timeseries, who, wait_for_lock):
        if rebuild and run.run_count <= 1:  # a retry finishes the rebuild its first attempt began
            logger.info("rebuild: removing %s", timeseries)
            remove_store(timeseries)
        prepare_timeseries(timeseries)
        windows = []
        # window by window (an hour of time steps each): a crash loses one window, a re-run goes on from it;
        # up to where the archive ended at the first plan (what an ingest appends meanwhile is the next update's)
        plan = called(plan_timeseries, archive, timeseries)
        until = plan.archive_n_time
        while not plan.up_to_date:
            windows.append(called(commit_timeseries, called(stage_timeseries, plan, workers or 2, memory)))
            plan = called(plan_timeseries, archive, timeseries, until=until)
        settle_timeseries(timeseries)
        if windows:
            done = combined(windows)
            record_run(timeseries, {**run_record(who, done), "flow_run_id": str(run.id)})
        else:
            done = up_to_date(plan)
    logger.info(done.one_line())
    return done


def resolve_stores(archive: str | None, timeseries: str | None, settings_block: str | None) -> tuple[Store, Store]:
    """The archive and the time-series store: the parameters, else the settings block, else beside the archive.

    Raises
    ------
    RequestRefused
        Neither the parameters nor the block name the archive.
    """
    if settings_block:
        from blocks import IngestSettings

        block = IngestSettings.load(settings_block)
        archive = archive or block.store
        timeseries = timeseries or block.timeseries_store
    if not archive:
        raise RequestRefused(
            "say which archive: give archive (and timeseries), or the name of a saved IngestSettings block"
        )
    timeseries = timeseries or str(default_timeseries_path(archive))
    return Store.at(Path(archive).resolve()), Store.at(Path(timeseries).resolve())
