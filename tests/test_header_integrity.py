"""Files whose headers a library chokes on, files whose checksums fail, and names that straddle a second.

Every library error at the file boundary (astropy verification, wcslib, xradio, numpy)
becomes one line naming the file and the fix; the audit predicts each refusal with the
same line; an integration whose names straddle a second is one time step.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.time import Time, TimeDelta

from ovro_ingest.audit import audit_directory, audit_file
from ovro_ingest.combine import combine_frequencies, open_time_step
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import BadInputFile, TimeStepRejected, one_line
from ovro_ingest.headers import make_readable
from ovro_ingest.load import load_subband, load_subbands
from ovro_ingest.models import LoadedTimeStep, ReadableFile, ReadableTimeStep, SourceFile
from ovro_ingest.pipeline import ingest_directory, plan_time_step
from ovro_ingest.store import StoreSettings
from tests.fits_cases import edit, raw_card, scaled_integer_image, set_cards

SETTINGS = StoreSettings(chunk_lm=32)


def one_image(make_data, change=None):
    """One 32² synthetic image (the 41MHz subband), with ``change`` applied."""
    path = next(make_data(time_steps=1, n_subbands=1, size=32).glob("*.fits"))
    return edit(path, change) if change else path


def refusal(path, tmp_path, keep_bad_checksums=False) -> BadInputFile:
    """The ingest's one-line refusal of ``path``; the audit must give the very same line."""
    source = SourceFile.from_path(path, "41MHz")
    with pytest.raises(BadInputFile) as caught:
        load_subband(make_readable(source, tmp_path / "fixed", keep_bad_checksums))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and "; " in message, message
    assert audit_file(source, keep_bad_checksums).error == message
    return caught.value


# ---------------------------------------------------------------- library text on one line


def test_one_line_keeps_what_wcslib_and_astropy_found_wrong_and_drops_where():
    wcslib = (
        "ERROR 3 in wcsset() at line 2868 of file cextern/wcslib/C/wcs.c:\nLinear transformation matrix is singular.\n"
        "ERROR 3 in linset() at line 691 of file cextern/wcslib/C/lin.c:\nPCi_ja matrix is singular.\n"
    )
    assert one_line(ValueError(wcslib)) == "Linear transformation matrix is singular. / PCi_ja matrix is singular."
    astropy = (
        "\nVerification reported errors:\nHDU 0:\n    Card 16:\n        Card 'CRDER1' is not FITS standard "
        "(invalid value string: 'nan').\nNote: astropy.io.fits uses zero-based indexing.\n"
    )
    assert one_line(ValueError(astropy)) == "Card 'CRDER1' is not FITS standard (invalid value string: 'nan')."
    assert one_line(KeyError("CRVAL3")) == "missing 'CRVAL3'"
    assert len(one_line(ValueError("x" * 1000))) == 240


def test_row2_a_scaled_file_with_cards_that_are_not_valid_fits_gets_a_copy_with_them_as_astropy_fixes_them(tmp_path):
    path = tmp_path / "20240524_050009_41MHz_averaged_1-I-image.fits"
    source, physical = scaled_integer_image(path)
    date_obs = fits.getval(path, "DATE-OBS")
    raw_card(path, "OBSERVER", "CRDER1  =                  nan")
    raw_card(path, "DATE-OBS", f"date-obs= '{date_obs}'")  # lower case: astropy upper-cases it
    raw_card(path, "TELESCOP", "BAD KEY = 3")  # a blank in a keyword: astropy cannot fix it
    source = SourceFile.from_path(path, "41MHz")
    readable = make_readable(source, tmp_path / "fixed")
    corrections = "\n".join(readable.corrections)
    assert (
        "fixed the card CRDER1 as astropy does: 'CRDER1  =                  nan' -> \"CRDER1  = 'nan     '\""
        in corrections
    )
    assert 'fixed the card DATE-OBS as astropy does: "date-obs=' in corrections
    assert "dropped the card BAD KEY" in corrections and "(astropy cannot fix it)" in corrections, corrections
    assert audit_file(source).corrections == list(readable.corrections), "the audit predicts the same copy"
    with fits.open(readable.path) as copy:
        header = copy[0].header
        assert header["CRDER1"] == "nan" and header["DATE-OBS"] == date_obs and "BAD KEY" not in header
        np.testing.assert_array_equal(copy[0].data[0, 0], physical[0, 0].astype(np.float32))
    image = load_subband(readable)
    assert image.frequency_hz == fits.getval(path, "CRVAL3") and image.date_obs == date_obs


