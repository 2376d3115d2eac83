"""The generator writes realistic OVRO-LWA-like images."""

import numpy as np
from astropy.io import fits

from ovro_ingest.synth import generate


def test_generated_images_look_like_ovro_lwa(tmp_path):
    files = generate(tmp_path, time_steps=2, n_subbands=10, size=64, naming="current")
    assert len(files) == 20
    assert files[0].name == "41MHz-I-Deep-Taper-Robust-0-image-20240524_050009.fits"
    low, high = fits.open(files[0]), fits.open(files[9])
    header = low[0].header
    for key, value in {
        "TELESCOP": "OVRO-LWA",
        "CTYPE1": "RA---SIN",
        "CTYPE3": "FREQ",
        "CTYPE4": "STOKES",
        "SPECSYS": "TOPOCENT",
        "ORIGIN": "WSClean",
        "CRVAL3": 43245849.609375,
    }.items():
        assert header[key] == value
    assert header["BMAJ"] > high[0].header["BMAJ"], "the beam grows toward low frequency"
    data = low[0].data[0, 0]
    assert data.shape == (64, 64) and data.dtype == np.dtype(">f4")
    assert np.isnan(data[0, 0]) and np.isfinite(data[32, 32]), "NaN beyond the horizon only"
    later = fits.getheader(files[10])
    assert later["DATE-OBS"] == "2024-05-24T05:00:19.3"
    assert later["CRVAL1"] != header["CRVAL1"], "the zenith moves with sidereal time"


def test_generation_is_deterministic(tmp_path):
    first = generate(tmp_path / "a", time_steps=1, n_subbands=2, size=32, seed=5)
    second = generate(tmp_path / "b", time_steps=1, n_subbands=2, size=32, seed=5)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(fits.getdata(a), fits.getdata(b))


def test_the_diffuse_sky_is_the_galactic_emission_where_astropy_puts_each_pixel_of_the_headers_wcs():
    from astropy.coordinates import SkyCoord
    from astropy.wcs import WCS

    from ovro_ingest.synth import DEFAULT_START, SkyModel, galactic_emission, header_for, subbands

    size = 256  # the diffuse grid is the pixel grid up to 512²
    sky = SkyModel(size, seed=0)
    diffuse = sky.diffuse(DEFAULT_START)
    wcs = WCS(header_for(size, subbands(1)[0], DEFAULT_START)).celestial
    rows, cols = np.meshgrid(np.arange(20, size - 20, 23), np.arange(20, size - 20, 23), indexing="ij")
    inside = (sky.l_axis[cols] ** 2 + sky.m_axis[rows] ** 2) < 0.95
    ra, dec = wcs.pixel_to_world_values(cols[inside], rows[inside])
    galactic = SkyCoord(ra=ra, dec=dec, unit="deg", frame="icrs").galactic
    expected = galactic_emission(np.radians(galactic.l.wrap_at("180d").deg), np.radians(galactic.b.deg))
    np.testing.assert_allclose(diffuse[rows[inside], cols[inside]], expected, rtol=2e-3)
    # at the demo's time the North Galactic Pole is near the zenith and the plane low in the east
    zenith = SkyCoord(*wcs.pixel_to_world_values(size / 2, size / 2), unit="deg", frame="icrs").galactic
    above = sky.l_axis[np.newaxis, :] ** 2 + sky.m_axis[:, np.newaxis] ** 2 < 0.95
    row, col = np.unravel_index(np.argmax(np.where(above, diffuse, 0.0)), diffuse.shape)
    brightest = SkyCoord(*wcs.pixel_to_world_values(col, row), unit="deg", frame="icrs").galactic
    assert zenith.b.deg > 50 and abs(brightest.b.deg) < 3, "the plane is the brightest, the pole faint"
    assert sky.l_axis[col] > 0.3, "the plane lies low in the east"


def test_point_sources_are_drawn_with_the_beams_size_and_orientation():
    import math

    from ovro_ingest.synth import BEAM_PA_DEG, FWHM_PER_SIGMA, beam_shape

    major, minor = 10.0 / FWHM_PER_SIGMA, 6.0 / FWHM_PER_SIGMA  # sigmas of a 10 x 6 pixel FWHM beam
    pa = math.radians(BEAM_PA_DEG)
    half_major = beam_shape(np.array(5.0 * math.cos(pa)), np.array(5.0 * math.sin(pa)), major, minor)
    half_minor = beam_shape(np.array(-3.0 * math.sin(pa)), np.array(3.0 * math.cos(pa)), major, minor)
    assert beam_shape(np.array(0.0), np.array(0.0), major, minor) == 1.0
    np.testing.assert_allclose([half_major, half_minor], [0.5, 0.5], rtol=1e-5), "half power at half the FWHM"
