"""Every standard way a FITS header states time, frequency, pixel scale, frame and beam is read to its right value.

Each case writes real FITS files (the synthetic OVRO-LWA-like image of ``synth``, one
header change each), reads them as the ingest does (``make_readable`` then
``load_subband``), and checks the value; the audit, which reads headers only, must
read the same value. Some cases ingest a small night with the plain pipeline
functions (no Prefect) and check what the store holds.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.time import Time

from ovro_ingest.audit import audit_directory, audit_file
from ovro_ingest.combine import combine_frequencies, open_time_step
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import BadInputFile, StoreMismatch, TimeStepRejected
from ovro_ingest.headers import make_readable
from ovro_ingest.load import load_subband, load_subbands, open_subband
from ovro_ingest.models import LoadedTimeStep, ReadableTimeStep, SourceFile, SubbandImage
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings, check_fits_store, read_state
from tests.fits_cases import casa_beams, edit, first_cutout, scaled_integer_image, set_cards

DATE_OBS = "2024-05-24T05:00:09.3"
"""The synthetic images' DATE-OBS (UTC)."""
MJD_OBS = Time(DATE_OBS, scale="utc").mjd
SETTINGS = StoreSettings(chunk_lm=32)
SPEED_OF_LIGHT = 299_792_458.0


def one_image(make_data, change=None):
    """One 32² synthetic image (the 41MHz subband), with ``change`` applied (see ``fits_cases.edit``)."""
    path = next(make_data(time_steps=1, n_subbands=1, size=32).glob("*.fits"))
    return edit(path, change) if change else path


def read(path, tmp_path) -> SubbandImage:
    """The image as the ingest reads it (fixed copy in ``tmp_path/fixed`` when needed)."""
    return load_subband(make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed"))


def utc_isot(time_mjd: float) -> str:
    """An MJD (UTC) as ISO text, to the millisecond."""
    return Time(time_mjd, format="mjd", scale="utc").isot


def refused(path, tmp_path) -> BadInputFile:
    """The one-line refusal of a file by the ingest, checked to agree with the audit's."""
    with pytest.raises(BadInputFile) as caught:
        read(path, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and "; " in message, message
    assert audit_file(SourceFile.from_path(path, "41MHz")).error == message, "the audit predicts the same refusal"
    return caught.value


def edit_night(folder, change) -> None:
    """Apply ``change(hdulist, path)`` to every file of a synthetic night."""
    for path in sorted(folder.glob("*.fits")):
        edit(path, lambda hdulist, path=path: change(hdulist, path))


# ---------------------------------------------------------------- observation time


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        ({"DATE_OBS": "2024-05-24T05:00:09.300"}, "2024-05-24T05:00:09.300"),
        ({"DATE_OBS": "2024-05-24", "TIME_OBS": "05:00:09.3"}, "2024-05-24T05:00:09.300"),
        ({"DATE_OBS": "2024-05-24", "MJD_OBS": MJD_OBS}, "2024-05-24T05:00:09.300"),  # row 1: AIPS style
        ({"DATE_OBS": "24/05/94", "TIME_OBS": "05:00:09.3"}, "1994-05-24T05:00:09.300"),  # pre-1999 form
        ({"DATE_OBS": "2024-05-24T05:00:09.3Z"}, "2024-05-24T05:00:09.300"),
        ({"DATE_OBS": "2024-05-24T07:00:09.3+02:00"}, "2024-05-24T05:00:09.300"),
        ({"DATE_OBS": None, "MJD_OBS": MJD_OBS}, "2024-05-24T05:00:09.300"),
        ({"DATE_OBS": None, "DATE_BEG": "2024-05-24T05:00:09.3"}, "2024-05-24T05:00:09.300"),
        ({"DATE_OBS": None, "MJD_BEG": MJD_OBS}, "2024-05-24T05:00:09.300"),
        ({"DATE_OBS": "2024-05-24", "DATE_BEG": "2024-05-24T05:00:09.3"}, "2024-05-24T05:00:09.300"),
        # the most precise of two agreeing keywords: MJD-OBS to 1e-11 d against whole seconds
        ({"DATE_OBS": "2024-05-24T05:00:09", "MJD_OBS": MJD_OBS}, "2024-05-24T05:00:09.300"),
    ],
)
def test_every_form_of_the_observation_time_gives_the_time_to_the_millisecond(make_data, tmp_path, cards, expected):
    path = one_image(make_data, set_cards(**cards))
    image = read(path, tmp_path)
    assert utc_isot(image.time_mjd) == expected
    assert abs(image.time_mjd - Time(expected, scale="utc").mjd) * 86400.0 < 5e-4
    assert audit_file(SourceFile.from_path(path, "41MHz")).time_mjd == image.time_mjd


def test_the_time_comes_from_the_keyword_it_names(make_data, tmp_path):
    assert read(one_image(make_data), tmp_path).date_obs == DATE_OBS
    image = read(one_image(make_data, set_cards(DATE_OBS="2024-05-24", MJD_OBS=MJD_OBS)), tmp_path)
    assert image.date_obs.startswith("MJD-OBS=60454.2084409")


TT_MINUS_UTC_S = 69.184  # 37 leap seconds + TT - TAI (32.184 s), in 2024
L_G = 6.969290134e-10  # TCG rate (IAU 2000 resolution B1.9)
L_B = 1.550519768e-8  # TCB rate (IAU 2006 resolution B3)


def seconds_since_1977(utc_text: str) -> float:
    """Seconds from 1977-01-01T00:00:32.184 TT, the epoch of TCG and TCB, to ``utc_text`` read as TT."""
    return (Time(utc_text, scale="utc").mjd - 43144.0003725) * 86400.0