def test_no_library_warning_reaches_the_console_for_a_card_astropy_would_fix(make_data, tmp_path):
    import warnings

    fast = one_image(make_data)
    raw_card(fast, "OBSERVER", "CRDER1  =                  nan")  # read as it is: no copy
    copied = tmp_path / "int.fits"
    scaled_integer_image(copied)
    raw_card(copied, "OBSERVER", "CRDER1  =                  nan")
    for path in (fast, copied):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            source = SourceFile.from_path(path, "41MHz")
            load_subband(make_readable(source, tmp_path / "fixed"))
            audit_file(source)
        assert [str(w.message) for w in caught] == [], path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (set_cards(CTYPE1="RA---XYZ"), "reading its header failed:"),
    ],
)
def test_a_header_a_library_cannot_read_is_refused_in_one_line(make_data, tmp_path, change, problem):
    assert problem in refusal(one_image(make_data, change), tmp_path).problem


def test_an_unparsable_card_in_a_file_read_as_it_is_is_one_line(make_data, tmp_path):
    path = one_image(make_data)
    raw_card(path, "CRPIX1", "CRPIX1  = 'seventeen'")
    problem = refusal(path, tmp_path).problem
    assert problem == "reading its header failed: CRPIX1 = 'seventeen': a floating-point value was expected", problem


