"""The ``ingest`` flow: the OVRO-LWA FITS images of an input directory into one Zarr store.

It reads like the recipe it is: discover the time steps, create the store if needed,
then, one child flow run per hour of the night, for every time step fix headers, load
the subbands, combine the frequencies and append to the store. Each of these is a
cached Prefect task whose small result is persisted, so that a re-run or a retry only
does what is not done yet; the store's ledger says which time steps need no task at all.

Sizes that hold for a whole night (4,320 time steps): a child flow run per hour keeps
every flow-run graph far below the UI's node limit (360 time steps x 5 tasks), and
within an hour at most a few time steps are in flight; what is done is let go.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from flows.report import publish, publish_hour
from flows.request import resolve_request
from flows.run_names import ingest_run_name, supersede_failed_attempts
from flows.summary import IngestIncomplete, IngestSummary, StepOutcome
from flows.time_steps import run_time_steps
from ovro_ingest.discover import read_manifest, subband_files
from ovro_ingest.errors import RequestRefused, StoreBusy
from ovro_ingest.handle import Store
from ovro_ingest.load import import_xradio_in_background
from ovro_ingest.models import Manifest, TimeStepFiles
from ovro_ingest.pipeline import prepare_store, settle_store
from ovro_ingest.quicklook import forget_pictures
from ovro_ingest.store import record_run, remove_store, stored_unchanged
from ovro_ingest.timeseries import timeseries_stores_of
from tasks.append_to_zarr import create_store_for
from tasks.dask_cluster import dask_cluster
from tasks.discover import discover
from tasks.housekeeping import prune
from tasks.refusals import called, refusals_as_failed_states

STEPS_IN_FLIGHT_PER_THREAD = 2
"""Time steps open at once per Dask thread: enough to keep every thread staging while the next are planned."""
MAX_STEPS_IN_FLIGHT = 32
"""Threads of an hour's task runner: each open time step runs one task at a time."""


