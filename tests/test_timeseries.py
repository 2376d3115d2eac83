"""The time-series store: made from the archive bit for bit, kept up to date, refused when it does not belong.

Real archives (ingested from synthetic FITS files), real Zarr stores, no mocks.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from astropy.io import fits

from ovro_ingest import timeseries as timeseries_module
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import StoreBusy, StoreError
from ovro_ingest.handle import Store
from ovro_ingest.health import repair_store, validate_store
from ovro_ingest.lock import writer_lock
from ovro_ingest.pipeline import ingest_directory, ingest_time_step
from ovro_ingest.store import REWRITES_ATTR, RUNS_ATTR, STORE_ID_ATTR, TIMESERIES_ATTR, StoreSettings, read_state
from ovro_ingest.synth import generate
from ovro_ingest.timeseries import (
    FINGERPRINT,
    TimeSeriesLayout,
    block_strip,
    default_timeseries_path,
    read_timeseries_state,
    update_timeseries,
)

LAYOUT = TimeSeriesLayout(time_block=4, chunk_time=2, chunk_lm=16, shard_lm=32, plain_chunk_lm=32)
"""Small blocks for 64² test images: 11 time steps make 3 time blocks, the last one partial."""
N_TIME = 11


def settings(zarr_format: int = 3) -> StoreSettings:
    return StoreSettings(chunk_lm=32, zarr_format=zarr_format)


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ts") / "night"
    generate(folder, time_steps=N_TIME, n_subbands=3, size=64, seed=3)
    return folder


@pytest.fixture(scope="module")
def archives(night, tmp_path_factory) -> dict[int, Path]:
    """A complete archive of the night, in Zarr format 3 and 2."""
    root = tmp_path_factory.mktemp("archives")
    built = {}
    for zarr_format in (3, 2):
        built[zarr_format] = root / f"archive-v{zarr_format}.zarr"
        ingest_directory(night, built[zarr_format], settings=settings(zarr_format))
    return built


def assert_same_as_archive(timeseries: Path, archive: Path, made_from: bool = True) -> None:
    """Every variable and coordinate of the archive, bit for bit (float bits compared, NaN payloads too).

    ``made_from``: ``archive`` is the one the time-series store was made from (else an equal one).
    """
    a, t = xr.open_zarr(archive, chunks=None), xr.open_zarr(timeseries, chunks=None)
    assert dict(t.sizes) == dict(a.sizes)
    for name in a.variables:
        want, got = a[name].values, t[name].values
        if want.dtype.kind == "f":
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got.view(f"u{want.itemsize}"), want.view(f"u{want.itemsize}"), err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)
        assert t[name].attrs == a[name].attrs, name
    archive_only = (STORE_ID_ATTR, RUNS_ATTR, REWRITES_ATTR, "ovro_ingest_created_with")
    kept = {k: v for k, v in a.attrs.items() if k not in archive_only}
    assert {k: v for k, v in t.attrs.items() if k in kept} == kept
    if made_from:
        assert t.attrs[TIMESERIES_ATTR]["archive_store_id"] == a.attrs[STORE_ID_ATTR]
        assert t.attrs[STORE_ID_ATTR] != a.attrs[STORE_ID_ATTR], "a store of its own"


def disk_full_when_staging(window: int):
    """A fail point hook: the disk fills up once the ``window``-th window's pixels are read."""
    staged = []

    def hook(name: str, instance: str = "") -> None:
        if name == "timeseries:pixels-staged":
            staged.append(name)
            if len(staged) == window:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)

    return hook