def test_an_xradio_error_when_the_store_is_created_names_the_source_in_one_line(make_data, tmp_path):
    path = one_image(make_data, set_cards(CD1_1=-4.0, CD2_2=4.0, CDELT1=None, CDELT2=None))
    image = load_subband(make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed"))
    unfixed = image.model_copy(update={"file": ReadableFile(source=image.file.source, path=str(path))})
    plan = combine_frequencies(LoadedTimeStep(key="20240524_050009", subbands=(unfixed,)))
    with pytest.raises(BadInputFile, match=r"reading it with xradio failed: FITS images whose coordinates") as caught:
        open_time_step(plan)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


# ---------------------------------------------------------------- checksums (row 7)


def with_checksums(path):
    """Rewrite ``path`` with CHECKSUM and DATASUM."""
    with fits.open(path) as hdulist:
        hdulist = fits.HDUList([hdu.copy() for hdu in hdulist])
    hdulist.writeto(path, overwrite=True, checksum=True)
    return path


def change_one_pixel(path) -> None:
    """Flip the bits of one pixel's first byte in place (the header stays as it is)."""
    with fits.open(path) as hdulist:
        offset = hdulist.fileinfo(0)["datLoc"] + 4 * (16 * 32 + 16)
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_file_whose_checksums_match_is_read_as_it_is(make_data, tmp_path):
    path = with_checksums(one_image(make_data))
    readable = make_readable(SourceFile.from_path(path, "41MHz"), None)
    assert (readable.path, readable.corrections) == (str(path), ())


def test_row7_a_pixel_changed_after_writing_is_refused_as_corrupted_unless_kept(make_data, tmp_path):
    path = with_checksums(one_image(make_data))
    change_one_pixel(path)
    error = refusal(path, tmp_path)
    assert error.problem == "corrupted: its pixels do not match its DATASUM (changed after it was written)"
    assert "--keep-bad-checksums" in error.fix
    kept = make_readable(SourceFile.from_path(path, "41MHz"), None, keep_bad_checksums=True)
    assert kept.corrections == (
        "kept although its pixels do not match its DATASUM (changed after it was written) (keep_bad_checksums)",
    )
    assert audit_file(SourceFile.from_path(path, "41MHz"), keep_bad_checksums=True).error is None


def test_a_header_changed_after_its_checksum_is_refused_saying_the_pixels_are_intact(make_data, tmp_path):
    path = with_checksums(one_image(make_data))
    raw_card(path, "OBJECT", "OBJECT  = 'elsewhere'")
    error = refusal(path, tmp_path)
    assert error.problem == (
        "corrupted: its header does not match its CHECKSUM (changed after it was written) (its pixels match DATASUM)"
    )


def test_datasum_alone_is_verified_too(make_data, tmp_path):
    path = with_checksums(one_image(make_data))
    raw_card(path, "CHECKSUM", "COMMENT   no CHECKSUM here")
    assert make_readable(SourceFile.from_path(path, "41MHz"), None).corrections == ()
    change_one_pixel(path)
    assert "DATASUM" in refusal(path, tmp_path).problem


def test_a_corrupted_file_fails_only_its_time_step_and_the_audit_says_so(make_data, tmp_path):
    night = make_data(time_steps=2, n_subbands=2, size=32)
    for path in sorted(night.glob("*.fits")):
        with_checksums(path)
    bad = sorted(night.glob("20240524_050019_46MHz*"))[0]
    change_one_pixel(bad)
    audited = {step.key: step for step in audit_directory(night).time_steps}
    first, second = discover_time_steps(night).time_steps
    assert audited[first.key].ok and plan_time_step(first).key == first.key
    with pytest.raises(BadInputFile, match="corrupted: its pixels do not match its DATASUM") as caught:
        plan_time_step(second)
    assert str(caught.value).startswith(f"{bad}: ")
    assert audited[second.key].problems == [str(caught.value)], "the audit predicts the same refusal"


# ---------------------------------------------------------------- names that straddle a second (row 9)


def straddling_night(make_data, spread_s=0.2):
    """Two integrations of 3 subbands; the first's 50MHz file is named one second late, its DATE-OBS ``spread_s`` later."""
    night = make_data(time_steps=2, n_subbands=3, size=32)
    late = sorted(night.glob("20240524_050009_50MHz*"))[0]
    moment = Time("2024-05-24T05:00:09.3", scale="utc") + TimeDelta(spread_s, format="sec")
    edit(late, set_cards(DATE_OBS=moment.isot[:23]))
    renamed = late.with_name(late.name.replace("050009", "050010"))
    late.rename(renamed)
    return night, renamed


def test_row9_names_straddling_a_second_are_one_time_step(make_data, tmp_path):
    night, renamed = straddling_night(make_data)
    steps = discover_time_steps(night).time_steps
    assert [(s.key, [f.subband for f in s.files]) for s in steps] == [
        ("20240524_050009", ["41MHz", "46MHz", "50MHz"]),
        ("20240524_050019", ["41MHz", "46MHz", "50MHz"]),
    ]
    assert audit_directory(night).ok
    ingest_directory(night, tmp_path / "s.zarr", settings=SETTINGS)
    stored = xr.open_zarr(tmp_path / "s.zarr")
    assert list(stored["time_key"].values) == ["20240524_050009", "20240524_050019"]
    assert np.isfinite(stored["SKY"].values[:, :, 0, 16, 16]).all(), "no NaN-padded half time steps"
    assert Time(stored["time"].values[0], format="mjd").isot == "2024-05-24T05:00:09.300"
    assert abs(float(stored["date_obs_spread"].values[0]) - 0.2) < 1e-3
    ledger = json.loads(str(stored["source_files"].values[0]))
    assert str(renamed) in {entry["path"] for entry in ledger}


def test_names_straddling_a_second_with_distant_date_obs_are_refused_naming_the_files(make_data, tmp_path):
    night, renamed = straddling_night(make_data, spread_s=5.0)
    step = discover_time_steps(night).time_steps[0]
    files = tuple(make_readable(f, None) for f in step.files)
    with pytest.raises(TimeStepRejected, match=r"named 20240524_050009 and 20240524_050010 .* spread over 5.0 s") as e:
        combine_frequencies(load_subbands(ReadableTimeStep(key=step.key, files=files)))
    assert renamed.name in str(e.value)
    audited = audit_directory(night).time_steps[0]
    assert audited.problems == [str(e.value)], "the audit predicts the same refusal"


def test_names_one_second_apart_sharing_a_subband_or_ten_seconds_apart_are_never_merged(make_data):
    night = make_data(time_steps=2, n_subbands=2, size=32)
    again = sorted(night.glob("20240524_050009_41MHz*"))[0]
    again.with_name(again.name.replace("050009", "050010")).write_bytes(again.read_bytes())
    keys = [step.key for step in discover_time_steps(night).time_steps]
    assert keys == ["20240524_050009", "20240524_050010", "20240524_050019"]
    sparse = make_data(time_steps=3, n_subbands=2, size=32)
    for path in sparse.glob("20240524_050019_41MHz*"):
        path.unlink()
    for path in sparse.glob("20240524_050009_46MHz*"):
        path.unlink()
    assert [s.key for s in discover_time_steps(sparse).time_steps] == [
        "20240524_050009",
        "20240524_050019",
        "20240524_050029",
    ], "subbands that complement each other 10 s apart are two integrations"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (set_cards(CDELT1=0.0), "CDELT1=0 is a zero pixel scale; write the pixel size in degrees into CDELT1"),
        (set_cards(CDELT2=0.0), "CDELT2=0 is a zero pixel scale"),
        (
            set_cards(PC1_1=1.0, PC1_2=1.0, PC2_1=1.0, PC2_2=1.0),
            "its pixel matrix (CDELT x PC, or CD) [[-4.0, -4.0], [4.0, 4.0]] deg is singular",
        ),
        (
            set_cards(CRVAL3=0.0),
            "its frequency 0 Hz (CRVAL3=0.0) is not positive; write the channel's frequency into CRVAL3",
        ),
        (set_cards(CRVAL3=-46e6), "its frequency -4.6e+07 Hz (CRVAL3=-46000000.0) is not positive"),
    ],
)
def test_a_value_that_cannot_be_physical_is_refused_in_one_line_naming_the_keyword(
    make_data, tmp_path, change, problem
):
    assert problem in str(refusal(one_image(make_data, change), tmp_path))


