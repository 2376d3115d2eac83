"""append_to_zarr (plain functions): exact pixels, time order, idempotence, backfill, grid checks."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from astropy.io import fits
from astropy.time import Time

from ovro_ingest.commit import commit_time_step, rewrite_under_way, write_time_step
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import StoreError, StoreMismatch
from ovro_ingest.failpoints import ENVIRONMENT_VARIABLE
from ovro_ingest.handle import Store
from ovro_ingest.health import validate_store
from ovro_ingest.pipeline import ingest_directory, ingest_time_step, plan_time_step, prepare_store
from ovro_ingest.store import REWRITES_ATTR, StoreSettings, read_state, remove_store, store_id
from tests.store_checks import assert_same_store

SMALL = StoreSettings(chunk_lm=32)


def test_store_holds_the_fits_pixels_time_and_frequency_exactly(make_data, tmp_path):
    folder = make_data(time_steps=3, n_subbands=3, size=64, naming="current")
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert ds["SKY"].dims == ("time", "frequency", "polarization", "l", "m")
    assert ds["SKY"].dtype == np.float32
    assert np.all(np.diff(ds["time"].values) > 0) and np.all(np.diff(ds["frequency"].values) > 0)
    for t, step in enumerate(discover_time_steps(folder).time_steps):
        for f, source in enumerate(step.files):
            with fits.open(source.path) as hdul:
                np.testing.assert_array_equal(ds["SKY"].values[t, f, 0], hdul[0].data[0, 0].T)
                assert ds["frequency"].values[f] == hdul[0].header["CRVAL3"]
                if f == 0:
                    assert ds["time"].values[t] == Time(hdul[0].header["DATE-OBS"], scale="utc").mjd
    assert list(ds["time_key"].values) == [s.key for s in discover_time_steps(folder).time_steps]
    assert ds["BEAM_FIT_PARAMS_SKY"].shape == (3, 3, 1, 3)


def test_appending_a_stored_time_step_again_changes_nothing(make_data, tmp_path):
    folder = make_data(time_steps=2)
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "s.zarr").rglob("*")}
    receipts = ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    assert [r.status for r in receipts] == ["already stored", "already stored"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s.zarr").rglob("*")} == before


def test_separate_runs_append_and_an_earlier_time_step_is_inserted_in_order(make_data, tmp_path, caplog):
    import logging

    folder = make_data(time_steps=4)
    steps = discover_time_steps(folder).time_steps
    store = tmp_path / "s.zarr"
    with caplog.at_level(logging.INFO, logger="ovro_ingest"):
        for step in (steps[0], steps[3], steps[1]):
            ingest_time_step(step, store, settings=SMALL)
        receipt = ingest_time_step(steps[2], store, settings=SMALL)
    assert receipt.index == 2
    inserted = [r for r in caplog.records if "earlier than the store's last one" in r.getMessage()]
    assert len(inserted) == 2 and all(r.levelno == logging.INFO for r in inserted), (
        "a backfill (a retry's) needs no one"
    )
    reference = tmp_path / "r.zarr"
    ingest_directory(folder, reference, settings=SMALL)
    got, want = xr.open_zarr(store), xr.open_zarr(reference)
    assert list(got["time_key"].values) == [s.key for s in steps]
    np.testing.assert_array_equal(got["time"].values, want["time"].values)
    np.testing.assert_array_equal(got["SKY"].values, want["SKY"].values)
    np.testing.assert_array_equal(got["BEAM_FIT_PARAMS_SKY"].values, want["BEAM_FIT_PARAMS_SKY"].values)


def test_a_missing_subband_is_stored_as_nan(make_data, tmp_path):
    folder = make_data(time_steps=2, n_subbands=3)
    next(folder.glob("20240524_050019_46MHz*.fits")).unlink()
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    sky = xr.open_zarr(tmp_path / "s.zarr")["SKY"].values
    assert np.isnan(sky[1, 1]).all()
    assert np.isfinite(sky[1, 0]).any() and np.isfinite(sky[0, 1]).any()


def test_a_subband_off_the_stores_frequency_grid_is_refused(make_data, tmp_path):
    store = tmp_path / "s.zarr"
    ingest_directory(make_data(time_steps=1, n_subbands=2), store, settings=SMALL)
    other = make_data(time_steps=2, n_subbands=4)
    step = discover_time_steps(other).time_steps[1]
    with pytest.raises(StoreMismatch, match="not on the store's frequency grid"):
        ingest_time_step(step, store)
    assert read_state(store).n_time == 1


def test_a_different_pixel_grid_is_refused_and_the_store_is_untouched(make_data, tmp_path):
    store = tmp_path / "s.zarr"
    ingest_directory(make_data(time_steps=1, size=64), store, settings=SMALL)
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    step = discover_time_steps(make_data(time_steps=2, size=32)).time_steps[1]
    with pytest.raises(StoreMismatch, match=r"pixel grid 32x32 .* differs from the store's 64x64"):
        ingest_time_step(step, store)
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before


def test_removing_a_store_gives_the_next_one_a_new_identity(make_data, tmp_path):
    folder = make_data(time_steps=1)
    store = tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=SMALL)
    first = store_id(store)
    remove_store(store)
    assert not store.exists() and store_id(store) is None
    ingest_directory(folder, store, settings=SMALL)
    assert store_id(store) not in (None, first)


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_zarr_format_2_and_every_codec_are_available(make_data, tmp_path, codec):
    folder = make_data(time_steps=2)
    ingest_directory(folder, tmp_path / "v2.zarr", settings=StoreSettings(chunk_lm=32, zarr_format=2, codec=codec))
    ingest_directory(folder, tmp_path / "v3.zarr", settings=StoreSettings(chunk_lm=32, codec=codec))
    assert (tmp_path / "v2.zarr" / ".zmetadata").is_file()
    np.testing.assert_array_equal(
        xr.open_zarr(tmp_path / "v2.zarr")["SKY"].values, xr.open_zarr(tmp_path / "v3.zarr")["SKY"].values
    )
    compressed = [bool(zarr.open_group(str(tmp_path / f"v{f}.zarr"), mode="r")["SKY"].compressors) for f in (2, 3)]
    assert compressed == [codec != "none"] * 2


def test_time_steps_staged_in_parallel_give_the_same_store_as_one_at_a_time(make_data, tmp_path):
    folder = make_data(time_steps=5)
    ingest_directory(folder, tmp_path / "parallel.zarr", settings=SMALL, workers=3)
    ingest_directory(folder, tmp_path / "serial.zarr", settings=SMALL, workers=1)
    assert_same_store(tmp_path / "parallel.zarr", tmp_path / "serial.zarr")
    assert validate_store(tmp_path / "parallel.zarr").ok


def test_a_new_store_gets_every_channel_of_its_first_run(make_data, tmp_path):
    folder = make_data(time_steps=2, n_subbands=3)
    next(folder.glob("20240524_050009_46MHz*.fits")).unlink()  # the first time step lacks the middle subband
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert ds.sizes["frequency"] == 3
    assert np.isnan(ds["SKY"].values[0, 1]).all() and np.isfinite(ds["SKY"].values[1, 1]).any()


def test_overlapping_inputs_in_separate_runs_store_each_time_step_once(make_data, tmp_path):
    folder = make_data(time_steps=6)
    steps = discover_time_steps(folder).time_steps
    store = tmp_path / "s.zarr"
    for first, last in ((0, 4), (2, 6), (0, 6)):
        for step in steps[first:last]:
            ingest_time_step(step, store, settings=SMALL)
    reference = tmp_path / "r.zarr"
    ingest_directory(folder, reference, settings=SMALL)
    assert_same_store(store, reference)


def test_changed_source_files_are_kept_unless_replace_is_asked(make_data, tmp_path, caplog):
    folder = make_data(time_steps=2)
    store = tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=SMALL)
    changed = next(folder.glob("20240524_050019_41MHz*.fits"))
    with fits.open(changed, mode="update") as hdul:
        hdul[0].data[0, 0, 10, 20] = 1234.5
    receipts = ingest_directory(folder, store, settings=SMALL)
    assert [r.status for r in receipts] == ["already stored", "already stored"]
    assert "source files changed" in caplog.text and "--replace" in caplog.text
    assert xr.open_zarr(store)["SKY"].values[1, 0, 0, 20, 10] != 1234.5

    receipts = ingest_directory(folder, store, settings=SMALL, replace=True)
    assert [r.status for r in receipts] == ["already stored", "replaced"]
    ds = xr.open_zarr(store)
    assert ds["SKY"].values[1, 0, 0, 20, 10] == np.float32(1234.5)
    assert str(changed.stat().st_mtime_ns) in ds["source_files"].values[1]
    reference = tmp_path / "r.zarr"
    ingest_directory(folder, reference, settings=SMALL)
    assert_same_store(store, reference)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_committed_time_steps_leftover_staging_is_dropped_and_a_pending_replacements_is_kept(
    make_data, tmp_path, monkeypatch, zarr_format
):
    """What a kill between a commit's journal removal and its staging's rename leaves is swept by the next run."""
    folder = make_data(time_steps=2)
    store = tmp_path / "s.zarr"
    first, second = discover_time_steps(folder).time_steps
    ingest_time_step(first, store, settings=StoreSettings(chunk_lm=32, zarr_format=zarr_format))
    committed = write_time_step(store, plan_time_step(second))
    redundant = shutil.copytree(committed.path, tmp_path / "aside")  # staged from the files the store will hold
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "commit:forgotten=ENOSPC")  # stops there, as a kill would
    with pytest.raises(StoreError, match="no space left"):
        commit_time_step(store, committed)
    monkeypatch.delenv(ENVIRONMENT_VARIABLE)
    assert (Path(committed.path) / "values.json").exists(), "the commit left its emptied staging complete"
    redundant = shutil.move(redundant, Path(committed.path).with_name(f"{second.key}-copy"))
    changed = next(folder.glob(f"{first.key}_41MHz*.fits"))
    with fits.open(changed, mode="update") as hdul:
        hdul[0].data[0, 0, 1, 1] = 99.0
    (first_again,) = [s for s in discover_time_steps(folder).time_steps if s.key == first.key]
    pending = write_time_step(store, plan_time_step(first_again), replace=True)
    assert pending.status == "staged to replace"

    prepare_store(store)

    assert not Path(committed.path).exists(), "the staging of a committed time step must go"
    assert not Path(redundant).exists(), "a staging from the files the store holds must go"
    assert Path(pending.path).exists(), "a replacement staged but not committed is kept for the next attempt"
    assert validate_store(store).ok
    assert read_state(store).n_time == 2


def test_a_replacement_whose_date_obs_would_break_the_time_order_is_refused(make_data, tmp_path):
    """Its key keeps its place; a DATE-OBS past the next time step's would leave ``time`` out of order."""
    folder = make_data(time_steps=3)
    store = tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=SMALL)
    before = xr.open_zarr(store)["time"].values.copy()
    for path in folder.glob("20240524_050009_*.fits"):  # the first time step, now observed after the second
        fits.setval(path, "DATE-OBS", value="2024-05-24T05:00:24.0")
    step = discover_time_steps(folder).time_steps[0]
    with pytest.raises(StoreError, match=r"20240524_050009: its DATE-OBS .* is not between those of the stored"):
        ingest_time_step(step, store, settings=SMALL, replace=True)
    np.testing.assert_array_equal(xr.open_zarr(store)["time"].values, before)


