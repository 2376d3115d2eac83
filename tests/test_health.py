"""validate and repair: a healthy store passes; each kind of damage is reported, and repair heals what it can."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from ovro_ingest.discover import discover_time_steps
from ovro_ingest.failpoints import ENVIRONMENT_VARIABLE
from ovro_ingest.health import repair_store, validate_store
from ovro_ingest.pipeline import ingest_directory, ingest_time_step
from ovro_ingest.store import StoreSettings
from tests.cli import ovro_ingest
from tests.store_checks import assert_same_store

SMALL = StoreSettings(chunk_lm=32)
COMMAND = [str(Path(sys.executable).parent / "ovro-ingest")]
CHILD = """
import sys
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.pipeline import ingest_directory, ingest_time_step
from ovro_ingest.store import StoreSettings
ingest_directory(sys.argv[1], sys.argv[2], settings=StoreSettings(chunk_lm=32))
"""


@pytest.fixture
def stores(make_data, tmp_path) -> tuple[Path, Path, Path]:
    """(input folder, a store of its first two time steps, the reference store of all three)."""
    folder = make_data(time_steps=3)
    reference = tmp_path / "reference.zarr"
    ingest_directory(folder, reference, settings=SMALL)
    store = tmp_path / "s.zarr"
    for step in discover_time_steps(folder).time_steps[:2]:
        ingest_time_step(step, store, settings=SMALL)
    return folder, store, reference


def test_a_healthy_store_validates(stores):
    _, store, _ = stores
    report = validate_store(store)
    assert report.ok and report.n_time == 2
    result = ovro_ingest("validate", str(store))
    assert result.returncode == 0 and "holds 2 committed time steps" in result.stdout


def test_chunks_beyond_the_committed_time_steps_are_reported_and_removed(stores):
    _, store, _ = stores
    shutil.copytree(store / "SKY" / "c" / "1", store / "SKY" / "c" / "2")
    result = ovro_ingest("validate", str(store))
    assert result.returncode == 1 and "uncommitted time index" in result.stderr
    result = ovro_ingest("repair", str(store))
    assert result.returncode == 0, result.stderr
    assert "removed uncommitted SKY chunks at time index 2" in result.stdout
    assert not (store / "SKY" / "c" / "2").exists() and validate_store(store).ok


def test_arrays_grown_without_a_commit_are_rolled_back(stores):
    _, store, _ = stores
    zarr.open_group(str(store), mode="r+", use_consolidated=False)["time"].resize((3,))
    assert any("differs from the committed" in p for p in validate_store(store).problems)
    report = repair_store(store)
    assert report.ok and "time: rolled back to 2 time steps" in report.notes


def test_an_interrupted_commit_is_reported_and_finished_by_repair(stores):
    folder, store, reference = stores
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(store)],
        env={**os.environ, ENVIRONMENT_VARIABLE: "commit:placed"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert child.returncode < 0
    assert any("interrupted commit" in p for p in validate_store(store).problems)
    result = ovro_ingest("repair", str(store))
    assert result.returncode == 0 and "finished an interrupted commit" in result.stdout
    assert_same_store(store, reference)


def test_a_store_without_its_consolidated_metadata_is_reported_and_repaired(stores, tmp_path):
    _, store, _ = stores
    before = shutil.copytree(store, tmp_path / "before.zarr")
    # what a kill between the run record and the consolidation left before 2026-11-27
    zarr.open_group(str(store), mode="r+", use_consolidated=False).attrs["touched"] = True
    assert any("cannot open the store" in p for p in validate_store(store).problems)
    result = ovro_ingest("repair", str(store))
    assert result.returncode == 0, result.stderr
    assert "rewrote the missing consolidated metadata" in result.stdout
    assert_same_store(store, before)


def test_missing_pixels_of_a_ledger_entry_are_reported_and_not_hidden(stores):
    _, store, _ = stores
    shutil.rmtree(store / "SKY" / "c" / "1" / "2")
    problems = validate_store(store).problems
    assert any("no pixels for" in p and "(channel 2)" in p for p in problems), problems
    result = ovro_ingest("repair", str(store))
    assert result.returncode == 1 and "no pixels for" in result.stderr


def test_validation_of_chosen_time_steps_checks_only_their_ledger_entries_and_the_whole_structure(stores):
    folder, store, _ = stores
    first, second = (step.key for step in discover_time_steps(folder).time_steps[:2])
    shutil.rmtree(store / "SKY" / "c" / "1" / "2")  # the second time step's channel 2
    assert any("no pixels for" in p for p in validate_store(store, [second]).problems)
    assert validate_store(store, [first]).ok, "a year's ledger need not be read to check one night"
    os.rename(store / "SKY" / "c" / "1", store / "SKY" / "c" / "5")  # uncommitted chunks: found whatever the keys
    assert any("uncommitted" in p for p in validate_store(store, [first]).problems)


def test_repair_of_a_healthy_store_says_there_was_nothing_to_repair(stores):
    _, store, _ = stores
    result = ovro_ingest("repair", str(store))
    assert result.returncode == 0, result.stderr
    assert "nothing to repair: " in result.stdout and "holds 2 committed time steps" in result.stdout
    assert "repaired" not in result.stdout
    assert repair_store(store).actions == []


def test_a_missing_or_foreign_store_is_reported(tmp_path):
    assert ovro_ingest("validate", str(tmp_path / "nothing.zarr")).returncode == 1
    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    result = ovro_ingest("validate", str(tmp_path / "foreign.zarr"))
    assert result.returncode == 1 and "not an ovro-ingest store" in result.stderr
