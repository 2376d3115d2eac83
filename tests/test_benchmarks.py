"""The benchmark script runs on tiny data (its numbers are checked by reading them, not by timed tests)."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_ingest_speed_benchmark_runs_on_tiny_data_and_reports_every_measurement(prefect_server, tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "ingest_speed.py"), "--quick", "--api-url", prefect_server]
    command += ["--out", str(tmp_path / "results"), "--work", str(tmp_path / "work")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "results" / "ingest_speed.json").read_text())
    measured = {"floor", "flow", "flow_cached_rerun", "cli_with_server", "plain_functions", "flow_first_3"}
    measured |= {"tiny_cli_with_server", "tiny_cli_without_server"}
    assert measured <= set(report["results"])
    for name in measured:
        assert report["results"][name]["seconds"] > 0 and report["results"][name]["peak_rss_gb"] > 0, name
    assert 0 < report["headline"]["cached_rerun_fraction"] < 1
    assert "| headline | value |" in (tmp_path / "results" / "ingest_speed.md").read_text()
    assert not (tmp_path / "work").exists(), "the data and stores are removed"


def test_timeseries_benchmark_runs_on_tiny_data_and_checks_every_answer_against_the_archive(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "timeseries_read.py"), "--quick"]
    command += ["--out", str(tmp_path / "results"), "--work", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "results" / "timeseries_quick.json").read_text())
    assert [row["n_time"] for row in report["rows"]] == [6, 20]
    for row in report["rows"]:
        assert row["build"]["status"] == "appended" and row["build"]["peak_rss_gb"] > 0 and row["floor"]["seconds"] > 0
        assert set(row["timeseries_s"]) == {"spectrum", "tracked", "light_curve", "image", "cube"}
    assert "| N | read | archive s | time-series s |" in (tmp_path / "results" / "timeseries_quick.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("ts-bench-")], "the data and stores are removed"
