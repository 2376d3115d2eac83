"""The observation time of an image, from every standard way a FITS header states it.

The keywords (FITS 4.0, section 9; WCS Paper VII, Rots et al. 2015, A&A 574, A36):

- ``DATE-OBS``: ``'YYYY-MM-DD'`` (a date only, AIPS style), ``'YYYY-MM-DDThh:mm:ss[.sss]'``,
  or the pre-1999 ``'DD/MM/YY'`` (a date in 19YY, deprecated but standard). An ISO 8601
  time-zone designator (``Z``, ``+hh:mm``), which FITS does not allow but some writers
  add, is honoured on a UTC time;
- ``TIME-OBS``: the time of day of a date-only DATE-OBS (AIPS, IRAF);
- ``MJD-OBS``: the same instant as a Modified Julian Date;
- ``DATE-BEG`` / ``MJD-BEG``: the start of the observation (FITS 4.0), read when
  DATE-OBS and MJD-OBS give no time of day;
- ``TSTART``: the start too, as a time since a reference (FITS 4.0, section 9.2):
  ``TSTART + TIMEZERO`` in ``TIMEUNIT`` (seconds when absent) after ``MJDREFI + MJDREFF``,
  ``MJDREF``, ``JDREFI + JDREFF``, ``JDREF`` or ``DATEREF``, in the scale of TIMESYS; a
  TSTART without a reference is refused (its zero is unknown);
- ``TIMESYS``: the time scale of all of them, UTC when absent (FITS 4.0, table 30):
  UTC, TAI, TT, TDB, TCG, TCB, UT1, GPS, the deprecated synonyms IAT, GMT, UT, TDT and
  ET (astropy's ``FITS_DEPRECATED_SCALES``), with an optional realization in
  parentheses (``TT(BIPM)``, ``UTC(NIST)``). LOCAL (a free-running clock) and unknown
  values are refused: they cannot be placed on UTC, and guessing UTC could misplace a
  time step by a minute (TT - UTC = 69 s).

The value used is the most precise of the keywords that give a time of day (the
resolution of the text as written: 0.1 s for ``05:00:09.3``, 1e-6 d = 86 ms for
``60454.208441``); keywords that say the same thing must agree within the coarser of
their resolutions (a date-only DATE-OBS: the same day), else the file is refused in
one line naming both. A date alone is never taken as a time.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from astropy import units as u
from astropy.io import fits
from astropy.time import Time, TimeDelta
from astropy.time.formats import FITS_DEPRECATED_SCALES

from ovro_ingest.errors import BadInputFile

GPS_MINUS_TAI_S = -19.0
"""GPS time runs 19 s behind TAI (FITS 4.0, table 30), at every date."""
ASTROPY_SCALES = ("utc", "tai", "tt", "tdb", "tcg", "tcb", "ut1")
"""TIMESYS values astropy converts to UTC (its ``local`` scale cannot be)."""
TIME_GROUPS = (("DATE-OBS", "MJD-OBS"), ("DATE-BEG", "MJD-BEG"))
"""Keywords that state the same instant; the first group is read first (TSTART belongs to the second)."""
TIME_UNITS = {"s": 1.0, "d": 86400.0, "min": 60.0, "h": 3600.0, "a": 31557600.0, "yr": 31557600.0}
"""TIMEUNIT values (FITS 4.0, table 31) and their seconds; ``a`` and ``yr`` are the Julian year."""
SECONDS_PER_DAY = 86400.0
AGREEMENT_SLACK_S = 1e-6
"""Added to the resolution when comparing two keywords (float rounding of an MJD)."""

_OLD_DATE = re.compile(r"(?P<day>\d\d)/(?P<month>\d\d)/(?P<year>\d\d)")
_ZONE = re.compile(r"(?P<clock>T\d\d:\d\d(:\d\d(\.\d*)?)?)(?P<zone>Z|[+-]\d\d(:?\d\d)?)$")
_SECONDS = re.compile(r"\d\d:\d\d:\d\d(?:\.(?P<fraction>\d*))?")
_TIMESYS = re.compile(r"(?P<scale>[A-Z0-9]+)(\(\s*[^()]*\s*\))?")
_CARD_VALUE = re.compile(r"^.{8}=\s*(?P<value>'(?:[^']|'')*'|[^/]*)")


@dataclass(frozen=True)
class TimeReading:
    """One keyword's (or DATE-OBS with TIME-OBS's) statement of the observation time."""

    keyword: str
    text: str
    """The value as written (DATE-OBS and TIME-OBS joined with ``T``)."""
    time: Time
    """The instant, in the header's time scale (TAI for GPS)."""
    resolution_s: float
    """What the text can resolve: 86400 s for a date, 10**-n s for n decimals of seconds, ..."""

    @property
    def is_date(self) -> bool:
        """True when the reading is a calendar date without a time of day."""
        return self.resolution_s >= SECONDS_PER_DAY

    def label(self) -> str:
        """``KEYWORD='text'``, for messages and the ledger (numbers unquoted)."""
        quoted = not self.keyword.startswith(("MJD", "TSTART"))
        return f"{self.keyword}={self.text!r}" if quoted else f"{self.keyword}={self.text}"


