"""load_subbands and combine_frequencies: header facts, small results, frequency order, clear rejections."""

import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from ovro_ingest.combine import combine_frequencies, open_time_step
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import BadInputFile, TimeStepRejected
from ovro_ingest.headers import make_readable
from ovro_ingest.load import load_subband, load_subbands
from ovro_ingest.models import LoadedTimeStep, ReadableTimeStep, SourceFile


def loaded_step(folder, index=0):
    step = discover_time_steps(folder).time_steps[index]
    return load_subbands(ReadableTimeStep(key=step.key, files=tuple(make_readable(f, None) for f in step.files)))


def test_load_reads_frequency_time_beam_and_grid_from_the_header(make_data):
    loaded = loaded_step(make_data(time_steps=1, n_subbands=3, size=64))
    image = loaded.subbands[0]
    header = fits.getheader(image.file.path)
    assert image.frequency_hz == header["CRVAL3"]
    assert image.time_mjd == Time(header["DATE-OBS"], scale="utc").mjd
    assert image.beam_rad == pytest.approx(
        (math.radians(header["BMAJ"]), math.radians(header["BMIN"]), math.radians(header["BPA"]))
    )
    assert image.grid.shape_lm == (64, 64)
    assert "RA---SIN" in image.celestial_wcs


def test_load_of_the_real_image(real_image):
    image = load_subband(make_readable(SourceFile.from_path(real_image, "69MHz"), None))
    assert image.frequency_hz == 68511474.609375
    assert image.date_obs == "2024-05-24T07:00:01.3"
    assert image.grid.shape_lm == (512, 512)


def test_results_are_small_even_for_sixteen_subbands(make_data):
    loaded = loaded_step(make_data(time_steps=1, n_subbands=16, size=32))
    plan = combine_frequencies(loaded)
    assert len(plan.model_dump_json()) < 40_000


def test_missing_date_obs_is_a_clear_error(make_data):
    path = next(make_data(time_steps=1, n_subbands=1).glob("*.fits"))
    with fits.open(path, mode="update") as hdul:
        del hdul[0].header["DATE-OBS"]
    with pytest.raises(BadInputFile, match="no DATE-OBS"):
        load_subband(make_readable(SourceFile.from_path(path, "41MHz"), None))


def test_combine_orders_frequencies_ascending_whatever_the_input_order(make_data):
    loaded = loaded_step(make_data(time_steps=1, n_subbands=5))
    shuffled = list(loaded.subbands)
    random.Random(3).shuffle(shuffled)
    plan = combine_frequencies(LoadedTimeStep(key=loaded.key, subbands=tuple(shuffled)))
    assert plan.frequencies_hz == sorted(s.frequency_hz for s in loaded.subbands)
    assert plan.time_mjd == loaded.subbands[0].time_mjd


def test_combine_rejects_two_files_of_one_frequency(make_data):
    loaded = loaded_step(make_data(time_steps=1, n_subbands=2))
    doubled = LoadedTimeStep(key=loaded.key, subbands=(*loaded.subbands, loaded.subbands[0]))
    with pytest.raises(TimeStepRejected, match="two files for one frequency"):
        combine_frequencies(doubled)


def test_combine_rejects_mixed_pixel_grids(make_data):
    small = loaded_step(make_data(time_steps=1, n_subbands=1, size=32)).subbands[0]
    large = loaded_step(make_data(time_steps=1, n_subbands=2, size=64)).subbands[1]
    with pytest.raises(TimeStepRejected, match=r"has pixel grid 64x64 .* but .* has 32x32"):
        combine_frequencies(LoadedTimeStep(key="k", subbands=(small, large)))


def test_open_time_step_is_one_lazy_dataset_with_the_fits_pixels(make_data):
    plan = combine_frequencies(loaded_step(make_data(time_steps=1, n_subbands=3, size=32)))
    dataset = open_time_step(plan)
    assert dict(dataset["SKY"].sizes) == {"time": 1, "frequency": 3, "polarization": 1, "l": 32, "m": 32}
    assert dataset["SKY"].chunks is not None
    pixels = fits.getdata(plan.subbands[2].file.path)[0, 0]
    np.testing.assert_array_equal(dataset["SKY"].values[0, 2, 0], pixels.T)


@pytest.mark.parametrize("shape", [(300, 700), (512, 512), (7, 1)])
def test_tiled_transpose_equals_numpy_transpose_for_any_shape(shape):
    from ovro_ingest.load import transpose_into

    plane = np.random.default_rng(0).normal(size=shape).astype(">f4")
    out = np.empty(shape[::-1], dtype=np.float32)
    transpose_into(plane, out)
    np.testing.assert_array_equal(out, plane.T)
    assert out.dtype == np.float32


def test_header_facts_equal_what_xradio_reads(make_data, real_image):
    from ovro_ingest.load import open_subband

    synthetic = discover_time_steps(make_data(time_steps=1, n_subbands=2)).time_steps[0].files
    for path in [f.path for f in synthetic] + [str(real_image)]:
        source = SourceFile.from_path(path, "41MHz")
        image = load_subband(make_readable(source, None))
        dataset = open_subband(path)
        assert image.frequency_hz == float(dataset["frequency"].values[0])
        assert image.polarizations == tuple(str(p) for p in dataset["polarization"].values)
        assert image.beam_rad == tuple(float(v) for v in dataset["BEAM_FIT_PARAMS_SKY"].values.reshape(-1, 3)[0])


