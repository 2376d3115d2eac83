"""The ``ingest`` flow: the OVRO-LWA FITS images of an input directory into one Zarr store.

It reads like the recipe it is: discover the time steps, then for every time step
fix headers, load the subbands, combine the frequencies and append to the store.
The per-time-step tasks are mapped over a Dask cluster; each task is cached and its
small result persisted, so that a re-run or a retry only does what is not done yet.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prefect import allow_failure, flow, get_run_logger, unmapped
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect_dask import DaskTaskRunner

from flows.summary import IngestIncomplete, IngestSummary, outcome_of
from ovro_ingest.store import StoreSettings, remove_store
from tasks.append_to_zarr import append_to_zarr
from tasks.combine_frequencies import combine_frequencies
from tasks.discover import discover
from tasks.fix_headers import fix_headers
from tasks.load_subbands import load_subbands


def default_fixed_dir(store: str) -> str:
    """Fixed copies go beside the store by default: ``<store>.fixed``."""
    path = Path(store).resolve()
    return str(path.with_name(path.name + ".fixed"))


def local_cluster_options(workers: int | None) -> dict:
    """A local Dask cluster sized to the machine: one single-threaded worker process per core."""
    n_workers = workers or os.cpu_count() or 1
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines drown the task states
    return {"n_workers": n_workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}


def use_dask_cluster(dask_address: str | None, workers: int | None) -> None:
    """Point this flow run's Dask task runner at an existing cluster, or size its local one.

    The runner starts its cluster lazily, at the first task submission, so setting
    it here (before any submission) takes effect.
    """
    runner = FlowRunContext.get().task_runner
    if not isinstance(runner, DaskTaskRunner):
        return
    if dask_address:
        runner.address, runner.cluster_kwargs = dask_address, {}
    else:
        runner.cluster_kwargs = local_cluster_options(workers)


@flow(name="ingest", task_runner=DaskTaskRunner(), persist_result=True)
def ingest(
    input_dir: str,
    store: str,
    fixed_dir: str | None = None,
    chunk_lm: int = 1024,
    rebuild: bool = False,
    dask_address: str | None = None,
    workers: int | None = None,
    codec: str = "lz4",
    zarr_format: int = 3,
) -> IngestSummary:
    """Ingest the OVRO-LWA images under ``input_dir`` into the Zarr store ``store``.

    Parameters
    ----------
    input_dir : str
        Folder of FITS images (searched recursively).
    store : str
        The Zarr store; created on first use, appended to afterwards.
    fixed_dir : str, optional
        Folder for fixed copies of files the loader cannot read as they are
        (default: ``<store>.fixed``).
    chunk_lm : int
        Chunk length along l and m for a new store.
    rebuild : bool
        Delete the store first and ingest everything again.
    dask_address : str, optional
        Address of an existing Dask scheduler; by default a local cluster is started.
    workers : int, optional
        Worker processes of the local cluster (default: one per core).
    codec : {"lz4", "zstd", "none"}
        Lossless compression of a new store.
    zarr_format : {2, 3}
        Zarr format of a new store.

    Returns
    -------
    IngestSummary
        One outcome per time step. The flow run fails, after every other time
        step is stored, when any time step failed.
    """
    use_dask_cluster(dask_address, workers)
    logger = get_run_logger()
    settings = StoreSettings(chunk_lm=chunk_lm, codec=codec, zarr_format=zarr_format)
    store = str(Path(store).resolve())
    fixed_dir = str(Path(fixed_dir).resolve()) if fixed_dir else default_fixed_dir(store)
    if rebuild:
        logger.info("rebuild: removing %s", store)
        remove_store(store)

    steps = discover(str(Path(input_dir).resolve()), exclude=(fixed_dir,))
    fixed = fix_headers.map(steps, fixed_dir=unmapped(fixed_dir))
    loaded = load_subbands.map(fixed)
    plans = combine_frequencies.map(loaded)
    appends = append_sequentially(plans, store, settings)

    summary = IngestSummary(
        store=store,
        outcomes=[
            outcome_of(step, chain)
            for step, chain in zip(steps, zip(fixed, loaded, plans, appends, strict=False), strict=True)
        ],
    )
    logger.info(summary.one_line())
    if summary.failed:
        raise IngestIncomplete(summary)
    return summary


def append_sequentially(plans: list[PrefectFuture], store: str, settings: StoreSettings) -> list[PrefectFuture | None]:
    """Submit the appends in time order, each after the previous one (failed or not).

    A time step whose plan failed gets no append (None), so that it holds up no other.
    """
    appends: list[PrefectFuture | None] = []
    previous: PrefectFuture | None = None
    for plan in plans:
        plan.wait()
        if not plan.state.is_completed():
            appends.append(None)
            continue
        wait_for = [allow_failure(previous)] if previous else None
        previous = append_to_zarr.submit(plan, store, settings, wait_for=wait_for)
        appends.append(previous)
    return appends