@pytest.mark.parametrize(
    ("cards", "problem"),
    [
        (
            {"BMAJ": 1751.06, "BMIN": 1308.0},
            "BMAJ=1751.06 is above 180 degrees: BMAJ is in degrees (was it written in arcsec? 1751.06 arcsec = 0.4864 deg)",
        ),
        ({"BMIN": 181.0}, "BMIN=181.0 is above 180 degrees"),
        (
            {"BMAJ": 150.0, "BMIN": 100.0},
            "BMAJ=150 deg is larger than the image's field of view (128 deg): BMAJ is in degrees (was it written in arcsec?",
        ),
    ],
)
def test_a_beam_that_cannot_be_the_images_leaves_its_file_out_naming_the_likely_unit_mistake(
    make_data, tmp_path, cards, problem
):
    path = one_image(make_data, set_cards(**cards))
    image = load_subband(make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed"))
    assert image.beam_rad is None and image.beam_problem.startswith(problem), image.beam_problem
    assert audit_file(SourceFile.from_path(path, "41MHz")).beam_problem == image.beam_problem


def test_a_beam_of_a_few_degrees_in_an_all_sky_image_is_kept(make_data, tmp_path):
    path = one_image(make_data, set_cards(BMAJ=12.0, BMIN=8.0))  # OVRO-LWA at 13 MHz: a beam of degrees
    image = load_subband(make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed"))
    assert image.beam_problem is None and image.beam_rad[0] == pytest.approx(math.radians(12.0))
