"""Shared test setup: a private Prefect home, a real local Prefect server, synthetic data.

Prefect reads its settings when first imported, so the environment is set here,
before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PREFECT_HOME = Path(tempfile.mkdtemp(prefix="ovro-ingest-tests-prefect-"))
os.environ["PREFECT_HOME"] = str(PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.pop("PREFECT_API_URL", None)

REPO = Path(__file__).resolve().parent.parent
REAL_IMAGE = REPO.parent / "shared" / "data" / "ovro-lwa" / "test_image.fits"
"""Where CI keeps a real OVRO-LWA image (a WSClean all-sky ``*-I-image.fits``), beside the clone."""
REAL_IMAGE_VARIABLE = "OVRO_INGEST_REAL_IMAGE"
"""Names another real OVRO-LWA image for the tests that need one (see the README, "Tests with real data")."""
SERVER_START_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server (SQLite, 127.0.0.1) for the whole session; yields its API URL."""
    from flows.server import local_server_process

    with local_server_process(PREFECT_HOME / "server.log", SERVER_START_TIMEOUT_S) as url:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        os.environ["PREFECT_API_URL"] = url  # for Dask worker processes and CLI subprocesses
        try:
            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield url
        finally:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)
            os.environ.pop("PREFECT_API_URL", None)


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