def sky_files(store: Path) -> dict[str, int]:
    """Every SKY chunk or shard file -> its mtime."""
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in (store / "SKY").rglob("*") if p.is_file()}


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_the_timeseries_store_holds_the_archive_bit_for_bit_and_opens_with_xarray_and_xradio(
    archives, tmp_path, zarr_format
):
    from xradio.image import check_image, open_image

    archive, timeseries = archives[zarr_format], tmp_path / "ts.zarr"
    done = update_timeseries(archive, timeseries, layout=LAYOUT)
    assert done.status == "appended" and done.n_time == N_TIME and done.time_steps_copied == N_TIME
    assert_same_as_archive(timeseries, archive)
    sky = zarr.open_group(str(timeseries), mode="r")["SKY"]
    if zarr_format == 3:
        assert sky.shards == (4, 3, 1, 32, 32) and sky.chunks == (2, 3, 1, 16, 16)
    else:
        assert sky.chunks == (4, 3, 1, 32, 32)
    opened = open_image(str(timeseries))
    assert opened.sizes["time"] == N_TIME
    assert not check_image(opened), str(check_image(opened))
    assert validate_store(timeseries).ok, validate_store(timeseries).problems


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_sky_is_stored_uncompressed_unless_the_layout_asks_for_the_archives_codec(archives, tmp_path, zarr_format):
    """Uncompressed chunks are read as they are on disk: one image 2-3x faster (docs/benchmarks/timeseries.md, the layouts table)."""
    archive = archives[zarr_format]
    codecs = {}
    for codec in ("none", "archive"):
        timeseries = tmp_path / f"ts-{codec}.zarr"
        update_timeseries(archive, timeseries, layout=LAYOUT.model_copy(update={"codec": codec}))
        assert_same_as_archive(timeseries, archive)
        assert read_timeseries_state(timeseries).layout.codec == codec
        codecs[codec] = zarr.open_group(str(timeseries), mode="r")["SKY"].compressors
    archive_codecs = zarr.open_group(str(archive), mode="r")["SKY"].compressors
    assert codecs == {"none": (), "archive": archive_codecs} and archive_codecs


def test_a_store_made_before_the_codec_was_recorded_keeps_the_archives_codec(night, tmp_path):
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    steps = discover_time_steps(night).time_steps
    for step in steps[:5]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT.model_copy(update={"codec": "archive"}))
    group = zarr.open_group(str(timeseries), mode="r+", use_consolidated=False)
    link = dict(group.attrs[TIMESERIES_ATTR])
    link["layout"] = {k: v for k, v in link["layout"].items() if k != "codec"}  # as stores made before recorded it
    group.attrs[TIMESERIES_ATTR] = link
    zarr.consolidate_metadata(str(timeseries))
    assert read_timeseries_state(timeseries).layout.codec == "archive"
    for step in steps[5:]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries)
    assert_same_as_archive(timeseries, archive)
    assert zarr.open_group(str(timeseries), mode="r")["SKY"].compressors, "still compressed as it was made"


def test_a_rerun_changes_nothing(archives, tmp_path):
    timeseries = tmp_path / "ts.zarr"
    update_timeseries(archives[3], timeseries, layout=LAYOUT)
    before, runs = sky_files(timeseries), xr.open_zarr(timeseries).attrs[RUNS_ATTR]
    again = update_timeseries(archives[3], timeseries)
    assert again.status == "up to date" and again.time_steps_copied == 0
    assert sky_files(timeseries) == before
    assert xr.open_zarr(timeseries).attrs[RUNS_ATTR] == runs, "a no-op update leaves no trace"


def stale_complete_staging(timeseries: Path) -> Path:
    """What a crash right after a commit, before its staging was removed, leaves: a complete staging, never reused."""
    staging = Store.at(timeseries).staging_root / "update-0-000000000000"
    (staging / "SKY").mkdir(parents=True)
    (staging / "values.json").write_text("{}")
    return staging


def test_an_update_drops_a_stale_complete_staging_even_when_up_to_date(archives, tmp_path):
    timeseries = tmp_path / "ts.zarr"
    update_timeseries(archives[3], timeseries, layout=LAYOUT)
    stale_complete_staging(timeseries)
    again = update_timeseries(archives[3], timeseries)
    assert again.status == "up to date"
    assert not Store.at(timeseries).staging_root.exists()
    assert validate_store(timeseries).ok


