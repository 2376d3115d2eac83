"""Operating it the Prefect way, end to end: stand-up, `prefect deployment run`, a failed run retried as the UI does.

Starts everything with deployments/stand-up (its own Prefect server on 127.0.0.1, a process
worker, the deployments of prefect.yaml) and stops it with deployments/stop.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import xarray as xr

from flows.server import free_port
from ovro_ingest.synth import DEFAULT_START, generate
from tests.conftest import REPO

PREFECT = str(Path(sys.executable).parent / "prefect")


def wait_for_final_state(api: str, flow_run_id: str, timeout: float = 300) -> dict:
    """Poll the flow run until it is Completed, Failed or Crashed; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(1)
    raise TimeoutError(f"flow run {flow_run_id} did not finish in {timeout} s")


def task_runs(api: str, flow_run_id: str) -> list[dict]:
    """Every task run of one flow run (all its attempts), oldest update first."""
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200}
    runs = httpx.post(f"{api}/task_runs/filter", json=body, timeout=10).json()
    return sorted(runs, key=lambda r: r["updated"])


def latest_task_states(api: str, flow_run_id: str) -> dict[str, str]:
    """Task run name -> state name of its latest run, for one flow run."""
    return {run["name"]: run["state"]["name"] for run in task_runs(api, flow_run_id)}


def chunk_times_by_key(store: Path) -> dict[str, dict[str, int]]:
    """Time key -> (chunk file -> mtime) of every stored time step (a backfill renames folders, not files)."""
    keys = xr.open_zarr(store)["time_key"].values
    return {
        str(key): {str(p.relative_to(store / "SKY" / "c" / str(index))): p.stat().st_mtime_ns
                   for p in (store / "SKY" / "c" / str(index)).rglob("*") if p.is_file()}
        for index, key in enumerate(keys)
    }  # fmt: skip


def deployment_run(env: dict, *args: str) -> tuple[str, subprocess.CompletedProcess]:
    """`prefect deployment run ... --watch`; returns the flow run id and the finished command."""
    result = subprocess.run(
        [PREFECT, "deployment", "run", *args, "--watch", "--watch-timeout", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    assert match, result.stdout + result.stderr
    return match.group(1), result


def test_stand_up_nightly_and_adhoc_runs_ui_retry_of_a_failed_run_then_stop(tmp_path):
    port, ops, nights, store = free_port(), tmp_path / "ops", tmp_path / "nights", tmp_path / "archive.zarr"
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    generate(nights / yesterday, time_steps=2, n_subbands=2, size=32)
    generate(nights / "2024-05-25", time_steps=3, n_subbands=2, size=32, start=DEFAULT_START + timedelta(days=1))
    generate(tmp_path / "extra", time_steps=2, n_subbands=2, size=32, start=DEFAULT_START + timedelta(days=2))
    broken = next((nights / "2024-05-25").glob("20240525_050019_46MHz*.fits"))
    original = broken.read_bytes()
    broken.write_bytes(original[: len(original) // 2])

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env.update(
        OVRO_OPS_DIR=str(ops),
        OVRO_PREFECT_PORT=str(port),
        OVRO_INPUT_ROOT=str(nights),
        OVRO_STORE=str(store),
        OVRO_PYTHON=sys.executable,
        PREFECT_WORKER_QUERY_SECONDS="1",
    )
    api = f"http://127.0.0.1:{port}/api"
    cli = {**env, "PREFECT_API_URL": api, "PREFECT_HOME": str(ops / "home")}
    try:
        up = subprocess.run([REPO / "deployments" / "stand-up"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
        nightly = next(d for d in deployments if d["name"] == "nightly")
        assert nightly["schedules"][0]["schedule"]["cron"] == "0 15 * * *"

        run_id, result = deployment_run(cli, "ingest/nightly")  # no parameter: yesterday's folder (UTC)
        assert wait_for_final_state(api, run_id)["state"]["type"] == "COMPLETED", result.stdout
        assert xr.open_zarr(store).sizes["time"] == 2

        run_id, _ = deployment_run(
            cli, "ingest/adhoc", "--param", f"input_dir={tmp_path / 'extra'}", "--param", f"store={store}",
            "--param", "workers=1",
        )  # fmt: skip
        assert wait_for_final_state(api, run_id)["state"]["type"] == "COMPLETED"
        assert xr.open_zarr(store).sizes["time"] == 4

        run_id, _ = deployment_run(cli, "ingest/nightly", "--param", "night=2024-05-25", "--param", "workers=1")
        assert wait_for_final_state(api, run_id)["state"]["type"] == "FAILED"
        states = latest_task_states(api, run_id)
        assert states["fix-20240525_050019"] == "Failed", "the failing task's name shows the time step"
        assert xr.open_zarr(store).sizes["time"] == 6, "the other time steps are stored"
        stored = chunk_times_by_key(store)

        first_attempt = {run["id"] for run in task_runs(api, run_id)}
        broken.write_bytes(original)  # repaired; then Retry, as the UI's button does it
        retry = {"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": True}
        assert httpx.post(f"{api}/flow_runs/{run_id}/set_state", json=retry, timeout=10).status_code in (200, 201)
        assert wait_for_final_state(api, run_id)["state"]["type"] == "COMPLETED"
        states = latest_task_states(api, run_id)
        assert states["fix-20240525_050019"] == "Completed" and states["append-20240525_050019"] == "Completed"
        retried = {run["name"] for run in task_runs(api, run_id) if run["id"] not in first_attempt}
        assert not [name for name in retried if name.endswith(("20240525_050009", "20240525_050029"))], (
            "stored time steps: the store's ledger skips them, no task runs again"
        )
        ds = xr.open_zarr(store)
        assert ds.sizes["time"] == 7 and list(ds["time_key"].values) == sorted(ds["time_key"].values)
        after = chunk_times_by_key(store)
        assert {key: after[key] for key in stored} == stored, "time steps stored before are not rewritten"
    finally:
        down = subprocess.run([REPO / "deployments" / "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert "stopped the worker" in down.stdout and "stopped the server" in down.stdout
    assert not list(ops.glob("*.pid"))
