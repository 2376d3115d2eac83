"""The store handle: one object names every place of a store, is taken wherever a path is, and travels through
Prefect (parameters, cache keys) as a small JSON value."""

from __future__ import annotations

import json
import os

import pytest
from prefect.utilities.hashing import hash_objects

from ovro_ingest.errors import StoreBusy, StoreError
from ovro_ingest.handle import Store
from ovro_ingest.health import validate_store
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings


def test_a_handle_names_every_place_of_its_store(tmp_path):
    store = Store.at(tmp_path / "night.zarr")
    assert store.path == tmp_path / "night.zarr"
    assert store.staging_root == tmp_path / "night.zarr" / ".staging"
    assert store.journal == tmp_path / "night.zarr" / ".ovro-ingest-journal.json"
    assert store.work_dir == (tmp_path / "night.zarr.work").resolve()
    assert store.lock_file == (tmp_path / "night.zarr.lock").resolve()
    assert store.url == (tmp_path / "night.zarr").absolute().as_uri()
    assert not store.exists() and store.identity() is None
    assert Store.at(store) is store


def test_a_handle_is_taken_wherever_a_path_is(make_data, tmp_path):
    store = Store.at(tmp_path / "s.zarr")
    receipts = ingest_directory(make_data(time_steps=2), store, settings=StoreSettings(chunk_lm=32))
    assert [r.status for r in receipts] == ["written", "written"]
    assert os.fspath(store) == str(tmp_path / "s.zarr") == str(store)
    assert store.exists() and store.state().n_time == 2
    assert store.identity() == store.state().store_id
    assert store.open_group()["SKY"].shape[0] == 2
    assert validate_store(store).ok
    assert not store.staging_root.exists() and not store.journal.exists()


def test_a_handle_travels_as_json_and_keys_the_same_as_an_equal_handle(tmp_path):
    store = Store.at(tmp_path / "s.zarr")
    as_json = store.model_dump_json()
    assert json.loads(as_json) == {"path": str(tmp_path / "s.zarr")}
    again = Store.model_validate_json(as_json)
    assert again == store and hash(again) == hash(store)
    # Prefect's cache keys hash task inputs: equal handles key alike, another store keys otherwise
    assert hash_objects({"store": again}) == hash_objects({"store": store}) is not None
    assert hash_objects({"store": Store.at(tmp_path / "other.zarr")}) != hash_objects({"store": store})


def test_a_handle_is_immutable(tmp_path):
    store = Store.at(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="frozen"):
        store.path = tmp_path / "elsewhere.zarr"


def test_the_handles_lock_refuses_a_second_writer_of_the_same_store(tmp_path):
    first = Store.at(tmp_path / "s.zarr").lock(who="the first writer")
    with first, pytest.raises(StoreBusy, match="the first writer"), Store.at(tmp_path / "s.zarr").lock():
        pass
    with Store.at(tmp_path / "s.zarr").lock():  # let go when the first one's block ended
        pass


def test_the_state_of_a_folder_that_is_no_store_is_refused_in_one_line(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(StoreError, match="not an ovro-ingest store") as refused:
        Store.at(tmp_path / "notes").state()
    assert "\n" not in str(refused.value)