def test_backfills_and_replacements_leave_a_new_rewrite_mark_and_appends_do_not(make_data, tmp_path):
    """The mark a lock-free reader of stored time steps (the time-series update) checks."""
    folder = make_data(time_steps=3)
    steps = discover_time_steps(folder).time_steps
    store = tmp_path / "s.zarr"
    ingest_time_step(steps[0], store, settings=SMALL)
    ingest_time_step(steps[2], store, settings=SMALL)
    assert read_state(store).rewrite_mark == ""
    ingest_time_step(steps[1], store, settings=SMALL)  # a backfill: index 1 and 2 move
    after_backfill = read_state(store).rewrite_mark
    assert after_backfill != ""
    changed = next(folder.glob("20240524_050009_41MHz*.fits"))
    with fits.open(changed, mode="update") as hdul:
        hdul[0].data[0, 0, 32, 30] += 1.0  # inside the horizon (beyond it: NaN)
    receipts = ingest_directory(folder, store, settings=SMALL, replace=True)
    assert [r.status for r in receipts] == ["replaced", "already stored", "already stored"]
    assert read_state(store).rewrite_mark not in ("", after_backfill)
    assert zarr.open_group(str(store)).attrs[REWRITES_ATTR]["count"] == 2
    assert not rewrite_under_way(store)


