"""Crash harness: SIGKILL the ingest at random moments; the store stays valid and the re-run completes it.

Each trial starts an ingest (two time steps staged at once, commits in order) in a
child process, kills it with SIGKILL after a random delay, checks that the store
opens with only correct, committed time steps, runs the ingest again and checks
that the result validates and equals a store built without interruption.
Half of the trials backfill: the store already holds every other time step, so
that the killed run inserts (the journaled path that moves committed chunks).
The killed processes run untraced under coverage: a SIGKILLed process never saves
coverage data.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from ovro_ingest.discover import discover_time_steps
from ovro_ingest.failpoints import ENVIRONMENT_VARIABLE
from ovro_ingest.handle import Store
from ovro_ingest.health import repair_store, validate_store
from ovro_ingest.pipeline import ingest_directory, ingest_time_step
from ovro_ingest.store import StoreSettings, read_state
from ovro_ingest.synth import generate
from tests.conftest import untraced_environment
from tests.store_checks import assert_same_store, assert_time_steps_match

SETTINGS = StoreSettings(chunk_lm=32)
TRIALS = 20
FAILPOINTS = (
    "stage:written",
    "commit:journaled",
    "commit:shelved",
    "commit:placed",
    "commit:wrote-time",
    "commit:wrote-time_key",
    "commit:consolidated",
    "commit:forgotten",  # committed, its journal gone, its staging not yet renamed
    "commit:discarding",  # committed, its journal gone: the staging is being removed
    "record:written",  # after the last commit, the run is recorded in the store's attributes
)
JOURNALED = {point for point in FAILPOINTS if point.startswith("commit:")} - {"commit:forgotten", "commit:discarding"}
CHILD = """
import sys
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings
print("ready", flush=True)
zarr_format = int(sys.argv[3]) if len(sys.argv) > 3 else 3
ingest_directory(sys.argv[1], sys.argv[2], settings=StoreSettings(chunk_lm=32, zarr_format=zarr_format), workers=2)
print("done", flush=True)
"""

ZYGOTE = """
import os, sys
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings
print("ready", flush=True)
for line in sys.stdin:  # "INPUTS STORE": ingest in a forked child (no start-up cost); "reap": wait for it
    if line.strip() == "reap":
        _, status = os.waitpid(pid, 0)
        print("ended", status, flush=True)
        continue
    inputs, store = line.split()
    pid = os.fork()
    if pid == 0:
        ingest_directory(inputs, store, settings=StoreSettings(chunk_lm=32), workers=2)
        os._exit(0)
    print(pid, flush=True)
