"""Operating it the Prefect way, end to end: stand-up, `prefect deployment run`, a failed run retried as the UI does.

Starts everything with deployments/stand-up (its own Prefect server on 127.0.0.1, a process
worker, the deployments of prefect.yaml) and stops it with deployments/stop.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import xarray as xr
from pydantic import TypeAdapter

from flows.automations import AUTOMATION_NAME
from flows.server import free_port
from ovro_ingest.synth import DEFAULT_START, generate
from tests.conftest import REPO, untraced_environment

pytestmark = pytest.mark.orchestration

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


def worker_log_tail(ops: Path, size: int = 6000) -> str:
    """The end of the stand-up worker's log (what the runs it started printed)."""
    log = ops / "worker.log"
    return log.read_text()[-size:] if log.exists() else ""


def child_runs(api: str, flow_run_id: str) -> list[dict]:
    """The child flow runs (one per hour of the night, every attempt) of a flow run."""
    body = {"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()


def task_runs(api: str, flow_run_id: str) -> list[dict]:
    """Every task run of one flow run and its child runs (all attempts), oldest update first."""
    runs = [flow_run_id, *(child["id"] for child in child_runs(api, flow_run_id))]
    body = {"flow_runs": {"id": {"any_": runs}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200}
    found = httpx.post(f"{api}/task_runs/filter", json=body, timeout=10).json()
    return sorted(found, key=lambda r: r["updated"])


def graph_nodes(api: str, flow_run_id: str) -> int:
    """Nodes of a flow run's graph as the UI draws it (the server refuses graphs over its node limit)."""
    response = httpx.get(f"{api}/flow_runs/{flow_run_id}/graph-v2", timeout=30)
    assert response.status_code == 200, response.text
    return len(response.json()["nodes"])


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


def deployment_run(env: dict, *args: str, watch: bool = True) -> tuple[str, subprocess.CompletedProcess]:
    """`prefect deployment run ... [--watch]`; returns the flow run id and the finished command."""
    result = subprocess.run(
        [PREFECT, "deployment", "run", *args, *(["--watch", "--watch-timeout", "300"] if watch else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    assert match, result.stdout + result.stderr
    return match.group(1), result


@pytest.mark.slow(150)
def test_stand_up_nightly_and_adhoc_runs_ui_retry_of_a_failed_run_then_stop(tmp_path):
    port, ops, nights, store = free_port(), tmp_path / "ops", tmp_path / "nights", tmp_path / "archive.zarr"
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    generate(nights / yesterday, time_steps=2, n_subbands=2, size=32)
    # a night across an hour: 05:59:49, 05:59:59 and 06:00:09 UTC, two child runs
    across_an_hour = DEFAULT_START.replace(day=25, minute=59, second=49)
    generate(nights / "2024-05-25", time_steps=3, n_subbands=2, size=32, start=across_an_hour)
    generate(tmp_path / "extra", time_steps=2, n_subbands=2, size=32, start=DEFAULT_START + timedelta(days=2))
    broken = next((nights / "2024-05-25").glob("20240525_055959_46MHz*.fits"))
    original = broken.read_bytes()
    broken.write_bytes(original[: len(original) // 2])

    # untraced: its server and worker run no project code, and its runs' code is covered in-process elsewhere
    env = {k: v for k, v in untraced_environment().items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
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
        vacuum = httpx.get(f"{api}/admin/settings", timeout=10).json()["server"]["services"]["db_vacuum"]
        retention = TypeAdapter(timedelta).validate_python(vacuum["retention_period"])
        assert set(vacuum["enabled"]) >= {"events", "flow_runs"} and retention == timedelta(days=30), vacuum
        deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
        nightly = next(d for d in deployments if d["name"] == "nightly")
        assert nightly["schedules"][0]["schedule"]["cron"] == "0 15 * * *"
        automations = httpx.post(f"{api}/automations/filter", json={}, timeout=10).json()
        zombies = [a for a in automations if a["name"] == AUTOMATION_NAME]
        assert len(zombies) == 1 and zombies[0]["trigger"]["posture"] == "Proactive", automations

        run_id, result = deployment_run(cli, "ingest/nightly")  # no parameter: yesterday's folder (UTC)
        finished = wait_for_final_state(api, run_id)
        assert finished["state"]["type"] == "COMPLETED", result.stdout
        assert finished["name"] == f"nightly {yesterday}", "a night reads as a night in the runs list"
        assert xr.open_zarr(store).sizes["time"] == 2
        nightly_triggers_the_timeseries_run(api, store, run_id)

        run_id, _ = deployment_run(
            cli, "ingest/adhoc", "--param", f"input_dir={tmp_path / 'extra'}", "--param", f"store={store}",
            "--param", "workers=1",
        )  # fmt: skip
        finished = wait_for_final_state(api, run_id)
        assert finished["state"]["type"] == "COMPLETED" and finished["name"] == str(tmp_path / "extra")
        assert xr.open_zarr(store).sizes["time"] == 4

        run_id, _ = deployment_run(cli, "ingest/nightly", "--param", "night=2024-05-25", "--param", "workers=1")
        finished = wait_for_final_state(api, run_id)
        assert finished["state"]["type"] == "FAILED" and finished["name"] == "nightly 2024-05-25"
        states = latest_task_states(api, run_id)
        assert states["fix-20240525_055959"] == "Failed", "the failing task's name shows the time step"
        assert xr.open_zarr(store).sizes["time"] == 6, "the other time steps are stored"
        hours = {child["name"]: child for child in child_runs(api, run_id)}
        assert sorted(hours) == ["2024-05-25 05:00 UTC", "2024-05-25 06:00 UTC"], "one child run per hour"
        assert hours["2024-05-25 05:00 UTC"]["state"]["type"] == "FAILED"
        assert hours["2024-05-25 06:00 UTC"]["state"]["type"] == "COMPLETED"
        # each run's graph stays small: the parent has a few nodes, an hour 5 tasks per time step
        assert (
            graph_nodes(api, run_id) <= 2 + len(hours) and graph_nodes(api, hours["2024-05-25 05:00 UTC"]["id"]) <= 10
        )
        stored = chunk_times_by_key(store)

        first_attempt = {run["id"] for run in task_runs(api, run_id)}
        broken.write_bytes(original)  # repaired; then Retry, as the UI's button does it
        retry = {"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": True}
        answer = httpx.post(f"{api}/flow_runs/{run_id}/set_state", json=retry, timeout=10)
        assert answer.status_code in (200, 201) and answer.json()["status"] == "ACCEPT", answer.text
        retried = wait_for_final_state(api, run_id)
        assert retried["state"]["type"] == "COMPLETED", (retried["state"], worker_log_tail(ops))
        states = latest_task_states(api, run_id)
        assert states["fix-20240525_055959"] == "Completed" and states["append-20240525_055959"] == "Completed"
        retried = {run["name"] for run in task_runs(api, run_id) if run["id"] not in first_attempt}
        steps_retried = {m[2] for name in retried if (m := re.fullmatch(r"(fix|load|combine|write|append)-(.+)", name))}
        assert steps_retried == {"20240525_055959"}, (
            "only the repaired time step is computed again: the others are in the store's ledger",
            retried,
        )
        children = child_runs(api, run_id)
        assert sorted(child["name"] for child in children) == ["2024-05-25 05:00 UTC"] * 2 + ["2024-05-25 06:00 UTC"], (
            "the retry runs the failed hour again and reuses the completed one"
        )
        assert not [child for child in children if child["state"]["type"] in ("FAILED", "CRASHED")], "no red run left"
        superseded = [child for child in children if child["state"]["name"] == "Superseded"]
        replacement = next(
            c for c in children if c["name"] == "2024-05-25 05:00 UTC" and c["state"]["name"] == "Completed"
        )
        assert len(superseded) == 1 and superseded[0]["name"] == "2024-05-25 05:00 UTC"
        assert replacement["id"] in superseded[0]["state"]["message"], "it names the run that replaced it"
        ds = xr.open_zarr(store)
        assert ds.sizes["time"] == 7 and list(ds["time_key"].values) == sorted(ds["time_key"].values)
        after = chunk_times_by_key(store)
        assert {key: after[key] for key in stored} == stored, "time steps stored before are not rewritten"

        server_pid = int((ops / "server.pid").read_text())
        assert listening_addresses(server_pid, port) == {"127.0.0.1"}, "the operator's server is local only"
        marker = tmp_path / "pwned"
        run_id, _ = deployment_run(
            cli, "ingest/adhoc", "--param", f"input_dir=$(touch {marker})", "--param", f"store={tmp_path / 'x.zarr'}"
        )
        run = wait_for_final_state(api, run_id)
        assert run["state"]["type"] == "FAILED" and "does not exist" in run["state"]["message"]
        assert not marker.exists(), "a parameter is a path, never a command"

        two_deployments_and_the_cli_race_for_one_store(tmp_path, cli, api)
    finally:
        down = subprocess.run([REPO / "deployments" / "stop"], env=env, capture_output=True, text=True, timeout=400)
    worker_log = (ops / "worker.log").read_text()[-6000:] if (ops / "worker.log").exists() else ""
    assert "the worker's flow runs have ended" in down.stdout, f"its runs end before it is stopped: {down.stdout}"
    # Prefect 3.9's worker sometimes loses its own shutdown (deployments/stop): killed idle, it loses no run
    worker_stopped = "stopped the worker" in down.stdout or "killed the idle worker" in down.stdout
    assert worker_stopped and "stopped the server" in down.stdout, (
        f"both stop (the worker on SIGTERM, or killed idle): {down.stdout}\nthe worker's log ends with (thread stacks if it was killed):\n{worker_log}"
    )
    assert not list(ops.glob("*.pid"))
    assert "Traceback" not in (ops / "worker.log").read_text(), "the refused runs and time steps are no crashes"


def listening_addresses(pid: int, port: int) -> set[str]:
    """The IP addresses process ``pid`` (or its children) listens on at ``port``."""
    import psutil

    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {
        c.laddr.ip
        for p in processes
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def two_deployments_and_the_cli_race_for_one_store(tmp_path: Path, cli: dict, api: str) -> None:
    """Two deployment runs and an `ovro-ingest run` start at once on one store, first failing fast, then waiting."""
    night = tmp_path / "race-night"
    generate(night, time_steps=3, n_subbands=2, size=32, start=DEFAULT_START + timedelta(days=3))
    for wait, store in ((0, tmp_path / "race-fast.zarr"), (300, tmp_path / "race-wait.zarr")):
        params = ["--param", f"input_dir={night}", "--param", f"store={store}", "--param", "workers=1"]
        params += ["--param", f"wait_for_lock={wait}"]
        runs = [deployment_run(cli, "ingest/adhoc", *params, watch=False)[0] for _ in range(2)]
        command = [str(Path(sys.executable).parent / "ovro-ingest"), "run", str(night), str(store)]
        command += ["--workers", "1", "--chunk-lm", "32", "--wait-for-lock", str(wait)]
        by_cli = subprocess.run(command, env=cli, capture_output=True, text=True, timeout=600)
        finals = [wait_for_final_state(api, run_id) for run_id in runs]
        outcomes = [f["state"]["type"] for f in finals] + ["COMPLETED" if by_cli.returncode == 0 else "FAILED"]
        messages = [f["state"]["message"] or "" for f in finals if f["state"]["type"] != "COMPLETED"]
        if by_cli.returncode != 0:
            messages.append(by_cli.stdout + by_cli.stderr)
        assert "COMPLETED" in outcomes, (outcomes, messages)
        assert all(re.search(r"holds the (store|Prefect concurrency limit)", m) for m in messages), messages
        if wait:
            assert outcomes == ["COMPLETED"] * 3, ("writers that wait all finish", messages)
        keys = list(xr.open_zarr(store)["time_key"].values)
        assert keys == sorted(set(keys)) and len(keys) == 3, "no time step lost or stored twice"


def nightly_triggers_the_timeseries_run(api: str, store: Path, nightly_run_id: str, timeout: float = 300) -> None:
    """The completed nightly run starts a run of timeseries/after-nightly by itself (a deployment trigger).

    Waits for that run to finish (so that it no longer holds the archive's lock), then
    checks that the time-series store beside the archive holds the archive's time steps.
    """
    import numpy as np

    nightly = httpx.get(f"{api}/flow_runs/{nightly_run_id}", timeout=10).json()
    body = {"deployments": {"name": {"any_": ["after-nightly"]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 20}
    deadline = time.monotonic() + timeout
    triggered = []
    while not triggered and time.monotonic() < deadline:
        runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
        triggered = [r for r in runs if r["created"] >= nightly["end_time"]]
        time.sleep(1)
    assert triggered, f"no timeseries/after-nightly run within {timeout} s of the nightly run's completion"
    run = wait_for_final_state(api, triggered[-1]["id"], timeout)
    assert run["state"]["type"] == "COMPLETED", run["state"]["message"]
    timeseries = store.with_name(store.name.removesuffix(".zarr") + ".timeseries.zarr")
    archive, series = xr.open_zarr(store, chunks=None), xr.open_zarr(timeseries, chunks=None)
    assert series.sizes == archive.sizes and series.attrs["ovro_ingest_timeseries"]["archive"] == str(store)
    np.testing.assert_array_equal(series["SKY"].values, archive["SKY"].values)
