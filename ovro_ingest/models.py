"""Small, immutable records that travel between the pipeline steps.

Every step of the pipeline takes and returns one of these records. They hold
paths, fingerprints and header facts, never pixels, so that they stay a few KiB
and can be persisted as Prefect results, hashed into cache keys and shown in
logs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Record(BaseModel):
    """Base of every pipeline record: immutable and JSON-serialisable."""

    model_config = ConfigDict(frozen=True)

    def fingerprint(self) -> str:
        """Return a stable hash of the record's content (for cache keys and ledgers)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


class SourceFile(Record):
    """One FITS file as found on disk, identified by its path and fingerprint.

    The fingerprint (size and modification time in ns) changes whenever the file
    is rewritten, which is what invalidates cached work derived from it.
    """

    path: str
    subband: str
    """The subband label taken from the file name, e.g. ``"41MHz"``."""
    size: int
    mtime_ns: int

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], subband: str) -> SourceFile:
        """Stat ``path`` and build its record."""
        resolved = Path(path).resolve()
        stat = resolved.stat()
        return cls(path=str(resolved), subband=subband, size=stat.st_size, mtime_ns=stat.st_mtime_ns)

    @property
    def name(self) -> str:
        """The file name without its directory."""
        return Path(self.path).name

    @property
    def subband_mhz(self) -> int:
        """The subband label as an integer number of MHz (for sorting)."""
        return int(self.subband.removesuffix("MHz"))


class ExcludedFile(Record):
    """A file left out of its time step, and why (it is recorded in the store's ledger)."""

    source: SourceFile
    reason: str
    kind: str = "entry"
    """The kind of problem, a key of :data:`LEFT_OUT`: ``entry``, ``beam`` or ``wcs``."""


class TimeStepFiles(Record):
    """The FITS files of one time step, one per subband (output of ``discover``)."""

    key: str
    """Time stamp from the file names, ``YYYYMMDD_HHMMSS``; it groups, it is not the time."""
    files: tuple[SourceFile, ...]
    left_out: tuple[ExcludedFile, ...] = ()
    """Entries named like this time step's subbands that cannot be opened (recorded in its ledger)."""


class Manifest(Record):
    """Where ``discover`` wrote the time steps of an input directory (output of ``discover``).

    The time steps themselves (a few KiB each, MBs for a night) stay in the manifest
    file, so that the persisted result of ``discover`` stays small.
    """

    path: str
    listing_fingerprint: str
    """Fingerprint of the input listing the manifest was made from."""
    n_time_steps: int
    n_files: int
    n_skipped: int
    skipped_examples: tuple[str, ...] = ()
    """The first few skipped file names (files following neither naming convention)."""


class Notice(Record):
    """Something stored that a person should know of (said once per run and kind, see :mod:`ovro_ingest.notices`)."""

    kind: str
    """A key of :data:`ovro_ingest.notices.KINDS`: ``lossy``, ``float64``, ``checksum``, ``spread``, ``offset``."""
    subject: str
    """The file (a path) or time step (a key) it is about."""
    detail: str = ""


class Compression(Record):
    """How a source file was compressed (see :mod:`ovro_ingest.compressed`)."""

    whole_file: str | None = None
    """The compression of the whole file: ``gzip``, ``bzip2``, ``xz`` or ``zip``; None when there is none."""
    tiles: str | None = None
    """The tile compression of the image (its ``ZCMPTYPE``: ``RICE_1``, ``GZIP_2``, ...); None when it is not tiled."""
    lossy: str | None = None
    """Why the decoded pixels differ from those written (quantized floating-point pixels); None: lossless."""

    def describe(self) -> str:
        """In words, e.g. ``decompressed the file (gzip)`` or ``decompressed its RICE_1 image tiles (lossy: ...)``."""
        parts = [f"the file ({self.whole_file})"] if self.whole_file else []
        parts += [f"its {self.tiles} image tiles"] if self.tiles else []
        return "decompressed " + " and ".join(parts) + (f" (lossy: {self.lossy})" if self.lossy else "")


