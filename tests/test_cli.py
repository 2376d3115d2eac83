"""The ovro-ingest command: help, version, synth, and ad-hoc runs with honest exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

from tests.conftest import untraced_environment

pytestmark = pytest.mark.orchestration

COMMAND = [str(Path(sys.executable).parent / "ovro-ingest")]


def ovro_ingest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=600)


EVERY_COMMAND = (
    [], ["synth"], ["run"], ["demo"], ["validate"], ["repair"], ["audit"], ["prune"],
    ["server"], ["server", "start"], ["server", "stop"], ["server", "status"],
)  # fmt: skip


def test_version_and_help_on_every_command():
    from ovro_ingest import __version__

    assert ovro_ingest("--version").stdout.strip() == f"ovro-ingest {__version__}", "the installed command answers"
    as_module = subprocess.run([sys.executable, "-m", "ovro_ingest", "--version"], capture_output=True, text=True)
    assert as_module.stdout.strip() == f"ovro-ingest {__version__}", "python -m ovro_ingest is the same command"
    for command in EVERY_COMMAND:
        result = help_of(command)
        assert result.exit_code == 0 and "Usage" in result.stdout, result.output


def help_of(command: list[str]):
    """``ovro-ingest <command> --help`` on a 200-column terminal, in this process (the typer app the command runs)."""
    from typer.testing import CliRunner

    from flows.cli import app

    return CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}, prog_name="ovro-ingest")


TYPE_NAMES = re.compile(r"<(list\[|bool|str|int|float|path|text|integer|file|directory|datetime)\b", re.IGNORECASE)
"""Python or click type names in angle brackets, as typer prints them when no metavar says what a value is."""


def test_help_shows_no_internal_type_names():
    for command in EVERY_COMMAND:
        result = help_of(command)
        assert result.exit_code == 0, result.output
        assert not TYPE_NAMES.search(result.stdout), f"{command}: {TYPE_NAMES.findall(result.stdout)}\n{result.stdout}"


def test_synth_writes_the_requested_data_set(tmp_path):
    result = ovro_ingest(
        "synth",
        str(tmp_path),
        "--time-steps",
        "2",
        "--subbands",
        "12",
        "--size",
        "32",
        "--naming",
        "current",
        "--seed",
        "4",
    )
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("*MHz-I-Deep-Taper-Robust-0-image-*.fits"))
    assert len(files) == 24
    assert fits.getheader(files[0])["NAXIS1"] == 32


def test_synth_start_sets_the_night(tmp_path):
    result = ovro_ingest(
        "synth",
        str(tmp_path / "n2"),
        "--start",
        "2024-05-25T05:00:09",
        "--time-steps",
        "2",
        "--subbands",
        "1",
        "--size",
        "32",
    )
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "n2").glob("*.fits"))
    assert [f.name[:15] for f in files] == ["20240525_050009", "20240525_050019"]
    assert fits.getval(files[0], "DATE-OBS") == "2024-05-25T05:00:09.0"
    result = ovro_ingest(
        "synth", str(tmp_path / "n3"), "--start", "2024-05-26", "--time-steps", "1", "--subbands", "1", "--size", "32"
    )
    assert result.returncode == 0 and next((tmp_path / "n3").glob("*.fits")).name.startswith("20240526_000000_")
    result = ovro_ingest("synth", str(tmp_path / "n4"), "--start", "tomorrow")
    assert result.returncode == 2 and "--start" in result.stderr and "ISO" in result.stderr
    assert not (tmp_path / "n4").exists()


@pytest.mark.slow(16)
@pytest.mark.usefixtures("prefect_server")
def test_run_exits_0_when_every_time_step_is_stored_and_1_when_one_fails(make_data, tmp_path):
    folder = make_data(time_steps=2, n_subbands=2, size=32)
    store = tmp_path / "s.zarr"
    result = ovro_ingest("run", str(folder), str(store), "--chunk-lm", "16", "--workers", "1", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 written" in result.stdout
    assert xr.open_zarr(store).sizes["time"] == 2

    later = make_data(time_steps=3, n_subbands=2, size=32)
    victim = next(later.glob("20240524_050029_46MHz*.fits"))
    victim.write_bytes(b"SIMPLE  = garbage")
    result = ovro_ingest("run", str(later), str(store), "--workers", "1", "-q")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"failed 20240524_050029: {victim}: not a readable FITS file" in result.stdout
    assert xr.open_zarr(store).sizes["time"] == 2


@pytest.mark.slow(16)
@pytest.mark.usefixtures("prefect_server")
def test_a_warning_from_the_dask_cluster_goes_to_its_task_runs_logs_without_prefect_noise(make_data, tmp_path):
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterLevel, LogFilterTimestamp

    folder, store = make_data(time_steps=1, n_subbands=2, size=32), tmp_path / "s.zarr"
    assert ovro_ingest("run", str(folder), str(store), "--chunk-lm", "16", "--workers", "1", "-q").returncode == 0
    changed = sorted(folder.glob("*.fits"))[0]
    with fits.open(changed, mode="update") as hdul:
        hdul[0].data[0, 0, 16, 16] += 1  # a pixel inside the horizon: the staging, on Dask, finds it changed
    since = datetime.now(UTC)
    done = ovro_ingest("run", str(folder), str(store), "--workers", "1")  # INFO: the staging's own line goes to the API
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{changed.name}: content differs (pixels)" in done.stdout + done.stderr, "the run's one warning"
    assert "without a flow run id" not in done.stdout + done.stderr, "no warning from Prefect's log handler"
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(level=LogFilterLevel(ge_=20), timestamp=LogFilterTimestamp(after_=since))
        )
        said = [log for log in logs if f"{changed.name}: content differs (pixels)" in log.message]
        on_dask = [log for log in said if log.level == 20]  # logged on a Dask thread, inside the staging task
        assert len(on_dask) == 1 and on_dask[0].task_run_id is not None, logs
        assert client.read_task_run(on_dask[0].task_run_id).name == "write-20240524_050009"
        assert [log.task_run_id for log in said if log.level >= 30] == [None], "the run warns once, as the run"


@pytest.mark.usefixtures("prefect_server")
def test_run_reports_a_missing_input_directory_in_one_line(tmp_path):
    result = ovro_ingest("run", str(tmp_path / "nowhere"), str(tmp_path / "s.zarr"), "--workers", "1", "-q")
    assert result.returncode == 2
    assert f"ingest failed: input directory '{tmp_path / 'nowhere'}' does not exist" in result.stderr


@pytest.mark.stack
@pytest.mark.usefixtures("prefect_server")
def test_run_ingests_the_real_ovro_lwa_image(real_image, tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    name = folder / "20240524_070001_69MHz_averaged_20000_iterations-I-image.fits"
    shutil.copy(real_image, name)
    result = ovro_ingest("run", str(folder), str(tmp_path / "s.zarr"), "--chunk-lm", "256", "--workers", "1", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    ds = xr.open_zarr(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ds["SKY"].values[0, 0, 0], fits.getdata(real_image)[0, 0].T)
    assert ds["frequency"].values[0] == 68511474.609375


@pytest.mark.slow(29)
def test_demo_runs_with_no_prefect_server_configured(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    env["COLUMNS"] = "80"  # a narrow terminal: no path the user copies is broken across lines
    result = subprocess.run(
        [
            *COMMAND,
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--time-steps",
            "2",
            "--subbands",
            "2",
            "--size",
            "32",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 written" in result.stdout and "xr.open_zarr" in result.stdout
    assert xr.open_zarr(tmp_path / "demo" / "store.zarr").sizes["time"] == 2
    assert (tmp_path / "demo" / ".prefect").is_dir(), "the demo keeps its Prefect home in its own folder"
    # the commands it tells the user to type work as typed, in a shell with nothing activated
    hints = [line.strip() for line in result.stdout.splitlines() if line.startswith("    ")]
    assert len(hints) == 2, result.stdout
    assert f"ingest into {tmp_path / 'demo' / 'store.zarr'}\n" in result.stdout
    bare = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    for hint in hints:
        typed = subprocess.run(["bash", "-c", hint], capture_output=True, text=True, env=bare, timeout=300)
        assert typed.returncode == 0, f"{hint}: {typed.stdout}{typed.stderr}"


@pytest.mark.usefixtures("prefect_server")
def test_run_fails_fast_naming_the_writer_that_holds_the_store(make_data, tmp_path):
    from tests.test_lock import hold_lock

    holder = hold_lock(tmp_path / "s.zarr", 120)
    try:
        result = ovro_ingest("run", str(make_data(time_steps=1)), str(tmp_path / "s.zarr"), "--workers", "1", "-q")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert f"another ingest is writing this store: holder-under-test (pid {holder.pid}" in result.stderr
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.slow(20)
@pytest.mark.usefixtures("prefect_server")
def test_sigkill_of_the_flow_process_mid_run_then_a_rerun_gives_the_uninterrupted_store(make_data, tmp_path):
    from ovro_ingest.health import validate_store
    from ovro_ingest.pipeline import ingest_directory
    from ovro_ingest.store import StoreSettings
    from tests.store_checks import assert_same_store

    folder, store = make_data(time_steps=6, n_subbands=4, size=256), tmp_path / "s.zarr"
    run = [*COMMAND, "run", str(folder), str(store), "--chunk-lm", "64", "--workers", "2", "-q"]
    process = subprocess.Popen(  # untraced: a SIGKILLed process never saves coverage data
        run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=untraced_environment()
    )
    deadline = time.monotonic() + 300
    while not (store / ".staging").exists():  # writing has begun
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the flow process and its Dask workers
    process.wait()

    result = ovro_ingest("run", str(folder), str(store), "--workers", "2", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert validate_store(store).ok
    reference = tmp_path / "reference.zarr"
    ingest_directory(folder, reference, settings=StoreSettings(chunk_lm=64))
    assert_same_store(store, reference)


def test_dry_run_prints_the_plan_and_writes_nothing(make_data, tmp_path):
    from ovro_ingest.discover import discover_time_steps
    from ovro_ingest.pipeline import ingest_time_step
    from ovro_ingest.store import StoreSettings

    folder = make_data(time_steps=5, n_subbands=2, size=32)
    for gone in folder.glob("20240524_050029_*.fits"):
        gone.unlink()  # a gap of 20 s in a 10 s cadence
    steps = discover_time_steps(folder).time_steps
    store = tmp_path / "s.zarr"
    ingest_time_step(steps[0], store, settings=StoreSettings(chunk_lm=16))
    ingest_time_step(steps[2], store, settings=StoreSettings(chunk_lm=16))
    before = {p: p.stat().st_mtime_ns for p in (*store.rglob("*"), *folder.rglob("*"))}
    result = ovro_ingest("run", str(folder), str(store), "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│ 2024" in line}
    assert "already stored" in lines["20240524_050009"] and "backfill" in lines["20240524_050019"]
    assert "20" in lines["20240524_050039"].split("│")[4] and "already stored" in lines["20240524_050039"]
    assert "append" in lines["20240524_050049"]
    assert "4 time steps: 1 append, 1 backfill, 2 already stored, 0 would fail" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in (*store.rglob("*"), *folder.rglob("*"))} == before

    result = ovro_ingest("run", str(folder), str(store), "--dry-run", "--time-steps", "20240524_050049")
    assert "1 time steps: 1 append" in result.stdout


def test_dry_run_keeps_keys_whole_on_80_columns_and_prints_json_for_scripts(make_data, tmp_path, capsys):
    import json

    from flows.cli import print_plan
    from tests.test_audit import assert_keys_whole, run_on_a_terminal

    folder = make_data(time_steps=2, n_subbands=3, size=32, naming="current")
    next(folder.glob("46MHz-*-20240524_050009.fits")).unlink()
    keys = ["20240524_050009", "20240524_050019"]
    result = subprocess.run(
        [*COMMAND, "run", str(folder), str(tmp_path / "s.zarr"), "--dry-run"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    assert_keys_whole(result.stdout, keys)
    assert_keys_whole(run_on_a_terminal(["run", str(folder), str(tmp_path / "s.zarr"), "--dry-run"], 80), keys)

    assert print_plan(folder, tmp_path / "s.zarr", None, as_json=True) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(s["key"], s["action"], s["subbands"]) for s in plan["time_steps"]] == [
        (keys[0], "append", 2),
        (keys[1], "append", 3),
    ]
    assert plan["time_steps"][0]["missing_subbands"] == ["46MHz"]
    assert plan["counts"] == {"append": 2, "backfill": 0, "already stored": 0, "would fail": 0} and plan["ok"]
    assert not (tmp_path / "s.zarr").exists()


def read_until(master: int, text: str, timeout: float = 300) -> str:
    """Read a pseudo-terminal until ``text`` appears (or it closes); return what was read."""
    import select

    seen, deadline = b"", time.monotonic() + timeout
    while text.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def leave_unfinished(folder: Path, store: Path) -> None:
    """Ingest ``folder`` into ``store`` in a process killed inside its first commit."""
    from ovro_ingest.failpoints import ENVIRONMENT_VARIABLE

    code = "import sys; from ovro_ingest.pipeline import ingest_directory; ingest_directory(*sys.argv[1:])"
    environment = {**os.environ, ENVIRONMENT_VARIABLE: "commit:placed"}
    subprocess.run([sys.executable, "-c", code, str(folder), str(store)], env=environment)
    assert (store / ".ovro-ingest-journal.json").exists(), "an interrupted commit was left"


@pytest.mark.usefixtures("prefect_server")
def test_on_a_terminal_an_unfinished_store_prompts_resume_or_rebuild_and_shows_progress(make_data, tmp_path):
    import pty

    from ovro_ingest.health import validate_store

    folder, store = make_data(time_steps=3, n_subbands=2, size=32), tmp_path / "s.zarr"
    leave_unfinished(folder, store)

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_LOGGING_LEVEL", "DO_NOT_TRACK")}  # CLI defaults
    env["PREFECT_HOME"] = str(tmp_path / "fresh-home")  # where Prefect would show its first-run notices
    process = subprocess.Popen(
        [*COMMAND, "run", str(folder), str(store), "--workers", "1"], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    try:
        shown = read_until(master, "Resume (finish it and go on) or rebuild")
        assert "was left unfinished by an interrupted run: an interrupted commit" in shown
        os.write(master, b"resume\n")
        shown = read_until(master, "0 failed")
        assert process.wait(timeout=300) == 0, shown
        shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)  # terminal colours and cursor moves
    finally:
        process.kill()
        os.close(master)
    assert "3 time steps: 2 written, 1 already stored, 0 failed" in shown  # the interrupted one was finished
    assert "━" in shown and "20240524_050029 written" in shown, "a progress bar over the time steps"
    assert "Finished in state" not in shown, "Prefect's info lines go to the UI, not between the bar's redraws"
    assert "anonymous usage data" not in shown, "no analytics: the server's are off, and so are the client's"
    assert validate_store(store).ok


@pytest.mark.usefixtures("prefect_server")
def test_without_a_terminal_an_unfinished_store_is_resumed_without_asking(make_data, tmp_path):
    folder, store = make_data(time_steps=2, n_subbands=2, size=32), tmp_path / "s.zarr"
    leave_unfinished(folder, store)
    result = ovro_ingest("run", str(folder), str(store), "--workers", "1", "-q")
    assert result.returncode == 0 and "Resume" not in result.stdout, result.stdout + result.stderr
    assert xr.open_zarr(store).sizes["time"] == 2


@pytest.mark.usefixtures("prefect_server")
def test_verbose_run_shows_per_file_timing_and_validates_the_store(make_data, tmp_path):
    folder = make_data(time_steps=2, n_subbands=2, size=32)
    result = ovro_ingest("run", str(folder), str(tmp_path / "s.zarr"), "--workers", "1", "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert re.search(r"20240524_050019_46MHz\S*\.fits: header read in [0-9.]+ s \(47\.8\d+ MHz", output), output[-3000:]
    assert re.search(r"20240524_050019_46MHz\S*\.fits: 0\.0 MB read and staged in [0-9.]+ s", output)
    assert "holds 2 committed time steps and is consistent" in result.stdout
    assert "ledger entries and pixels checked for 2 chosen time step(s) of 2" in result.stdout


def test_a_run_with_nothing_to_do_answers_from_the_ledger_without_prefect_or_a_server(make_data, tmp_path):
    from ovro_ingest.pipeline import ingest_directory
    from ovro_ingest.store import StoreSettings

    inputs, store = make_data(time_steps=2), tmp_path / "s.zarr"
    ingest_directory(inputs, store, settings=StoreSettings(chunk_lm=32))
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    # a server that does not exist: had the run asked Prefect anything, it would have failed
    nowhere = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    for args in ([], ["--json"], ["--time-steps", "20240524_050019"]):
        done = subprocess.run(
            [*COMMAND, "run", str(inputs), str(store), *args], capture_output=True, text=True, env=nowhere
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert "1 time steps: 0 written, 1 already stored, 0 failed" in done.stdout
    listed = subprocess.run(
        [*COMMAND, "run", str(inputs), str(store), "--json"], capture_output=True, text=True, env=nowhere
    )
    report = json.loads(listed.stdout)
    assert report["ok"] and report["counts"]["already stored"] == 2 and report["counts"]["written"] == 0
    assert [step["key"] for step in report["time_steps"]] == ["20240524_050009", "20240524_050019"]
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before


@pytest.mark.slow(19)
def test_a_run_or_update_against_a_server_that_does_not_answer_stops_in_one_line_with_exit_2(make_data, tmp_path):
    from ovro_ingest.pipeline import ingest_directory
    from ovro_ingest.store import StoreSettings

    inputs, archive = make_data(time_steps=2), tmp_path / "s.zarr"
    ingest_directory(inputs, archive, settings=StoreSettings(chunk_lm=32))
    nowhere = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # e.g. after deployments/stop
    for args, left_alone in (
        (["run", str(inputs), str(tmp_path / "new.zarr")], tmp_path / "new.zarr"),
        (["timeseries", str(archive), str(tmp_path / "s.timeseries.zarr")], tmp_path / "s.timeseries.zarr"),
    ):
        done = subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=nowhere)
        assert done.returncode == 2, done.stdout + done.stderr
        said = done.stderr.strip().splitlines()
        assert len(said) == 1 and "no Prefect server answers at http://127.0.0.1:9/api (PREFECT_API_URL)" in said[0]
        assert "unset PREFECT_API_URL" in said[0] and not left_alone.exists()


@pytest.mark.slow(34)
def test_server_start_keeps_a_local_server_that_runs_use_by_themselves_until_stop(make_data, tmp_path):
    home = tmp_path / "prefect-home"
    # untraced: the kept server runs no project code (flows.server's start and stop are covered in-process)
    env = {k: v for k, v in untraced_environment().items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=env, timeout=600)

    assert cli("server", "status").returncode == 1
    started = cli("server", "start")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = cli("server", "status")
        assert status.returncode == 0 and "running" in status.stdout
        api = re.search(r"API (http://127\.0\.0\.1:\d+/api)", status.stdout)[1]
        run = cli("run", str(make_data(time_steps=1)), str(tmp_path / "s.zarr"), "--workers", "1", "--chunk-lm", "32")
        assert run.returncode == 0, run.stdout + run.stderr
        flows = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json()
        assert {f["state"]["type"] for f in flows} == {"COMPLETED"} and len(flows) == 2, "the run reported to it"
        assert "View at" not in run.stdout + run.stderr or api.removesuffix("/api") in run.stdout + run.stderr
        results = home / "ovro-ingest-results"  # apart from other projects' results in the same home
        assert any(results.iterdir()) and not (home / "storage").exists()
    finally:
        stopped = cli("server", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert cli("server", "status").returncode == 1