@pytest.mark.parametrize(
    ("journal", "under_way"),
    [
        ({"mode": "insert", "index": 5, "n_before": 5}, False),  # an append
        ({"mode": "insert", "index": 2, "n_before": 5}, True),  # a backfill
        ({"mode": "replace", "index": 4, "n_before": 5}, True),
        ({"kind": "timeseries", "start": 0}, False),  # a time-series store's own update
        ({}, True),  # a journal that does not say: assume the worst
        ("{ not json", True),
    ],
)
def test_a_commit_under_way_that_moves_stored_time_steps_is_recognised_by_its_journal(tmp_path, journal, under_way):
    store = tmp_path / "s.zarr"
    store.mkdir()
    Store.at(store).journal.write_text(journal if isinstance(journal, str) else json.dumps(journal))
    assert rewrite_under_way(store) is under_way


def test_an_append_rewrites_no_array_without_time_and_no_committed_chunk(make_data, tmp_path):
    folder = make_data(time_steps=3)
    steps = discover_time_steps(folder).time_steps
    store = tmp_path / "s.zarr"
    ingest_time_step(steps[0], store, settings=SMALL)
    ingest_time_step(steps[1], store, settings=SMALL)
    fixed_parts = [
        p for name in ("frequency", "polarization", "l", "m", "beam_params_label") for p in (store / name).rglob("*")
    ]
    committed_sky = list((store / "SKY" / "c" / "0").rglob("*")) + list((store / "SKY" / "c" / "1").rglob("*"))
    before = {p: p.stat().st_mtime_ns for p in fixed_parts + committed_sky}
    ingest_time_step(steps[2], store, settings=SMALL)
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_header_jitter_of_a_few_khz_is_the_same_channel(make_data, tmp_path):
    folder = make_data(time_steps=2, n_subbands=3)
    jittered = next(folder.glob("20240524_050019_46MHz*.fits"))
    with fits.open(jittered, mode="update") as hdul:
        hdul[0].header["CRVAL3"] += 3_000.0
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert ds.sizes["frequency"] == 3
    assert np.isfinite(ds["SKY"].values[1, 1]).any()
    assert ds["frequency"].values[1] == fits.getval(next(folder.glob("20240524_050009_46MHz*.fits")), "CRVAL3")