@pytest.mark.parametrize(
    ("timesys", "utc_minus_header_s", "within_s"),
    [
        (None, 0.0, 5e-4),
        ("UTC", 0.0, 5e-4),
        ("GMT", 0.0, 5e-4),  # deprecated synonym of UTC
        ("UTC(NIST)", 0.0, 5e-4),  # a realization in parentheses
        ("TAI", -37.0, 5e-4),
        ("IAT", -37.0, 5e-4),  # deprecated synonym of TAI
        ("GPS", -18.0, 5e-4),  # TAI - 19 s
        ("TT", -TT_MINUS_UTC_S, 5e-4),
        ("TDT", -TT_MINUS_UTC_S, 5e-4),  # deprecated synonym of TT
        ("ET", -TT_MINUS_UTC_S, 5e-4),  # deprecated, read as TT
        ("TT(BIPM)", -TT_MINUS_UTC_S, 5e-4),
        ("TDB", -TT_MINUS_UTC_S, 2e-3),  # TDB - TT stays within 1.7 ms
        ("TCG", -TT_MINUS_UTC_S - L_G * seconds_since_1977(DATE_OBS), 5e-4),
        ("TCB", -TT_MINUS_UTC_S - L_B * seconds_since_1977(DATE_OBS) + 6.55e-5, 2e-3),
        ("UT1", None, 5e-4),  # UT1 - UTC from astropy's bundled IERS tables, below 0.9 s
    ],
)
def test_every_fits_time_scale_is_converted_to_utc(make_data, tmp_path, timesys, utc_minus_header_s, within_s):
    image = read(one_image(make_data, set_cards(TIMESYS=timesys)), tmp_path)
    header_s = Time(DATE_OBS, scale="utc").mjd * 86400.0
    if utc_minus_header_s is None:
        expected_s = Time(DATE_OBS, scale="ut1").utc.mjd * 86400.0
        assert abs(expected_s - header_s) < 0.9
    else:
        expected_s = header_s + utc_minus_header_s
    assert abs(image.time_mjd * 86400.0 - expected_s) < within_s


@pytest.mark.parametrize(
    ("cards", "problem", "fix"),
    [
        ({"TIMESYS": "LOCAL"}, "TIMESYS='LOCAL' is a free-running clock", "set TIMESYS"),
        ({"TIMESYS": "MARS"}, "TIMESYS='MARS' is not a FITS time scale", "set TIMESYS"),
        ({"DATE_OBS": "2024-05-24"}, "DATE-OBS='2024-05-24' is a date without a time of day", "add MJD-OBS"),
        ({"DATE_OBS": None}, "no DATE-OBS keyword", "add DATE-OBS"),
        ({"MJD_OBS": MJD_OBS + 5 / 24}, "DATE-OBS='2024-05-24T05:00:09.3' and MJD-OBS=", "remove it"),
        ({"DATE_OBS": "2024-05-24", "MJD_OBS": MJD_OBS + 1}, "DATE-OBS='2024-05-24' and MJD-OBS=", "remove it"),
        ({"TIME_OBS": "07:00:00"}, "DATE-OBS+TIME-OBS='2024-05-24T07:00:00' disagree", "remove it"),
        ({"DATE_OBS": "2024-05-24T05:00:09Z", "TIMESYS": "TT"}, "has a time-zone designator but TIMESYS is TT", "zone"),
        ({"DATE_OBS": "last night"}, "unparseable DATE-OBS 'last night'", "YYYY-MM-DDThh:mm:ss"),
        ({"MJD_OBS": "soon"}, "MJD-OBS='soon' is not a number", "number of days"),
    ],
)
def test_a_time_that_is_not_understood_is_refused_in_one_line_never_guessed(make_data, tmp_path, cards, problem, fix):
    error = refused(one_image(make_data, set_cards(**cards)), tmp_path)
    assert problem in error.problem and fix in error.fix, str(error)


def test_the_audit_flags_a_time_step_with_the_time_of_another_as_the_store_would(make_data):
    night = make_data(time_steps=2, n_subbands=2, size=32)
    edit_night(night, lambda hdulist, _path: hdulist[0].header.update({"DATE-OBS": DATE_OBS}))
    later = audit_directory(night).time_steps[1]
    assert later.problems == [
        f"time step 20240524_050019 has the same time as time step 20240524_050009 (MJD {MJD_OBS:.8f}); "
        "check the file names and DATE-OBS of both"
    ]


def test_row1_a_night_with_date_only_date_obs_and_mjd_obs_stores_each_time_step_at_its_time(make_data, tmp_path):
    night = make_data(time_steps=2, n_subbands=3, size=32)

    def aips_dates(hdulist, _path):
        header = hdulist[0].header
        header["MJD-OBS"] = Time(header["DATE-OBS"], scale="utc").mjd
        header["DATE-OBS"] = header["DATE-OBS"][:10]

    edit_night(night, aips_dates)
    assert audit_directory(night).ok
    ingest_directory(night, tmp_path / "s.zarr", fixed_dir=str(tmp_path / "fixed"), settings=SETTINGS)
    stored = xr.open_zarr(tmp_path / "s.zarr")
    assert [utc_isot(t) for t in stored["time"].values] == ["2024-05-24T05:00:09.300", "2024-05-24T05:00:19.300"]


# ---------------------------------------------------------------- frequency


def swap_stokes_and_frequency(hdulist):
    """Axes RA, DEC, STOKES, FREQ (CASA's exportfits with stokeslast=False)."""
    header = hdulist[0].header
    for key in ("CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT"):
        header[f"{key}3"], header[f"{key}4"] = header[f"{key}4"], header[f"{key}3"]


