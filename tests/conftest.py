"""Shared test setup: a private Prefect home, one real local Prefect server, synthetic data, test selection.

Prefect reads its settings when first imported, so the environment is set here,
before any test module imports it.

Markers (declared in pyproject.toml; see the docs' testing page):

- ``stack``: what the newest stack (zarr, numcodecs, numpy, xarray, xradio, astropy) could
  change; CI's second pass runs only these. Every test gets it unless its module or the
  test itself is marked ``orchestration``; a test of an ``orchestration`` module that also
  reads or writes through the stack is marked ``stack`` itself.
- ``orchestration``: checks Prefect, the CLI, the operator's scripts or the benchmarks,
  and reaches stores only through code that ``stack`` tests check.
- ``slow(seconds)``: takes that long in CI; the slow tests start first, spread over the
  test workers, so that the workers finish together.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PREFECT_HOME = Path(tempfile.mkdtemp(prefix="ovro-ingest-tests-prefect-"))
os.environ["PREFECT_HOME"] = str(PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.pop("PREFECT_API_URL", None)

SESSION_VARIABLE = "OVRO_INGEST_TEST_SESSION"
"""The folder a test session's processes share (its Prefect server's home and record): made by the first
process, inherited by pytest-xdist's workers; any other pytest (one a test starts, say) makes its own."""
if not os.environ.get("PYTEST_XDIST_WORKER") or not os.environ.get(SESSION_VARIABLE):
    os.environ[SESSION_VARIABLE] = tempfile.mkdtemp(prefix="ovro-ingest-tests-session-")
SESSION = Path(os.environ[SESSION_VARIABLE])
SERVER_HOME = SESSION / "prefect-server"

REPO = Path(__file__).resolve().parent.parent
REAL_IMAGE = REPO.parent / "shared" / "data" / "ovro-lwa" / "test_image.fits"
"""Where CI keeps a real OVRO-LWA image (a WSClean all-sky ``*-I-image.fits``), beside the clone."""
REAL_IMAGE_VARIABLE = "OVRO_INGEST_REAL_IMAGE"
"""Names another real OVRO-LWA image for the tests that need one (see docs/testing.md, "Tests with real data")."""
SERVER_START_TIMEOUT_S = 180


def session_server_url() -> str:
    """The API URL of the test session's one Prefect server, started by whichever worker asks first.

    The server is ``ovro-ingest server start``'s kept server (flows/server.py) for a Prefect
    home of the session's own; a file lock makes the other workers wait for it instead of
    starting a second one. The session's first process stops it (``pytest_unconfigure``).
    """
    from flows.server import start_kept_server

    with untraced(), open(SESSION / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return start_kept_server(timeout_s=SERVER_START_TIMEOUT_S, home=SERVER_HOME)["api_url"]


COVERAGE_VARIABLE = "COVERAGE_PROCESS_CONFIG"
"""Set by coverage (``patch = ["subprocess"]``) for the Python processes a traced test starts to be traced too."""


def untraced_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) without coverage's setting: a process started with it runs untraced.

    For processes that run none of the project's code (a Prefect server or worker) or whose
    code other tests cover in-process (the benchmarks, the operator's scripts): a tracer slows
    each of them by about half (the night-scale smoke run took 190 s traced, 101 s not).
    """
    return {k: v for k, v in (os.environ if env is None else env).items() if k != COVERAGE_VARIABLE}


@contextmanager
def untraced() -> Iterator[None]:
    """Within the block, the processes this process starts run untraced (see :func:`untraced_environment`)."""
    traced = os.environ.pop(COVERAGE_VARIABLE, None)
    try:
        yield
    finally:
        if traced is not None:
            os.environ[COVERAGE_VARIABLE] = traced


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """The session's real Prefect server (SQLite, 127.0.0.1), shared by every test worker; yields its API URL."""
    url = session_server_url()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = url  # for Dask worker processes and CLI subprocesses
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        os.environ.pop("PREFECT_API_URL", None)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test not marked ``orchestration`` ``stack``."""
    for item in items:
        if item.get_closest_marker("orchestration") is None:
            item.add_marker(pytest.mark.stack)


@pytest.hookimpl(tryfirst=True)  # after ``-m`` and ``-k`` selected, before pytest-xdist reads the order
def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the slow tests first, spread over the test workers."""
    items = session.items
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        items[:] = spread_slow_tests_first(items, workers)


def spread_slow_tests_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """Reorder ``items`` so that each worker's share, as pytest-xdist's worksteal cuts it, starts with slow tests.

    Worksteal hands the first ``n // workers`` items to the first worker, and so on, and
    later moves queued tests from a busy worker's tail to an idle one; a running test
    cannot move, so the slow ones are dealt out first, the slowest to the least loaded share
    (by their ``slow(seconds)``). The order must not depend on anything but the items:
    every worker collects and orders them alike.
    """
    slow = sorted(
        (item for item in items if item.get_closest_marker("slow")),
        key=lambda item: -item.get_closest_marker("slow").args[0],
    )
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for item in slow:
        lightest = loads.index(min(loads))
        shares[lightest].append(item)
        loads[lightest] += item.get_closest_marker("slow").args[0]
    rest = iter(item for item in items if not item.get_closest_marker("slow"))
    remaining = len(items)
    for index, share in enumerate(shares):
        size = remaining // (workers - index)  # what worksteal sends this worker
        share.extend(next(rest) for _ in range(max(0, size - len(share))))
        remaining -= len(share)
    shares[-1].extend(rest)
    return [item for share in shares for item in share]


@pytest.fixture
def make_data(tmp_path: Path) -> Callable[..., Path]:
    """Generate a synthetic data set in a fresh folder; returns the folder."""
    from ovro_ingest.synth import generate

    counter = iter(range(1000))

    def make(time_steps: int = 3, n_subbands: int = 3, size: int = 64, naming: str = "legacy", **kwargs) -> Path:
        folder = tmp_path / f"input{next(counter)}"
        generate(folder, time_steps=time_steps, n_subbands=n_subbands, size=size, naming=naming, **kwargs)
        return folder

    return make


@pytest.fixture
def real_image() -> Path:
    """A real OVRO-LWA image: ``$OVRO_INGEST_REAL_IMAGE``, else the shared folder's (the test is skipped without one).

    A variable that names no file is an error, not a skip, so that a mistyped path
    does not quietly leave the real-data tests out.
    """
    named = os.environ.get(REAL_IMAGE_VARIABLE)
    if named:
        if not Path(named).is_file():
            pytest.fail(f"{REAL_IMAGE_VARIABLE}={named} is not a file; name a real OVRO-LWA *-I-image.fits")
        return Path(named)
    if not REAL_IMAGE.is_file():
        pytest.skip(
            f"no real OVRO-LWA image: to run this test, set {REAL_IMAGE_VARIABLE}=/path/to/an OVRO-LWA "
            f"*-I-image.fits (a WSClean all-sky image), or copy one to {REAL_IMAGE}"
        )
    return REAL_IMAGE


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the private Prefect home."""
    import shutil

    shutil.rmtree(PREFECT_HOME, ignore_errors=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """In the session's first process, after every worker ended: stop the session's Prefect server, remove its folder."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import shutil

    from flows.server import stop_kept_server

    stop_kept_server(home=SERVER_HOME)
    shutil.rmtree(SESSION, ignore_errors=True)
