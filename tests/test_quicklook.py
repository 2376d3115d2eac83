"""The quick look: one picture per night, an RA/Dec grid from the time step's own WCS, a stretch that shows the sky."""

from __future__ import annotations

import base64
import shutil
from datetime import UTC, datetime

import numpy as np
import pytest
import xarray as xr
from astropy.visualization import AsinhStretch
from astropy.visualization.wcsaxes import WCSAxes
from matplotlib import pyplot as plt

from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.quicklook import draw_nights, picture_path, quicklook_figure, thumbnail_png
from ovro_ingest.sky import pixel_to_radec
from ovro_ingest.store import StoreSettings
from ovro_ingest.synth import generate

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def two_nights(tmp_path):
    """A store of two nights (2024-05-24 and -25, 2 time steps each, 3 subbands of 128²)."""
    store = tmp_path / "s.zarr"
    for night, start in (
        ("a", datetime(2024, 5, 24, 5, 0, 9, tzinfo=UTC)),
        ("b", datetime(2024, 5, 25, 5, 0, 9, tzinfo=UTC)),
    ):
        generate(tmp_path / night, time_steps=2, n_subbands=3, size=128, start=start)
        ingest_directory(tmp_path / night, store, settings=StoreSettings(chunk_lm=64))
    return store


def test_one_picture_per_night_named_by_its_utc_date_from_its_newest_time_step(two_nights, tmp_path):
    work = tmp_path / "s.zarr.work"
    keys = [str(k) for k in xr.open_zarr(two_nights)["time_key"].values]
    looks = draw_nights(two_nights, work, keys)
    assert [(look.night, look.time_key) for look in looks] == [
        ("2024-05-24", "20240524_050019"),
        ("2024-05-25", "20240525_050019"),
    ]
    assert sorted(p.name for p in (work / "quicklook").iterdir()) == ["2024-05-24.png", "2024-05-25.png"]
    assert all(look.path == picture_path(work, look.night) and look.path.read_bytes()[:8] == PNG for look in looks)
    assert looks[1].title.startswith("2024-05-25T05:00:19.0 UTC   47.840 MHz (46MHz)")

    first_night = looks[0].path.stat().st_mtime_ns
    again = draw_nights(two_nights, work, ["20240525_050009"])  # a run that stored only in the second night
    assert [look.night for look in again] == ["2024-05-25"] and looks[0].path.stat().st_mtime_ns == first_night


def test_the_grid_is_ra_dec_of_the_time_steps_own_wcs(two_nights, tmp_path):
    dataset = xr.open_zarr(two_nights)
    for t in (0, 3):
        figure, _ = quicklook_figure(two_nights, t, tmp_path / "x.png")
        try:
            axes = figure.axes[0]
            assert isinstance(axes, WCSAxes)
            assert [str(c).split("-")[0] for c in axes.wcs.wcs.ctype] == ["RA", "DEC"]
            ra, dec = axes.wcs.all_pix2world(64.0, 64.0, 0)  # shown at full resolution: pixel = SKY pixel
            want_ra, want_dec = pixel_to_radec(dataset, t, 64, 64)
            assert (ra - want_ra + 180) % 360 - 180 == pytest.approx(0, abs=1e-9) and dec == pytest.approx(want_dec)
        finally:
            plt.close(figure)


def test_the_stretch_shows_faint_sources_without_saturating_the_galactic_plane(two_nights, tmp_path):
    figure, _ = quicklook_figure(two_nights, -1, tmp_path / "x.png")
    try:
        image = figure.axes[0].images[0]
        norm, shown = image.norm, np.asarray(image.get_array().filled(np.nan))
    finally:
        plt.close(figure)
    finite = shown[np.isfinite(shown)]
    assert isinstance(norm.stretch, AsinhStretch)
    assert np.mean(finite >= norm.vmax) <= 0.001, "at most 0.1% of the sky at the top of the colour scale"
    faint = norm.vmin + 0.15 * (norm.vmax - norm.vmin)  # a source at 15% of the ridge's brightness
    assert norm(faint) >= 0.4, "shown in the middle of the colour scale, not among the darkest colours"


def test_a_large_image_is_shown_binned_at_about_the_pictures_resolution(tmp_path):
    generate(tmp_path / "n", time_steps=1, n_subbands=1, size=2048)
    ingest_directory(tmp_path / "n", tmp_path / "s.zarr")
    figure, _ = quicklook_figure(tmp_path / "s.zarr", 0, tmp_path / "x.png")
    try:
        axes = figure.axes[0]
        shown = axes.images[0].get_array()
        assert shown.shape == (512, 512), "2048² binned 4 x 4: at most 1024² pixels shown"
        sky = xr.open_zarr(tmp_path / "s.zarr")["SKY"].values[0, 0, 0]
        np.testing.assert_allclose(shown[100, 200], sky[800:804, 400:404].mean(), rtol=1e-6)  # (m, l) = SKY[l, m].T
        ra, dec = axes.wcs.all_pix2world(200.0, 100.0, 0)  # the centre of the bin: SKY pixel (801.5, 401.5)
        want_ra, want_dec = pixel_to_radec(xr.open_zarr(tmp_path / "s.zarr"), 0, 801.5, 401.5)
        assert (ra - want_ra + 180) % 360 - 180 == pytest.approx(0, abs=1e-9) and dec == pytest.approx(want_dec)
    finally:
        plt.close(figure)


def test_the_thumbnail_for_the_prefect_ui_stays_small(two_nights, tmp_path):
    looks = draw_nights(two_nights, tmp_path / "work", ["20240525_050019"])
    thumbnail = thumbnail_png(looks[0].path)
    assert thumbnail[:8] == PNG and len(base64.b64encode(thumbnail)) <= 60_000


def test_the_quick_look_of_the_real_image(real_image, tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    shutil.copy(real_image, folder / "20240524_070001_69MHz_averaged_20000_iterations-I-image.fits")
    ingest_directory(folder, tmp_path / "s.zarr", settings=StoreSettings(chunk_lm=256))
    (look,) = draw_nights(tmp_path / "s.zarr", tmp_path / "work", ["20240524_070001"])
    assert look.title.startswith("2024-05-24T07:00:01.3 UTC   68.511 MHz (69MHz)")
    assert len(base64.b64encode(thumbnail_png(look.path))) <= 60_000


def test_an_image_that_is_not_all_sky_is_shown_whole_in_a_rectangular_frame(tmp_path):
    from astropy.io import fits
    from astropy.visualization.wcsaxes.frame import RectangularFrame

    generate(tmp_path / "n", time_steps=1, n_subbands=1, size=64)
    for path in (tmp_path / "n").glob("*.fits"):
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["CTYPE1"], hdul[0].header["CTYPE2"] = "RA---TAN", "DEC--TAN"
            hdul[0].header["CDELT1"], hdul[0].header["CDELT2"] = -0.1, 0.1  # a 6.4 degree field
            hdul[0].data[np.isnan(hdul[0].data)] = 0.0
    ingest_directory(tmp_path / "n", tmp_path / "s.zarr", settings=StoreSettings(chunk_lm=32))
    figure, _ = quicklook_figure(tmp_path / "s.zarr", 0, tmp_path / "x.png")
    try:
        axes = figure.axes[0]
        assert isinstance(axes.coords.frame, RectangularFrame) and axes.get_xlim() == (-0.5, 63.5)
        assert np.isfinite(axes.images[0].get_array().filled(np.nan)).all(), "no horizon to cut at"
    finally:
        plt.close(figure)
