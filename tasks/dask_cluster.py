"""The run's Dask cluster: where the pixels of every time step are staged.

Prefect runs the five tasks of each time step on its thread-pool task runner, in the
flow's process; the one heavy step, staging a time step's pixels into the store
(:func:`ovro_ingest.commit.write_time_step`), is sent from its task to this Dask cluster
with :func:`on_dask`. Why not Prefect's ``DaskTaskRunner`` for all five: in Prefect
3.9 it serialises the run's settings for every task and rebuilds them (pydantic-settings
reading the environment, dotenv and TOML files) before every task, about 70 ms of CPU
per task against 5 ms on the thread pool (measured, ``benchmarks/night_scale.py``);
five tasks per time step made that 0.35 s per time step, more than the pixels of a
small image cost. The Dask cluster does what it is good at: the pixel work, on local
threads or on an existing cluster (``dask_address``).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import dask

logger = logging.getLogger("ovro_ingest.dask")

Result = TypeVar("Result")


def local_cluster_options(threads: int | None) -> dict:
    """A local Dask cluster sized to the machine: one worker with one thread per core, in the flow's process.

    Threads, not processes: the heavy work (reading memory-mapped FITS, transposing,
    compressing, writing) releases the GIL, and pixels never cross a process boundary.
    Measured on 10 x 10 x 4096² (benchmarks/, 2 cores): 27-31 s against 36-46 s with two
    worker processes, which also cost about 4 s to start and 0.4 GB of memory. A run
    that wants process isolation (a worker killed and replaced) passes ``dask_address``.
    """
    # in-process workers reach the scheduler in memory, not over TCP; the HTTP servers (dashboard,
    # metrics) would listen on every interface by default, so they are kept on 127.0.0.1
    return {
        "n_workers": 1,
        "threads_per_worker": threads or os.cpu_count() or 1,
        "processes": False,
        "dashboard_address": "127.0.0.1:0",
        "worker_dashboard_address": "127.0.0.1:0",
        **without_spans(),
    }


BOUNDED_HISTORY = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.log-length": 100,
    "distributed.admin.low-level-log-length": 100,
    "distributed.diagnostics.computations.max-history": 10,
}
"""What the local cluster keeps of its past: a night is thousands of small tasks in one long-lived cluster.

The worker's statistical profiler (every 10 ms) grew its call trees with every time step
(measured: about 25 dicts each), and Dask's logs of transitions, stimuli and computations
keep up to 10,000 entries each by default. None of them is needed to stage pixels.
"""


def without_spans() -> dict[str, dict]:
    """LocalCluster keyword arguments: Dask's default extensions but the spans, on the scheduler and the worker.

    The scheduler makes a span for every submission and keeps it, with its task groups,
    for good; a night is thousands of small submissions (one staging per time step) to one
    scheduler, whose memory grew with every time step (measured: about 28 kB each). Spans
    only feed the dashboard's fine performance metrics.
    """
    from distributed.scheduler import DEFAULT_EXTENSIONS as SCHEDULER_EXTENSIONS
    from distributed.worker import DEFAULT_EXTENSIONS as WORKER_EXTENSIONS

    def but_spans(extensions: dict) -> dict:
        return {name: extension for name, extension in extensions.items() if name != "spans"}

    return {
        "scheduler_kwargs": {"extensions": but_spans(SCHEDULER_EXTENSIONS)},
        "extensions": but_spans(WORKER_EXTENSIONS),  # LocalCluster hands its other keywords to the worker
    }


@contextmanager
def dask_cluster(address: str | None = None, threads: int | None = None) -> Iterator[int]:
    """Connect to the Dask cluster at ``address``, or start a local one; yield its number of threads.

    The client becomes this process's default, which :func:`on_dask` uses; it is
    closed (and a local cluster stopped) on exit.
    """
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines drown the task states
    cluster = None
    if not address:
        with dask.config.set(BOUNDED_HISTORY):  # read when the scheduler and the worker start
            cluster = outside_prefect(LocalCluster, **local_cluster_options(threads))
    client = outside_prefect(Client, address or cluster, set_as_default=True)
    try:
        if cluster is None:
            logger.info("Dask cluster at %s (dashboard %s)", address, client.dashboard_link)
        else:
            logger.info("local Dask cluster, dashboard at %s", local_dashboard_link(cluster))
        yield max(1, sum(client.nthreads().values()))
    finally:
        outside_prefect(client.close)
        if cluster is not None:
            outside_prefect(cluster.close)


def outside_prefect(function: Callable[..., Result], *args, **kwargs) -> Result:
    """``function(*args, **kwargs)`` in an empty context (no Prefect run in it).

    Dask's event loop keeps timers and tasks made while a cluster starts, runs and
    closes, each with the context it was made in; made inside a flow run, they would keep
    that run's context alive, and with it every task state and result of the run (measured:
    an hour of a night, 1,800 states, kept for the rest of the night).
    """
    return contextvars.Context().run(function, *args, **kwargs)


def local_dashboard_link(cluster) -> str:
    """The dashboard of a local cluster at the address it listens on (127.0.0.1), not the host's IP."""
    return f"http://127.0.0.1:{cluster.scheduler.http_server.port}/status"