def velocity_axis(rest_keyword):
    """Axis 3 as radio velocity (VRAD, 1000 m/s) with the rest frequency in ``rest_keyword`` (None: none)."""

    def change(hdulist):
        header = hdulist[0].header
        header.update(CTYPE3="VRAD", CRVAL3=1000.0, CDELT3=10.0, CUNIT3="m/s")
        if rest_keyword:
            header[rest_keyword] = 1.420405752e9

    return change


def flat_with(rest_keyword):
    """A 2-D image without spectral or STOKES axis, its frequency (55.5 MHz) in ``rest_keyword``."""

    def change(hdulist):
        header = hdulist[0].header
        flat = fits.PrimaryHDU(data=hdulist[0].data[0, 0])
        for key in ("CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT"):
            for axis in (1, 2):
                flat.header[f"{key}{axis}"] = header[f"{key}{axis}"]
        for key in ("BMAJ", "BMIN", "BPA", "DATE-OBS", "EQUINOX"):
            flat.header[key] = header[key]
        flat.header[rest_keyword] = 55.5e6
        return fits.HDUList([flat])

    return change


@pytest.mark.parametrize(
    ("case", "change", "expected_hz"),
    [
        ("FREQ axis 3", None, 43_245_849.609375),
        ("FREQ axis 4, STOKES axis 3", swap_stokes_and_frequency, 43_245_849.609375),
        ("one-pixel FREQ axis with CDELT3 = 0 (row 3)", set_cards(CDELT3=0.0), 43_245_849.609375),
        (
            "CDELT3 = 0 and CRPIX3 = 2: the one pixel is still at CRVAL3",
            set_cards(CDELT3=0.0, CRPIX3=2.0),
            43_245_849.609375,
        ),
        ("in MHz (CUNIT3)", set_cards(CRVAL3=43.245849609375, CDELT3=4.59375, CUNIT3="MHz"), 43_245_849.609375),
        ("AIPS FREQ-LSR", set_cards(CTYPE3="FREQ-LSR", SPECSYS=None), 43_245_849.609375),
        ("VRAD with RESTFRQ", velocity_axis("RESTFRQ"), 1.420405752e9 * (1 - 1000.0 / SPEED_OF_LIGHT)),
        ("VRAD with AIPS's RESTFREQ", velocity_axis("RESTFREQ"), 1.420405752e9 * (1 - 1000.0 / SPEED_OF_LIGHT)),
        ("VLA FIRST cutout: 2-D, FREQ declared as axis 3 (row 5)", first_cutout, 1.3649e9),
        ("2-D image with RESTFRQ", flat_with("RESTFRQ"), 55.5e6),
        ("2-D image with AIPS's RESTFREQ", flat_with("RESTFREQ"), 55.5e6),
    ],
)
def test_every_form_of_the_frequency_gives_the_channel_frequency(make_data, tmp_path, case, change, expected_hz):
    path = one_image(make_data, change)
    image = read(path, tmp_path)
    assert image.frequency_hz == pytest.approx(expected_hz, rel=1e-12, abs=0.0), case
    assert audit_file(SourceFile.from_path(path, "41MHz")).frequency_hz == image.frequency_hz
    assert image.polarizations == ("I",)


def test_an_aips_freq_lsr_axis_gives_the_lsrk_frame(make_data, tmp_path):
    assert read(one_image(make_data), tmp_path).spectral_frame == "TOPOCENT"
    assert read(one_image(make_data, set_cards(CTYPE3="FREQ-LSR", SPECSYS=None)), tmp_path).spectral_frame == "LSRK"


def test_row5_a_first_cutout_gets_a_copy_with_its_declared_axes_as_data_axes_and_its_pixels_bit_for_bit(
    make_data, tmp_path
):
    path = one_image(make_data, first_cutout)
    readable = make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed")
    assert readable.corrections == ("made its declared WCS axes 3-4 (FREQ, STOKES) data axes of one pixel",)
    with fits.open(readable.path) as copy:
        assert copy[0].header["CRVAL3"] == 1.3649e9 and copy[0].header["CTYPE4"] == "STOKES"
        np.testing.assert_array_equal(copy[0].data[0, 0], fits.getdata(path))
    assert load_subband(readable).grid.frame == "FK5 J2000.0", "EPOCH = 2000 is read as the equinox"


def test_a_2d_image_declaring_only_its_freq_axis_gets_a_stokes_axis_too(make_data, tmp_path):
    def freq_only(hdulist):
        cutout = first_cutout(hdulist)
        for key in ("CTYPE4", "CRVAL4", "CDELT4", "CRPIX4", "CROTA4"):
            del cutout[0].header[key]
        cutout[0].header["WCSAXES"] = 3
        return cutout

    readable = make_readable(SourceFile.from_path(one_image(make_data, freq_only), "41MHz"), tmp_path / "fixed")
    assert readable.corrections == (
        "made its declared WCS axes 3-3 (FREQ) data axes of one pixel",
        "added a STOKES axis (I)",
    )
    image = load_subband(readable)
    assert (image.frequency_hz, image.polarizations) == (1.3649e9, ("I",))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (velocity_axis(None), "its spectral axis 'VRAD' cannot be converted to frequency"),
        (set_cards(SPECSYS="TOPO"), "SPECSYS='TOPO' is not a FITS spectral frame"),
    ],
)
def test_a_frequency_that_is_not_understood_is_refused_in_one_line(make_data, tmp_path, change, problem):
    assert problem in refused(one_image(make_data, change), tmp_path).problem


def test_stokes_before_freq_is_stored_bit_for_bit(make_data, tmp_path):
    night = make_data(time_steps=1, n_subbands=2, size=32)
    edit_night(night, lambda hdulist, _path: swap_stokes_and_frequency(hdulist))
    ingest_directory(night, tmp_path / "s.zarr", settings=SETTINGS)
    stored = xr.open_zarr(tmp_path / "s.zarr")
    for channel, path in enumerate(sorted(night.glob("*.fits"))):
        np.testing.assert_array_equal(stored["SKY"].values[0, channel, 0], fits.getdata(path)[0, 0].T)