def test_an_append_copies_only_the_last_partial_block_and_the_new_time_steps(night, archives, tmp_path):
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    steps = discover_time_steps(night).time_steps
    for step in steps[:6]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    first_block = {k: v for k, v in sky_files(timeseries).items() if k.startswith("SKY/c/0/")}
    for step in steps[6:]:
        ingest_time_step(step, archive, settings=settings())
    done = update_timeseries(archive, timeseries)
    assert done.status == "appended" and done.start == 4, "time steps 4 and 5 sat in a partial block"
    assert done.time_steps_copied == N_TIME - 4
    assert {k: v for k, v in sky_files(timeseries).items() if k.startswith("SKY/c/0/")} == first_block
    assert_same_as_archive(timeseries, archive)
    assert_same_as_archive(timeseries, archives[3], made_from=False)


def test_a_backfill_in_the_archive_is_carried_over(night, archives, tmp_path):
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    steps = discover_time_steps(night).time_steps
    for step in [*steps[:5], *steps[7:]]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    for step in steps[5:7]:  # inserted at 5 and 6: everything from the block of index 5 (4..) moves
        ingest_time_step(step, archive, settings=settings())
    done = update_timeseries(archive, timeseries)
    assert done.status == "rewritten" and done.start == 4
    assert_same_as_archive(timeseries, archive)
    assert_same_as_archive(timeseries, archives[3], made_from=False)
    assert validate_store(timeseries).ok