def test_a_store_is_created_whatever_size_dask_would_split_the_template_into(make_data, tmp_path):
    # Large images (4096² x 10 subbands) made dask auto-split the template at 128 MB,
    # across the store's chunks; a tiny dask chunk size reproduces that on small data.
    import dask

    folder = make_data(time_steps=1, size=96)
    with dask.config.set({"array.chunk-size": "8KiB"}):
        ingest_directory(folder, tmp_path / "s.zarr", settings=StoreSettings(chunk_lm=64))
    assert validate_store(tmp_path / "s.zarr").ok


def test_stored_unchanged_names_the_time_steps_the_store_holds_from_the_same_files(make_data, tmp_path):
    import os

    from ovro_ingest.store import stored_unchanged

    folder = make_data(time_steps=3)
    steps = discover_time_steps(folder).time_steps
    store = tmp_path / "s.zarr"
    assert stored_unchanged(store, steps) == {}, "no store yet"
    ingest_directory(folder, store, settings=SMALL)
    assert stored_unchanged(store, steps) == {s.key: i for i, s in enumerate(steps)}
    touched = steps[1].files[0].path
    os.utime(touched, ns=(1, 1))  # same bytes, new modification time: no longer "these very files"
    again = discover_time_steps(folder).time_steps
    assert stored_unchanged(store, again) == {steps[0].key: 0, steps[2].key: 2}


def test_the_index_of_stored_keys_is_found_reading_only_their_span_of_the_time_key_column(
    make_data, tmp_path, monkeypatch
):
    """At a year the column is 1.6 million keys; a night's run looks up its own 4,320."""
    monkeypatch.setattr("ovro_ingest.store.SMALL_TIME_CHUNK", 2)  # 9 time steps in 5 chunks of the ledger
    folder = make_data(time_steps=9)
    store = tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=SMALL)
    keys = [s.key for s in discover_time_steps(folder).time_steps]
    state = read_state(store)
    assert state.indices_of(keys) == {key: index for index, key in enumerate(keys)}
    unknown = ["20000101_000000", keys[3][:-1] + "1", "29991231_235959"]  # before, between and after the stored ones
    assert state.indices_of([keys[5], *unknown, keys[2]]) == {keys[2]: 2, keys[5]: 5}
    assert state.indices_of(unknown) == {} and state.indices_of([]) == {}
    for chunk in ("0", "1"):  # time steps 0-3: outside the span of the last two, and off the bisection's path
        (store / "time_key" / "c" / chunk).write_bytes(b"not a chunk")  # reading it raises (a missing one would not)
    with pytest.raises(Exception):  # noqa: B017 (zarr's decoding error, whichever it is)
        state.column("time_key")
    assert state.indices_of(keys[7:]) == {keys[7]: 7, keys[8]: 8}