def test_row3_a_night_with_cdelt3_zero_is_stored_with_crval3_and_needs_no_copy(make_data, tmp_path):
    night = make_data(time_steps=2, n_subbands=3, size=32)
    edit_night(night, lambda hdulist, _path: hdulist[0].header.update(CDELT3=0.0))
    first = SourceFile.from_path(sorted(night.glob("*.fits"))[0], "41MHz")
    assert make_readable(first, None).path == first.path, "read as it is: no fixed copy"
    ingest_directory(night, tmp_path / "s.zarr", settings=SETTINGS)
    stored = xr.open_zarr(tmp_path / "s.zarr")
    crval3 = sorted({fits.getval(p, "CRVAL3") for p in night.glob("*.fits")})
    assert list(stored["frequency"].values) == crval3 and stored.sizes["time"] == 2


def test_mixed_spectral_frames_are_refused_within_a_time_step_and_against_the_store(make_data, tmp_path):
    from ovro_ingest.audit import plan_run

    night = make_data(time_steps=2, n_subbands=2, size=32)
    steps = {step.key: step for step in discover_time_steps(night).time_steps}
    store = tmp_path / "s.zarr"
    ingest_step(steps["20240524_050009"], store, tmp_path)  # a TOPOCENT store
    assert read_state(store).spectral_frame == "TOPOCENT"
    edit(sorted(night.glob("*050009_46MHz*"))[0], set_cards(SPECSYS="BARYCENT"))
    with pytest.raises(TimeStepRejected, match=r"SPECSYS 'BARYCENT' but .* has 'TOPOCENT'"):
        combine_frequencies(loaded(steps["20240524_050009"], tmp_path))
    edit_night_step(night, "20240524_050019", set_cards(SPECSYS="BARYCENT"))
    with pytest.raises(StoreMismatch, match="SPECSYS 'BARYCENT' differs from the store's 'TOPOCENT'"):
        check_fits_store(read_state(store), combine_frequencies(loaded(steps["20240524_050019"], tmp_path)))
    planned = {step.audit.key: step for step in plan_run(night, store)}
    assert planned["20240524_050019"].action == "would fail"
    assert any("differs from the store's 'TOPOCENT'" in p for p in planned["20240524_050019"].audit.problems)


def loaded(step, tmp_path) -> LoadedTimeStep:
    """Fix and load the files of a discovered time step."""
    files = tuple(make_readable(f, tmp_path / "fixed") for f in step.files)
    return load_subbands(ReadableTimeStep(key=step.key, files=files))


def edit_night_step(night, key, change) -> None:
    """Apply ``change`` to every file of one time step."""
    for path in sorted(night.glob(f"{key}_*.fits")):
        edit(path, change)


def ingest_step(step, store, tmp_path, keep=lambda source: True) -> None:
    """Ingest the files of ``step`` that ``keep`` accepts into ``store`` (plain functions)."""
    from ovro_ingest.models import TimeStepFiles
    from ovro_ingest.pipeline import ingest_plans, plan_time_step

    chosen = TimeStepFiles(key=step.key, files=tuple(f for f in step.files if keep(f)))
    plan = plan_time_step(chosen, str(tmp_path / "fixed"))
    ingest_plans(store, [plan], "test", "test", SETTINGS)


# ---------------------------------------------------------------- pixel grid


def cd_matrix(rotation_deg=0.0, scale=1.0):
    """The pixel scale as a CD matrix (no CDELT), optionally rotated as CROTA2 would (WCS Paper II, eq. 189)."""

    def change(hdulist):
        header = hdulist[0].header
        cdelt1, cdelt2 = header.pop("CDELT1") * scale, header.pop("CDELT2") * scale
        rho = math.radians(rotation_deg)
        header["CD1_1"], header["CD1_2"] = cdelt1 * math.cos(rho), -cdelt2 * math.sin(rho)
        header["CD2_1"], header["CD2_2"] = cdelt1 * math.sin(rho), cdelt2 * math.cos(rho)

    return change


def pc_matrix(rotation_deg=0.0, scale_in_pc=False):
    """PC + CDELT; with ``scale_in_pc`` the scale sits in PC and CDELT is 1 (as astropy writes a CD-made WCS)."""

    def change(hdulist):
        header = hdulist[0].header
        cdelt1, cdelt2 = header["CDELT1"], header["CDELT2"]
        rho = math.radians(rotation_deg)
        pc = [[math.cos(rho), -math.sin(rho) * cdelt2 / cdelt1], [math.sin(rho) * cdelt1 / cdelt2, math.cos(rho)]]
        if scale_in_pc:
            pc = [[pc[0][0] * cdelt1, pc[0][1] * cdelt1], [pc[1][0] * cdelt2, pc[1][1] * cdelt2]]
            header["CDELT1"], header["CDELT2"] = 1.0, 1.0
        for i in (0, 1):
            for j in (0, 1):
                header[f"PC{i + 1}_{j + 1}"] = pc[i][j]

    return change


CDELT_DEG = (-4.0, 4.0)
"""CDELT1, CDELT2 of a 32² synthetic image (128 deg / 32 pixels)."""


def expected_matrix(rotation_deg):
    """CD = CDELT x PC for a CROTA2 rotation (WCS Paper II, eq. 189), from the synthetic CDELT."""
    rho = math.radians(rotation_deg)
    (c1, c2) = CDELT_DEG
    return [[c1 * math.cos(rho), -c2 * math.sin(rho)], [c1 * math.sin(rho), c2 * math.cos(rho)]]