class ReadableFile(Record):
    """A source file and the path the loader should open (output of ``fix_headers``).

    ``path`` is the source itself when it opens unchanged, or a fixed copy;
    ``corrections`` lists, in words, what the fixed copy changed.
    """

    source: SourceFile
    path: str
    corrections: tuple[str, ...] = ()
    compression: Compression | None = None
    """How the source was compressed (it is then always read through a fixed copy); None: not compressed."""
    notices: tuple[Notice, ...] = ()
    """What a person should know of this file (lossy compression, float64 pixels, a kept checksum failure)."""


class ReadableTimeStep(Record):
    """The readable files of one time step."""

    key: str
    files: tuple[ReadableFile, ...]
    left_out: tuple[ExcludedFile, ...] = ()
    """What discovery left out (:attr:`TimeStepFiles.left_out`)."""


class SpatialGrid(Record):
    """The celestial pixel grid of an image: what must match between images and the store.

    The full linear transform of the sky axes is kept, as wcslib reads it from any of
    the header's standard forms (CDELT, CD, PC + CDELT, CROTA2): ``pixel_matrix_deg``
    is astropy's ``pixel_scale_matrix`` of the celestial WCS (degrees per pixel; row:
    RA/Dec intermediate world axis, column: pixel axis). ``frame`` is the celestial
    reference frame (``"ICRS"``, ``"FK5 J2000.0"``, ``"FK4 B1950.0"``); None only in
    stores written before frames were recorded.
    """

    shape_lm: tuple[int, int]
    projection: str
    crpix: tuple[float, float]
    pixel_matrix_deg: tuple[tuple[float, float], tuple[float, float]]
    frame: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_cdelt(cls, data: Any) -> Any:
        """Stores written before the full transform was recorded hold ``cdelt_deg`` (a diagonal matrix)."""
        if isinstance(data, dict) and "cdelt_deg" in data and "pixel_matrix_deg" not in data:
            data = dict(data)
            cdelt_l, cdelt_m = data.pop("cdelt_deg")
            data["pixel_matrix_deg"] = ((cdelt_l, 0.0), (0.0, cdelt_m))
        return data

    @property
    def cdelt_deg(self) -> tuple[float, float]:
        """The signed pixel scale along each pixel axis (l, m), in degrees.

        The length of the matrix column (the scale whatever the rotation), with the sign
        of its diagonal element, as CDELT is given; exactly CDELT when there is no rotation.
        """
        return (_axis_scale(self.pixel_matrix_deg, 0), _axis_scale(self.pixel_matrix_deg, 1))

    @property
    def rotated(self) -> bool:
        """True when the matrix has off-diagonal terms (CROTA2, a PC or CD matrix with rotation or skew)."""
        return self.pixel_matrix_deg[0][1] != 0.0 or self.pixel_matrix_deg[1][0] != 0.0

    def matches(self, other: SpatialGrid) -> bool:
        """True when both grids put every pixel at the same place on the sky.

        The matrices may differ by rounding (a CD matrix against the same WCS as PC +
        CDELT): ``GRID_TOLERANCE`` relative to the pixel scale, and as much of a pixel
        at the reference pixel. A frame of None (an old store) is not compared.
        """
        if (self.shape_lm, self.projection) != (other.shape_lm, other.projection):
            return False
        if self.frame is not None and other.frame is not None and self.frame != other.frame:
            return False
        scale = max(abs(v) for row in self.pixel_matrix_deg for v in row)
        close = all(
            abs(a - b) <= GRID_TOLERANCE * scale
            for row_a, row_b in zip(self.pixel_matrix_deg, other.pixel_matrix_deg, strict=True)
            for a, b in zip(row_a, row_b, strict=True)
        )
        return close and all(abs(a - b) <= GRID_TOLERANCE for a, b in zip(self.crpix, other.crpix, strict=True))

    def describe(self) -> str:
        """One-line human description, used in error messages."""
        if self.rotated:
            (a, b), (c, d) = self.pixel_matrix_deg
            scale = f"matrix=[[{a:.6g},{b:.6g}],[{c:.6g},{d:.6g}]] deg/pixel"
        else:
            scale = f"cdelt={self.cdelt_deg[0]:.6g},{self.cdelt_deg[1]:.6g} deg"
        frame = f" {self.frame}" if self.frame else ""
        return (
            f"{self.shape_lm[0]}x{self.shape_lm[1]} {self.projection}{frame} {scale} "
            f"crpix={self.crpix[0]:g},{self.crpix[1]:g}"
        )


