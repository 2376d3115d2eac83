"""Step 3, load subbands: read the facts the store needs from each subband's header, once.

Pixels stay on disk: ``load_subband`` returns a :class:`SubbandImage`, a small
reference with the header facts (frequency, DATE-OBS, beam, pixel grid, celestial
WCS), read with astropy (the tests check them against xradio's ``open_image``).
The staging step reads the pixels once, straight from the memory-mapped file
(:func:`sky_planes`, :func:`sky_block`); :func:`open_subband` (xradio, lazy) gives
the store its coordinates and attributes when it is created.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import xarray as xr
from astropy.io import fits
from astropy.time import Time

from ovro_ingest.discover import stamp_time
from ovro_ingest.errors import file_boundary
from ovro_ingest.facts import HEADER_FIX, beams_table, header_facts
from ovro_ingest.models import LoadedTimeStep, ReadableFile, ReadableTimeStep, SubbandImage

logger = logging.getLogger(__name__)


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def xradio_open_image() -> Callable[..., xr.Dataset]:
    """xradio's ``open_image``, imported on first use, hushing warnings it logs on the root logger about optional MSv2 backends.

    A filter on the root logger, not its level: another thread may be setting up logging meanwhile.
    """
    root, hush = logging.getLogger(), _ErrorsOnly()
    root.addFilter(hush)
    try:
        from xradio.image import open_image
    finally:
        root.removeFilter(hush)
    return cast("Callable[..., xr.Dataset]", open_image)  # xradio publishes no types


def import_xradio_in_background() -> None:
    """Start importing xradio's reader in a background thread (a new store's template needs it).

    Its import takes 1-2 s of CPU (xradio builds its schema classes); started early, it runs
    on the other core while the run starts, instead of delaying the store's creation and so
    the first write. A later import waits for this one.

    The thread imports xradio and dask only, never astropy: this module has imported every
    astropy module xradio uses (a test checks it) in the caller's thread. astropy's
    configuration items find their module through ``inspect.getmodule``, which is not
    thread-safe, so astropy imported by two threads at once can fail ("Cannot automatically
    determine get_config module"; seen in CI).
    """
    threading.Thread(target=xradio_open_image, name="import-xradio", daemon=True).start()


def open_subband(path: str) -> xr.Dataset:
    """Open a FITS image lazily with xradio (no sky coordinates, no mask scan)."""
    return xradio_open_image()(path, do_sky_coords=False, compute_mask=False)


@contextmanager
def sky_planes(path: str) -> Iterator[npt.NDArray[Any]]:
    """The pixels of a readable image, memory-mapped, as FITS orders them: (polarization, m, l), big-endian.

    ``SKY[p, l, m] == planes[p, m, l]``, exactly what xradio's ``open_image`` gives
    for these files (the tests compare both); :func:`sky_block` cuts one store chunk.
    FITS axes 3 and 4 are FREQ and STOKES in either order (CASA's ``exportfits`` puts
    STOKES third with ``stokeslast=False``); the one channel is taken either way.
    """
    with fits.open(path, memmap=True) as hdulist:
        data = hdulist[0].data
        stokes_third = str(hdulist[0].header.get("CTYPE3", "")).strip().upper() == "STOKES"
        yield data[0] if stokes_third else data[:, 0]


def sky_block(plane: npt.NDArray[Any], l_range: slice, m_range: slice) -> npt.NDArray[np.float32]:
    """``SKY[l_range, m_range]`` of one FITS plane (m, l), as a new C-ordered float32 array."""
    part = plane[m_range, l_range]
    block = np.empty(part.shape[::-1], dtype=np.float32)
    transpose_into(part, block)
    return block


def fits_order_block(plane: npt.NDArray[Any], l_range: slice, m_range: slice) -> npt.NDArray[np.float32]:
    """``SKY[l_range, m_range]`` of one FITS plane (m, l): a little-endian float32 copy in FITS order, seen as (l, m).

    For a store whose ``SKY`` chunks keep FITS order (:data:`ovro_ingest.store.FITS_ORDER`):
    zarr's transpose codec turns this view back into the contiguous rows it was cut as,
    so no pixel is transposed (:func:`sky_block` transposes, for a store without the codec).
    """
    return plane[m_range, l_range].astype("<f4").T


TRANSPOSE_TILE = 256
"""Side of the tiles :func:`transpose_into` copies: 256² float32 tiles (256 KiB) stay in the CPU cache."""


def transpose_into(plane: npt.NDArray[Any], out: npt.NDArray[Any]) -> None:
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


def name_time_offset_s(key: str, time_mjd: float) -> float:
    """DATE-OBS minus the file name's time stamp (``YYYYMMDD_HHMMSS``, a leap second's included), in seconds."""
    named = stamp_time(key)
    if named is None:
        raise ValueError(f"not a file-name time stamp: {key}")
    offset_s: float = (Time(time_mjd, format="mjd", scale="utc") - named).to_value("s")  # astropy publishes no types
    return offset_s


def load_subband(readable: ReadableFile) -> SubbandImage:
    """Describe one subband from its header, read once (pixels stay on disk).

    Parameters
    ----------
    readable : ReadableFile
        A file that ``fix_headers`` made readable.

    Returns
    -------
    SubbandImage
        Frequency, time, beam, grid, frames and celestial WCS of the image (see
        :func:`ovro_ingest.facts.header_facts` for where each comes from).

    Raises
    ------
    BadInputFile
        When its header lacks what the store needs, or a library cannot read it (one line).
    """
    path, source = readable.path, readable.source.path
    started = time.perf_counter()
    with file_boundary(source, "reading its header", HEADER_FIX), fits.open(path, memmap=True) as hdulist:
        facts = header_facts(hdulist[0].header, source, beams_table(hdulist))
    logger.debug(
        "%s: header read in %.3f s (%.4f MHz, %s, beam %s)",
        readable.source.name,
        time.perf_counter() - started,
        facts.frequency_hz / 1e6,
        facts.date_obs,
        facts.beam_problem or "valid",
    )
    return SubbandImage(
        file=readable,
        frequency_hz=facts.frequency_hz,
        time_mjd=facts.time_mjd,
        date_obs=facts.date_obs,
        polarizations=facts.polarizations,
        beam_rad=facts.beam_rad,
        beam_problem=facts.beam_problem,
        grid=facts.grid,
        celestial_wcs=facts.celestial_wcs,
        spectral_frame=facts.spectral_frame,
    )


def load_subbands(step: ReadableTimeStep) -> LoadedTimeStep:
    """Load every subband of a time step (see :func:`load_subband`)."""
    return LoadedTimeStep(key=step.key, subbands=tuple(load_subband(f) for f in step.files), left_out=step.left_out)