@pytest.mark.parametrize(
    ("case", "change", "rotation_deg", "copied"),
    [
        ("CDELT", None, 0.0, False),
        ("CD matrix (row 4)", cd_matrix(), 0.0, True),
        ("PC identity + CDELT", pc_matrix(), 0.0, False),
        ("PC carrying the scale, CDELT = 1", pc_matrix(scale_in_pc=True), 0.0, False),
        ("CROTA2", set_cards(CROTA2=30.0), 30.0, False),
        ("CD matrix, rotated", cd_matrix(30.0), 30.0, True),
        ("PC + CDELT, rotated", pc_matrix(30.0), 30.0, False),
        ("PC carrying scale and rotation", pc_matrix(30.0, scale_in_pc=True), 30.0, False),
    ],
)
def test_every_form_of_the_pixel_scale_gives_the_same_full_transform(
    make_data, tmp_path, case, change, rotation_deg, copied
):
    path = one_image(make_data, change)
    readable = make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed")
    grid = load_subband(readable).grid
    np.testing.assert_allclose(grid.pixel_matrix_deg, expected_matrix(rotation_deg), rtol=1e-12, atol=1e-14)
    assert grid.crpix == (17.0, 17.0) and grid.shape_lm == (32, 32)
    assert grid.cdelt_deg == pytest.approx(CDELT_DEG, rel=1e-12), "the scale along each axis, whatever the form"
    assert (readable.path != str(path)) == copied, case
    reference = read(one_image(make_data, set_cards(CROTA2=rotation_deg or None)), tmp_path).grid
    assert grid.matches(reference), f"{case}: {grid.describe()} vs {reference.describe()}"
    assert audit_file(SourceFile.from_path(path, "41MHz")).grid.matches(grid)


def test_a_cd_matrix_copy_says_the_same_wcs_in_cdelt_and_pc_never_a_default_cdelt(make_data, tmp_path):
    path = one_image(make_data, cd_matrix(30.0))
    readable = make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed")
    assert readable.corrections == ("rewrote the CD matrix as CDELT + PC, the same WCS (CDELT1=-4 CDELT2=4)",)
    header = fits.getheader(readable.path)
    assert (header["CDELT1"], header["CDELT2"]) == pytest.approx(CDELT_DEG, rel=1e-15)
    assert not any(key.startswith("CD1_") or key.startswith("CD2_") for key in header)
    np.testing.assert_array_equal(fits.getdata(readable.path), fits.getdata(path))


def test_row4_a_second_time_step_at_another_scale_is_refused_as_mixed_resolution(make_data, tmp_path):
    night = make_data(time_steps=2, n_subbands=2, size=32)
    edit_night(night, lambda hdulist, path: cd_matrix(scale=1 / 8 if "050019" in path.name else 1)(hdulist))
    report = {step.key: step for step in audit_directory(night).time_steps}
    assert report["20240524_050009"].ok and "pixel grid" in report["20240524_050019"].problems[0]
    store = tmp_path / "s.zarr"
    with pytest.raises(StoreMismatch, match=r"pixel grid 32x32 SIN FK5 J2000.0 cdelt=-0.5,0.5 deg .* differs"):
        ingest_directory(night, store, fixed_dir=str(tmp_path / "fixed"), settings=SETTINGS)
    stored = xr.open_zarr(store)
    assert list(stored["time_key"].values) == ["20240524_050009"], "the first time step is kept"
    expected_l = (np.arange(32) - 16.0) * math.radians(-4.0)
    np.testing.assert_allclose(stored["l"].values, expected_l, rtol=1e-15, atol=0)
    np.testing.assert_allclose(stored["m"].values, -expected_l, rtol=1e-15, atol=0)


def test_l_and_m_come_from_the_scale_in_pc_as_from_cdelt(make_data, tmp_path):
    plain, in_pc = make_data(time_steps=1, n_subbands=1, size=32), make_data(time_steps=1, n_subbands=1, size=32)
    edit_night(in_pc, lambda hdulist, _path: pc_matrix(scale_in_pc=True)(hdulist))
    ingest_directory(plain, tmp_path / "plain.zarr", settings=SETTINGS)
    ingest_directory(in_pc, tmp_path / "pc.zarr", settings=SETTINGS)
    a, b = xr.open_zarr(tmp_path / "plain.zarr"), xr.open_zarr(tmp_path / "pc.zarr")
    np.testing.assert_array_equal(a["l"].values, b["l"].values)
    np.testing.assert_array_equal(a["m"].values, b["m"].values)
    matrix = b.attrs["coordinate_system_info"]["pixel_coordinate_transformation_matrix"]
    assert matrix == [[1.0, 0.0], [0.0, 1.0]], "the PC attribute goes with the l/m scale"


def test_l_and_m_of_real_and_synthetic_files_equal_xradios_bit_for_bit(make_data, real_image):
    from ovro_ingest.store import lm_coordinates

    for path in [real_image, one_image(make_data)]:
        image = load_subband(make_readable(SourceFile.from_path(path, "69MHz"), None))
        sample = open_subband(str(path))
        coordinates = lm_coordinates(image.grid, sample)
        for name in ("l", "m"):
            np.testing.assert_array_equal(coordinates[name].values, sample[name].values)


def test_a_store_written_before_the_full_transform_was_recorded_still_opens_and_compares():
    from ovro_ingest.models import SpatialGrid

    legacy = SpatialGrid.model_validate(
        {"shape_lm": [512, 512], "projection": "SIN", "crpix": [257.0, 257.0], "cdelt_deg": [-0.25, 0.25]}
    )
    assert legacy.pixel_matrix_deg == ((-0.25, 0.0), (0.0, 0.25)) and legacy.frame is None
    now = legacy.model_copy(update={"frame": "FK5 J2000.0"})
    assert legacy.matches(now) and now.matches(legacy), "an unknown frame is not compared"
    assert not now.matches(now.model_copy(update={"frame": "ICRS"}))
    assert not now.matches(now.model_copy(update={"crpix": (257.5, 257.0)}))
    assert now.matches(now.model_copy(update={"pixel_matrix_deg": ((-0.25 * (1 + 1e-15), 0.0), (0.0, 0.25))}))
    assert legacy.describe() == "512x512 SIN cdelt=-0.25,0.25 deg crpix=257,257"


