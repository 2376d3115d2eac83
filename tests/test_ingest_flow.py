"""The ingest flow on a real Prefect server and real Dask clusters: end to end, resume, repair."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.time import Time

from ovro_ingest.discover import discover_time_steps
from ovro_ingest.handle import Store
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings
from ovro_ingest.synth import DEFAULT_START, generate

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.orchestration]


def run_ingest(**parameters):
    """Run the flow with a 2-thread local cluster; return (final state, result or exception)."""
    from flows.ingest import ingest

    parameters.setdefault("workers", 2)
    if "settings_block" not in parameters:
        parameters.setdefault("chunk_lm", 32)
    state = ingest(**{k: str(v) if isinstance(v, Path) else v for k, v in parameters.items()}, return_state=True)
    return state, state.result(raise_on_failure=False)


def child_runs(state) -> list:
    """The ids of the child flow runs (one per hour) of the flow run of ``state``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    parent = FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
    with get_client(sync_client=True) as client:
        return [run.id for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))]


def task_runs(state) -> dict[str, object]:
    """Task run name -> task run, for the flow run of ``state`` and its child runs (one per hour)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = [state.state_details.flow_run_id, *child_runs(state)]
    with get_client(sync_client=True) as client:
        found = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=runs)))
    return {run.name: run for run in found}


def task_states(state) -> dict[str, str]:
    """Task run name -> state name, for the flow run of ``state`` and its child runs."""
    return {name: run.state.name for name, run in task_runs(state).items()}


def flow_run(state):
    """The flow run of ``state``, as the server holds it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def run_logs(state) -> list[str]:
    """Every log message of the flow run of ``state``, its child runs and their task runs, as the UI shows them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    runs = [state.state_details.flow_run_id, *child_runs(state)]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=runs)), limit=200)
    return [log.message for log in logs]


def test_a_refused_file_fails_its_task_run_with_its_one_line_as_the_message_and_no_traceback(tmp_path):
    inputs = tmp_path / "night"
    generate(inputs, time_steps=2, n_subbands=2, size=32)
    steps = discover_time_steps(inputs).time_steps
    broken = Path(steps[1].files[0].path)
    broken.write_bytes(broken.read_bytes()[:-3000])
    state, error = run_ingest(input_dir=inputs, store=tmp_path / "s.zarr")
    line = error.summary.outcomes[1].error
    assert "truncated" in line and broken.name in line and "\n" not in line
    task = task_runs(state)[f"fix-{steps[1].key}"]
    assert task.state.type.value == "FAILED" and task.state.message == line, "the state's message is the line"
    assert state.is_failed() and state.message == str(error) and state.message.startswith("1 of 2 time steps failed")
    assert flow_run(state).name == str(inputs), "an ad-hoc run is named after its input folder"
    logs = run_logs(state)
    assert any(line in message for message in logs), "the line is in the run's logs"
    assert not [message for message in logs if "Traceback" in message], "an expected refusal is not a crash"


def snapshot(store: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in store.rglob("*") if p.is_file()}


@pytest.mark.stack
def test_flow_ingests_both_naming_conventions_exactly(tmp_path):
    inputs = tmp_path / "night"
    generate(inputs, time_steps=2, n_subbands=3, size=64, naming="legacy")
    generate(inputs, time_steps=2, n_subbands=3, size=64, naming="current", start=DEFAULT_START + timedelta(minutes=5))
    state, summary = run_ingest(input_dir=inputs, store=tmp_path / "s.zarr")
    assert state.is_completed(), summary
    assert [o.status for o in summary.outcomes] == ["written"] * 4

    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert ds["SKY"].dims == ("time", "frequency", "polarization", "l", "m") and ds["SKY"].dtype == np.float32
    steps = discover_time_steps(inputs).time_steps
    assert list(ds["time_key"].values) == [s.key for s in steps]
    assert np.all(np.diff(ds["time"].values) > 0) and np.all(np.diff(ds["frequency"].values) > 0)
    for t, step in enumerate(steps):
        for f, source in enumerate(step.files):
            with fits.open(source.path) as hdul:
                np.testing.assert_array_equal(ds["SKY"].values[t, f, 0], hdul[0].data[0, 0].T)
                assert ds["time"].values[t] == Time(hdul[0].header["DATE-OBS"], scale="utc").mjd

    names = task_states(state)
    for step in steps:
        for prefix in ("fix", "load", "combine", "write", "append"):
            assert names[f"{prefix}-{step.key}"] == "Completed"
    (run,) = ds.attrs["ovro_ingest_runs"]
    assert run["flow_run_id"] == str(state.state_details.flow_run_id) and run["time_steps"] == summary.one_line()
    assert run["parameters"]["input_dir"] == str(inputs) and run["software"]["xradio"]


def test_failed_time_step_is_the_only_one_recomputed_after_repair_and_a_rerun_does_nothing(tmp_path):
    inputs, store = tmp_path / "night", tmp_path / "s.zarr"
    generate(inputs, time_steps=3, n_subbands=3, size=64)
    steps = discover_time_steps(inputs).time_steps
    broken = Path(steps[1].files[2].path)
    original = broken.read_bytes()
    broken.write_bytes(original[: len(original) // 2])

    state, error = run_ingest(input_dir=inputs, store=store)
    assert state.is_failed()
    assert [o.status for o in error.summary.outcomes] == ["written", "failed", "written"]
    assert broken.name in error.summary.outcomes[1].error and "truncated" in error.summary.outcomes[1].error
    assert list(xr.open_zarr(store)["time_key"].values) == [steps[0].key, steps[2].key]

    broken.write_bytes(original)  # repaired (a new mtime)
    state, summary = run_ingest(input_dir=inputs, store=store)
    assert state.is_completed()
    assert [o.status for o in summary.outcomes] == ["already stored", "written", "already stored"]
    names = task_states(state)
    for prefix in ("fix", "load", "combine", "write", "append"):
        assert names[f"{prefix}-{steps[1].key}"] == "Completed", "the repaired time step is recomputed"
    for step in (steps[0], steps[2]):  # the store holds them from these very files: no task at all
        assert not [name for name in names if name.endswith(step.key)]
    reference = tmp_path / "reference.zarr"
    ingest_directory(inputs, reference, settings=StoreSettings(chunk_lm=32))
    got, want = xr.open_zarr(store), xr.open_zarr(reference)
    for name in ("SKY", "time", "time_key", "BEAM_FIT_PARAMS_SKY", "frequency", "l", "m"):
        np.testing.assert_array_equal(got[name].values, want[name].values)

    before = snapshot(store)
    state, summary = run_ingest(input_dir=inputs, store=store)
    assert state.is_completed()
    states = task_states(state)
    # the store (the ledger) says every time step is there: nothing is computed, not even from the cache
    assert sorted(states) == ["discover"]
    assert [o.status for o in summary.outcomes] == ["already stored"] * 3
    assert snapshot(store) == before, "a re-run must leave the store as it was"


def test_a_cached_result_made_by_other_domain_code_is_not_reused(tmp_path, monkeypatch):
    import shutil

    import ovro_ingest
    import tasks.cache

    inputs, store = tmp_path / "night", tmp_path / "s.zarr"
    generate(inputs, time_steps=1, n_subbands=2, size=32)
    assert run_ingest(input_dir=inputs, store=store)[0].is_completed()
    state, _ = run_ingest(input_dir=inputs, store=store)
    assert task_states(state) == {"discover": "Cached"}

    changed = tmp_path / "ovro_ingest"  # the domain code with one line changed (the version is the same)
    shutil.copytree(Path(ovro_ingest.__file__).parent, changed, ignore=shutil.ignore_patterns("__pycache__"))
    assert tasks.cache.source_fingerprint(changed) == tasks.cache.DOMAIN_SOURCE
    (changed / "discover.py").write_text((changed / "discover.py").read_text() + "\n# changed\n")
    monkeypatch.setattr(tasks.cache, "DOMAIN_SOURCE", tasks.cache.source_fingerprint(changed))
    assert tasks.cache.source_fingerprint(Path(ovro_ingest.__file__).parent) != tasks.cache.DOMAIN_SOURCE
    state, _ = run_ingest(input_dir=inputs, store=store)
    assert task_states(state) == {"discover": "Completed"}, "the listing is the same, the code is not"


def test_rebuild_with_a_warm_cache_writes_everything_again(tmp_path):
    inputs, store = tmp_path / "night", tmp_path / "s.zarr"
    generate(inputs, time_steps=2, n_subbands=2, size=32)
    assert run_ingest(input_dir=inputs, store=store)[0].is_completed()
    state, summary = run_ingest(input_dir=inputs, store=store, rebuild=True)
    assert state.is_completed()
    assert [o.status for o in summary.outcomes] == ["written", "written"]
    assert task_states(state)["append-20240524_050019"] == "Completed"
    assert xr.open_zarr(store).sizes["time"] == 2


def test_a_rebuild_keeps_no_picture_of_a_night_the_new_store_does_not_hold(tmp_path):
    first, other, store = tmp_path / "first", tmp_path / "other", tmp_path / "s.zarr"
    generate(first, time_steps=1, n_subbands=2, size=32)
    generate(other, time_steps=1, n_subbands=2, size=32, start=DEFAULT_START + timedelta(days=1))
    assert run_ingest(input_dir=first, store=store)[0].is_completed()
    pictures = tmp_path / "s.zarr.work" / "quicklook"
    assert [p.name for p in pictures.iterdir()] == ["2024-05-24.png"]
    assert run_ingest(input_dir=other, store=store, rebuild=True)[0].is_completed()
    assert [p.name for p in pictures.iterdir()] == ["2024-05-25.png"]


@contextmanager
def dask_processes(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A `dask scheduler` and a `dask worker` (2 worker processes, each under a nanny) as separate programs."""
    scheduler_file = tmp_path / "scheduler.json"
    bin_dir = Path(sys.executable).parent
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env or dict(os.environ)}
    scheduler = subprocess.Popen(
        [bin_dir / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", scheduler_file],
        **quiet,
    )  # fmt: skip
    workers = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = subprocess.Popen(
            [bin_dir / "dask", "worker", "--scheduler-file", scheduler_file, "--nworkers", "2", "--nthreads", "1",
             "--no-dashboard"],
            **quiet,
        )  # fmt: skip
        from distributed import Client

        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in (workers, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


@pytest.fixture
def dask_cluster(tmp_path) -> Iterator[str]:
    """The address of a Dask cluster of separate processes (see :func:`dask_processes`)."""
    with dask_processes(tmp_path) as address:
        yield address


def test_flow_runs_on_an_existing_dask_cluster(tmp_path, dask_cluster):
    from distributed import Client, get_task_stream

    inputs = tmp_path / "night"
    generate(inputs, time_steps=2, n_subbands=2, size=32)
    with Client(dask_cluster) as client, get_task_stream(client) as stream:
        state, summary = run_ingest(input_dir=inputs, store=tmp_path / "s.zarr", dask_address=dask_cluster)
    assert state.is_completed(), summary
    assert xr.open_zarr(tmp_path / "s.zarr").sizes["time"] == 2
    ran = [entry["key"] for entry in stream.data]
    assert sum(str(key).startswith("write-2024") for key in ran) == 2, "each time step is staged on the cluster"


def test_a_run_that_cannot_reach_its_dask_cluster_fails_and_leaves_no_store_behind(tmp_path):
    import socket

    import dask

    inputs = tmp_path / "night"
    generate(inputs, time_steps=1, n_subbands=2, size=32)
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        nowhere = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        state, error = run_ingest(input_dir=inputs, store=tmp_path / "s.zarr", dask_address=nowhere)
    assert state.is_failed() and "Timed out trying to connect" in str(error), error
    assert not (tmp_path / "s.zarr").exists(), "no empty store made before the cluster was reached"


def test_time_steps_are_written_concurrently_and_committed_in_time_order(tmp_path):
    inputs = tmp_path / "night"
    generate(inputs, time_steps=4, n_subbands=4, size=512)
    state, summary = run_ingest(input_dir=inputs, store=tmp_path / "s.zarr", chunk_lm=128)
    assert state.is_completed(), summary
    runs = task_runs(state)
    keys = [o.key for o in summary.outcomes]
    writes = [(runs[f"write-{k}"].start_time, runs[f"write-{k}"].end_time) for k in keys]
    overlapping = [(a, b) for a in writes for b in writes if a < b and b[0] < a[1]]
    assert overlapping, f"no two time steps were written at the same time: {writes}"
    commits = [runs[f"append-{k}"].start_time for k in keys]
    assert commits == sorted(commits)
    assert [o.index for o in summary.outcomes] == [0, 1, 2, 3]


def test_a_deleted_manifest_or_fixed_copy_is_made_again_not_taken_from_the_cache(tmp_path):
    from tests.fits_cases import scaled_integer_image

    inputs, store = tmp_path / "night", tmp_path / "s.zarr"
    inputs.mkdir()
    scaled_integer_image(inputs / "20240524_050009_41MHz_averaged_20000_iterations-I-image.fits")
    work = tmp_path / "s.zarr.work"
    assert run_ingest(input_dir=inputs, store=store)[0].is_completed()
    copy_made = {p: p.stat().st_mtime_ns for p in work.glob("fixed/*.fits")}
    # the second run keys the fix on the copy that now exists (no cache yet) and reuses the copy; the third hits.
    # (rebuilds, else the store's ledger would skip the stored time step before any task)
    for _ in range(2):
        state, _ = run_ingest(input_dir=inputs, store=store, rebuild=True)
    assert task_states(state)["discover"] == "Cached" and task_states(state)["fix-20240524_050009"] == "Cached"
    assert {p: p.stat().st_mtime_ns for p in work.glob("fixed/*.fits")} == copy_made

    for made in (*work.glob("manifests/*.json"), *work.glob("fixed/*.fits")):
        made.unlink()
    state, summary = run_ingest(input_dir=inputs, store=store, rebuild=True)
    assert state.is_completed(), summary
    assert task_states(state)["fix-20240524_050009"] == "Completed"
    assert len(list(work.glob("manifests/*.json"))) == 1 and len(list(work.glob("fixed/*.fits"))) == 1
    assert xr.open_zarr(store).sizes["time"] == 1


def test_a_dask_worker_killed_while_staging_is_replaced_and_the_staging_done_again(tmp_path):
    from ovro_ingest.failpoints import ENVIRONMENT_VARIABLE, ONCE_VARIABLE
    from ovro_ingest.health import validate_store
    from tests.store_checks import assert_same_store

    inputs, store, fired = tmp_path / "night", tmp_path / "s.zarr", tmp_path / "fired"
    generate(inputs, time_steps=3, n_subbands=2, size=64)
    fired.mkdir()
    # worker processes (the local cluster is threads in the flow's own process): the first staging of each time step
    # kills its worker just before the staged time step appears; Dask runs it again on the worker its nanny restarts
    env = {**os.environ, ENVIRONMENT_VARIABLE: "stage:written", ONCE_VARIABLE: str(fired)}
    with dask_processes(tmp_path, env=env) as address:
        state, summary = run_ingest(input_dir=inputs, store=store, dask_address=address)
    assert state.is_completed(), summary
    assert sorted(p.name for p in fired.iterdir()) == [f"stage:written-{o.key}" for o in summary.outcomes], (
        "every time step's first staging was killed"
    )
    assert [o.status for o in summary.outcomes] == ["written"] * 3
    assert validate_store(store).ok
    reference = tmp_path / "reference.zarr"
    ingest_directory(inputs, reference, settings=StoreSettings(chunk_lm=32))
    assert_same_store(store, reference)


def test_a_run_from_a_settings_block_ingests_the_nights_folder_and_only_the_chosen_time_steps(tmp_path):
    from blocks import IngestSettings

    generate(tmp_path / "nights" / "2024-05-24", time_steps=3, n_subbands=2, size=32)
    IngestSettings(input_root=str(tmp_path / "nights"), store=str(tmp_path / "a.zarr"), chunk_lm=16).save(
        "flow-test", overwrite=True
    )
    state, summary = run_ingest(settings_block="flow-test", night="2024-05-24", time_steps=["20240524_050019"])
    assert state.is_completed(), summary
    assert [o.key for o in summary.outcomes] == ["20240524_050019"]
    ds = xr.open_zarr(tmp_path / "a.zarr")
    assert list(ds["time_key"].values) == ["20240524_050019"] and ds["SKY"].encoding["chunks"][-1] == 16

    state, error = run_ingest(settings_block="flow-test", night="2024-05-24", time_steps=["20240524_999999"])
    assert state.is_failed() and "time steps not found in the input folder: 20240524_999999" in str(error)


def test_every_run_publishes_a_table_a_summary_and_a_quick_look_picture(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    inputs, store = tmp_path / "night", tmp_path / "s.zarr"
    generate(inputs, time_steps=2, n_subbands=3, size=64)
    (inputs / "notes.fits").write_bytes(b"not an image")  # skipped: its name follows neither convention
    state, summary = run_ingest(input_dir=inputs, store=store)
    assert state.is_completed(), summary
    runs = [state.state_details.flow_run_id, *child_runs(state)]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=runs))
        )
    by_key = {a.key: a for a in artifacts}  # the summary is the run's, the table its hour's
    table = by_key["ingest-time-steps"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [(r["time step"], r["files"], r["subbands"], r["status"]) for r in rows] == [
        ("20240524_050009", 3, 3, "written"),
        ("20240524_050019", 3, 3, "written"),
    ]
    assert all(r["MB written"] == round(3 * 64 * 64 * 4 / 1e6, 1) for r in rows)
    markdown = by_key["ingest-summary"].data
    assert "2 time steps: 2 written, 0 already stored, 0 failed" in markdown
    assert "3 channels, 43.246 to 52.433 MHz" in markdown and "**store**: 2 time steps" in markdown
    assert "1 files named after neither convention, e.g. `notes.fits`" in markdown
    picture = tmp_path / "s.zarr.work" / "quicklook" / "2024-05-24.png"  # one per night, by UTC date
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    assert f"`{picture}`" in markdown and "file://" not in markdown, "the path as text: the browser cannot open it"
    assert "2024-05-24T05:00:19.3 UTC" in markdown, "the newest time step's UTC time"
    embedded = markdown.split("(data:image/png;base64,")[1].split(")")[0]  # shown in the UI itself
    assert 1_000 < len(embedded) <= 60_000
    assert base64.b64decode(embedded)[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_prefect_concurrency_limit_keeps_a_second_writer_out(tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency

    import flows.ingest
    from flows.ingest import ACQUISITION_SERVICE_LOGGER

    # a limit of this test's own: the session's server is shared with ingests of other tests
    limit = f"{flows.ingest.WRITE_LIMIT}-{tmp_path.name}"
    monkeypatch.setattr(flows.ingest, "WRITE_LIMIT", limit)
    inputs = tmp_path / "night"
    generate(inputs, time_steps=1, n_subbands=2, size=32)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
    try:
        service_lines: list[logging.LogRecord] = []
        service_logger = logging.getLogger(ACQUISITION_SERVICE_LOGGER)
        listener = logging.Handler(logging.ERROR)
        listener.emit = service_lines.append  # sees what passes the logger's filters, as the console would
        service_logger.addHandler(listener)
        try:
            with concurrency(limit, occupy=1, strict=True):  # another ingest holds the slot
                state, error = run_ingest(input_dir=inputs, store=tmp_path / "s.zarr", wait_for_lock=1)
            time.sleep(1)  # Prefect's service logs its failure on its own thread
        finally:
            service_logger.removeHandler(listener)
        assert state.is_failed() and f"holds the Prefect concurrency limit '{limit}'" in str(error)
        assert "a run that died holds it until its lease lapses" in str(error) and "--wait-for-lock" in str(error)
        assert not [r.getMessage() for r in service_lines], "the failure is said once, by the run"
        assert not (tmp_path / "s.zarr").exists()
        state, summary = run_ingest(input_dir=inputs, store=tmp_path / "s.zarr")
        assert state.is_completed(), summary
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(limit)


def test_without_the_concurrency_limit_a_run_warns_of_nothing_the_operator_must_act_on(tmp_path, caplog):
    inputs = tmp_path / "night"
    generate(inputs, time_steps=1, n_subbands=2, size=32)
    with caplog.at_level(logging.WARNING):
        state, summary = run_ingest(input_dir=inputs, store=tmp_path / "s.zarr")
    assert state.is_completed(), summary
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING], (
        "a clean night warns of nothing"
    )


def test_a_night_across_hours_runs_one_child_run_per_hour_with_few_time_steps_in_flight(tmp_path):
    from flows.ingest import ingest

    inputs = tmp_path / "night"
    # 05:59:39 ... 06:00:39 UTC: two hours; the first time step lacks the 50 MHz subband, which later ones have
    generate(inputs, time_steps=7, n_subbands=3, size=32, start=DEFAULT_START.replace(minute=59, second=39))
    first_key = discover_time_steps(inputs).time_steps[0].key
    next(inputs.glob(f"{first_key}_50MHz*.fits")).unlink()
    state = ingest(input_dir=str(inputs), store=str(tmp_path / "s.zarr"), workers=1, chunk_lm=32, return_state=True)
    summary = state.result()
    assert [o.status for o in summary.outcomes] == ["written"] * 7
    children = {run.name: run for run in read_child_runs(state)}
    assert sorted(children) == ["2024-05-24 05:00 UTC", "2024-05-24 06:00 UTC"]
    runs = task_runs(state)
    per_hour = {name: {r.name for r in runs.values() if r.flow_run_id == child.id} for name, child in children.items()}
    assert len(per_hour["2024-05-24 05:00 UTC"]) == 5 * 3 and len(per_hour["2024-05-24 06:00 UTC"]) == 5 * 4
    assert not [r for r in runs.values() if r.flow_run_id == state.state_details.flow_run_id and "-2024" in r.name]
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert len(ds["frequency"]) == 3, "the channels: the night's subbands, known before the first time step"
    assert np.isnan(ds["SKY"].values[0, 2]).all() and np.isfinite(ds["frequency_header"].values[1]).all()

    # one Dask thread: 2 time steps in flight; a time step's tasks start only once the one 2 before is committed
    keys = [o.key for o in summary.outcomes]
    for earlier, later in zip(keys[:3], keys[2:5], strict=True):  # within the first hour's child run
        if later.startswith(earlier[:11]):
            assert runs[f"fix-{later}"].start_time >= runs[f"append-{earlier}"].end_time, (earlier, later)
    # the first time step is stored before the last ones of its hour are even looked at (no planning of the night)
    assert runs[f"append-{keys[0]}"].end_time <= runs[f"fix-{keys[2]}"].start_time

    # the parent and every hour's run send heartbeats: should the process die, the stand-up's automation
    # (flows/automations.py) ends each of them, and none is left showing Running
    parent = f"prefect.flow-run.{state.state_details.flow_run_id}"
    for run_id in (parent, *(f"prefect.flow-run.{child.id}" for child in children.values())):
        assert flow_run_events(run_id, "prefect.flow-run.heartbeat"), run_id


def flow_run_events(resource_id: str, event: str, wait_s: float = 60.0) -> list[dict]:
    """The server's events named ``event`` about ``resource_id``, waiting up to ``wait_s`` for a first one."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    query = {
        "filter": {
            "occurred": {"since": "2000-01-01T00:00:00Z"},
            "event": {"name": [event]},
            "resource": {"id": [resource_id]},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + wait_s
    while True:  # the server stores events a moment after they are sent
        found = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=query, timeout=30).json()["events"]
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def read_child_runs(state) -> list:
    """The child flow runs of the flow run of ``state``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    parent = FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))


