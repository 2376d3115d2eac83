"""Housekeeping: manifests, fixed copies and result files past the retention period go; recent ones and pictures stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ovro_ingest.housekeeping import prune_files, prune_work
from ovro_ingest.lock import writer_lock

DAY = 86_400


def touch(path: Path, age_days: float) -> Path:
    """Write ``path`` and set its modification time ``age_days`` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 100)
    moment = time.time() - age_days * DAY
    os.utime(path, (moment, moment))
    return path


def test_prune_work_removes_old_manifests_and_fixed_copies_and_keeps_recent_ones_and_pictures(tmp_path):
    work = tmp_path / "s.zarr.work"
    old = [touch(work / "manifests" / "a.json", 40), touch(work / "fixed" / "b_fixed.fits", 31)]
    kept = [touch(work / "manifests" / "c.json", 2), touch(work / "fixed" / "d_fixed.fits", 29)]
    kept.append(touch(work / "quicklook" / "2024-05-24.png", 400))
    pruned = prune_work(tmp_path / "s.zarr", older_than_days=30)
    assert pruned.files == 2 and pruned.bytes == 200
    assert not any(p.exists() for p in old) and all(p.exists() for p in kept)


def test_prune_names_only_the_folders_that_exist(tmp_path):
    store = tmp_path / "s.zarr"
    touch(tmp_path / "s.zarr.work" / "manifests" / "a.json", 10)  # no fixed copies were ever needed
    pruned = prune_work(store, 7)
    assert pruned.files == 1 and pruned.folders == [str(tmp_path / "s.zarr.work" / "manifests")]


def test_prune_files_refuses_a_retention_that_would_remove_files_in_use(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        prune_files(tmp_path, 0)
    assert prune_files(tmp_path / "missing", 30).files == 0


def test_the_prune_command_waits_for_no_ingest_and_says_what_it_removed(tmp_path):
    store, work = tmp_path / "s.zarr", tmp_path / "s.zarr.work"
    old = touch(work / "manifests" / "a.json", 10)
    command = [str(Path(sys.executable).parent / "ovro-ingest"), "prune", str(store), "--older-than", "7"]
    with writer_lock(store, who="a running ingest"):
        busy = subprocess.run(command, capture_output=True, text=True)
    assert busy.returncode == 2 and "a running ingest" in busy.stderr and old.exists(), "an ingest's files are safe"
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0 and "removed 1 files" in done.stdout and not old.exists(), done.stdout + done.stderr


def test_prune_results_removes_ovro_ingests_result_files_and_leaves_other_projects_alone(tmp_path):
    home = tmp_path / "prefect-home"  # a Prefect home shared with another project
    ours, theirs = touch(home / "ovro-ingest-results" / "a", 40), touch(home / "storage" / "b", 40)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_RESULTS_LOCAL_STORAGE_PATH"}
    env["PREFECT_HOME"] = str(home)
    command = [str(Path(sys.executable).parent / "ovro-ingest"), "prune", str(tmp_path / "s.zarr"), "--results"]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "removed 1 files" in done.stdout, done.stdout + done.stderr
    assert not ours.exists() and theirs.exists()