# ---------------------------------------------------------------- celestial frame


@pytest.mark.parametrize(
    ("cards", "frame"),
    [
        ({}, "FK5 J2000.0"),  # the real files: EQUINOX = 2000, no RADESYS
        ({"RADESYS": "FK5"}, "FK5 J2000.0"),
        ({"RADESYS": "ICRS"}, "ICRS"),
        ({"EQUINOX": None}, "ICRS"),
        ({"RADESYS": "FK4", "EQUINOX": 1950.0}, "FK4 B1950.0"),
        ({"EQUINOX": 1950.0}, "FK4 B1950.0"),  # before 1984 without RADESYS: FK4 (WCS Paper II)
        ({"EQUINOX": None, "EPOCH": 1950.0}, "FK4 B1950.0"),  # deprecated EPOCH
        ({"RADECSYS": "FK4-NO-E", "EQUINOX": 1950.0}, "FK4-NO-E B1950.0"),  # deprecated RADECSYS
    ],
)
def test_every_form_of_the_celestial_frame_is_read(make_data, tmp_path, cards, frame):
    path = one_image(make_data, set_cards(**cards))
    assert read(path, tmp_path).grid.frame == frame
    assert audit_file(SourceFile.from_path(path, "41MHz")).grid.frame == frame


def test_a_frame_the_store_cannot_hold_is_refused_in_one_line(make_data, tmp_path):
    error = refused(one_image(make_data, set_cards(RADESYS="GAPPT")), tmp_path)
    assert "RADESYS='GAPPT'" in error.problem and "ICRS, FK5, FK4" in error.fix


def test_a_store_never_claims_one_frame_while_a_time_step_is_in_another(make_data, tmp_path):
    night = make_data(time_steps=2, n_subbands=2, size=32)
    edit_night(
        night, lambda hdulist, path: hdulist[0].header.update(EQUINOX=1950.0 if "050009" in path.name else 2000.0)
    )
    steps = {step.key: step for step in audit_directory(night).time_steps}
    assert steps["20240524_050009"].ok and not steps["20240524_050019"].ok, "the audit flags the other frame"
    store = tmp_path / "s.zarr"
    with pytest.raises(StoreMismatch, match=r"FK5 J2000.0 cdelt=.* differs from the store's .* FK4 B1950.0"):
        ingest_directory(night, store, settings=SETTINGS)
    stored = xr.open_zarr(store)
    assert stored.sizes["time"] == 1
    reference = stored.attrs["coordinate_system_info"]["reference_direction"]["attrs"]
    assert (reference["frame"], reference["equinox"]) == ("fk4", "b1950.0")
    assert "RADESYS = 'FK4" in str(stored["wcs_header"].values[0])
    edit(sorted(night.glob("*050009_46MHz*"))[0], set_cards(EQUINOX=2000.0))
    with pytest.raises(TimeStepRejected, match=r"FK5 J2000.0 .* but .* FK4 B1950.0"):
        combine_frequencies(loaded(discover_time_steps(night).time_steps[0], tmp_path))


# ---------------------------------------------------------------- beam


def casa_multibeam(bmaj=1200.0, bmin=900.0, bpa=30.0, size_unit="arcsec"):
    """The beam only in a CASA BEAMS table (CASAMBM = T, no BMAJ/BMIN/BPA cards)."""

    def change(hdulist):
        header = hdulist[0].header
        for key in ("BMAJ", "BMIN", "BPA"):
            del header[key]
        header["CASAMBM"] = True
        return fits.HDUList([hdulist[0], casa_beams(bmaj, bmin, bpa, size_unit)])

    return change


ARCSEC = math.pi / 180 / 3600


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (casa_multibeam(), (1200 * ARCSEC, 900 * ARCSEC, math.radians(30.0))),
        (casa_multibeam(size_unit=None), (1200 * ARCSEC, 900 * ARCSEC, math.radians(30.0))),  # CASA's default unit
        (casa_multibeam(0.25, 0.2, -45.0, size_unit="deg"), (math.radians(0.25), math.radians(0.2), math.radians(-45))),
    ],
)
def test_row8_the_beam_of_a_casa_beams_table_in_radians_as_xradio_reads_it(make_data, tmp_path, change, expected):
    path = one_image(make_data, change)
    image = read(path, tmp_path)
    assert image.beam_problem is None
    np.testing.assert_allclose(image.beam_rad, expected, rtol=1e-6)  # the table holds float32
    xradio = open_subband(str(path))["BEAM_FIT_PARAMS_SKY"].values.reshape(-1, 3)[0]
    assert image.beam_rad == tuple(float(v) for v in xradio)


def test_a_beams_table_goes_along_into_a_fixed_copy(tmp_path):
    path = tmp_path / "int.fits"
    _, physical = scaled_integer_image(path)
    for key in ("BMAJ", "BMIN", "BPA"):  # edited in place: the scaled integers stay as they are
        fits.delval(path, key)
    fits.setval(path, "CASAMBM", value=True)
    table = casa_beams(1200.0, 900.0, 30.0)
    fits.append(path, table.data, table.header)
    source = SourceFile.from_path(path, "41MHz")
    readable = make_readable(source, tmp_path / "fixed")
    assert readable.path != source.path and fits.getval(readable.path, "EXTNAME", ext=1) == "BEAMS"
    np.testing.assert_array_equal(fits.getdata(readable.path), physical.astype(np.float32))
    assert load_subband(readable).beam_rad == pytest.approx((1200 * ARCSEC, 900 * ARCSEC, math.radians(30.0)))


