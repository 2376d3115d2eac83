"""The store says exactly what the telescope wrote: beams, times, frequencies, provenance, determinism."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.time import Time, TimeDelta

from ovro_ingest import __version__
from ovro_ingest.combine import combine_frequencies
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import TimeStepRejected
from ovro_ingest.headers import make_readable
from ovro_ingest.health import validate_store
from ovro_ingest.load import load_subbands
from ovro_ingest.models import ReadableTimeStep
from ovro_ingest.pipeline import ingest_directory, ingest_time_step
from ovro_ingest.store import StoreSettings

SMALL = StoreSettings(chunk_lm=32)


def set_header(path: Path, **cards) -> None:
    with fits.open(path, mode="update") as hdul:
        for keyword, value in cards.items():
            hdul[0].header[keyword.replace("_", "-")] = value


def loaded(step):
    return load_subbands(ReadableTimeStep(key=step.key, files=tuple(make_readable(f, None) for f in step.files)))


@pytest.mark.parametrize("bad", [{"BMAJ": 0.0}, {"BMIN": -1.0}, {"BMAJ": "NaN"}])
def test_a_file_with_an_invalid_beam_is_left_out_with_one_warning_per_run_and_recorded(
    make_data, tmp_path, caplog, bad
):
    folder = make_data(time_steps=2, n_subbands=3)
    victim = next(folder.glob("20240524_050019_46MHz*.fits"))
    other = sorted(folder.glob("20240524_050009_*.fits"))[-1]  # another time step, another subband
    set_header(victim, **bad)
    set_header(other, **bad)
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    warned = [
        r.getMessage() for r in caplog.records if "invalid beam" in r.getMessage() and r.levelno >= logging.WARNING
    ]
    assert len(warned) == 1 and "left out 2 file(s) with an invalid beam" in warned[0], "one line for both time steps"
    assert victim.name in warned[0] and other.name in warned[0]
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert np.isnan(ds["SKY"].values[1, 1]).all() and np.isnan(ds["BEAM_FIT_PARAMS_SKY"].values[1, 1]).all()
    ledger = json.loads(ds["source_files"].values[1])
    assert [e["excluded"] for e in ledger if e["path"] == str(victim)] == [
        pytest.approx(e["excluded"]) for e in ledger if "excluded" in e
    ]
    assert any("excluded" in e and e["path"] == str(victim) for e in ledger)
    assert validate_store(tmp_path / "s.zarr").ok


def test_keep_bad_beams_stores_the_file_with_a_nan_beam(make_data, tmp_path):
    folder = make_data(time_steps=1, n_subbands=2)
    victim = next(folder.glob("*46MHz*.fits"))
    with fits.open(victim, mode="update") as hdul:
        del hdul[0].header["BMAJ"]
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL, keep_bad_beams=True)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ds["SKY"].values[0, 1, 0], fits.getdata(victim)[0, 0].T)
    assert np.isnan(ds["BEAM_FIT_PARAMS_SKY"].values[0, 1]).all()
    assert np.isfinite(ds["BEAM_FIT_PARAMS_SKY"].values[0, 0]).all()


def test_a_time_step_without_any_valid_beam_is_rejected_naming_the_files_and_the_option(make_data):
    folder = make_data(time_steps=1, n_subbands=2)
    for path in folder.glob("*.fits"):
        set_header(path, BMAJ=0.0)
    with pytest.raises(TimeStepRejected, match=r"no file has a valid beam .*BMAJ=0.0 .*--keep-bad-beams"):
        combine_frequencies(loaded(discover_time_steps(folder).time_steps[0]))


def warnings_of(caplog) -> list[str]:
    """The warnings logged (not the INFO lines a suite that logs INFO captures too)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_date_obs_spread_is_warned_about_once_per_run_and_recorded(make_data, tmp_path, caplog):
    folder = make_data(time_steps=2, n_subbands=3)
    for late in folder.glob("*50MHz*.fits"):  # in both time steps
        first = Time(fits.getval(late, "DATE-OBS"), scale="utc")
        set_header(late, DATE_OBS=(first + TimeDelta(5, format="sec")).isot)
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    warned = [w for w in warnings_of(caplog) if "DATE-OBS spread" in w]
    assert len(warned) == 1 and warned[0].startswith("2 time step(s)") and "20240524_050009 (5.0 s)" in warned[0]
    first = Time(fits.getval(next(folder.glob("20240524_050009_41MHz*.fits")), "DATE-OBS"), scale="utc")
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert ds["date_obs_spread"].values[0] == pytest.approx(5.0, abs=1e-3)
    assert ds["time"].values[0] == pytest.approx(first.mjd, abs=1e-9), "the time step's time is its earliest DATE-OBS"


def test_a_name_time_stamp_far_from_date_obs_is_warned_about_once_per_run_naming_both(make_data, tmp_path, caplog):
    folder = make_data(time_steps=1, n_subbands=2)
    for path in folder.glob("*.fits"):
        set_header(path, DATE_OBS="2024-05-24T04:30:09.3")  # the name says 05:00:09
    plan = combine_frequencies(loaded(discover_time_steps(folder).time_steps[0]))
    assert [(n.kind, n.subject, n.detail) for n in plan.notices] == [("offset", "20240524_050009", "-1800 s")]
    assert plan.time_mjd == pytest.approx(Time("2024-05-24T04:30:09.3", scale="utc").mjd)
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    warned = [w for w in warnings_of(caplog) if "file-name time stamp" in w]
    assert len(warned) == 1 and "20240524_050009 (-1800 s)" in warned[0] and "the stored time is DATE-OBS" in warned[0]