def test_a_retried_run_whose_store_lost_a_completed_hour_says_so_instead_of_claiming_it(tmp_path):
    from flows.ingest import claims_the_store_denies
    from flows.summary import StepOutcome

    inputs, store = tmp_path / "night", tmp_path / "s.zarr"
    generate(inputs, time_steps=2, n_subbands=2, size=32)
    ingest_directory(inputs, store, settings=StoreSettings(chunk_lm=32))
    keys = [s.key for s in discover_time_steps(inputs).time_steps]
    claimed = {key: StepOutcome(key=key, n_files=2, status="written", index=0) for key in [*keys, "20240524_060000"]}
    denied = claims_the_store_denies(Store.at(store), claimed)
    assert list(denied) == ["20240524_060000"] and denied["20240524_060000"].status == "failed"


def test_a_run_with_a_retention_prunes_what_runs_left_behind_older_than_it(tmp_path):
    from tests.test_housekeeping import touch

    inputs, store = tmp_path / "night", tmp_path / "s.zarr"
    generate(inputs, time_steps=1, n_subbands=2, size=32)
    old = touch(tmp_path / "s.zarr.work" / "manifests" / "time-steps-old.json", 40)
    state, summary = run_ingest(input_dir=inputs, store=store, retention_days=30)
    assert state.is_completed(), summary
    assert not old.exists() and task_states(state)["prune"] == "Completed"
    assert list((tmp_path / "s.zarr.work" / "manifests").glob("*.json")), "this run's manifest is young: kept"
