"""RA/Dec of any pixel at any time, from the store alone, equal astropy's on the original file."""

from __future__ import annotations

import shutil

import numpy as np
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
        np.testing.assert_allclose(got_ra, want_ra, rtol=0, atol=1e-9, equal_nan=True)
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