"""


class Zygote:
    """A process that has imported the ingest once and forks one child per ingest, for fast kill trials."""

    def __init__(self) -> None:
        # single-threaded numerics: forking a process is only safe before threads exist; untraced: its
        # children end in SIGKILL or os._exit, and never save coverage data
        env = {**untraced_environment(), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def ingest(self, inputs: Path, store: Path, kill_after: float | None) -> tuple[bool, float]:
        """Ingest in a forked child; SIGKILL it after ``kill_after`` s. Returns (finished by itself, seconds)."""
        self.process.stdin.write(f"{inputs} {store}\n")
        self.process.stdin.flush()
        pid = int(self.process.stdout.readline())
        started = time.monotonic()
        if kill_after is not None:
            time.sleep(kill_after)
            os.kill(pid, signal.SIGKILL)  # the child, or its zombie: its pid is not reused before the reap below
        self.process.stdin.write("reap\n")
        self.process.stdin.flush()
        status = int(self.process.stdout.readline().split()[1])
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, time.monotonic() - started

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict[str, Path]:
    """Inputs, the uninterrupted reference store, and a store holding every other time step."""
    root = tmp_path_factory.mktemp("crash")
    inputs = root / "night"
    generate(inputs, time_steps=4, n_subbands=2, size=64, seed=7)
    reference = root / "reference.zarr"
    ingest_directory(inputs, reference, settings=SETTINGS)
    half = root / "half.zarr"
    for step in discover_time_steps(inputs).time_steps[::2]:
        ingest_time_step(step, half, settings=SETTINGS)
    return {"inputs": inputs, "reference": reference, "half": half, "root": root}


def check_after_crash(store: Path, reference: Path) -> bool:
    """The crashed store opens and holds only correct time steps (after finishing a journaled commit).

    Returns whether a commit was interrupted (its journal was there).
    """
    if not Store.at(store).exists():
        return False
    interrupted = Store.at(store).journal.exists()
    if interrupted:  # killed inside a commit: rolled forward, not lost
        assert repair_store(store).ok
    assert_time_steps_match(store, reference)
    report = validate_store(store)
    assert report.ok, report.problems
    return interrupted


def rerun_and_compare(store: Path, night: dict[str, Path], settings: StoreSettings = SETTINGS) -> None:
    """Run the ingest again: the store validates and equals the uninterrupted one."""
    ingest_directory(night["inputs"], store, settings=settings, workers=2)
    report = validate_store(store)
    assert report.ok, report.problems
    assert not Store.at(store).staging_root.exists(), "a committed time step's staging must not stay"
    assert_same_store(store, night["reference"])


@pytest.mark.slow(31)
def test_sigkill_at_random_moments_never_corrupts_and_the_rerun_completes_the_store(night, tmp_path):
    rng = random.Random(20261126)
    zygote = Zygote()
    try:
        duration = {}  # how long an uninterrupted ingest takes from each starting store (warm: best of two)
        for start in ("empty", "half"):
            times = []
            for attempt in range(2):
                store = tmp_path / f"timing-{start}{attempt}.zarr"
                if start == "half":
                    shutil.copytree(night["half"], store)
                finished, seconds = zygote.ingest(night["inputs"], store, kill_after=None)
                assert finished
                times.append(seconds)
            duration[start] = min(times)
        finished_first = 0
        for trial in range(TRIALS):
            store = tmp_path / f"trial{trial}.zarr"
            start = "half" if trial % 2 else "empty"
            if start == "half":
                shutil.copytree(night["half"], store)
            finished = zygote.ingest(night["inputs"], store, kill_after=rng.uniform(0, duration[start]))[0]
            if finished:  # the machine runs faster than when it was timed: aim earlier
                finished_first += 1
                duration[start] /= 2
            check_after_crash(store, night["reference"])
            rerun_and_compare(store, night)
    finally:
        zygote.close()
    assert finished_first <= TRIALS // 4, f"most kills must land while the ingest runs ({finished_first}, {duration})"


@pytest.mark.parametrize("backfill", [False, True], ids=["append", "backfill"])
@pytest.mark.parametrize("point", FAILPOINTS)
def test_sigkill_at_each_step_of_a_commit_is_rolled_forward(night, tmp_path, point, backfill):
    store = tmp_path / "s.zarr"
    if backfill:
        shutil.copytree(night["half"], store)
    else:  # the first time step is committed, the crash hits the second
        ingest_time_step(discover_time_steps(night["inputs"]).time_steps[0], store, settings=SETTINGS)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(night["inputs"]), str(store)],
        env={**untraced_environment(), ENVIRONMENT_VARIABLE: point},
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.returncode == -signal.SIGKILL, "the fail point must be reached"
    interrupted = check_after_crash(store, night["reference"])
    assert interrupted == (point in JOURNALED)
    rerun_and_compare(store, night)


def test_sigkill_once_a_backfill_is_marked_is_rolled_forward(night, tmp_path):
    """A step only backfills and replacements reach: after the rewrite mark, before the commit point."""
    store = shutil.copytree(night["half"], tmp_path / "s.zarr")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(night["inputs"]), str(store)],
        env={**untraced_environment(), ENVIRONMENT_VARIABLE: "commit:counted"},
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.returncode == -signal.SIGKILL, "the fail point must be reached"
    assert check_after_crash(store, night["reference"]), "killed inside the commit"
    assert read_state(store).rewrite_mark != ""
    rerun_and_compare(store, night)


STEP_BY_STEP = """
import sys
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.pipeline import ingest_time_step
from ovro_ingest.store import StoreSettings
for count, step in enumerate(discover_time_steps(sys.argv[1]).time_steps, start=1):
    ingest_time_step(step, sys.argv[2], settings=StoreSettings(chunk_lm=32))
    print("committed", count, flush=True)
    sys.stdin.readline()  # the reader looks at the store before the next commit starts
"""


def test_a_reader_during_an_ingest_sees_only_complete_time_steps(night, tmp_path):
    """The reader polls while each commit runs; between commits the child waits, so growth is always seen."""
    store = tmp_path / "s.zarr"
    child = subprocess.Popen(
        [sys.executable, "-c", STEP_BY_STEP, str(night["inputs"]), str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    seen, reads_during_commits = [], 0
    try:
        while child.poll() is None:
            if select.select([child.stdout], [], [], 0)[0]:
                line = child.stdout.readline()
                if not line:
                    break
                committed = int(line.split()[1])
                view = xr.open_zarr(store)
                assert view.sizes["time"] == committed, "a commit that reported done must be visible"
                assert_time_steps_match(view, night["reference"])
                seen.append(committed)
                child.stdin.write("next\n")
                child.stdin.flush()
            elif Store.at(store).exists():
                view = xr.open_zarr(store)  # one consistent view: its metadata is read once
                assert_time_steps_match(view, night["reference"])
                reads_during_commits += 1
        child.stdin.close()
        assert child.wait(timeout=120) == 0
    finally:
        if child.poll() is None:  # a failed check must not leave the child waiting for its next line
            child.kill()
            child.wait()
        child.stdout.close()
    assert seen == [1, 2, 3, 4], seen
    assert reads_during_commits > 0, "the reader must have read while the ingest was writing"


@pytest.mark.parametrize("point", ["commit:shelved", "commit:placed", "commit:counted"])
def test_zarr_format_2_backfill_interrupted_mid_move_is_rolled_forward(night, tmp_path, point):
    v2 = StoreSettings(chunk_lm=32, zarr_format=2)
    reference, store = tmp_path / "reference.zarr", tmp_path / "s.zarr"
    ingest_directory(night["inputs"], reference, settings=v2)
    for step in discover_time_steps(night["inputs"]).time_steps[::2]:
        ingest_time_step(step, store, settings=v2)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(night["inputs"]), str(store), "2"],
        env={**untraced_environment(), ENVIRONMENT_VARIABLE: point},
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert check_after_crash(store, reference)
    rerun_and_compare(store, {**night, "reference": reference}, settings=v2)