def test_xradio_imported_in_the_background_imports_no_astropy_module_of_its_own():
    """The background import of xradio must not import astropy: astropy's config items are not thread-safe to import."""
    probe = (
        "import sys\n"
        "import ovro_ingest.load as load\n"
        "before = {name for name in sys.modules if name.split('.')[0] == 'astropy'}\n"
        "load.xradio_open_image()\n"
        "assert 'xradio.image' in sys.modules\n"
        "print(sorted({name for name in sys.modules if name.split('.')[0] == 'astropy'} - before))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"xradio imports astropy modules ovro_ingest.load does not: {result.stdout}"


def night_with_one_subband_changed(make_data, cards: dict, subband: int = 1, n_subbands: int = 3):
    """A night of 2 time steps; in its first, subband ``subband`` gets the header ``cards``; returns (folder, that file)."""
    from tests.fits_cases import edit, set_cards

    folder = make_data(time_steps=2, n_subbands=n_subbands, size=64)
    changed = discover_time_steps(folder).time_steps[0].files[subband].path
    edit(changed, set_cards(**cards))
    return folder, changed


@pytest.mark.parametrize(
    ("cards", "differs"),
    [
        ({"CTYPE1": "RA---NCP", "CTYPE2": "DEC--NCP"}, "PV2_2 1.3155527695286 vs 'absent'"),  # AIPS NCP: SIN + PV2
        ({"CRVAL1_SHIFT": 2.0}, "CRVAL1"),  # two pixels of RA off
        ({"LONPOLE": 90.0}, "LONPOLE"),
        ({"PV2_1": 0.01}, "PV2_1"),
    ],
)
def test_a_subband_whose_wcs_places_pixels_elsewhere_is_left_out_and_recorded_and_the_majority_wcs_is_stored(
    make_data, tmp_path, caplog, cards, differs
):
    import json
    import logging

    import xarray as xr

    from ovro_ingest.pipeline import ingest_directory

    if "CRVAL1_SHIFT" in cards:
        folder = make_data(time_steps=1, n_subbands=3, size=64)
        header = fits.getheader(discover_time_steps(folder).time_steps[0].files[1].path)
        cards = {"CRVAL1": header["CRVAL1"] + cards["CRVAL1_SHIFT"] * abs(header["CDELT1"])}
    folder, changed = night_with_one_subband_changed(make_data, cards)
    plan = combine_frequencies(loaded_step(folder))
    assert [e.source.path for e in plan.excluded] == [changed] and differs in plan.excluded[0].reason
    assert "its celestial WCS places pixels" in plan.excluded[0].reason and len(plan.subbands) == 2
    store = tmp_path / "s.zarr"
    with caplog.at_level(logging.WARNING):
        ingest_directory(folder, store)
    warned = [r.getMessage() for r in caplog.records if "elsewhere" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(warned) == 1 and Path(changed).name in warned[0] and "--replace" in warned[0]
    ds = xr.open_zarr(store)
    ledger = json.loads(str(ds["source_files"].values[0]))
    assert [e["path"] for e in ledger if "excluded" in e] == [changed]
    assert (
        str(ds["wcs_header"].values[0]) == plan.subbands[0].celestial_wcs
        and "RA---SIN" in plan.subbands[0].celestial_wcs
    )
    assert np.isnan(ds["SKY"].values[0, 1]).all() and np.isfinite(ds["SKY"].values[0, 0]).any()


def test_a_wcs_that_places_every_pixel_within_a_tenth_of_a_pixel_is_the_same_and_a_tie_keeps_the_lowest_frequencys(
    make_data,
):
    folder = make_data(time_steps=1, n_subbands=3, size=64)
    header = fits.getheader(discover_time_steps(folder).time_steps[0].files[1].path)
    nudge = {"CRVAL1": header["CRVAL1"] + 0.01 * abs(header["CDELT1"])}  # a hundredth of a pixel: rounding
    folder, _ = night_with_one_subband_changed(make_data, nudge)
    assert combine_frequencies(loaded_step(folder)).excluded == ()
    ncp = {"CTYPE1": "RA---NCP", "CTYPE2": "DEC--NCP"}
    folder, changed = night_with_one_subband_changed(make_data, ncp, subband=0, n_subbands=2)
    plan = combine_frequencies(loaded_step(folder))
    assert [s.file.source.path for s in plan.subbands] == [changed], "one against one: the lowest frequency's WCS"
    assert "PV2_2" in plan.subbands[0].celestial_wcs and len(plan.excluded) == 1, "wcslib reads NCP as SIN + PV2"


def test_a_left_out_subband_is_stored_by_a_later_replace_once_its_wcs_is_right(make_data, tmp_path):
    import xarray as xr

    from ovro_ingest.pipeline import ingest_directory
    from tests.fits_cases import edit, set_cards

    folder, changed = night_with_one_subband_changed(make_data, {"CTYPE1": "RA---NCP", "CTYPE2": "DEC--NCP"})
    store = tmp_path / "s.zarr"
    ingest_directory(folder, store)
    edit(changed, set_cards(CTYPE1="RA---SIN", CTYPE2="DEC--SIN"))
    ingest_directory(folder, store, replace=True)
    assert np.isfinite(xr.open_zarr(store)["SKY"].values[0, 1]).any(), "the repaired subband is stored"
