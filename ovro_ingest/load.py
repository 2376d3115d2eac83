"""Step 3, load subbands: open each subband image lazily and read the facts the store needs.

Pixels stay on disk: ``load_subband`` returns a :class:`SubbandImage`, a small
reference with the header facts (frequency, DATE-OBS, beam, pixel grid, celestial
WCS), and :func:`open_subband` opens the pixels lazily (dask) with xradio when
they are written.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from datetime import UTC, datetime

import numpy as np
import xarray as xr
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

from ovro_ingest.errors import BadInputFile
from ovro_ingest.models import LoadedTimeStep, ReadableFile, ReadableTimeStep, SpatialGrid, SubbandImage

logger = logging.getLogger(__name__)


def _import_open_image():
    """Import xradio's reader, hushing its root-logger warning about optional MSv2 backends."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        from xradio.image import open_image
    finally:
        root.setLevel(level)
    return open_image


def open_subband(path: str) -> xr.Dataset:
    """Open a FITS image lazily with xradio (no sky coordinates, no mask scan)."""
    return _import_open_image()(path, do_sky_coords=False, compute_mask=False)


def read_sky(path: str) -> np.ndarray:
    """The pixels of a readable image as the store holds them: (polarization, l, m) float32.

    Read straight from the FITS file (memory-mapped), the one copy being the
    transpose to (l, m): ``SKY[p, l, m] == data[p, 0, m, l]``, exactly what xradio's
    ``open_image`` gives for these files (the tests compare both), without building
    a dask graph per file.
    """
    with fits.open(path, memmap=True) as hdulist:
        data = hdulist[0].data[:, 0]  # (polarization, m, l), big-endian
        sky = np.empty((data.shape[0], data.shape[2], data.shape[1]), dtype=np.float32)
        for polarization in range(data.shape[0]):
            transpose_into(data[polarization], sky[polarization])
        return sky


TRANSPOSE_TILE = 256
"""Side of the tiles :func:`transpose_into` copies: 256² float32 tiles (256 KiB) stay in the CPU cache."""