def test_a_replaced_time_step_in_the_archive_is_carried_over(make_data, tmp_path):
    folder = make_data(time_steps=10, n_subbands=2, size=64)
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    ingest_directory(folder, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    changed = sorted(folder.glob("*.fits"))[2 * 9]  # time step 9: the last block
    with fits.open(changed, mode="update") as hdus:
        hdus[0].data[0, 0, 30, 31] += 1.0
    ingest_directory(folder, archive, settings=settings(), replace=True)
    done = update_timeseries(archive, timeseries)
    assert done.status == "rewritten" and done.start == 8 and done.time_steps_copied == 2
    assert_same_as_archive(timeseries, archive)
    assert float(xr.open_zarr(timeseries)["SKY"][9, 0, 0, 31, 30]) == float(fits.getdata(changed)[0, 0, 30, 31])


def test_a_missing_or_bad_archive_or_a_foreign_timeseries_store_is_refused_in_one_line(
    night, archives, tmp_path, monkeypatch
):
    timeseries = tmp_path / "ts.zarr"
    with pytest.raises(StoreError, match=r"nothing\.zarr: no archive store here; give the path") as refused:
        update_timeseries(tmp_path / "nothing.zarr", timeseries)
    assert "\n" not in str(refused.value) and not timeseries.exists()

    update_timeseries(archives[3], timeseries, layout=LAYOUT)
    before = sky_files(timeseries)
    with pytest.raises(StoreError, match=r"was made from another archive .*; make it again .*--rebuild .*, or give"):
        update_timeseries(archives[2], timeseries)
    assert sky_files(timeseries) == before
    with pytest.raises(StoreError, match=r"is a time-series store made from .*; give the archive instead"):
        update_timeseries(timeseries, tmp_path / "other.zarr")
    with pytest.raises(StoreError, match="is a time-series store"):  # never ingested into
        ingest_directory(night, timeseries)

    broken = shutil.copytree(archives[3], tmp_path / "broken.zarr")
    (broken / "zarr.json").write_text("{ not json")
    with pytest.raises(StoreError, match=r"broken\.zarr: not an ovro-ingest store .*; choose another store path"):
        update_timeseries(broken, tmp_path / "ts2.zarr")
    assert not (tmp_path / "ts2.zarr").exists()
    unfinished = shutil.copytree(archives[3], tmp_path / "unfinished.zarr")
    (unfinished / ".ovro-ingest-journal.json").write_text("{}")  # what a killed commit leaves
    monkeypatch.setattr(timeseries_module, "REWRITE_GRACE_S", 0.5)  # no ingest is committing it: do not wait long
    with pytest.raises(StoreError, match=r"unfinished\.zarr: an interrupted commit .*ovro-ingest repair .* first"):
        update_timeseries(unfinished, tmp_path / "ts2.zarr")
    assert not (tmp_path / "ts2.zarr").exists()

    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(StoreError, match=r"file\.zarr: exists and is not a time-series store"):
        update_timeseries(archives[3], tmp_path / "file.zarr")
    assert (tmp_path / "file.zarr").read_text() == "x"
    with pytest.raises(StoreError, match="is the archive itself"):
        update_timeseries(archives[3], archives[3])
    assert validate_store(archives[3]).ok and validate_store(archives[2]).ok


def test_one_update_at_a_time_and_none_waits_for_an_ingest_of_the_archive(archives, tmp_path):
    timeseries = tmp_path / "ts.zarr"
    with writer_lock(timeseries, who="another update"), pytest.raises(StoreBusy, match="another update"):
        update_timeseries(archives[3], timeseries, layout=LAYOUT)
    with writer_lock(archives[3], who="an ingest"):  # the nightly run holds its archive for hours
        done = update_timeseries(archives[3], timeseries, layout=LAYOUT)
    assert done.n_time == N_TIME
    assert_same_as_archive(timeseries, archives[3])


def test_an_update_goes_window_by_window_and_a_failure_keeps_the_windows_before(archives, tmp_path, monkeypatch):
    """A night's update copies for hours: what a failure (or a crash) loses is the window it was in."""
    timeseries = tmp_path / "ts.zarr"
    monkeypatch.setattr(timeseries_module, "failpoint", disk_full_when_staging(window=2))
    with pytest.raises(StoreError, match=r"ts\.zarr: no space left on its device while staging") as refused:
        update_timeseries(archives[3], timeseries, layout=LAYOUT, window=3)  # 3 rounds up to a block of 4
    assert "\n" not in str(refused.value)
    assert xr.open_zarr(timeseries).sizes["time"] == 4 and validate_store(timeseries).ok
    monkeypatch.undo()
    done = update_timeseries(archives[3], timeseries, window=4)
    assert (done.status, done.start, done.n_time, done.time_steps_copied) == ("appended", 4, N_TIME, N_TIME - 4)
    assert_same_as_archive(timeseries, archives[3])


def test_after_appends_an_update_reads_only_the_new_ledger_entries_of_the_archive(night, tmp_path):
    """At a year the archive holds 1.6 million ledger entries, one chunk each: an update after a night reads a night's."""
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    steps = discover_time_steps(night).time_steps
    for step in steps[:6]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    assert read_timeseries_state(timeseries).archive_rewrite_mark == read_state(archive).rewrite_mark == ""
    for step in steps[6:8]:
        ingest_time_step(step, archive, settings=settings())
    # the ledger entries of time steps 0-3 are not read any more: without them, they would count as changed
    for index in range(4):
        (archive / "source_files" / "c" / str(index)).unlink()
    done = update_timeseries(archive, timeseries)
    assert (done.status, done.start, done.n_time) == ("appended", 4, 8)


def test_an_update_never_holds_the_timeseries_stores_fingerprints_whole(night, tmp_path, monkeypatch):
    """At a year they are 1.6 million strings: plans, commits and cache checks read them block by block."""
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    steps = discover_time_steps(night).time_steps
    for step in [*steps[:2], *steps[3:6]]:  # time step 2 comes later: a backfill
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    state = read_timeseries_state(timeseries)
    monkeypatch.setattr(timeseries_module, "FINGERPRINT_BLOCK", 2)  # several blocks, the last one partial
    assert state.content_digest() == timeseries_module.digest(state.fingerprints())

    def whole(self):
        raise AssertionError("an update read every fingerprint of the time-series store at once")

    monkeypatch.setattr(timeseries_module.TimeSeriesState, "fingerprints", whole)
    for step in steps[6:8]:  # appends: the known fingerprints are not read again
        ingest_time_step(step, archive, settings=settings())
    done = update_timeseries(archive, timeseries, window=2)
    assert (done.status, done.start, done.n_time) == ("appended", 4, 7)
    ingest_time_step(steps[2], archive, settings=settings())  # a backfill: compared block by block from index 0
    done = update_timeseries(archive, timeseries, window=2)
    assert (done.status, done.start, done.n_time) == ("rewritten", 0, 8)
    monkeypatch.undo()
    assert_same_as_archive(timeseries, archive)


def test_a_windows_copy_hands_dask_a_graph_of_the_window_only(archives, tmp_path, monkeypatch):
    """Not of the whole archive: at 100 nights of 4096² that graph took 300 MB and 5 s to make, per window."""
    import dask.array

    store, graphs = dask.array.store, []

    def counting_store(sources, targets, **kwargs):
        layers = sources.dask.layers.values()
        graphs.append((sources.shape[0], sources.npartitions, sum(len(layer) for layer in layers)))
        return store(sources, targets, **kwargs)

    monkeypatch.setattr(dask.array, "store", counting_store)
    timeseries = tmp_path / "ts.zarr"
    update_timeseries(archives[3], timeseries, layout=LAYOUT, window=4)
    assert [n_time for n_time, _, _ in graphs] == [4, 4, 3], "three windows of one time block each"
    for _, chunks, tasks in graphs:
        assert tasks == chunks + 1, "one task per chunk of the window, and the archive's array"
    assert_same_as_archive(timeseries, archives[3])


def test_an_update_copies_what_the_archive_held_when_it_began_while_an_ingest_appends(
    night, archives, tmp_path, monkeypatch
):
    """No lock on the archive, and no chase either: what an ingest appends meanwhile is the next update's."""
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    steps = discover_time_steps(night).time_steps
    for step in steps[:2]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    for step in steps[2:8]:
        ingest_time_step(step, archive, settings=settings())
    appended = iter(steps[8:])

    def an_ingest_appends(name: str, instance: str = "") -> None:
        if name == "timeseries:pixels-staged":  # while each window is copied, one more time step is stored
            step = next(appended, None)
            if step is not None:
                ingest_time_step(step, archive, settings=settings())

    monkeypatch.setattr(timeseries_module, "failpoint", an_ingest_appends)
    done = update_timeseries(archive, timeseries, window=1)  # windows of one time block (4)
    assert (done.status, done.start, done.n_time, done.time_steps_copied) == ("appended", 0, 8, 8)
    assert read_state(archive).n_time == 10
    got, want = xr.open_zarr(timeseries, chunks=None), xr.open_zarr(archive, chunks=None).isel(time=slice(0, 8))
    np.testing.assert_array_equal(got["time_key"].values, want["time_key"].values)
    np.testing.assert_array_equal(got["SKY"].values.view("u4"), want["SKY"].values.view("u4"))
    assert validate_store(timeseries).ok
    monkeypatch.undo()
    for step in steps[10:]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries)
    assert_same_as_archive(timeseries, archive)
    assert_same_as_archive(timeseries, archives[3], made_from=False)


