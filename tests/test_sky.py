"""RA/Dec of any pixel at any time, from the store alone, equal astropy's on the original file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS

from ovro_ingest.discover import discover_time_steps
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.sky import pixel_to_radec, sky_coordinates
from ovro_ingest.store import StoreSettings

SAMPLES = (np.array([0, 5, 31, 40, 63]), np.array([63, 17, 32, 8, 0]))


def assert_store_frame_matches_files(store, steps) -> None:
    ds = xr.open_zarr(store)
    for t, step in enumerate(steps):
        with fits.open(step.files[0].path) as hdul:
            want_ra, want_dec = WCS(hdul[0].header).celestial.all_pix2world(*SAMPLES, 0)
        got_ra, got_dec = pixel_to_radec(ds, t, *SAMPLES)
        np.testing.assert_array_equal(np.isnan(got_ra), np.isnan(want_ra))
        turns = (got_ra - want_ra + 180.0) % 360.0 - 180.0  # the same direction: astropy's RA may be negative
        np.testing.assert_allclose(turns[np.isfinite(turns)], 0.0, rtol=0, atol=1e-9)
        np.testing.assert_allclose(got_dec, want_dec, rtol=0, atol=1e-9, equal_nan=True)


def test_radec_of_each_time_step_follows_that_time_steps_own_frame(make_data, tmp_path):
    folder = make_data(time_steps=3, size=64)
    ingest_directory(folder, tmp_path / "s.zarr", settings=StoreSettings(chunk_lm=32))
    assert_store_frame_matches_files(tmp_path / "s.zarr", discover_time_steps(folder).time_steps)

    coords = sky_coordinates(xr.open_zarr(tmp_path / "s.zarr"))
    assert coords["right_ascension"].dims == ("time", "l", "m")
    centre = coords["right_ascension"].isel(l=32, m=32).values
    assert len(set(np.round(centre, 6))) == 3, "zenith-centred images: each time step has its own RA"


def test_radec_from_the_store_of_the_real_image_equal_astropys(real_image, tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    shutil.copy(real_image, folder / "20240524_070001_69MHz_averaged_20000_iterations-I-image.fits")
    ingest_directory(folder, tmp_path / "s.zarr", settings=StoreSettings(chunk_lm=256))
    assert_store_frame_matches_files(tmp_path / "s.zarr", discover_time_steps(folder).time_steps)


@pytest.fixture
def small_store(make_data, tmp_path) -> xr.Dataset:
    """A store of 2 time steps of 64² (synthetic: zenith-centred, corners beyond the horizon), opened."""
    ingest_directory(make_data(time_steps=2, size=64), tmp_path / "s.zarr", settings=StoreSettings(chunk_lm=32))
    return xr.open_zarr(tmp_path / "s.zarr")


@pytest.mark.parametrize("bad", [64, 100000, -1, 63.6])
def test_a_pixel_index_outside_the_image_is_an_index_error_naming_the_valid_range(small_store, bad):
    with pytest.raises(IndexError, match=r"l_index .* 0 \.\. 63"):
        pixel_to_radec(small_store, 0, bad, 32)
    with pytest.raises(IndexError, match=r"m_index .* 0 \.\. 63"):
        pixel_to_radec(small_store, 0, np.array([32, 32]), np.array([0, bad]))


@pytest.mark.parametrize("bad", [2, -3, 100000])
def test_a_time_index_outside_the_store_is_an_index_error_naming_the_valid_range(small_store, bad):
    with pytest.raises(IndexError, match=r"time_index .* 2 time steps .*0 \.\. 1"):
        pixel_to_radec(small_store, bad, 32, 32)
    with pytest.raises(IndexError, match=r"time_index .* 0 \.\. 1"):
        sky_coordinates(small_store, time_indices=[0, bad])


def test_ra_is_in_0_to_360_and_nan_only_beyond_the_horizon(small_store):
    size = small_store.sizes["l"]
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    radians_per_pixel = np.radians(128.0 / size)  # synth's pixel scale
    beyond_horizon = ((i - size / 2) * radians_per_pixel) ** 2 + ((j - size / 2) * radians_per_pixel) ** 2 > 1
    for t in (0, 1, -1):
        ra, dec = pixel_to_radec(small_store, t, i, j)
        np.testing.assert_array_equal(np.isnan(ra), beyond_horizon)
        np.testing.assert_array_equal(np.isnan(dec), beyond_horizon)
        assert np.all((ra[~beyond_horizon] >= 0) & (ra[~beyond_horizon] < 360))
    coords = sky_coordinates(small_store)
    ra = coords["right_ascension"].values
    assert np.nanmin(ra) >= 0 and np.nanmax(ra) < 360 and np.isnan(ra).sum() == 2 * beyond_horizon.sum()
    # the synthetic default night has its zenith at a negative CRVAL1: the same direction, in [0, 360)
    crval1 = float(WCS(fits.Header.fromstring(str(small_store["wcs_header"].values[0]), sep="\n")).wcs.crval[0])
    assert crval1 < 0 and pixel_to_radec(small_store, 0, size // 2, size // 2)[0] == pytest.approx(crval1 + 360)


def test_the_readmes_radec_example_gives_finite_coordinates_on_any_store(small_store):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = next(block for block in readme.split("```python")[1:] if "pixel_to_radec(ds" in block)
    namespace = {"ds": small_store}
    exec(example.split("```")[0], namespace)
    assert np.isfinite(namespace["ra"]) and np.isfinite(namespace["dec"]) and 0 <= namespace["ra"] < 360
    assert namespace["coords"]["right_ascension"].dims == ("time", "l", "m")