def test_a_night_with_casa_beams_stores_them(make_data, tmp_path):
    night = make_data(time_steps=1, n_subbands=2, size=32)
    edit_night(night, lambda hdulist, _path: casa_multibeam()(hdulist))
    ingest_directory(night, tmp_path / "s.zarr", settings=SETTINGS)
    beams = xr.open_zarr(tmp_path / "s.zarr")["BEAM_FIT_PARAMS_SKY"].values
    np.testing.assert_allclose(beams[0, :, 0], [[1200 * ARCSEC, 900 * ARCSEC, math.radians(30.0)]] * 2, rtol=1e-6)


# ---------------------------------------------------------------- float64 pixels


def test_row6_float64_pixels_are_stored_as_float32_with_the_loss_recorded_and_warned(make_data, tmp_path, caplog):
    night = make_data(time_steps=1, n_subbands=2, size=32)
    rng = np.random.default_rng(6)
    originals = {}

    def to_float64(hdulist, path):
        originals[path.name] = rng.normal(size=hdulist[0].data.shape)  # values float32 cannot hold exactly
        return fits.HDUList([fits.PrimaryHDU(data=originals[path.name], header=hdulist[0].header)])

    edit_night(night, to_float64)
    first = SourceFile.from_path(sorted(night.glob("*.fits"))[0], "41MHz")
    readable = make_readable(first, None)
    assert readable.path == first.path, "no copy: xradio reads float64"
    note = "BITPIX=-64 pixels stored as float32 (rounded to 24 significant bits, about 7 decimal digits)"
    assert readable.corrections == (note,) and [n.kind for n in readable.notices] == ["float64"]
    assert audit_file(first).corrections == [note]
    with caplog.at_level(logging.WARNING, logger="ovro_ingest"):
        ingest_directory(night, tmp_path / "s.zarr", settings=SETTINGS)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "float64" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("2 file(s) with float64 pixels"), "one line for the run"
    stored = xr.open_zarr(tmp_path / "s.zarr")
    for channel, path in enumerate(sorted(night.glob("*.fits"))):
        np.testing.assert_array_equal(
            stored["SKY"].values[0, channel, 0], originals[path.name][0, 0].astype(np.float32).T
        )
    ledger = json.loads(str(stored["source_files"].values[0]))
    assert all(entry["corrections"] == [note] for entry in ledger)


def test_open_time_step_reads_stokes_first_files_as_the_store_does(make_data, tmp_path):
    path = one_image(make_data, swap_stokes_and_frequency)
    image = read(path, tmp_path)
    plan = combine_frequencies(LoadedTimeStep(key="20240524_050009", subbands=(image,)))
    np.testing.assert_array_equal(open_time_step(plan)["SKY"].values[0, 0, 0], fits.getdata(path)[0, 0].T)


def test_a_night_across_a_leap_second_is_stored_at_each_time_step_s_date_obs_names_stamped_235960_included(
    make_data, tmp_path
):
    """2016-12-31 ended with 23:59:60; astropy's ``Time.strftime`` of that instant stamps names ``..._235960``."""
    from datetime import datetime

    from ovro_ingest.discover import stamp_seconds

    folder = make_data(time_steps=3, n_subbands=2, size=32, start=datetime(2016, 12, 31, 23, 59, 50))
    stamps = {  # synth's stamp -> the stamp and DATE-OBS of a night across the leap second
        "20161231_235950": ("20161231_235950", "2016-12-31T23:59:50.3"),
        "20170101_000000": ("20161231_235960", "2016-12-31T23:59:60.3"),
        "20170101_000010": ("20170101_000009", "2017-01-01T00:00:09.3"),
    }
    for path in sorted(folder.glob("*.fits")):
        new, date_obs = stamps[path.name[:15]]
        fits.setval(path, "DATE-OBS", value=date_obs)
        path.rename(path.with_name(path.name.replace(path.name[:15], new)))
    assert [s.key for s in discover_time_steps(folder).time_steps] == [
        "20161231_235950",
        "20161231_235960",
        "20170101_000009",
    ]
    report = audit_directory(folder)
    assert report.ok and [round(step.name_offset_s, 3) for step in report.time_steps] == [0.3, 0.3, 0.3]
    ingest_directory(folder, tmp_path / "s.zarr", settings=SETTINGS)
    ds = xr.open_zarr(tmp_path / "s.zarr")
    stored = [Time(t, format="mjd", scale="utc").isot for t in ds["time"].values]
    assert stored == ["2016-12-31T23:59:50.300", "2016-12-31T23:59:60.300", "2017-01-01T00:00:09.300"]
    assert stamp_seconds("20161231_235959", "20161231_235960") == pytest.approx(1.0)
    assert stamp_seconds("20161231_235960", "20170101_000000") == pytest.approx(1.0), "names a second apart straddle"


@pytest.mark.parametrize("stamp", ["20161230_235960", "20240532_050009", "20241301_050009", "20240524_250009"])
def test_a_name_whose_stamp_is_no_utc_instant_follows_no_convention_and_is_skipped(stamp):
    from ovro_ingest.discover import parse_file_name

    assert parse_file_name(f"{stamp}_41MHz_averaged_20000_iterations-I-image.fits") is None


