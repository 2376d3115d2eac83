"""The facts the store needs from one image header, read the way the FITS standard and astropy read them.

One function, :func:`header_facts`, reads them all from a header (and the CASA BEAMS
table, when the beam is there); the loader calls it on the file it will read, the
audit on the header a fixed copy would have, so both reach the same verdict.

- frequency: the spectral axis in any position, also when declared beyond NAXIS (an
  axis beyond NAXIS is one pixel long), a one-pixel axis with CDELT 0 (its value is
  CRVAL), CUNIT honoured; a velocity or wavelength axis converted to frequency by
  wcslib with RESTFRQ/RESTFREQ; SPECSYS (after wcslib's fixes of AIPS ``FREQ-LSR``);
- time: :mod:`ovro_ingest.obstime`;
- pixel grid: the full linear transform wcslib reads from CDELT, CD, PC + CDELT or
  CROTA2, and CRPIX (:class:`~ovro_ingest.models.SpatialGrid`);
- celestial frame: RADESYS (RADECSYS) and EQUINOX (EPOCH), wcslib's defaults when absent;
- beam: BMAJ/BMIN/BPA cards, else the CASA BEAMS table (``CASAMBM = T``).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, WCSSUB_CELESTIAL, WCSSUB_SPECTRAL, WCSSUB_STOKES, FITSFixedWarning

from ovro_ingest.errors import BadInputFile, file_boundary
from ovro_ingest.models import SpatialGrid
from ovro_ingest.obstime import observation_time

HEADER_FIX = (
    "correct the header (check it with fitsverify or astropy's fits.open(...).verify()), or regenerate the file"
)

STOKES_NAMES = {
    1: "I",
    2: "Q",
    3: "U",
    4: "V",
    -1: "RR",
    -2: "LL",
    -3: "RL",
    -4: "LR",
    -5: "XX",
    -6: "YY",
    -7: "XY",
    -8: "YX",
}
"""FITS STOKES axis values (WCS Paper I, table 7) and their names."""

CELESTIAL_FRAMES = {"ICRS": "", "FK5": "J", "FK4": "B", "FK4-NO-E": "B"}
"""RADESYS values the store (and xradio) can hold, and the prefix of their equinox (Julian, Besselian)."""
SPECTRAL_FRAMES = (
    "TOPOCENT",
    "GEOCENTR",
    "BARYCENT",
    "HELIOCEN",
    "LSRK",
    "LSRD",
    "GALACTOC",
    "LOCALGRP",
    "CMBDIPOL",
    "SOURCE",
)
"""The SPECSYS values of WCS Paper III (Greisen et al. 2006), the FITS spectral reference frames."""
CASA_BEAM_UNITS = {"BMAJ": "arcsec", "BMIN": "arcsec", "BPA": "deg"}
"""Units of the BEAMS table columns when TUNITn is absent (CASA writes arcsec and deg)."""


@dataclass(frozen=True)
class HeaderFacts:
    """What the store needs from one image header."""

    frequency_hz: float
    time_mjd: float
    date_obs: str
    polarizations: tuple[str, ...]
    beam_rad: tuple[float, float, float] | None
    beam_problem: str | None
    grid: SpatialGrid
    celestial_wcs: str
    spectral_frame: str


def header_facts(header: fits.Header, path: str, beams: fits.BinTableHDU | None = None) -> HeaderFacts:
    """Read every fact the store needs from an image header.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header of the image as the loader reads it (a fixed copy's, when it has one).
    path : str
        The source file, named in errors.
    beams : astropy.io.fits.BinTableHDU, optional
        The file's CASA ``BEAMS`` table, read when the header has ``CASAMBM = T`` and no BMAJ.

    Returns
    -------
    HeaderFacts
        Frequency (Hz), time (MJD UTC) and the value it came from, polarizations, beam
        (radians) or why it is unusable, pixel grid, celestial WCS text, spectral frame.

    Raises
    ------
    BadInputFile
        One line naming the file and the fix for anything the store cannot hold, and for
        any error of astropy or wcslib while reading the header.
    """
    check_pixel_scale(header, path)
    with file_boundary(path, "reading its header", HEADER_FIX):
        wcs = header_wcs(header)
        check_equatorial(wcs, path)
        frequency_hz = frequency_of(header, wcs, path)
        time_mjd, date_obs = observation_time(header, path)
        grid = spatial_grid(header, wcs, path)
        beam, problem = beam_of(header, beams)
        if problem is None and beam is not None and (problem := beam_size_problem(beam, grid)):
            beam = None
        return HeaderFacts(
            frequency_hz=frequency_hz,
            time_mjd=time_mjd,
            date_obs=date_obs,
            polarizations=polarizations_of(header, wcs, path),
            beam_rad=beam,
            beam_problem=problem,
            grid=grid,
            celestial_wcs=celestial_wcs_text(wcs),
            spectral_frame=spectral_frame_of(wcs, path),
        )


def header_wcs(header: fits.Header) -> WCS:
    """The header's WCS as astropy reads it (its standard fixes applied silently; spectral values in SI units).

    A one-pixel axis whose CDELT is 0 (a "frequency" axis some writers leave without a
    width) makes wcslib's matrix singular; its one pixel is at CRVAL whatever CRPIX, so
    such an axis is read with CDELT 1 and CRPIX 1, which puts it at the same value.
    """
    degenerate = degenerate_zero_axes(header)
    if degenerate:
        header = header.copy()
        for axis in degenerate:
            header[f"CDELT{axis}"], header[f"CRPIX{axis}"] = 1.0, 1.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FITSFixedWarning)
        wcs = WCS(header)
    check_unread(caught)
    return wcs


_UNREAD = re.compile(r"^\s*(?P<keyword>[A-Z0-9_-]+)\s*=\s*(?P<value>.*?)\s*\n(?P<reason>.* was expected.*)", re.S)
_WCS_KEYWORD = re.compile(
    r"(CTYPE|CRPIX|CRVAL|CDELT|CUNIT|CROTA|PC|CD|PV|PS)\d+(_\d+)?|WCSAXES|LONPOLE|LATPOLE|EQUINOX|EPOCH"
    r"|RADESYS|RADECSYS|SPECSYS|RESTFRQ|RESTFREQ|RESTWAV|VELREF"
)


def check_unread(caught: list[warnings.WarningMessage]) -> None:
    """Raise when wcslib skipped a WCS keyword it could not parse (``CRPIX1 = 'seventeen'``).

    wcslib reports such a keyword only as a warning and goes on with the keyword's FITS
    default, which would put a default in place of what the header says; other
    keywords it cannot parse (``CRDER1 = nan``, auxiliary) do not matter here.
    """
    for warning in caught:
        match = _UNREAD.match(str(warning.message))
        if match and _WCS_KEYWORD.fullmatch(match["keyword"]):
            reason = match["reason"].strip().rstrip(".")
            raise ValueError(f"{match['keyword']} = {match['value']}: {reason}")


def wcs_axis_count(header: fits.Header) -> int:
    """How many WCS axes the header declares: WCSAXES, else NAXIS or the highest axis number of a CTYPE."""
    declared = header.get("WCSAXES")
    if declared is not None:
        return int(declared)
    highest = max((int(m[1]) for key in header if (m := _CTYPE.fullmatch(key))), default=0)
    return max(int(header.get("NAXIS", 0)), highest)


_CTYPE = re.compile(r"CTYPE(\d+)")


def axis_pixels(header: fits.Header, axis: int) -> int:
    """Pixels along FITS axis ``axis`` (1-based); an axis declared beyond NAXIS has one (WCS Paper I)."""
    return 1 if axis > int(header.get("NAXIS", 0)) else int(header[f"NAXIS{axis}"])


def degenerate_zero_axes(header: fits.Header) -> list[int]:
    """The one-pixel axes (1-based) whose CDELT is 0."""
    return [
        axis
        for axis in range(1, max(int(header.get("NAXIS", 0)), int(header.get("WCSAXES", 0)), 4) + 1)
        if header.get(f"CDELT{axis}") == 0 and axis_pixels(header, axis) == 1
    ]


def axis_length(header: fits.Header, wcs: WCS, kind: int) -> int:
    """Pixels along the image's axis of ``kind`` (wcslib axis type: 1 Stokes, 3 spectral); 0 when it has none."""
    axes = [i for i, axis_type in enumerate(wcs.wcs.axis_types) if axis_type // 1000 == kind]
    return axis_pixels(header, axes[0] + 1) if axes else 0


def check_equatorial(wcs: WCS, path: str) -> None:
    """Refuse an image whose sky axes are not RA/Dec, or not its first two axes in that order."""
    ctypes = [str(c) for c in wcs.sub([WCSSUB_CELESTIAL]).wcs.ctype]
    if len(ctypes) != 2 or not (ctypes[0].startswith("RA") and ctypes[1].startswith("DEC")):
        raise BadInputFile(
            path, f"its sky axes are {ctypes or 'missing'}, not RA/Dec", "reproject it to RA/Dec (ICRS or FK5)"
        )
    if (wcs.wcs.lng, wcs.wcs.lat) != (0, 1):
        raise BadInputFile(
            path,
            f"RA and Dec are its axes {wcs.wcs.lng + 1} and {wcs.wcs.lat + 1}; the ingest reads RA as axis 1, Dec as 2",
            "reorder its axes (e.g. CASA imtrans, or numpy with the header's axis keywords)",
        )


def frequency_of(header: fits.Header, wcs: WCS, path: str) -> float:
    """The frequency (Hz) of the image's one channel, from its spectral axis (wherever it is).

    A velocity, wavelength or energy axis is converted by wcslib (``sptr``), which
    needs the rest frequency (RESTFRQ, or AIPS's RESTFREQ) for velocities.
    """
    spectral = wcs.sub([WCSSUB_SPECTRAL])
    if spectral.naxis == 0:
        raise BadInputFile(path, "has no FREQ axis, so its frequency is unknown", "add a FREQ axis (CTYPE3='FREQ')")
    ctype = str(spectral.wcs.ctype[0])
    if not ctype.startswith("FREQ"):
        try:
            spectral.wcs.sptr("FREQ-???")
        except ValueError as error:  # wcslib's InvalidTransformError and friends
            raise BadInputFile(
                path,
                f"its spectral axis {ctype!r} cannot be converted to frequency",
                "add RESTFRQ (the rest frequency in Hz), or give it a FREQ axis",
            ) from error
    channels = axis_length(header, wcs, 3)
    if channels != 1:
        raise BadInputFile(path, f"holds {channels} frequencies, expected one", "split it into one file per subband")
    frequency = float(spectral.pixel_to_world_values(0))
    if not (math.isfinite(frequency) and frequency > 0):
        axis = wcs.wcs.spec + 1
        raise BadInputFile(
            path,
            f"its frequency {frequency:g} Hz (CRVAL{axis}={header.get(f'CRVAL{axis}')}) is not positive",
            f"write the channel's frequency into CRVAL{axis}, in Hz unless CUNIT{axis} says otherwise",
        )
    return frequency


def spectral_frame_of(wcs: WCS, path: str) -> str:
    """SPECSYS (wcslib also reads it from an AIPS ``FREQ-LSR`` CTYPE or VELREF); empty when the header gives none."""
    frame = str(wcs.wcs.specsys).strip().upper()
    if frame and frame not in SPECTRAL_FRAMES:
        raise BadInputFile(
            path,
            f"SPECSYS={frame!r} is not a FITS spectral frame",
            f"set SPECSYS to one of {', '.join(SPECTRAL_FRAMES)}",
        )
    return frame


def celestial_frame_of(wcs: WCS, path: str) -> str:
    """The celestial frame, e.g. ``"ICRS"``, ``"FK5 J2000.0"``, ``"FK4 B1950.0"`` (RADESYS and EQUINOX as wcslib reads them).

    Without RADESYS, wcslib follows WCS Paper II: FK4 for an EQUINOX before 1984, FK5
    from 1984, ICRS without an EQUINOX; the deprecated RADECSYS and EPOCH are read too.
    """
    radesys = str(wcs.wcs.radesys).strip().upper()
    if radesys not in CELESTIAL_FRAMES:
        raise BadInputFile(
            path,
            f"RADESYS={radesys!r} is not a frame the store holds",
            f"reproject it to one of {', '.join(CELESTIAL_FRAMES)}",
        )
    if radesys == "ICRS":
        return radesys
    equinox = float(wcs.wcs.equinox)
    if not math.isfinite(equinox):
        raise BadInputFile(path, f"RADESYS={radesys!r} without an equinox", "add EQUINOX (e.g. 2000.0 for FK5)")
    return f"{radesys} {CELESTIAL_FRAMES[radesys]}{equinox:.1f}"


def spatial_grid(header: fits.Header, wcs: WCS, path: str) -> SpatialGrid:
    """The celestial pixel grid: shape, projection, CRPIX, the full pixel matrix (degrees) and the frame."""
    celestial = wcs.sub([WCSSUB_CELESTIAL])
    matrix = celestial.pixel_scale_matrix  # CDELT x PC, or CD, or CROTA2 as PC: wcslib's linear transform
    if np.linalg.det(matrix) == 0.0:  # wcslib accepts a singular PC matrix: every pixel on one line of the sky
        raise BadInputFile(
            path,
            f"its pixel matrix (CDELT x PC, or CD) {matrix.tolist()} deg is singular, a zero pixel area",
            "correct its PCi_j (or CDi_j) cards",
        )
    return SpatialGrid(
        shape_lm=(axis_pixels(header, 1), axis_pixels(header, 2)),
        projection=str(celestial.wcs.ctype[0])[-3:],
        crpix=(float(celestial.wcs.crpix[0]), float(celestial.wcs.crpix[1])),
        pixel_matrix_deg=tuple(tuple(float(v) for v in row) for row in matrix),
        frame=celestial_frame_of(wcs, path),
    )


def celestial_wcs_text(wcs: WCS) -> str:
    """The celestial WCS, as FITS header cards, one per line, trailing blanks dropped.

    ``astropy.io.fits.Header.fromstring(text, sep="\\n")`` reads it back.
    """
    cards = wcs.sub([WCSSUB_CELESTIAL]).to_header(relax=True).cards
    return "\n".join(str(card).rstrip() for card in cards)


def polarizations_of(header: fits.Header, wcs: WCS, path: str) -> tuple[str, ...]:
    """The Stokes parameters along the image's STOKES axis."""
    stokes = wcs.sub([WCSSUB_STOKES])
    if stokes.naxis == 0:
        raise BadInputFile(path, "has no STOKES axis", "add a STOKES axis (CTYPE4='STOKES')")
    values = stokes.pixel_to_world_values(np.arange(axis_length(header, wcs, 1)))
    names = [STOKES_NAMES.get(round(float(v))) for v in np.atleast_1d(values)]
    known = [name for name in names if name is not None]
    if len(known) < len(names):
        raise BadInputFile(path, f"has unknown STOKES values {list(np.atleast_1d(values))}", "fix its STOKES axis")
    return tuple(known)


def beam_of(
    header: fits.Header, beams: fits.BinTableHDU | None = None
) -> tuple[tuple[float, float, float] | None, str | None]:
    """The synthesized beam (major, minor, position angle) in radians, or why it is unusable.

    From the BMAJ/BMIN/BPA cards (degrees); without BMAJ and with ``CASAMBM = T``, from
    the CASA BEAMS table, as xradio reads it.
    """
    if "BMAJ" not in header and header.get("CASAMBM") is True:
        return table_beam(beams)
    problem = beam_problem(header)
    if problem is not None:
        return None, problem
    major, minor, angle = (float(np.deg2rad(float(header[k]))) for k in ("BMAJ", "BMIN", "BPA"))
    return (major, minor, angle), None


def beam_problem(header: fits.Header) -> str | None:
    """Why the header's synthesized beam (BMAJ, BMIN, BPA) is unusable, or None when it is fine."""
    for keyword in ("BMAJ", "BMIN", "BPA"):
        value = header.get(keyword)
        if value is None:
            return f"no {keyword} keyword (no synthesized beam)"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"{keyword}={value!r} is not a number"
        if problem := beam_value_problem(keyword, number):
            return problem
    return None


def beam_value_problem(keyword: str, number: float) -> str | None:
    """Why one beam value (degrees) is unusable: any finite angle is a position angle; a size is above 0 and at most 180°."""
    if not math.isfinite(number) or (keyword != "BPA" and number <= 0):
        return f"{keyword}={number} is not a {'finite angle' if keyword == 'BPA' else 'positive beam size'}"
    if keyword != "BPA" and number > 180.0:
        return f"{keyword}={number} is above 180 degrees: {keyword} is in degrees ({likely_unit(number)})"
    return None


def likely_unit(degrees: float) -> str:
    """The unit mistake a too-large angle most likely is: arcsec or arcmin written as degrees."""
    unit, factor = ("arcsec", 3600.0) if degrees > 60.0 else ("arcmin", 60.0)
    return f"was it written in {unit}? {degrees:g} {unit} = {degrees / factor:.4g} deg"


def beam_size_problem(beam_rad: tuple[float, float, float], grid: SpatialGrid) -> str | None:
    """Why a beam cannot be the image's: its major axis exceeds the image's field of view (the likely unit mistake named)."""
    major_deg = math.degrees(beam_rad[0])
    field_deg = max(abs(scale) * pixels for scale, pixels in zip(grid.cdelt_deg, grid.shape_lm, strict=True))
    if major_deg <= field_deg:
        return None
    return (
        f"BMAJ={major_deg:g} deg is larger than the image's field of view ({field_deg:g} deg): "
        f"BMAJ is in degrees ({likely_unit(major_deg)})"
    )


def check_pixel_scale(header: fits.Header, path: str) -> None:
    """Refuse a zero pixel scale (CDELT1 or CDELT2 = 0 without a CD matrix): every pixel would be one point of the sky."""
    if any(key.startswith("CD") and "_" in key for key in header):
        return  # a CD matrix gives the scale; wcslib refuses a singular one
    for axis in (1, 2):
        if header.get(f"CDELT{axis}") == 0:
            raise BadInputFile(
                path,
                f"CDELT{axis}=0 is a zero pixel scale",
                f"write the pixel size in degrees into CDELT{axis} (or give a CD matrix)",
            )


def beams_table(hdulist: fits.HDUList, header: fits.Header | None = None) -> fits.BinTableHDU | None:
    """The CASA per-plane beam table (``EXTNAME = 'BEAMS'``) of a file, when the image header asks for it.

    ``header`` is the image header (default: the primary one); the table is looked for
    only with ``CASAMBM = T`` and no BMAJ card, so other files read no extension.
    """
    header = hdulist[0].header if header is None else header
    if "BMAJ" in header or header.get("CASAMBM") is not True:
        return None
    return next((hdu for hdu in hdulist[1:] if hdu.header.get("EXTNAME") == "BEAMS"), None)


def table_beam(beams: fits.BinTableHDU | None) -> tuple[tuple[float, float, float] | None, str | None]:
    """The beam of the image's one channel (CHAN 0) and first polarization (POL 0) in a CASA BEAMS table, radians.

    Units from TUNITn, else CASA's arcsec (BMAJ, BMIN) and deg (BPA).
    """
    if beams is None:
        return None, "CASAMBM=T but no BEAMS table (no synthesized beam)"
    try:
        data = beams.data
        rows = np.flatnonzero((np.asarray(data["CHAN"]) == 0) & (np.asarray(data["POL"]) == 0))
        if rows.size == 0:
            return None, "the BEAMS table has no beam for channel 0, polarization 0"
        beam = []
        for name, default in CASA_BEAM_UNITS.items():
            unit = u.Unit(beams.columns[name].unit or default)
            value = float((np.asarray(data[name][rows[0]], dtype=float) * unit).to(u.rad).value)
            if problem := beam_value_problem(name, math.degrees(value)):
                return None, f"BEAMS table {problem}"
            beam.append(value)
    except (KeyError, ValueError, TypeError) as error:
        return None, f"unreadable BEAMS table ({type(error).__name__}: {error})"
    return (beam[0], beam[1], beam[2]), None
