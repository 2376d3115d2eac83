"""fix_headers: files the loader reads as they are pass through; others get a fixed copy, reused while valid."""

import os

import numpy as np
import pytest
from astropy.io import fits

from ovro_ingest.errors import BadInputFile
from ovro_ingest.headers import make_readable
from ovro_ingest.load import load_subband
from ovro_ingest.models import SourceFile
from tests.fits_cases import scaled_integer_image, synthetic_header


def test_a_realistic_file_is_used_as_it_is(make_data, tmp_path):
    source_path = next(make_data(time_steps=1, n_subbands=1).glob("*.fits"))
    source = SourceFile.from_path(source_path, "41MHz")
    readable = make_readable(source, tmp_path / "fixed")
    assert readable.path == str(source_path)
    assert readable.corrections == ()
    assert not (tmp_path / "fixed").exists()


def test_the_real_ovro_lwa_image_needs_no_fix(real_image, tmp_path):
    readable = make_readable(SourceFile.from_path(real_image, "69MHz"), tmp_path / "fixed")
    assert readable.path == str(real_image.resolve()), "read as it is (the shared folder may be a link)"
    assert not (tmp_path / "fixed").exists()


def test_bscale_bzero_integer_image_gets_a_float32_copy_with_physical_values(tmp_path):
    source, physical = scaled_integer_image(tmp_path / "int.fits")
    readable = make_readable(source, tmp_path / "fixed")
    assert readable.path != source.path
    assert any("BSCALE=0.25" in c for c in readable.corrections)
    with fits.open(readable.path) as hdul:
        assert hdul[0].header["BITPIX"] == -32
        assert "BSCALE" not in hdul[0].header
        np.testing.assert_array_equal(hdul[0].data, physical.astype(np.float32))
    image = load_subband(readable)
    assert image.frequency_hz == pytest.approx(synthetic_header()["CRVAL3"])


def test_a_fixed_copy_is_reused_while_its_source_is_unchanged_and_redone_after(tmp_path):
    source, _ = scaled_integer_image(tmp_path / "int.fits")
    first = make_readable(source, tmp_path / "fixed")
    mtime = os.stat(first.path).st_mtime_ns
    assert make_readable(source, tmp_path / "fixed").path == first.path
    assert os.stat(first.path).st_mtime_ns == mtime, "an unchanged source must not be copied again"

    changed, _ = scaled_integer_image(tmp_path / "int.fits")  # rewritten: new mtime
    assert changed.mtime_ns != source.mtime_ns
    make_readable(changed, tmp_path / "fixed")
    assert os.stat(first.path).st_mtime_ns != mtime


def test_a_file_that_needs_fixing_without_a_fixed_dir_is_a_clear_error(tmp_path):
    source, _ = scaled_integer_image(tmp_path / "int.fits")
    with pytest.raises(BadInputFile, match=r"int\.fits: needs a fixed copy .*--fixed-dir"):
        make_readable(source, None)


def test_a_3d_image_gets_a_stokes_axis(tmp_path):
    header = synthetic_header()
    data = np.ones((1, 32, 32), dtype=np.float32)
    hdu = fits.PrimaryHDU(data=data)
    for key in (
        "CTYPE1",
        "CRPIX1",
        "CRVAL1",
        "CDELT1",
        "CTYPE2",
        "CRPIX2",
        "CRVAL2",
        "CDELT2",
        "CTYPE3",
        "CRVAL3",
        "CRPIX3",
        "CDELT3",
        "DATE-OBS",
        "BMAJ",
        "BMIN",
        "BPA",
    ):
        hdu.header[key] = header[key]
    hdu.writeto(tmp_path / "cube.fits")
    readable = make_readable(SourceFile.from_path(tmp_path / "cube.fits", "41MHz"), tmp_path / "fixed")
    assert readable.corrections == ("added a STOKES axis (I)",)
    image = load_subband(readable)
    assert image.polarizations == ("I",)


def test_a_2d_image_is_promoted_only_with_a_known_frequency(tmp_path):
    header = synthetic_header()
    hdu = fits.PrimaryHDU(data=np.ones((32, 32), dtype=np.float32))
    for key in ("CTYPE1", "CRPIX1", "CRVAL1", "CDELT1", "CTYPE2", "CRPIX2", "CRVAL2", "CDELT2", "DATE-OBS"):
        hdu.header[key] = header[key]
    hdu.header["RESTFRQ"] = 55.5e6
    hdu.writeto(tmp_path / "flat.fits")
    readable = make_readable(SourceFile.from_path(tmp_path / "flat.fits", "55MHz"), tmp_path / "fixed")
    assert any("55500000.0 Hz (from RESTFRQ)" in c for c in readable.corrections)
    assert load_subband(readable).frequency_hz == 55.5e6


def test_a_truncated_file_is_named_with_the_fix(make_data, tmp_path):
    path = next(make_data(time_steps=1, n_subbands=1).glob("*.fits"))
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(BadInputFile, match=rf"{path.name}: truncated FITS file .*re-copy or regenerate"):
        make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed")


@pytest.mark.parametrize("content", [b"", b"this is not FITS" * 400])
def test_an_empty_or_non_fits_file_is_named_with_the_fix(tmp_path, content):
    path = tmp_path / "20240524_050009_41MHz_averaged_1-I-image.fits"
    path.write_bytes(content)
    with pytest.raises(BadInputFile, match=r"averaged_1-I-image\.fits: (empty file|not a readable FITS)"):
        make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed")


def test_missing_wcs_keywords_get_their_fits_defaults_in_a_recorded_fixed_copy(tmp_path):
    from ovro_ingest.load import load_subband
    from ovro_ingest.synth import generate

    (path,) = generate(tmp_path / "in", time_steps=1, n_subbands=1, size=32)
    with fits.open(path, mode="update") as hdul:
        for keyword in ("CDELT4", "CRPIX4", "CRVAL4"):
            del hdul[0].header[keyword]
    readable = make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed")
    assert set(readable.corrections) == {
        "added CRPIX4=0.0 (the FITS default)",
        "added CDELT4=1.0 (the FITS default)",
        "added CRVAL4=0.0 (the FITS default)",
    }
    header = fits.getheader(readable.path)
    assert (header["CRPIX4"], header["CDELT4"], header["CRVAL4"]) == (0.0, 1.0, 0.0)
    assert fits.getheader(path)["SPECSYS"] == header["SPECSYS"], "keywords the file has are kept"
    image = load_subband(readable)
    np.testing.assert_array_equal(fits.getdata(readable.path), fits.getdata(path))
    assert image.polarizations == ("I",)


def test_a_fixed_copy_made_by_an_earlier_version_of_the_fixes_is_made_again(tmp_path):
    source, _ = scaled_integer_image(tmp_path / "int.fits")
    first = make_readable(source, tmp_path / "fixed")
    fits.setval(first.path, "SRCFPRT", value=f"{source.size}:{source.mtime_ns}")  # what version 1 wrote
    mtime = os.stat(first.path).st_mtime_ns
    make_readable(source, tmp_path / "fixed")
    assert os.stat(first.path).st_mtime_ns != mtime
    assert fits.getval(first.path, "SRCFPRT").endswith(":v2")
