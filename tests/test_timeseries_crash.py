"""Crash harness of the time-series store: SIGKILL an update anywhere; the re-run gives the uninterrupted result.

Each trial starts from a time-series store made when the archive held 6 of 10 time
steps, after which the archive grew (an append) or had time steps inserted (a
backfill). A child process runs the update and is killed, at a fail point (every step
of the staging and of the journaled commit, and after the run record) or after a
random delay; the time-series store must then open with its old or its new content
(after ``repair`` finishes an interrupted commit), validate, and a re-run must equal,
bit for bit, the archive and an uninterrupted update.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ovro_ingest.discover import discover_time_steps
from ovro_ingest.failpoints import ENVIRONMENT_VARIABLE
from ovro_ingest.handle import Store
from ovro_ingest.health import repair_store, validate_store
from ovro_ingest.pipeline import ingest_time_step
from ovro_ingest.store import StoreSettings
from ovro_ingest.synth import generate
from ovro_ingest.timeseries import TimeSeriesLayout, update_timeseries
from tests.conftest import untraced_environment
from tests.test_timeseries import assert_same_as_archive

SETTINGS = StoreSettings(chunk_lm=32)
LAYOUT = TimeSeriesLayout(time_block=4, chunk_time=2, chunk_lm=16, shard_lm=32, plain_chunk_lm=32)
REPO = Path(__file__).resolve().parent.parent
CHILD = """
import sys
from ovro_ingest.timeseries import update_timeseries
print("ready", flush=True)
update_timeseries(sys.argv[1], sys.argv[2])
print("done", flush=True)
"""
FAILPOINTS = (
    "timeseries:pixels-staged",
    "timeseries:staged",
    "timeseries:journaled",
    "timeseries:shelved",
    "timeseries:placed",
    "timeseries:wrote-time",
    "timeseries:wrote-archive_fingerprint",
    "timeseries:consolidated",
    "timeseries:forgotten",  # committed, its journal gone, its staging not yet renamed
    "timeseries:discarding",  # committed, its journal gone: the staging is being removed
    "record:written",  # the run record, after the commit
)
COMMIT_POINTS = {"timeseries:journaled", "timeseries:shelved", "timeseries:placed"}
COMMIT_POINTS |= {"timeseries:wrote-time", "timeseries:wrote-archive_fingerprint", "timeseries:consolidated"}
RANDOM_TRIALS = 10


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """For an append and a backfill: the grown archive, the time-series store made before, the uninterrupted result."""
    root = tmp_path_factory.mktemp("ts-crash")
    generate(root / "night", time_steps=10, n_subbands=2, size=64, seed=5)
    steps = discover_time_steps(root / "night").time_steps
    cases = {}
    for case, before, after in (
        ("append", steps[:6], steps[6:]),
        ("backfill", [*steps[:3], *steps[6:]], steps[3:6]),
    ):
        archive, timeseries = root / f"{case}-archive.zarr", root / f"{case}-before.zarr"
        for step in before:
            ingest_time_step(step, archive, settings=SETTINGS)
        update_timeseries(archive, timeseries, layout=LAYOUT)
        for step in after:
            ingest_time_step(step, archive, settings=SETTINGS)
        reference = shutil.copytree(timeseries, root / f"{case}-reference.zarr")
        update_timeseries(archive, reference)
        cases[case] = {"archive": archive, "before": timeseries, "reference": reference}
    return cases


def assert_old_or_new(timeseries: Path, case: dict[str, Path]) -> None:
    """After a kill (and repair of an interrupted commit): valid, holding the old or the new content whole."""
    if Store.at(timeseries).journal.exists():
        assert repair_store(timeseries).ok
    report = validate_store(timeseries)
    assert report.ok, report.problems
    got = xr.open_zarr(timeseries, chunks=None)
    old, new = (xr.open_zarr(case[k], chunks=None) for k in ("before", "reference"))
    want = new if got.sizes["time"] == new.sizes["time"] else old
    assert got.sizes == want.sizes
    for name in ("SKY", "time_key", "archive_fingerprint", "source_files"):
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)


def rerun_and_compare(timeseries: Path, case: dict[str, Path]) -> None:
    """The re-run validates and equals the archive and the uninterrupted update, bit for bit."""
    update_timeseries(case["archive"], timeseries)
    assert validate_store(timeseries).ok
    assert not (timeseries / ".staging").exists()
    assert_same_as_archive(timeseries, case["archive"])
    a, b = xr.open_zarr(timeseries, chunks=None), xr.open_zarr(case["reference"], chunks=None)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def child(case: dict[str, Path], timeseries: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The update in a process of its own, untraced: a SIGKILLed process never saves coverage data."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(case["archive"]), str(timeseries)],
        env={**untraced_environment(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    ("kind", "point"),
    [("append", p) for p in FAILPOINTS]
    + [("backfill", p) for p in ("timeseries:journaled", "timeseries:shelved", "timeseries:placed")],
)
def test_sigkill_at_each_step_of_an_update_is_rolled_forward_and_the_rerun_completes(stores, tmp_path, kind, point):
    case = stores[kind]
    timeseries = shutil.copytree(case["before"], tmp_path / "ts.zarr")
    process = child(case, timeseries, {ENVIRONMENT_VARIABLE: point})
    _, errors = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, f"the fail point must be reached: {errors[-2000:]}"
    assert Store.at(timeseries).journal.exists() == (point in COMMIT_POINTS)
    assert_old_or_new(timeseries, case)
    rerun_and_compare(timeseries, case)


@pytest.mark.slow(40)
def test_sigkill_at_random_moments_never_corrupts_and_the_rerun_completes(stores, tmp_path):
    rng = random.Random(20261130)
    windows = {}
    for kind in ("append", "backfill"):  # how long an update of each kind takes after the child's imports
        timeseries = shutil.copytree(stores[kind]["before"], tmp_path / f"timing-{kind}.zarr")
        process = child(stores[kind], timeseries)
        assert process.stdout.readline().strip() == "ready"
        started = time.monotonic()
        process.communicate(timeout=120)
        windows[kind] = time.monotonic() - started
    killed = 0
    for trial in range(RANDOM_TRIALS):
        kind = "backfill" if trial % 2 else "append"
        case = stores[kind]
        timeseries = shutil.copytree(case["before"], tmp_path / f"trial{trial}.zarr")
        process = child(case, timeseries)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, windows[kind]))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=120)
        if process.returncode == -signal.SIGKILL:
            killed += 1
        else:  # it finished first: the machine runs faster than when it was timed, so aim earlier
            windows[kind] /= 2
        assert_old_or_new(timeseries, case)
        rerun_and_compare(timeseries, case)
    assert killed >= RANDOM_TRIALS // 2, f"most kills must land while the update runs ({killed}, {windows})"