def transpose_into(plane: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = plane.T`` (converting to ``out``'s dtype), tile by tile.

    A plain ``np.ascontiguousarray(plane.T)`` of a 4096² image strides through memory
    and takes about twice as long (measured: 140 vs 70 ms, byte swap included).
    """
    rows, columns = plane.shape
    for row in range(0, rows, TRANSPOSE_TILE):
        for column in range(0, columns, TRANSPOSE_TILE):
            out[column : column + TRANSPOSE_TILE, row : row + TRANSPOSE_TILE] = plane[
                row : row + TRANSPOSE_TILE, column : column + TRANSPOSE_TILE
            ].T


def observation_time(header: fits.Header, path: str) -> tuple[float, str]:
    """DATE-OBS (plus TIME-OBS when DATE-OBS has no time of day) as (MJD UTC, ISO text)."""
    date_obs = header.get("DATE-OBS")
    if not date_obs:
        raise BadInputFile(path, "no DATE-OBS keyword, so its time is unknown", "add DATE-OBS to the header")
    text = str(date_obs).strip()
    if "T" not in text and header.get("TIME-OBS"):
        text = f"{text}T{str(header['TIME-OBS']).strip()}"
    scale = str(header.get("TIMESYS", "UTC")).strip().lower()
    try:
        moment = Time(text, format="isot", scale=scale if scale in ("utc", "tai", "tt") else "utc")
    except ValueError as error:
        raise BadInputFile(path, f"unparseable DATE-OBS {text!r}", "fix DATE-OBS (ISO 8601, UTC)") from error
    return float(moment.utc.mjd), text


def name_time_offset_s(key: str, time_mjd: float) -> float:
    """DATE-OBS minus the file name's time stamp (``YYYYMMDD_HHMMSS``), in seconds."""
    named = Time(datetime.strptime(key, "%Y%m%d_%H%M%S").replace(tzinfo=UTC), scale="utc")
    return (time_mjd - named.mjd) * 86400.0


def beam_problem(header: fits.Header) -> str | None:
    """Why the header's synthesized beam (BMAJ, BMIN) is unusable, or None when it is fine."""
    for keyword in ("BMAJ", "BMIN"):
        value = header.get(keyword)
        if value is None:
            return f"no {keyword} keyword (no synthesized beam)"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"{keyword}={value!r} is not a number"
        if not math.isfinite(number) or number <= 0:
            return f"{keyword}={number} is not a positive beam size"
    return None


def spatial_grid(header: fits.Header) -> SpatialGrid:
    """The celestial pixel grid of a (fixed) header."""
    return SpatialGrid(
        shape_lm=(int(header["NAXIS1"]), int(header["NAXIS2"])),
        projection=str(header.get("CTYPE1", ""))[-3:],
        crpix=(float(header.get("CRPIX1", 0.0)), float(header.get("CRPIX2", 0.0))),  # FITS defaults
        cdelt_deg=(float(header.get("CDELT1", 1.0)), float(header.get("CDELT2", 1.0))),
    )


def celestial_wcs_text(header: fits.Header) -> str:
    """The celestial WCS of a header, as FITS header cards, one per line, trailing blanks dropped.

    ``astropy.io.fits.Header.fromstring(text, sep="\\n")`` reads it back.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        cards = WCS(header).celestial.to_header(relax=True).cards
    return "\n".join(str(card).rstrip() for card in cards)


def load_subband(readable: ReadableFile) -> SubbandImage:
    """Open one subband lazily and describe it.

    Parameters
    ----------
    readable : ReadableFile
        A file that ``fix_headers`` made readable.

    Returns
    -------
    SubbandImage
        Frequency, DATE-OBS, beam, grid and celestial WCS of the image.

    Raises
    ------
    BadInputFile
        When xradio cannot open it, or it lacks what the store needs.
    """
    path = readable.path
    started = time.perf_counter()
    try:
        dataset = open_subband(path)
    except Exception as error:  # xradio raises bare RuntimeErrors and worse
        raise BadInputFile(
            readable.source.path, f"xradio cannot open it ({type(error).__name__}: {error})", "check its header"
        ) from error
    if dataset.sizes["frequency"] != 1 or dataset.sizes["time"] != 1:
        raise BadInputFile(
            readable.source.path,
            f"holds {dataset.sizes['frequency']} frequencies and {dataset.sizes['time']} times, expected one of each",
            "split it into one file per subband",
        )
    header = fits.getheader(path)
    time_mjd, date_obs = observation_time(header, readable.source.path)
    problem = beam_problem(header)
    beam = None
    if problem is None and "BEAM_FIT_PARAMS_SKY" in dataset:
        values = dataset["BEAM_FIT_PARAMS_SKY"].values.reshape(-1, 3)[0]
        beam = (float(values[0]), float(values[1]), float(values[2]))
    logger.debug(
        "%s: opened in %.3f s (%.4f MHz, DATE-OBS %s, beam %s)",
        readable.source.name,
        time.perf_counter() - started,
        float(dataset["frequency"].values[0]) / 1e6,
        date_obs,
        problem or "valid",
    )
    return SubbandImage(
        file=readable,
        frequency_hz=float(dataset["frequency"].values[0]),
        time_mjd=time_mjd,
        date_obs=date_obs,
        polarizations=tuple(str(p) for p in dataset["polarization"].values),
        beam_rad=beam,
        beam_problem=problem,
        grid=spatial_grid(header),
        celestial_wcs=celestial_wcs_text(header),
    )


def load_subbands(step: ReadableTimeStep) -> LoadedTimeStep:
    """Load every subband of a time step (see :func:`load_subband`)."""
    return LoadedTimeStep(key=step.key, subbands=tuple(load_subband(f) for f in step.files))
