"""One writer at a time: a second writer fails fast naming the holder, or waits; a dead holder frees the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ovro_ingest.errors import StoreBusy
from ovro_ingest.health import validate_store
from ovro_ingest.lock import writer_lock
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings
from tests.store_checks import assert_same_store

HOLDER = """
import sys, time
from pathlib import Path
from ovro_ingest.lock import writer_lock
with writer_lock(sys.argv[1], who="holder-under-test"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    Path(sys.argv[1] + ".holder-done").write_text("done")  # still holding the lock
"""
INGEST = """
import sys
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings
ingest_directory(sys.argv[1], sys.argv[2], settings=StoreSettings(chunk_lm=32))
"""


def hold_lock(store: Path, seconds: float) -> subprocess.Popen:
    """Another process that takes the store's writer lock and keeps it ``seconds``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    holder = hold_lock(tmp_path / "s.zarr", 60)
    try:
        started = time.monotonic()
        busy = rf"holder-under-test \(pid {holder.pid} on .*--wait-for-lock"
        with pytest.raises(StoreBusy, match=busy), writer_lock(tmp_path / "s.zarr"):
            pass
        assert time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_that_waits_gets_the_lock_when_the_holder_finishes(tmp_path):
    holder = hold_lock(tmp_path / "s.zarr", 1.5)
    with writer_lock(tmp_path / "s.zarr", wait_seconds=30):
        # the holder marks its last moment under the lock: however slowly its process then exits
        assert (tmp_path / "s.zarr.holder-done").exists(), "the lock is ours only after the holder let go"
    holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = hold_lock(tmp_path / "s.zarr", 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with writer_lock(tmp_path / "s.zarr"):
        pass


def test_two_concurrent_ingests_into_one_store_one_proceeds_and_the_store_is_whole(make_data, tmp_path):
    folder = make_data(time_steps=6)
    store = tmp_path / "s.zarr"
    first = subprocess.Popen([sys.executable, "-c", INGEST, str(folder), str(store)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "s.zarr.lock").exists() or not (tmp_path / "s.zarr.lock").read_text():
        assert time.monotonic() < deadline and first.poll() is None, "the first ingest never took the lock"
        time.sleep(0.02)
    with pytest.raises(StoreBusy, match="another ingest is writing this store"):
        ingest_directory(folder, store, settings=StoreSettings(chunk_lm=32))
    assert first.wait(timeout=120) == 0, first.stderr.read()
    first.stderr.close()
    assert validate_store(store).ok
    reference = tmp_path / "r.zarr"
    ingest_directory(folder, reference, settings=StoreSettings(chunk_lm=32))
    assert_same_store(store, reference)