def ingest_logging(folder, store, caplog, **kwargs) -> tuple[list[str], str]:
    """Ingest ``folder`` into ``store``; return the receipts' statuses and the warnings logged meanwhile."""
    import logging

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ovro_ingest"):
        receipts = ingest_directory(folder, store, settings=SMALL, **kwargs)
    return [r.status for r in receipts], caplog.text


def test_a_copied_or_moved_night_is_already_stored_without_a_warning(make_data, tmp_path, caplog):
    import os
    import subprocess

    folder, store = make_data(time_steps=2, n_subbands=2), tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=SMALL)
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(folder), str(copy)], check=True)  # new mtimes, same bytes
    assert {f.name: f.stat().st_mtime_ns for f in copy.iterdir()} != {
        f.name: f.stat().st_mtime_ns for f in folder.iterdir()
    }
    statuses, warnings = ingest_logging(copy, store, caplog)
    assert statuses == ["already stored", "already stored"] and "changed since" not in warnings, warnings
    statuses, warnings = ingest_logging(copy, store, caplog, replace=True)
    assert statuses == ["already stored", "already stored"], "--replace has nothing to replace"

    moved = tmp_path / "moved"
    os.rename(folder, moved)
    statuses, warnings = ingest_logging(moved, store, caplog)
    assert statuses == ["already stored", "already stored"] and "changed since" not in warnings, warnings


def test_a_really_changed_file_is_named_with_what_differs(make_data, tmp_path, caplog):
    folder, store = make_data(time_steps=3, n_subbands=2), tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=SMALL)
    copy = shutil.copytree(folder, tmp_path / "copy", copy_function=shutil.copy)  # new mtimes
    pixels = next(copy.glob("20240524_050009_46MHz*.fits"))
    with fits.open(pixels, mode="update") as hdul:
        hdul[0].data[0, 0, 10, 20] += 1.0  # same size, same header
    longer = next(copy.glob("20240524_050019_41MHz*.fits"))
    with fits.open(longer, mode="update") as hdul:
        for n in range(40):
            hdul[0].header.add_history(f"reprocessed {n}")  # one more header block
    date_obs = next(copy.glob("20240524_050029_41MHz*.fits"))
    with fits.open(date_obs, mode="update") as hdul:
        hdul[0].header["DATE-OBS"] = "2024-05-24T05:00:29.4"
    size_before = next(folder.glob("20240524_050019_41MHz*.fits")).stat().st_size

    statuses, warnings = ingest_logging(copy, store, caplog)
    assert statuses == ["already stored"] * 3
    assert "3 time step(s) are stored, but their source files changed since" in warnings, "one line for the run"
    assert f"20240524_050009 ({pixels.name}: content differs (pixels))" in warnings
    assert f"{longer.name}: size {size_before} → {longer.stat().st_size} bytes" in warnings
    assert f"{date_obs.name}: DATE-OBS 2024-05-24T05:00:29.3 → 2024-05-24T05:00:29.4" in warnings
    assert warnings.count("--replace") == 1 and "20240524_050009_41MHz" not in warnings, "unchanged files go unnamed"

    statuses, _ = ingest_logging(copy, store, caplog, replace=True)
    assert statuses == ["replaced"] * 3
    assert xr.open_zarr(store)["SKY"].values[0, 1, 0, 20, 10] == fits.getdata(pixels)[0, 0, 10, 20]


def test_files_whose_name_size_and_mtime_match_the_ledger_are_not_read(make_data, tmp_path):
    import os

    from ovro_ingest.store import stored_unchanged

    folder, store = make_data(time_steps=2), tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=SMALL)
    victim = next(folder.glob("20240524_050019_41MHz*.fits"))
    before = victim.stat()
    victim.write_bytes(b"\0" * before.st_size)  # unreadable, but name, size and mtime as recorded
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    steps = discover_time_steps(folder).time_steps
    assert stored_unchanged(store, steps) == {steps[0].key: 0, steps[1].key: 1}, "decided from the ledger alone"