def test_channels_carry_their_name_label_and_each_time_steps_header_frequency(make_data, tmp_path):
    folder = make_data(time_steps=2, n_subbands=3)
    jittered = next(folder.glob("20240524_050019_46MHz*.fits"))
    original = fits.getval(jittered, "CRVAL3")
    set_header(jittered, CRVAL3=original + 2_500.0)
    ingest_directory(folder, tmp_path / "s.zarr", settings=SMALL)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    assert list(ds["frequency_label"].values) == ["41MHz", "46MHz", "50MHz"]
    assert ds["frequency"].values[1] == original
    np.testing.assert_array_equal(ds["frequency_header"].values[:, 1], [original, original + 2_500.0])


def test_the_store_records_software_versions_and_each_run_that_changed_it(make_data, tmp_path):
    folder = make_data(time_steps=3)
    steps = discover_time_steps(folder).time_steps
    store = tmp_path / "s.zarr"
    ingest_time_step(steps[0], store, settings=SMALL)
    ingest_directory(folder, store, settings=SMALL)
    ingest_directory(folder, store, settings=SMALL)  # changes nothing: not recorded
    attrs = xr.open_zarr(store).attrs
    assert attrs["ovro_ingest_created_with"]["ovro-ingest"] == __version__
    assert "xradio" in attrs["ovro_ingest_created_with"] and "zarr" in attrs["ovro_ingest_created_with"]
    runs = attrs["ovro_ingest_runs"]
    assert [run["time_steps"] for run in runs] == [{"written": 1}, {"written": 2, "already stored": 1}]
    assert all(run["input_dir"] == str(folder.resolve()) and "finished" in run and run["software"] for run in runs)
    assert runs[0]["who"].endswith("ingest_time_step") and runs[1]["who"].endswith("ingest_directory")


def chunk_bytes(store: Path) -> dict[str, bytes]:
    """Every data and coordinate chunk of a store, by relative path (metadata documents left out)."""
    metadata = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}
    return {
        str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file() and p.name not in metadata
    }


def test_same_inputs_give_byte_identical_chunks_whatever_the_workers_order_and_runs(make_data, tmp_path):
    folder = make_data(time_steps=5, n_subbands=3)
    ingest_directory(folder, tmp_path / "one-run.zarr", settings=SMALL, workers=1)

    reordered = tmp_path / "reordered"  # the same files, created in the reverse order
    reordered.mkdir()
    for path in sorted(folder.glob("*.fits"), reverse=True):
        shutil.copy2(path, reordered / path.name)
    later_half, earlier_half = tmp_path / "later", tmp_path / "earlier"
    for half, keys in ((later_half, 2), (earlier_half, 0)):
        half.mkdir()
        for step in discover_time_steps(reordered).time_steps[keys : keys + 3 if keys else 2]:
            for source in step.files:
                (half / Path(source.path).name).symlink_to(source.path)
    split = tmp_path / "split.zarr"
    ingest_directory(later_half, split, settings=SMALL, workers=3)
    ingest_directory(earlier_half, split, settings=SMALL, workers=2)  # a backfill before the stored ones

    reference = tmp_path / "reference.zarr"
    ingest_directory(reordered, reference, settings=SMALL, workers=1)
    assert chunk_bytes(split).keys() == chunk_bytes(reference).keys()
    differing = [k for k, v in chunk_bytes(split).items() if v != chunk_bytes(reference)[k]]
    assert differing == [], "chunks must be byte-identical"
    ours, theirs = chunk_bytes(tmp_path / "one-run.zarr"), chunk_bytes(reference)
    data_and_coordinates = [k for k in ours if not k.startswith("source_files")]  # the ledger names the folder
    assert [k for k in data_and_coordinates if ours[k] != theirs[k]] == []


def test_sky_chunks_keep_the_fits_rows_as_they_are_and_read_as_l_m(make_data, tmp_path):
    import numcodecs

    folder = make_data(time_steps=1, n_subbands=1, size=64)
    store = tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=StoreSettings(chunk_lm=32))
    codecs = json.loads((store / "SKY" / "zarr.json").read_text())["codecs"]
    assert codecs[0] == {"name": "transpose", "configuration": {"order": [0, 1, 2, 4, 3]}}
    plane = fits.getdata(next(folder.glob("*.fits")))[0, 0]  # FITS order: (m, l)
    # the chunk of l 32..63 and m 0..31, decoded without zarr: FITS rows m 0..31, each from l = 32 to 63
    stored = numcodecs.Blosc().decode((store / "SKY" / "c" / "0" / "0" / "0" / "1" / "0").read_bytes())
    np.testing.assert_array_equal(np.frombuffer(stored, "<f4").reshape(32, 32), plane[0:32, 32:64])
    np.testing.assert_array_equal(xr.open_zarr(store)["SKY"].values[0, 0, 0], plane.T)  # readers see (l, m)
