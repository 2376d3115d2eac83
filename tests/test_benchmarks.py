"""The benchmark script runs on tiny data (its numbers are checked by reading them, not by timed tests).

The scripts run untraced under coverage: they time their runs, and the code they run is what the other tests cover.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, SERVER_HOME, untraced_environment

pytestmark = pytest.mark.orchestration


@pytest.mark.slow(70)
def test_ingest_speed_benchmark_runs_on_tiny_data_and_reports_every_measurement(prefect_server, tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "ingest_speed.py"), "--quick", "--api-url", prefect_server]
    command += ["--out", str(tmp_path / "results"), "--work", str(tmp_path / "work")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=untraced_environment())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "results" / "ingest_speed.json").read_text())
    measured = {"floor", "flow", "flow_cached_rerun", "cli_with_server", "plain_functions", "flow_first_3"}
    measured |= {"tiny_cli_with_server"}  # --quick leaves out the run without a server (test_cli's demo test has one)
    assert measured <= set(report["results"])
    for name in measured:
        assert report["results"][name]["seconds"] > 0 and report["results"][name]["peak_rss_gb"] > 0, name
    assert 0 < report["headline"]["cached_rerun_fraction"] < 1
    assert "| headline | value |" in (tmp_path / "results" / "ingest_speed.md").read_text()
    assert not (tmp_path / "work").exists(), "the data and stores are removed"


@pytest.mark.slow(40)
def test_timeseries_benchmark_runs_on_tiny_data_and_checks_every_answer_against_the_archive(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "timeseries_read.py"), "--quick"]
    command += ["--out", str(tmp_path / "results"), "--work", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=untraced_environment())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "results" / "timeseries_quick.json").read_text())
    assert [row["n_time"] for row in report["rows"]] == [8]
    for row in report["rows"]:
        assert row["build"]["status"] == "appended" and row["build"]["peak_rss_gb"] > 0 and row["floor"]["seconds"] > 0
        assert set(row["timeseries_s"]) == {"spectrum", "tracked", "light_curve", "image", "cube"}
    assert "| N | read | archive s | time-series s |" in (tmp_path / "results" / "timeseries_quick.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("ts-bench-")], "the data and stores are removed"


@pytest.mark.slow(90)
def test_night_scale_benchmark_runs_on_tiny_data_and_reports_every_measure_of_a_night(prefect_server, tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "night_scale.py"), "--quick", "--api-url", prefect_server]
    command += ["--server-home", str(SERVER_HOME)]
    command += ["--out", str(tmp_path / "results"), "--work", str(tmp_path / "work")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=untraced_environment())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "results" / "night_scale.json").read_text())
    counts = report["parameters"]["counts"]
    for n in counts:
        flow = report["results"][f"flow_{n}"]
        assert flow["time_steps"] == n and flow["peak_rss_gb"] > 0 and flow["server_cpu_seconds"] > 0
        assert flow["first_write_after_flow_start_s"] > 0 and flow["graph"]["largest_nodes"] == 5 * n
        assert flow["result_files"] >= 4 * n and report["results"][f"plain_{n}"]["seconds"] > 0
    headline = report["headline"]
    assert set(headline["peak_rss_gb_by_n"]) == {str(n) for n in counts}
    assert headline["cli_noop_with_server_s"] > 0 and 0 < headline["cli_3_over_floor_3_wall"] < 1
    assert 0 < headline["night"]["database_events_share"] < 1 and headline["night"]["hours"] > 0
    assert "| headline | value |" in (tmp_path / "results" / "night_scale.md").read_text()
    assert not (tmp_path / "work").exists(), "the data and stores are removed"


@pytest.mark.slow(16)
def test_year_ledger_benchmark_runs_on_tiny_data_and_appends_at_every_size(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "year_ledger.py"), "--quick"]
    command += ["--out", str(tmp_path / "results"), "--work", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=untraced_environment())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "results" / "year_ledger.json").read_text())
    assert [row["time_steps"] for row in report["rows"]] == [100, 1_000]
    for row in report["rows"]:
        assert row["append_one_time_step_s"] > 0 and row["state_and_time_keys_s"] > 0 and row["open_with_xarray_s"] > 0
        # the update ran in a process of its own (its Python alone is tens of MB) and reached the archive's end
        assert row["timeseries_update_after_a_night_s"] > 0 and 0.02 < row["timeseries_update_peak_gb"] < 1.5
    assert set(report["year"]) == {key for key in report["rows"][0] if key.endswith(("_s", "_gb"))}
    assert "(extrapolated) | 365 |" in (tmp_path / "results" / "year_ledger.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["results"], "the data and stores are removed"
