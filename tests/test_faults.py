"""Faults during a run: a full disk, the Prefect server going away, errors inside Dask workers.

After each, a re-run completes and the store validates and equals an uninterrupted
run's. (SIGKILL of the flow process and of a Dask worker: ``test_cli.py``,
``test_ingest_flow.py`` and ``test_crash.py``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from ovro_ingest.failpoints import ENVIRONMENT_VARIABLE
from ovro_ingest.health import validate_store
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings
from ovro_ingest.synth import generate
from tests.conftest import untraced
from tests.store_checks import assert_same_store

CLI = str(Path(sys.executable).parent / "ovro-ingest")
CHUNK = 64


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, "run", *args, "--workers", "1", "--chunk-lm", str(CHUNK)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def disk_usage(path: Path) -> int:
    """Bytes of disk blocks the files under ``path`` occupy (what a tmpfs counts)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def mount_small_tmpfs(where: Path, size_bytes: int) -> bool:
    """Mount a tmpfs of ``size_bytes`` at ``where``; False when this machine does not allow it."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def night(tmp_path) -> tuple[Path, Path]:
    """Six time steps and the store an uninterrupted run makes of them."""
    folder = tmp_path / "night"
    generate(folder, time_steps=6, n_subbands=2, size=128)
    reference = tmp_path / "reference.zarr"
    ingest_directory(folder, reference, settings=StoreSettings(chunk_lm=CHUNK))
    return folder, reference


@pytest.mark.slow(19)
@pytest.mark.usefixtures("prefect_server")
def test_a_full_disk_fails_the_time_steps_it_hits_in_one_line_and_a_rerun_with_space_completes(night, tmp_path):
    folder, reference = night
    small = tmp_path / "small"
    size = disk_usage(reference) * 6 // 10  # room for about half the night
    mounted = mount_small_tmpfs(small, size)
    injected = {} if mounted else {ENVIRONMENT_VARIABLE: "stage:chunk=ENOSPC"}  # no mount allowed: at the write layer
    store = small / "s.zarr" if mounted else tmp_path / "s.zarr"
    try:
        first = run_cli(str(folder), str(store), env=injected)
        assert first.returncode == 1, first.stdout + first.stderr
        failed = [line for line in first.stdout.splitlines() if line.startswith("failed ")]
        assert failed and all("no space left on its device" in line and str(store) in line for line in failed)
        assert "Traceback" not in first.stdout + first.stderr
        assert validate_store(store).ok, "what is stored stays valid"
        stored_before = list(xr.open_zarr(store)["time_key"].values)
        if mounted:
            assert 0 < len(stored_before) < 6, "the disk filled in the middle of the night"
            subprocess.run(["mount", "-o", "remount,size=256m", str(small)], check=True)
        second = run_cli(str(folder), str(store))
        assert second.returncode == 0, second.stdout + second.stderr
        assert validate_store(store).ok
        assert_same_store(store, reference)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(small)], check=False)


@pytest.mark.slow(40)
@pytest.mark.orchestration
def test_losing_the_prefect_server_mid_run_leaves_a_valid_store_and_a_rerun_completes(
    tmp_path, monkeypatch, prefect_server
):
    from flows.server import local_server_process

    folder, reference, store = tmp_path / "night", tmp_path / "reference.zarr", tmp_path / "s.zarr"
    generate(folder, time_steps=3, n_subbands=2, size=64)
    ingest_directory(folder, reference, settings=StoreSettings(chunk_lm=CHUNK))
    monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", "1")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))  # a server of its own, on its own SQLite
    (tmp_path / "prefect-home").mkdir()
    command = [CLI, "run", str(folder), str(store), "--workers", "1", "--chunk-lm", str(CHUNK)]
    traced = dict(os.environ)  # the runs are traced; the server runs no project code
    with untraced(), local_server_process(tmp_path / "server.log") as url:
        run = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**traced, "PREFECT_API_URL": url},
        )
        deadline = time.monotonic() + 300
        while not store.exists():  # created: every time step is planned, none committed yet
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before it created the store"
            time.sleep(0.05)
        port = url.rsplit(":", 1)[1].split("/")[0]
        subprocess.run(["pkill", "-KILL", "-f", f"prefect server start .*--port {port}"], check=False)
        output, _ = run.communicate(timeout=600)
    assert run.returncode != 0, output
    assert "Traceback" not in output and "lost the Prefect server" in output, output[-3000:]
    assert validate_store(store).ok, "the store is valid whatever the run got to"
    # the re-run reports to another server (the test session's), as after moving to a new one
    again = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "PREFECT_API_URL": prefect_server}
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert validate_store(store).ok
    assert_same_store(store, reference)


@pytest.mark.orchestration
@pytest.mark.usefixtures("prefect_server")
def test_an_error_in_a_task_or_inside_a_dask_worker_reaches_the_prefect_api_with_its_message_intact(
    tmp_path, monkeypatch
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    from tests.test_ingest_flow import child_runs, run_ingest, task_runs

    folder = tmp_path / "night"
    generate(folder, time_steps=2, n_subbands=2, size=32)
    broken = next(folder.glob("20240524_050019_46MHz*.fits"))
    broken.write_bytes(broken.read_bytes()[:-3000])  # into the pixels, past the 2880-byte padding
    # the other time step's staging (on the run's Dask cluster, threads of this process) meets a full disk
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "stage:chunk=ENOSPC")
    state, _ = run_ingest(input_dir=folder, store=tmp_path / "s.zarr", workers=1)
    assert state.is_failed()
    runs = task_runs(state)
    APILogWorker.drain_all(timeout=10)  # log lines go to the server in batches
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=child_runs(state))))
    expected = {
        "fix-20240524_050019": f"{broken}: truncated FITS file (",
        "write-20240524_050009": "no space left on its device while staging time step 20240524_050009",
    }
    for name, message in expected.items():
        assert runs[name].state.type.value == "FAILED" and message in runs[name].state.message, runs[name].state
        assert any(message in log.message for log in logs), "the UI gets the line"
        assert not any(message in log.message and "Traceback" in log.message for log in logs), "a refusal, no crash"