GRID_TOLERANCE = 1e-9
"""Relative difference below which two pixel matrices (or CRPIX, in pixels) are the same grid.

Rounding of an exact rewrite (CD into PC + CDELT) is ~1e-16; the smallest real change
of scale or reference pixel is many orders of magnitude larger.
"""


def _axis_scale(matrix: tuple[tuple[float, float], tuple[float, float]], axis: int) -> float:
    """Signed length of column ``axis`` of a 2x2 pixel matrix (its diagonal element when the column has no other)."""
    diagonal, other = matrix[axis][axis], matrix[1 - axis][axis]
    if other == 0.0:
        return diagonal
    return math.copysign(math.hypot(diagonal, other), diagonal if diagonal != 0.0 else 1.0)


class SubbandImage(Record):
    """A lazily openable subband image with the header facts the store needs.

    This is the "lazy reference" that ``load_subbands`` returns: enough to check
    and place the image, and to open its pixels when they are written.
    """

    file: ReadableFile
    frequency_hz: float
    time_mjd: float
    """The observation time, MJD (UTC), from the most precise of the header's time keywords."""
    date_obs: str
    """The header value the time was read from: DATE-OBS as written, or e.g. ``MJD-OBS=60454.208441``."""
    polarizations: tuple[str, ...]
    beam_rad: tuple[float, float, float] | None
    """Synthesized beam (major, minor, position angle) in radians, if the header has a valid one."""
    beam_problem: str | None = None
    """Why the header's beam is unusable (missing, non-finite, non-positive), or None."""
    grid: SpatialGrid
    celestial_wcs: str
    """The celestial part of the FITS header (a WCS header as text)."""
    spectral_frame: str = ""
    """The frame of the frequency (FITS SPECSYS after wcslib's fixes, e.g. ``TOPOCENT``); empty when unstated."""


class LoadedTimeStep(Record):
    """The subband images of one time step (output of ``load_subbands``)."""

    key: str
    subbands: tuple[SubbandImage, ...]
    left_out: tuple[ExcludedFile, ...] = ()
    """What discovery left out (:attr:`TimeStepFiles.left_out`)."""


class TimeStepPlan(Record):
    """One time step ready to write: subbands in ascending frequency (output of ``combine``)."""

    key: str
    time_mjd: float
    subbands: tuple[SubbandImage, ...]
    excluded: tuple[ExcludedFile, ...] = ()
    date_obs_spread_s: float = 0.0
    """Largest difference between the DATE-OBS of the subbands, in seconds."""
    notices: tuple[Notice, ...] = ()
    """What a person should know of the stored files and the time step (:mod:`ovro_ingest.notices`)."""

    @property
    def frequencies_hz(self) -> list[float]:
        """The frequency of each subband, ascending."""
        return [s.frequency_hz for s in self.subbands]

    @property
    def grid(self) -> SpatialGrid:
        """The spatial grid shared by all subbands."""
        return self.subbands[0].grid

    @property
    def source_files(self) -> list[SourceFile]:
        """The source files of this time step, in frequency order."""
        return [s.file.source for s in self.subbands]


class StagedTimeStep(Record):
    """A time step written into the store's staging area, ready to commit (output of ``write_time_step``).

    ``path`` is None when the store already held the time step (``status``
    ``"already stored"``); then nothing was written.
    """

    key: str
    time_mjd: float
    store_id: str
    status: str
    """``"staged"``, ``"already stored"``, or ``"staged to replace"`` (``replace`` asked for)."""
    path: str | None = None
    index: int | None = None
    """Position of the stored time step, when already stored."""
    n_subbands: int
    bytes_written: int = 0
    seconds: float = 0.0
    notices: tuple[Notice, ...] = ()
    """What a person should know of the staging (stored files that changed since, kept)."""


class AppendReceipt(Record):
    """What ``append_to_zarr`` did for one time step."""

    key: str
    time_mjd: float
    store_id: str
    index: int
    """Position of the time step on the store's time axis."""
    status: str
    """``"written"``, or ``"already stored"`` when the store held it before."""
    n_subbands: int
    bytes_written: int
    seconds: float
    notices: tuple[Notice, ...] = ()
    """The staging's notices (:attr:`StagedTimeStep.notices`)."""