def test_a_rewrite_in_the_middle_is_committed_whole_and_never_cuts_the_store_short(make_data, tmp_path, monkeypatch):
    folder = make_data(time_steps=12, n_subbands=2, size=64)
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    steps = discover_time_steps(folder).time_steps
    for step in steps[:10]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    changed = sorted(folder.glob("*.fits"))[2 * 1]  # time step 1
    with fits.open(changed, mode="update") as hdus:
        hdus[0].data[0, 0, 30, 31] += 1.0
    ingest_directory(folder, archive, settings=settings(), replace=True)  # replaces 1, appends 10 and 11
    monkeypatch.setattr(timeseries_module, "failpoint", disk_full_when_staging(window=2))
    with pytest.raises(StoreError, match="no space left"):
        update_timeseries(archive, timeseries, window=4)
    got, want = xr.open_zarr(timeseries, chunks=None), xr.open_zarr(archive, chunks=None).isel(time=slice(0, 10))
    assert got.sizes["time"] == 10, "the first window rewrote 0..9 at once: the store never held fewer"
    np.testing.assert_array_equal(got["SKY"].values.view("u4"), want["SKY"].values.view("u4"))
    assert validate_store(timeseries).ok
    monkeypatch.undo()
    update_timeseries(archive, timeseries, window=4)
    assert_same_as_archive(timeseries, archive)