@pytest.mark.parametrize(
    "cards",
    [
        {"MJDREF": 60454.0, "TSTART": 18009.3},  # seconds (TIMEUNIT's default) after an MJD
        {"MJDREFI": 60454, "MJDREFF": 0.0, "TSTART": 18009.3, "TIMEUNIT": "s", "TIMESYS": "UTC"},
        {"MJDREFI": 60454, "MJDREFF": 0.125, "TSTART": 9.3, "TIMEZERO": 7200.0},  # 03:00 + 2 h + 9.3 s
        {"DATEREF": "2024-05-24T05:00:00", "TSTART": 0.155, "TIMEUNIT": "min"},
        {"JDREF": 2460454.5, "TSTART": 5.002583333333, "TIMEUNIT": "h"},
    ],
)
def test_a_time_given_as_tstart_after_a_reference_is_read_in_its_unit_and_scale(make_data, tmp_path, cards):
    image = read(one_image(make_data, set_cards(DATE_OBS=None, **cards)), tmp_path)
    assert abs(image.time_mjd * 86400.0 - MJD_OBS * 86400.0) < 1e-3, utc_isot(image.time_mjd)
    assert image.date_obs.startswith("TSTART=") and "after" in image.date_obs


def test_tstart_in_tt_is_placed_on_utc_and_one_that_disagrees_with_date_beg_is_refused(make_data, tmp_path):
    image = read(one_image(make_data, set_cards(DATE_OBS=None, MJDREF=60454.0, TSTART=18009.3, TIMESYS="TT")), tmp_path)
    assert abs(image.time_mjd * 86400.0 - (MJD_OBS * 86400.0 - 69.184)) < 1e-3, "TT - UTC = 69.184 s in 2024"
    both = set_cards(DATE_OBS=None, DATE_BEG="2024-05-24T05:00:09.3", MJDREF=60454.0, TSTART=18029.3)
    assert (
        "DATE-BEG='2024-05-24T05:00:09.3' and TSTART=18029.3 s after MJDREF=60454.0 disagree"
        in refused(one_image(make_data, both), tmp_path).problem
    )


@pytest.mark.parametrize(
    ("cards", "problem"),
    [
        ({"TSTART": 18009.3}, "TSTART without MJDREF, MJDREFI/MJDREFF, JDREF or DATEREF"),
        (
            {"TSTART": 18009.3, "MJDREF": 60454.0, "TIMEUNIT": "fortnight"},
            "TIMEUNIT='fortnight' is not a FITS time unit",
        ),
        ({"TSTART": "soon", "MJDREF": 60454.0}, "TSTART='soon' is not a number"),
    ],
)
def test_a_tstart_that_is_not_understood_is_refused_in_one_line(make_data, tmp_path, cards, problem):
    assert problem in refused(one_image(make_data, set_cards(DATE_OBS=None, **cards)), tmp_path).problem


def inherit_from_primary(hdulist, inherit=True):
    """The image in extension 1 (``INHERIT = T``); DATE-OBS, the beam and TELESCOP only in the dataless primary header."""
    image = fits.ImageHDU(data=hdulist[0].data, header=hdulist[0].header.copy())
    primary = fits.PrimaryHDU()
    for keyword in ("DATE-OBS", "BMAJ", "BMIN", "BPA", "TELESCOP"):
        primary.header[keyword] = image.header.pop(keyword, "OVRO-LWA")
    if inherit:
        image.header["INHERIT"] = True
    return fits.HDUList([primary, image])


def test_an_extension_with_inherit_reads_the_primary_headers_cards_and_its_own_win(make_data, tmp_path):
    path = one_image(make_data)
    with fits.open(path) as original:
        expected = read(path, tmp_path)
        pixels = original[0].data[0, 0].copy()
    edit(path, inherit_from_primary)
    with fits.open(path, mode="update") as hdulist:
        hdulist[1].header["BMAJ"] = 0.5  # its own card wins over the primary's
    image = read(path, tmp_path)
    assert image.time_mjd == expected.time_mjd and image.date_obs == DATE_OBS
    assert image.beam_rad[0] == pytest.approx(math.radians(0.5)) and image.beam_rad[1] == expected.beam_rad[1]
    assert any(
        c.startswith("took DATE-OBS, BMIN, BPA, TELESCOP from the primary header") for c in image.file.corrections
    )
    with fits.open(image.file.path) as copy:
        np.testing.assert_array_equal(copy[0].data[0, 0], pixels)
        assert "INHERIT" not in copy[0].header and copy[0].header["TELESCOP"] == "OVRO-LWA"
    without = edit(one_image(make_data), lambda h: inherit_from_primary(h, inherit=False))
    assert "no DATE-OBS keyword" in refused(without, tmp_path).problem


@pytest.mark.parametrize("keyword", ["DATE-OBS", "CRVAL3", "BMAJ"])
def test_a_keyword_given_twice_with_different_values_is_refused_naming_both(make_data, tmp_path, keyword):
    path = one_image(make_data)
    header = fits.getheader(path)
    first = header.cards[keyword].image[10:].split(" /")[0].strip()
    patched = {"DATE-OBS": "'2024-05-24T05:00:29.3'", "CRVAL3": "46000000.0", "BMAJ": "0.9"}[keyword]

    def append_second(hdulist):
        hdulist[0].header.append(fits.Card.fromstring(f"{keyword:<8}= {patched} / corrected"), useblanks=False)

    edit(path, append_second)
    problem = refused(path, tmp_path).problem
    assert problem == f"{keyword} appears twice with different values ({first}, then {patched})", problem


def test_a_keyword_repeated_with_the_same_value_and_commentary_cards_are_read(make_data, tmp_path):
    def repeat(hdulist):
        header = hdulist[0].header
        for card in (
            fits.Card.fromstring(header.cards["TELESCOP"].image),
            fits.Card("HISTORY", "1"),
            fits.Card("HISTORY", "2"),
        ):
            header.append(card, useblanks=False)

    assert read(edit(one_image(make_data), repeat), tmp_path).date_obs == DATE_OBS