def time_scale(header: fits.Header, path: str) -> str:
    """The astropy time scale of the header's times (``"gps"`` for GPS), from TIMESYS.

    Raises
    ------
    BadInputFile
        TIMESYS is LOCAL or not a FITS time scale.
    """
    value = str(header.get("TIMESYS", "UTC")).strip().upper() or "UTC"
    match = _TIMESYS.fullmatch(value)
    name = match["scale"] if match else value
    scale: str = FITS_DEPRECATED_SCALES.get(name, name.lower())  # astropy publishes no types
    if scale in (*ASTROPY_SCALES, "gps"):
        return scale
    if scale == "local":
        problem = "TIMESYS='LOCAL' is a free-running clock that cannot be placed on UTC"
    else:
        problem = f"TIMESYS={value!r} is not a FITS time scale"
    raise BadInputFile(
        path, problem, "set TIMESYS to the time scale of DATE-OBS (UTC, TAI, TT, TDB, TCG, TCB, UT1 or GPS)"
    )


def make_time(value: str | float, fmt: str, scale: str) -> Time:
    """An astropy Time of ``value`` in ``scale``; GPS is TAI shifted by 19 s (astropy has no GPS scale)."""
    if scale == "gps":
        return Time(value, format=fmt, scale="tai") - TimeDelta(GPS_MINUS_TAI_S * u.s)
    return Time(value, format=fmt, scale=scale)


def date_reading(keyword: str, text: str, scale: str, path: str) -> TimeReading:
    """Read a DATE-OBS-like value (any of the forms in the module docstring).

    Raises
    ------
    BadInputFile
        The text is not a FITS date, or carries a time zone while TIMESYS is not UTC.
    """
    written = text
    old = _OLD_DATE.fullmatch(text)
    if old:  # DD/MM/YY means 19YY (FITS 4.0, section 4.4.2.1)
        text = f"19{old['year']}-{old['month']}-{old['day']}"
    offset_s = 0.0
    zoned = _ZONE.search(text)
    if zoned:
        if scale != "utc":
            raise BadInputFile(
                path,
                f"{keyword}={written!r} has a time-zone designator but TIMESYS is {scale.upper()}",
                f"write {keyword} without the zone, in the scale of TIMESYS",
            )
        offset_s = zone_offset_s(zoned["zone"])
        text = text[: zoned.start("zone")]
    try:
        moment = make_time(text, "fits", scale)
    except ValueError as error:
        raise BadInputFile(
            path, f"unparseable {keyword} {written!r}", f"write {keyword} as YYYY-MM-DDThh:mm:ss[.sss]"
        ) from error
    if offset_s:
        moment = moment - TimeDelta(offset_s * u.s)
    return TimeReading(keyword=keyword, text=written, time=moment, resolution_s=text_resolution_s(text))


def zone_offset_s(zone: str) -> float:
    """Seconds east of UTC of an ISO 8601 zone designator (``Z``, ``+02``, ``-0530``, ``+05:30``)."""
    if zone == "Z":
        return 0.0
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return (1 if zone[0] == "+" else -1) * (hours * 3600.0 + minutes * 60.0)


def text_resolution_s(text: str) -> float:
    """The resolution of a FITS date text: a day without a time of day, else its last digit of seconds."""
    if "T" not in text:
        return SECONDS_PER_DAY
    seconds = _SECONDS.search(text)
    if seconds is None:  # hh:mm
        return 60.0
    return 10.0 ** -len(seconds["fraction"] or "")


def card_text(header: fits.Header, keyword: str) -> str:
    """A keyword's value as written in the header (its digits tell its resolution)."""
    match = _CARD_VALUE.match(header.cards[keyword].image)
    return (match["value"] if match else str(header[keyword])).strip().strip("'").strip()