def test_an_archive_restored_from_a_backup_and_grown_again_is_copied_from_where_it_differs(night, tmp_path):
    """Same store id, same rewrite mark, other time steps at the end: the quick plan must not trust it."""
    archive, timeseries, backup = tmp_path / "archive.zarr", tmp_path / "ts.zarr", tmp_path / "backup.zarr"
    steps = discover_time_steps(night).time_steps
    for step in steps[:6]:
        ingest_time_step(step, archive, settings=settings())
    shutil.copytree(archive, backup)
    for step in steps[6:8]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    shutil.rmtree(archive)
    shutil.copytree(backup, archive)  # restored: 0..5
    for step in steps[8:10]:
        ingest_time_step(step, archive, settings=settings())  # 8 time steps again, the last two others
    done = update_timeseries(archive, timeseries)
    assert (done.status, done.start, done.n_time) == ("rewritten", 4, 8)
    assert_same_as_archive(timeseries, archive)


def test_a_backfill_committed_while_an_update_copies_is_not_kept(night, archives, tmp_path, monkeypatch):
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    steps = discover_time_steps(night).time_steps
    for step in [*steps[:5], *steps[6:9]]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    for step in steps[9:]:
        ingest_time_step(step, archive, settings=settings())
    before = sky_files(timeseries)

    def backfill_while_copying(name: str, instance: str = "") -> None:
        if name == "timeseries:pixels-staged":  # the pixels are read: now a retried time step is inserted
            ingest_time_step(steps[5], archive, settings=settings())

    monkeypatch.setattr(timeseries_module, "failpoint", backfill_while_copying)
    moved = r"archive\.zarr: stored time steps were moved or replaced .* while the update read them; run the update"
    with pytest.raises(StoreError, match=moved) as refused:
        update_timeseries(archive, timeseries)
    assert "\n" not in str(refused.value)
    assert sky_files(timeseries) == before and validate_store(timeseries).ok
    assert xr.open_zarr(timeseries).sizes["time"] == 8
    monkeypatch.undo()
    done = update_timeseries(archive, timeseries)
    assert done.status == "rewritten" and done.start == 4
    assert_same_as_archive(timeseries, archive)
    assert_same_as_archive(timeseries, archives[3], made_from=False)


def test_validate_and_repair_recognise_a_timeseries_store(night, archives, tmp_path):
    archive, timeseries = tmp_path / "archive.zarr", tmp_path / "ts.zarr"
    for step in discover_time_steps(night).time_steps[:5]:
        ingest_time_step(step, archive, settings=settings())
    update_timeseries(archive, timeseries, layout=LAYOUT)
    report = validate_store(timeseries)
    assert report.ok and report.n_time == 5 and not report.notes
    ingest_time_step(discover_time_steps(night).time_steps[5], archive, settings=settings())
    assert any("behind its archive from time index 5" in note for note in validate_store(timeseries).notes)

    shutil.copytree(timeseries / "SKY" / "c" / "1", timeseries / "SKY" / "c" / "2")
    assert any("uncommitted time block" in p for p in validate_store(timeseries).problems)
    zarr.open_group(str(timeseries), mode="r+", use_consolidated=False)[FINGERPRINT].resize((7,))
    repaired = repair_store(timeseries)
    assert repaired.ok, repaired.problems
    assert "removed uncommitted SKY chunks at time block 2" in repaired.actions
    assert f"{FINGERPRINT}: rolled back to 5 time steps" in repaired.actions

    shutil.rmtree(timeseries / "SKY" / "c" / "1")
    assert any("no pixels for time block(s) 1" in p for p in validate_store(timeseries).problems)


def test_the_memory_bound_picks_a_strip_of_whole_shards():
    # a tile of 8 time steps x 16 subbands x 1024² in float32 is 512 MiB: two workers get half a tile each
    assert block_strip(16, 1024, 1024, 256, 8, 2, 512 * 2**20) == 512
    assert block_strip(10, 1024, 1024, 256, 8, 1, 512 * 2**20) == 1024
    assert block_strip(10, 32, 32, 32, 4, 2, 1) == 32, "never narrower than a shard"


def test_the_default_path_sits_beside_the_archive():
    assert default_timeseries_path("/data/archive.zarr") == Path("/data/archive.timeseries.zarr")
    assert read_state  # the archive's reader is what refuses a time-series store (see above)


def timeseries_runs(api: str) -> int:
    """How many flow runs of the ``timeseries`` flow the server holds."""
    import httpx

    return int(
        httpx.post(f"{api}/flow_runs/count", json={"flows": {"name": {"any_": ["timeseries"]}}}, timeout=30).json()
    )


