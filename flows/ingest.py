"""The ``ingest`` flow: the OVRO-LWA FITS images of an input directory into one Zarr store.

It reads like the recipe it is: discover the time steps, then for every time step
fix headers, load the subbands, combine the frequencies and append to the store.
The per-time-step tasks are mapped over a Dask cluster; each task is cached and its
small result persisted, so that a re-run or a retry only does what is not done yet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dask
from prefect import allow_failure, flow, get_run_logger, unmapped
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect_dask import DaskTaskRunner

from flows.report import publish
from flows.request import resolve_request
from flows.summary import IngestIncomplete, IngestSummary, StepOutcome, outcome_of
from ovro_ingest.commit import clear_staging
from ovro_ingest.discover import read_manifest
from ovro_ingest.errors import StoreBusy
from ovro_ingest.lock import writer_lock
from ovro_ingest.models import Manifest, TimeStepFiles
from ovro_ingest.pipeline import prepare_store
from ovro_ingest.store import StoreSettings, record_run, remove_store, store_exists, stored_unchanged
from tasks.append_to_zarr import append_to_zarr, create_store_for, write_to_staging
from tasks.combine_frequencies import combine_frequencies
from tasks.discover import discover
from tasks.fix_headers import fix_headers
from tasks.load_subbands import load_subbands


def local_cluster_options(workers: int | None) -> dict:
    """A local Dask cluster sized to the machine: one worker with one thread per core, in the flow's process.

    Threads, not processes: the heavy work (reading memory-mapped FITS, transposing,
    compressing, writing) releases the GIL, and pixels never cross a process boundary.
    Measured on 10 x 10 x 4096² (benchmarks/, 2 cores): 27-31 s against 36-46 s with two
    worker processes, which also cost about 4 s to start and 0.4 GB of memory. A run
    that wants process isolation (a worker killed and replaced) passes ``dask_address``.
    """
    threads = workers or os.cpu_count() or 1
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines drown the task states
    # in-process workers reach the scheduler in memory, not over TCP; the HTTP servers (dashboard,
    # metrics) would listen on every interface by default, so they are kept on 127.0.0.1
    return {
        "n_workers": 1,
        "threads_per_worker": threads,
        "processes": False,
        "dashboard_address": "127.0.0.1:0",
        "worker_dashboard_address": "127.0.0.1:0",
    }


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
    input_dir: str | None = None,
    store: str | None = None,
    settings_block: str | None = None,
    night: str | None = None,
    time_steps: list[str] | None = None,
    fixed_dir: str | None = None,
    chunk_lm: int | None = None,
    rebuild: bool = False,
    dask_address: str | None = None,
    workers: int | None = None,
    codec: str | None = None,
    zarr_format: int | None = None,
    replace: bool = False,
    wait_for_lock: float = 0.0,
    keep_bad_beams: bool = False,
) -> IngestSummary:
    """Ingest the OVRO-LWA images under ``input_dir`` into the Zarr store ``store``.

    Parameters
    ----------
    input_dir : str, optional
        Folder of FITS images (searched recursively). Default: the night's folder
        under the settings block's input root.
    store : str, optional
        The Zarr store; created on first use, appended to afterwards. Default: the
        settings block's store.
    settings_block : str, optional
        Name of a saved ``IngestSettings`` block whose values fill in the parameters
        not given (the deployments use it).
    night : str, optional
        ISO date of the night to ingest from the block's input root (default: yesterday, UTC).
    time_steps : list of str, optional
        Only these time steps (``YYYYMMDD_HHMMSS`` keys), e.g. to re-run chosen ones.
    fixed_dir : str, optional
        Folder for fixed copies of files the loader cannot read as they are
        (default: ``<store>.work/fixed``).
    chunk_lm : int, optional
        Chunk length along l and m for a new store (default 1024).
    rebuild : bool
        Delete the store first and ingest everything again.
    dask_address : str, optional
        Address of an existing Dask scheduler; by default a local cluster is started.
    workers : int, optional
        Threads of the local Dask cluster, i.e. time steps worked on at once
        (default: one per core).
    codec : {"lz4", "zstd", "none"}, optional
        Lossless compression of a new store (default lz4).
    zarr_format : {2, 3}, optional
        Zarr format of a new store (default 3).
    replace : bool
        Store again the time steps the store holds whose source files changed
        (by default they are kept, with a warning).
    wait_for_lock : float
        Seconds to wait when another ingest is writing the store (default: fail at once).
    keep_bad_beams : bool
        Store files whose beam is missing or invalid, with a NaN beam (by default
        they are left out of their time step, with a warning).

    Returns
    -------
    IngestSummary
        One outcome per time step. The flow run fails, after every other time
        step is stored, when any time step failed.
    """
    request = resolve_request(
        input_dir, store, settings_block, night, fixed_dir, chunk_lm, codec, zarr_format, dask_address, workers
    )
    use_dask_cluster(request.dask_address, request.workers)
    logger = get_run_logger()
    store, fixed_dir = request.store, request.fixed_dir
    run = FlowRunContext.get().flow_run
    with (
        one_writer_per_server(wait_for_lock),
        writer_lock(store, who=f"flow run {run.name!r} ({run.id})", wait_seconds=wait_for_lock),
    ):
        if rebuild:
            logger.info("rebuild: removing %s", store)
            remove_store(store)
        prepare_store(store)
        manifests = str(Path(request.work_dir) / "manifests")
        manifest = discovered(request.input_dir, manifests, (request.work_dir, fixed_dir))
        requested = select(read_manifest(manifest), time_steps)
        # the store is the ledger: what it holds from these very files needs no task at all
        stored = stored_unchanged(store, requested)
        steps = [step for step in requested if step.key not in stored]
        fixed = fix_headers.map(steps, fixed_dir=unmapped(fixed_dir))
        loaded = load_subbands.map(fixed)
        plans = combine_frequencies.map(loaded, keep_bad_beams=unmapped(keep_bad_beams))
        if not store_exists(store):
            create_store_from(plans, store, request.settings)
        staged = write_to_staging.map(plans, store=unmapped(store), replace=unmapped(replace))
        appends = commit_in_time_order(plans, staged, store)
        chains = dict(zip([s.key for s in steps], zip(fixed, loaded, plans, staged, appends, strict=True), strict=True))
        outcomes = []
        for step in requested:
            if step.key in stored:
                outcome = StepOutcome(
                    key=step.key, n_files=len(step.files), status="already stored", index=stored[step.key]
                )
            else:
                outcome = outcome_of(step, chains[step.key])
            outcomes.append(outcome)
            report_progress(len(outcomes), len(requested), outcome)
        summary = IngestSummary(store=store, outcomes=outcomes)
        clear_staging(store)
        if any(o.status in ("written", "replaced") for o in summary.outcomes):  # a no-op run leaves no trace
            record_run(store, run_record(run, summary))
    excluded = [item for plan in plans if succeeded(plan) for item in plan.result().excluded]
    publish(summary, manifest, excluded, request.work_dir)
    logger.info(summary.one_line())
    if summary.failed:
        raise IngestIncomplete(summary)
    return summary


COMMIT_PRIORITY = 10
"""Dask priority of the commits (the default is 0)."""

WRITE_LIMIT = "ovro-ingest-writes"
"""Prefect global concurrency limit that, when an operator creates it, queues ingests in Prefect itself."""


MIN_SLOT_WAIT_S = 5.0
"""Even finding out that the limit does not exist is a server call; 1 s timed out on a busy server."""


@contextmanager
def one_writer_per_server(wait_seconds: float) -> Iterator[None]:
    """Hold a slot of the ``ovro-ingest-writes`` limit, if the server has one (``deployments/stand-up`` makes it).

    On top of the store's own lock: a second run waits up to ``wait_seconds`` (at least
    :data:`MIN_SLOT_WAIT_S`) for the slot, in Prefect, then fails naming the limit.
    Without the limit, nothing is held.
    """
    with ExitStack() as held:
        try:
            held.enter_context(
                concurrency(WRITE_LIMIT, occupy=1, timeout_seconds=max(wait_seconds, MIN_SLOT_WAIT_S), strict=False)
            )
        except TimeoutError as error:  # only the acquisition: errors of the run itself pass through unchanged
            raise StoreBusy(
                f"another ingest holds the Prefect concurrency limit {WRITE_LIMIT!r} after {wait_seconds:g} s; "
                "wait for it to finish, or raise --wait-for-lock"
            ) from error
        yield


PROGRESS = logging.getLogger("ovro_ingest.progress")
"""Time steps as they finish: the CLI's progress bar listens here; the run's logs show it too."""


def report_progress(done: int, total: int, outcome: StepOutcome) -> None:
    """Tell listeners that ``done`` of ``total`` time steps are finished, the last one with ``outcome``."""
    PROGRESS.info(
        "%d/%d %s %s",
        done,
        total,
        outcome.key,
        outcome.status,
        extra={"done": done, "total": total, "outcome": outcome},
    )


def select(steps: list[TimeStepFiles], keys: list[str] | None) -> list[TimeStepFiles]:
    """The time steps named in ``keys`` (all when None); an unknown key is an error."""
    if not keys:
        return steps
    unknown = sorted(set(keys) - {step.key for step in steps})
    if unknown:
        raise ValueError(f"time steps not found in the input folder: {', '.join(unknown)}; check the time_steps keys")
    return [step for step in steps if step.key in set(keys)]


def run_record(run, summary: IngestSummary) -> dict:
    """What the store remembers of this flow run: its id, name, parameters and outcome."""
    import prefect

    return {
        "flow_run_id": str(run.id),
        "flow_run_name": run.name,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {k: v for k, v in run.parameters.items()},
        "time_steps": summary.one_line(),
        "prefect": prefect.__version__,
    }


def discovered(input_dir: str, manifest_dir: str, exclude: tuple[str, ...]) -> Manifest:
    """Discover the time steps (cached); when the cached manifest file is gone, discover afresh."""
    manifest = discover(input_dir, manifest_dir, exclude=exclude)
    if not Path(manifest.path).is_file():
        manifest = discover.with_options(refresh_cache=True)(input_dir, manifest_dir, exclude=exclude)
    return manifest


def create_store_from(plans: list[PrefectFuture], store: str, settings: StoreSettings) -> None:
    """Create the store once every time step is planned, so that it has all the run's channels."""
    ready = [plan.result() for plan in plans if succeeded(plan)]
    if ready:
        create_store_for(store, ready, settings)


def succeeded(future: PrefectFuture) -> bool:
    """Wait for ``future``; True when its task completed."""
    future.wait()
    return future.state.is_completed()


def commit_in_time_order(
    plans: list[PrefectFuture], staged: list[PrefectFuture], store: str
) -> list[PrefectFuture | None]:
    """Submit the commits in time order, each after the previous one (failed or not).

    A time step whose plan or staging failed gets no commit (None), so that it holds up no other.
    """
    appends: list[PrefectFuture | None] = []
    previous: PrefectFuture | None = None
    for plan, written in zip(plans, staged, strict=True):
        if not (succeeded(plan) and succeeded(written)):
            appends.append(None)
            continue
        wait_for = [allow_failure(previous)] if previous else None
        # ahead of queued stagings: each time step becomes visible (and its staging space free) as soon as it can
        with dask.annotate(priority=COMMIT_PRIORITY):
            previous = append_to_zarr.submit(written, store, wait_for=wait_for)
        appends.append(previous)
    return appends