@flow(name="ingest", flow_run_name=ingest_run_name, persist_result=True)
@refusals_as_failed_states
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
    keep_bad_checksums: bool = False,
    retention_days: float | None = None,
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
        Threads of the local Dask cluster, i.e. time steps staged at once
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
    keep_bad_checksums : bool
        Store files whose CHECKSUM/DATASUM fails, recorded in the ledger (by default
        such a file is refused as corrupted and fails its time step).
    retention_days : float, optional
        After the run, remove manifests, fixed copies and Prefect result files older
        than this many days (default: the settings block's, else keep everything).

    Returns
    -------
    IngestSummary
        One outcome per time step. The flow run fails, after every other time
        step is stored, when any time step failed.
    """
    request = resolve_request(
        input_dir,
        store,
        settings_block,
        night,
        fixed_dir,
        chunk_lm,
        codec,
        zarr_format,
        dask_address,
        workers,
        retention_days,
    )
    logger = get_run_logger()
    store, fixed_dir = request.store, request.fixed_dir
    if not store.exists():
        import_xradio_in_background()  # for the new store's template, on the other core while the run starts
    run = FlowRunContext.get().flow_run
    with (
        one_writer_per_server(wait_for_lock),
        store.lock(who=f"flow run {run.name!r} ({run.id})", wait_seconds=wait_for_lock),
    ):
        if rebuild and run.run_count <= 1:  # a retry finishes the rebuild its first attempt began
            logger.info("rebuild: removing %s", store)
            remove_store(store)
            forget_pictures(store.work_dir)
            if made := timeseries_stores_of(store):
                logger.warning(
                    "the rebuild leaves %d time-series store(s) made from the old archive: %s; once it is done, make "
                    "each again: ovro-ingest timeseries --rebuild %s %s",
                    len(made),
                    ", ".join(made),
                    store,
                    made[0] if len(made) == 1 else "TIMESERIES",
                )
        prepare_store(store)
        manifest = discovered(request.input_dir, str(store.work_dir / "manifests"), (str(store.work_dir), fixed_dir))
        night_steps = read_manifest(manifest)
        requested = select(night_steps, time_steps)
        # the store is the ledger: what it holds from these very files needs no task at all
        stored = stored_unchanged(store, requested)
        report_planned(len(requested))
        outcomes = already_stored(requested, stored)
        todo = [step for step in requested if step.key not in stored]
        if todo:
            # the cluster first: a run that cannot reach its Dask cluster leaves no new, empty store behind
            with dask_cluster(request.dask_address, request.workers) as threads:
                if not store.exists():
                    called(
                        create_store_for,
                        store,
                        manifest,
                        [step.key for step in todo],
                        subband_files(night_steps),
                        request.settings,
                        fixed_dir,
                        keep_bad_beams,
                        keep_bad_checksums,
                    )
                # every hour of the request, done or not, so that a retry calls the same child runs in the same
                # order: Prefect then reuses the completed ones and runs again only those that failed
                for hour, keys in hours_of(requested):
                    state = ingest_hour(
                        hour,
                        manifest,
                        keys,
                        store,
                        fixed_dir,
                        replace=replace,
                        keep_bad_beams=keep_bad_beams,
                        keep_bad_checksums=keep_bad_checksums,
                        steps_in_flight=STEPS_IN_FLIGHT_PER_THREAD * threads,
                        return_state=True,
                    )
                    outcomes.update({o.key: o for o in hour_outcomes(state, keys) if o.key not in stored})
                    if run.run_count > 1 and state.is_completed():  # a retry completed the hour: no red run left
                        supersede_failed_attempts(str(run.id), hour, state)
            outcomes.update(claims_the_store_denies(store, outcomes))
        summary = IngestSummary(store=str(store), outcomes=[outcomes[step.key] for step in requested])
        settle_store(store)
        if summary.changed:  # a no-op run leaves no trace
            record_run(store, run_record(run, summary))
        if request.retention_days:
            called(prune, store, request.retention_days)
    quicklook = publish(summary, manifest, str(store.work_dir))
    summary.quicklook = str(quicklook) if quicklook else None
    logger.info(summary.one_line() + (f"; quick look: {quicklook}" if quicklook else ""))
    for warning in summary.warnings():
        logger.warning(warning)
    if summary.failed:
        raise IngestIncomplete(summary)
    return summary


@flow(
    name="ingest-hour",
    flow_run_name="{hour}",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_STEPS_IN_FLIGHT),
    persist_result=True,
)
@refusals_as_failed_states
def ingest_hour(
    hour: str,
    manifest: Manifest,
    keys: list[str],
    store: Store,
    fixed_dir: str,
    replace: bool = False,
    keep_bad_beams: bool = False,
    keep_bad_checksums: bool = False,
    steps_in_flight: int = 4,
) -> list[StepOutcome]:
    """Ingest the time steps ``keys`` of one hour (a child run of ``ingest``, which holds the writer lock).

    Five tasks per time step, the pixels staged on the parent run's Dask cluster; at most
    ``steps_in_flight`` time steps are worked on at once, and each is let go as soon as
    its commit is done. Returns one outcome per key; the run fails, after every other
    time step is stored, when any failed.
    """
    steps = read_manifest(manifest, keys)
    stored = stored_unchanged(store, steps)  # also when retried: what an earlier attempt stored is done
    outcomes = already_stored(steps, stored, report=False)  # counted by the parent run already
    todo = [step for step in steps if step.key not in stored]
    steps_in_flight = max(1, min(steps_in_flight, MAX_STEPS_IN_FLIGHT))
    for outcome in run_time_steps(todo, store, fixed_dir, replace, keep_bad_beams, keep_bad_checksums, steps_in_flight):
        outcomes[outcome.key] = outcome
        report_progress(outcome)
    summary = IngestSummary(store=str(store), outcomes=[outcomes[step.key] for step in steps])
    publish_hour(summary)
    if summary.failed:
        raise IngestIncomplete(summary)
    return summary.outcomes


def already_stored(
    steps: Sequence[TimeStepFiles], stored: dict[str, int], report: bool = True
) -> dict[str, StepOutcome]:
    """The outcomes of the time steps the store holds (``stored``: key -> index), reported as finished."""
    outcomes = {
        step.key: StepOutcome(key=step.key, n_files=len(step.files), status="already stored", index=stored[step.key])
        for step in steps
        if step.key in stored
    }
    if report:
        for outcome in outcomes.values():
            report_progress(outcome)
    return outcomes


def claims_the_store_denies(store: Store, outcomes: dict[str, StepOutcome]) -> dict[str, StepOutcome]:
    """Outcomes that say stored for time steps the store's ledger does not hold, turned into failures.

    A retried run reuses the results of its completed hours; should the store have lost
    them since (deleted or rebuilt behind the run's back), the ledger has the last word.
    """
    held = store.state().indices_of(outcomes) if store.exists() else {}
    return {
        key: outcome.model_copy(
            update={
                "status": "failed",
                "error": "reported stored by an earlier attempt, but the store does not hold it; start a new run",
            }
        )
        for key, outcome in outcomes.items()
        if outcome.status != "failed" and key not in held
    }


def hours_of(steps: Sequence[TimeStepFiles]) -> Iterator[tuple[str, list[str]]]:
    """The time steps grouped by the UTC hour of their key: (``"YYYY-MM-DD HH:00 UTC"``, keys)."""
    for hour, group in groupby(steps, key=lambda step: step.key[:11]):
        yield f"{hour[:4]}-{hour[4:6]}-{hour[6:8]} {hour[9:11]}:00 UTC", [step.key for step in group]


def hour_outcomes(state, keys: list[str]) -> list[StepOutcome]:
    """The outcomes a child run's final state holds; every key failed with its message when it has none."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, IngestIncomplete):
        return result.summary.outcomes
    if isinstance(result, list):
        return result
    message = str(result) if isinstance(result, BaseException) else (state.message or "the hour's run failed")
    return [StepOutcome(key=key, n_files=0, status="failed", error=message) for key in keys]


WRITE_LIMIT = "ovro-ingest-writes"
"""Prefect global concurrency limit that, when an operator creates it, queues ingests in Prefect itself."""


WRITE_SLOT_LEASE_S = 300.0
"""Lease of the slot a run holds (Prefect renews it while the run lives): a slot whose run died is free this long
after the run's last renewal; the automation that crashes silent runs waits longer (``flows/automations.py``), so
that a crashed run can be retried at once."""
MIN_SLOT_WAIT_S = 5.0
"""Even finding out that the limit does not exist is a server call; 1 s timed out on a busy server."""


@contextmanager
def one_writer_per_server(wait_seconds: float) -> Iterator[None]:
    """Hold a slot of the ``ovro-ingest-writes`` limit, if the server has one (``deployments/stand-up`` makes it).

    On top of the store's own lock: a second run waits up to ``wait_seconds`` (at least
    :data:`MIN_SLOT_WAIT_S`) for the slot, in Prefect, then fails naming the limit.
    Without the limit, nothing is held and nothing is said (the store's lock is enough).
    """
    with ExitStack() as held:
        if write_limit_exists():
            quiet_prefects_acquisition_errors()
            try:
                held.enter_context(
                    concurrency(
                        WRITE_LIMIT,
                        occupy=1,
                        timeout_seconds=max(wait_seconds, MIN_SLOT_WAIT_S),
                        strict=True,
                        lease_duration=WRITE_SLOT_LEASE_S,
                    )
                )
            except TimeoutError as error:  # only the acquisition: errors of the run itself pass through unchanged
                raise StoreBusy(
                    f"another ingest holds the Prefect concurrency limit {WRITE_LIMIT!r} after {wait_seconds:g} s "
                    f"(when none is running, a run that died holds it until its lease lapses, at most "
                    f"{WRITE_SLOT_LEASE_S:g} s after it died); wait for it to finish, or raise --wait-for-lock "
                    f"(e.g. {WRITE_SLOT_LEASE_S + 30:g})"
                ) from error
        yield


class DropAcquisitionServiceErrors(logging.Filter):
    """Drops the line Prefect's slot-acquisition service logs when an acquisition fails (a timeout, say).

    The caller gets the same failure as an exception, and this run says it in one line
    naming the limit and what to do; the service's line ("Service
    'ConcurrencySlotAcquisitionWithLeaseService' failed to process item ...") only repeats
    it without saying which limit.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno >= logging.ERROR
            and str(record.msg).startswith("Service %r failed to process item")
            and "ConcurrencySlotAcquisition" in str(record.args[0] if record.args else "")
        )


ACQUISITION_SERVICE_LOGGER = "prefect._internal.concurrency"
_acquisition_errors_dropped = DropAcquisitionServiceErrors()


def quiet_prefects_acquisition_errors() -> None:
    """Install :class:`DropAcquisitionServiceErrors` on Prefect's service logger (once per process)."""
    service_logger = logging.getLogger(ACQUISITION_SERVICE_LOGGER)
    if _acquisition_errors_dropped not in service_logger.filters:
        service_logger.addFilter(_acquisition_errors_dropped)


def write_limit_exists() -> bool:
    """True when the Prefect server has the ``ovro-ingest-writes`` global concurrency limit."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(WRITE_LIMIT)
        except ObjectNotFound:
            return False
    return True


PROGRESS = logging.getLogger("ovro_ingest.progress")
"""Time steps as they finish: the CLI's progress bar listens here; the run's logs show it too."""


def report_planned(total: int) -> None:
    """Tell listeners how many time steps the run will report on."""
    PROGRESS.info("%d time steps requested", total, extra={"total": total})


def report_progress(outcome: StepOutcome) -> None:
    """Tell listeners that one more time step is finished, with ``outcome``."""
    PROGRESS.info("%s %s", outcome.key, outcome.status, extra={"outcome": outcome})


def select(steps: list[TimeStepFiles], keys: list[str] | None) -> list[TimeStepFiles]:
    """The time steps named in ``keys`` (all when None); an unknown key is an error."""
    if not keys:
        return steps
    unknown = sorted(set(keys) - {step.key for step in steps})
    if unknown:
        raise RequestRefused(
            f"time steps not found in the input folder: {', '.join(unknown)}; check the time_steps keys"
        )
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
    manifest = called(discover, input_dir, manifest_dir, exclude=exclude)
    if not Path(manifest.path).is_file():
        manifest = discover.with_options(refresh_cache=True)(input_dir, manifest_dir, exclude=exclude)
    return manifest