def test_the_timeseries_flow_and_command_bring_the_store_up_to_date_and_refuse_in_one_line(
    prefect_server, archives, tmp_path
):
    import os
    import subprocess
    import sys

    from flows.timeseries import timeseries as timeseries_flow

    timeseries = tmp_path / "ts.zarr"
    done = timeseries_flow(archive=str(archives[3]), timeseries=str(timeseries))
    assert done.status == "appended" and done.n_time == N_TIME
    assert_same_as_archive(timeseries, archives[3])
    runs = xr.open_zarr(timeseries).attrs[RUNS_ATTR]
    assert len(runs) == 1 and runs[0]["flow_run_id"]
    stale_complete_staging(timeseries)  # the flow, too, drops it when there is nothing to copy
    assert timeseries_flow(archive=str(archives[3]), timeseries=str(timeseries)).status == "up to date"
    assert not Store.at(timeseries).staging_root.exists()

    command = [str(Path(sys.executable).parent / "ovro-ingest"), "timeseries", str(archives[3]), str(timeseries)]
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    nowhere = {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # nothing to do: answered without Prefect
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=nowhere)
    assert again.returncode == 0 and "up to date with" in again.stdout, again.stdout + again.stderr
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, timeout=300, env=env)
    assert dry.returncode == 0 and "nothing to copy" in dry.stdout

    runs_before = timeseries_runs(prefect_server)
    missing = [*command[:2], str(tmp_path / "nothing.zarr"), str(tmp_path / "ts2.zarr")]
    refused = subprocess.run(missing, capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.startswith("timeseries failed:")]
    assert len(lines) == 1 and "no archive store here; give the path" in lines[0]
    assert refused.stdout + refused.stderr == lines[0] + "\n", "the reason, once, and nothing else"
    assert timeseries_runs(prefect_server) == runs_before, "a refusal it can tell before a run starts none"
    assert "Traceback" not in refused.stdout + refused.stderr
    assert not (tmp_path / "ts2.zarr").exists() and not (tmp_path / "nothing.zarr.lock").exists()

    prune = [command[0], "prune", str(timeseries)]  # it keeps no manifests nor fixed copies: its archive does
    pruned = subprocess.run(prune, capture_output=True, text=True, timeout=300, env=env)
    assert pruned.returncode == 2 and f"prune its archive: ovro-ingest prune {archives[3].resolve()}" in pruned.stderr


def test_a_rebuilt_archive_names_its_timeseries_stores_and_timeseries_rebuild_makes_one_again(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    from flows.ingest import ingest
    from flows.timeseries import timeseries as timeseries_flow

    folder, archive, timeseries = tmp_path / "night", tmp_path / "a.zarr", tmp_path / "a.timeseries.zarr"
    generate(folder, time_steps=2, n_subbands=2, size=32)
    ingest_directory(folder, archive, settings=settings())
    timeseries_flow(archive=str(archive), timeseries=str(timeseries))
    assert timeseries_module.timeseries_stores_of(archive) == [str(timeseries.resolve())], "the archive records it"

    rebuilt = ingest(input_dir=str(folder), store=str(archive), rebuild=True, workers=1, chunk_lm=32, return_state=True)
    assert rebuilt.is_completed()
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        ids = LogFilterFlowRunId(any_=[rebuilt.state_details.flow_run_id])
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=ids))]
    named = [message for message in logs if "time-series store(s) made from the old archive" in message]
    assert len(named) == 1 and str(timeseries.resolve()) in named[0], logs
    assert f"ovro-ingest timeseries --rebuild {archive}" in named[0], "it says how to make it again"

    refused = timeseries_flow(archive=str(archive), timeseries=str(timeseries), return_state=True)
    assert refused.is_failed() and "ovro-ingest timeseries --rebuild" in refused.message, refused.message
    done = timeseries_flow(archive=str(archive), timeseries=str(timeseries), rebuild=True)
    assert done.status == "appended" and done.n_time == 2
    assert_same_as_archive(timeseries, archive)