def mjd_reading(header: fits.Header, keyword: str, scale: str, path: str) -> TimeReading:
    """Read an MJD-OBS-like keyword; its resolution is its last written decimal (of a day)."""
    digits = number_text(header, keyword, path, "days")
    try:
        moment = make_time(float(digits), "mjd", scale)
    except ValueError as error:  # an infinite or NaN day
        raise BadInputFile(path, f"{keyword}={digits} is not a day", f"write {keyword} as a number of days") from error
    return TimeReading(
        keyword=keyword,
        text=card_text(header, keyword),
        time=moment,
        resolution_s=last_digit_s(digits, SECONDS_PER_DAY),
    )


def last_digit_s(digits: Decimal, unit_s: float) -> float:
    """The resolution of a number as written, in seconds: its last decimal of ``unit_s``."""
    exponent = digits.as_tuple().exponent
    return unit_s * 10.0 ** min(int(exponent), 0) if isinstance(exponent, int) else unit_s


def readings_of(header: fits.Header, group: tuple[str, str], scale: str, path: str) -> list[TimeReading]:
    """What the keywords of one group (e.g. DATE-OBS, MJD-OBS) say, TIME-OBS included for DATE-OBS."""
    date_keyword, mjd_keyword = group
    readings = []
    date = str(header.get(date_keyword, "")).strip()
    if date:
        reading = date_reading(date_keyword, date, scale, path)
        readings.append(reading)
        time_obs = str(header.get("TIME-OBS", "")).strip() if date_keyword == "DATE-OBS" else ""
        if time_obs:
            day = calendar_day(date)
            readings.append(date_reading("DATE-OBS+TIME-OBS", f"{day}T{time_obs}", scale, path))
    if mjd_keyword in header and str(header[mjd_keyword]).strip():
        readings.append(mjd_reading(header, mjd_keyword, scale, path))
    if date_keyword == "DATE-BEG" and "TSTART" in header:
        readings.append(tstart_reading(header, scale, path))
    return readings


def number_text(header: fits.Header, keyword: str, path: str, unit: str = "") -> Decimal:
    """A numeric keyword's value as written, exactly (Fortran exponents, ``1.0D+04``, are FITS)."""
    text = card_text(header, keyword)
    try:
        return Decimal(text.upper().replace("D", "E"))
    except InvalidOperation as error:
        fix = f"write {keyword} as a number" + (f" of {unit}" if unit else "")
        raise BadInputFile(path, f"{keyword}={text!r} is not a number", fix) from error


def reference_time(header: fits.Header, scale: str, path: str) -> tuple[Time, str]:
    """The zero of TSTART: the first of MJDREFI+MJDREFF, MJDREF, JDREFI+JDREFF, JDREF, DATEREF; and its label."""
    for whole, part, fmt in (("MJDREFI", "MJDREFF", "mjd"), ("JDREFI", "JDREFF", "jd")):
        if whole in header:
            fraction = number_text(header, part, path) if part in header else Decimal(0)
            days = number_text(header, whole, path)
            return make_time(float(days), fmt, scale) + TimeDelta(
                float(fraction), format="jd"
            ), f"{whole}={days}+{part}={fraction}"
    for keyword, fmt in (("MJDREF", "mjd"), ("JDREF", "jd")):
        if keyword in header:
            days = number_text(header, keyword, path)
            return make_time(float(days), fmt, scale), f"{keyword}={days}"
    if "DATEREF" in header:
        reading = date_reading("DATEREF", str(header["DATEREF"]).strip(), scale, path)
        return reading.time, reading.label()
    raise BadInputFile(
        path,
        "TSTART without MJDREF, MJDREFI/MJDREFF, JDREF or DATEREF: the time it counts from is unknown",
        "add MJDREF (the MJD TSTART counts from), or DATE-OBS",
    )


def tstart_reading(header: fits.Header, scale: str, path: str) -> TimeReading:
    """Read TSTART (+ TIMEZERO) in TIMEUNIT after the header's reference time; its resolution is its last decimal."""
    unit = str(header.get("TIMEUNIT", "s")).strip() or "s"
    if unit not in TIME_UNITS:
        raise BadInputFile(
            path, f"TIMEUNIT={unit!r} is not a FITS time unit", f"set TIMEUNIT to one of {', '.join(TIME_UNITS)}"
        )
    start = number_text(header, "TSTART", path)
    zero = number_text(header, "TIMEZERO", path) if "TIMEZERO" in header else Decimal(0)
    reference, label = reference_time(header, scale, path)
    moment = reference + TimeDelta(float(start + zero) * TIME_UNITS[unit], format="sec")
    text = f"{start} {unit} after {label}" + (f" (TIMEZERO={zero})" if zero else "")
    return TimeReading(keyword="TSTART", text=text, time=moment, resolution_s=last_digit_s(start, TIME_UNITS[unit]))