def on_dask(function: Callable[..., Result], *args, name: str) -> Result:
    """Run ``function(*args)`` on the run's Dask cluster and return its result (its exception, raised here).

    ``name`` labels the Dask task (the dashboard's task stream shows it). Dask runs it
    again elsewhere if its worker dies (up to Dask's ``allowed-failures``). What the
    domain logs meanwhile (``ovro_ingest`` loggers) goes to the logs of the Prefect task
    run that called, in the UI (:func:`returning_errors`).
    """
    from distributed import default_client

    key = f"{name}-{uuid.uuid4().hex[:8]}"
    future = default_client().submit(returning_errors, function, *args, key=key, pure=False, run_ids=calling_run())
    try:
        result, error = future.result()
    finally:
        future.release()
    if error is not None:
        raise error
    return result


def returning_errors(
    function: Callable[..., Result], *args, run_ids: tuple[str, str] | None = None
) -> tuple[Result | None, Exception | None]:
    """``(function(*args), None)``, or ``(None, the exception)``: an error of the work is the task's, not Dask's.

    Dask would log a failed computation with its traceback on the console (and keep it
    as an erred task); the caller raises the error itself, where Prefect reports it once.
    ``run_ids`` (flow run id, task run id) of the calling Prefect task: the ``ovro_ingest``
    log records made meanwhile carry them, which is how Prefect's API log handler, on a
    Dask thread outside any run context, knows which run they belong to.
    """
    with logging_for_run(run_ids):
        try:
            return function(*args), None
        except Exception as error:
            return None, error


def calling_run() -> tuple[str, str] | None:
    """(flow run id, task run id) of the Prefect task run this thread is in; None outside one."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is None:
        return None
    return str(context.task_run.flow_run_id), str(context.task_run.id)


_working_for = threading.local()
_factory_lock = threading.Lock()
_factory_installed = False


@contextmanager
def logging_for_run(run_ids: tuple[str, str] | None) -> Iterator[None]:
    """While in it, ``ovro_ingest`` log records made by this thread carry ``run_ids`` as ``flow_run_id``/``task_run_id``.

    Prefect's API log handler takes a record's run from those attributes (Prefect's way
    of logging for a run from outside its context) instead of warning that it has none.
    """
    install_run_id_factory()
    _working_for.run_ids = run_ids
    try:
        yield
    finally:
        _working_for.run_ids = None


def install_run_id_factory() -> None:
    """Wrap the process's log record factory, once, to stamp :func:`logging_for_run`'s run ids on domain records."""
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def stamped(name: str, *args, **kwargs) -> logging.LogRecord:
            record = previous(name, *args, **kwargs)
            run_ids = getattr(_working_for, "run_ids", None)
            if run_ids and (name == "ovro_ingest" or name.startswith("ovro_ingest.")):
                record.flow_run_id, record.task_run_id = run_ids
            return record

        logging.setLogRecordFactory(stamped)
        _factory_installed = True
