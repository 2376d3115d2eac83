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