def calendar_day(text: str) -> str:
    """The ``YYYY-MM-DD`` part of a DATE-OBS text (``DD/MM/YY`` being 19YY)."""
    old = _OLD_DATE.fullmatch(text)
    return f"19{old['year']}-{old['month']}-{old['day']}" if old else text.split("T")[0]


def check_agreement(readings: list[TimeReading], path: str) -> None:
    """Refuse readings of one instant that disagree beyond the coarser of their resolutions.

    A date-only reading agrees with a time when the time falls on that day.
    """
    for a, b in itertools.combinations(readings, 2):
        later = (b.time - a.time).to_value(u.s)
        if a.is_date and b.is_date:
            agree = abs(later) <= AGREEMENT_SLACK_S
        elif a.is_date or b.is_date:
            since_midnight = later if a.is_date else -later
            agree = 0.0 <= since_midnight < SECONDS_PER_DAY
        else:
            agree = abs(later) <= max(a.resolution_s, b.resolution_s) + AGREEMENT_SLACK_S
        if not agree:
            raise BadInputFile(
                path,
                f"{a.label()} and {b.label()} disagree by {abs(later):.3f} s",
                "correct the wrong one, or remove it",
            )


def observation_time(header: fits.Header, path: str) -> tuple[float, str]:
    """The observation time of an image, as (MJD UTC, the header value it was read from).

    Parameters
    ----------
    header : astropy.io.fits.Header
        The image header.
    path : str
        The file, named in errors.

    Returns
    -------
    tuple of (float, str)
        MJD in UTC, and the value used as written: DATE-OBS (``2024-05-24T05:00:09.3``,
        ``...T`` + TIME-OBS when DATE-OBS is a date), or ``MJD-OBS=60454.208441``.

    Raises
    ------
    BadInputFile
        No time of day in any keyword, keywords that disagree, an unknown TIMESYS, a
        value that does not parse, or a UT1 time outside astropy's IERS tables.
    """
    scale = time_scale(header, path)
    groups = [readings_of(header, group, scale, path) for group in TIME_GROUPS]
    for readings in groups:
        check_agreement(readings, path)
    timed = [r for r in itertools.chain(*groups) if not r.is_date]
    if not timed:
        raise no_time_of_day(groups[0] + groups[1], path)
    in_first = [r for r in timed if r.keyword in ("DATE-OBS", "DATE-OBS+TIME-OBS", "MJD-OBS")]
    best = min(in_first or timed, key=lambda r: r.resolution_s)  # the first of equals: DATE-OBS before MJD-OBS
    text = best.label() if best.keyword not in ("DATE-OBS", "DATE-OBS+TIME-OBS") else best.text
    return utc_mjd(best, path), text


def no_time_of_day(readings: list[TimeReading], path: str) -> BadInputFile:
    """The error for a header that gives no time of day (only a date, or nothing)."""
    if readings:
        return BadInputFile(
            path,
            f"{readings[0].label()} is a date without a time of day (no TIME-OBS, MJD-OBS, DATE-BEG or MJD-BEG)",
            "write the time into DATE-OBS (YYYY-MM-DDThh:mm:ss) or add MJD-OBS",
        )
    return BadInputFile(
        path, "no DATE-OBS keyword (nor MJD-OBS, DATE-BEG, MJD-BEG or TSTART), so its time is unknown", "add DATE-OBS"
    )


def utc_mjd(reading: TimeReading, path: str) -> float:
    """The reading as MJD UTC; UT1 uses astropy's bundled IERS tables (never a download)."""
    if reading.time.scale != "ut1":
        return float(reading.time.utc.mjd)
    from astropy.utils import iers

    try:
        with iers.conf.set_temp("auto_download", False):
            return float(reading.time.utc.mjd)
    except (ValueError, IndexError) as error:  # IERSRangeError is an IndexError
        raise BadInputFile(
            path,
            f"{reading.label()} in UT1 lies outside the IERS tables astropy has",
            "give the time in UTC (TIMESYS='UTC'), or update astropy-iers-data",
        ) from error
