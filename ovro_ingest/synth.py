"""Synthetic OVRO-LWA-like all-sky images, for demos, tests and benchmarks.

The images imitate what WSClean writes for OVRO-LWA (see the real header in
``shared/reference/ovro-lwa-real-header.txt``): a SIN projection centred on the
zenith (so CRVAL1 follows the sidereal time), DATE-OBS, a FREQ axis whose centre
differs from the subband label in the name, a STOKES axis, a synthesized beam that
grows toward low frequency, NaN beyond the horizon, noise, point sources of the
beam's size that drift across the sky, and diffuse emission laid out in Galactic
coordinates (astropy's ICRS to Galactic rotation; no IERS data needed): a thin and a
thick disc, brighter toward the Galactic centre, where the Galactic plane is at that
time seen from OVRO (at the demo's times, low in the east, the North Galactic Pole near
the zenith).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits

OVRO_LATITUDE_DEG = 37.2398
OVRO_LONGITUDE_DEG = -118.2817
SUBBAND_WIDTH_HZ = 4_593_750.0
"""Spacing of the OVRO-LWA subbands (10 subbands from 41 MHz)."""
FIRST_SUBBAND_START_HZ = 41_000_000.0
BAND_CENTRE_OFFSET_HZ = 2_245_849.609375
"""Header centre minus name label of the "41MHz" subband in real data."""
CADENCE_S = 10.0
DEFAULT_START = datetime(2024, 5, 24, 5, 0, 9, 300000, tzinfo=UTC)


@dataclass(frozen=True)
class Subband:
    """A subband: the label used in file names and the header centre frequency."""

    label: str
    centre_hz: float


def subbands(count: int = 10) -> list[Subband]:
    """The ``count`` subbands between 41 and 84 MHz (10 to 16).

    With 10 subbands these are the real OVRO-LWA ones (41, 46, ... 82 MHz, header
    centres 43.25 ... 84.59 MHz); more subbands divide the same band more finely.
    """
    if not 1 <= count <= 16:
        raise ValueError(f"subband count must be between 1 and 16, got {count}")
    width = SUBBAND_WIDTH_HZ * 10 / max(10, count)
    result = []
    for index in range(count):
        start = FIRST_SUBBAND_START_HZ + index * width
        centre = start + BAND_CENTRE_OFFSET_HZ * width / SUBBAND_WIDTH_HZ
        result.append(Subband(label=f"{round(start / 1e6)}MHz", centre_hz=centre))
    return result


def file_name(key: str, label: str, naming: str) -> str:
    """The file name of one image in the ``legacy`` or ``current`` convention."""
    if naming == "legacy":
        return f"{key}_{label}_averaged_20000_iterations-I-image.fits"
    if naming == "current":
        return f"{label}-I-Deep-Taper-Robust-0-image-{key}.fits"
    raise ValueError(f"naming must be 'legacy' or 'current', got {naming!r}")


def zenith_ra_deg(when: datetime) -> float:
    """Right ascension of the OVRO-LWA zenith (local mean sidereal time), in (-180, 180]."""
    julian_date = when.timestamp() / 86400.0 + 2440587.5
    gmst = 280.46061837 + 360.98564736629 * (julian_date - 2451545.0)
    lst = (gmst + OVRO_LONGITUDE_DEG) % 360.0
    return lst - 360.0 if lst > 180.0 else lst


BEAM_PA_DEG = 131.97
"""The synthesized beam's position angle (the real 69 MHz image's)."""


def beam_deg(subband: Subband, beam_scale: float = 1.0) -> tuple[float, float]:
    """The synthesized beam's major and minor FWHM in degrees (the real image's, scaled as 1/frequency)."""
    return 0.3397 * 68.5e6 / subband.centre_hz * beam_scale, 0.2537 * 68.5e6 / subband.centre_hz * beam_scale


def header_for(size: int, subband: Subband, when: datetime, beam_scale: float = 1.0) -> fits.Header:
    """A WSClean-like primary header for one image (modelled on a real OVRO-LWA header)."""
    cdelt = 128.0 / size  # the real 512-pixel image has 0.25 deg pixels
    beam_major, beam_minor = beam_deg(subband, beam_scale)
    cards = [
        ("BSCALE", 1.0),
        ("BZERO", 0.0),
        ("BUNIT", "JY/BEAM", "Units are in Jansky per beam"),
        ("BMAJ", beam_major),
        ("BMIN", beam_minor),
        ("BPA", BEAM_PA_DEG),
        ("EQUINOX", 2000.0, "J2000"),
        ("LONPOLE", 180.0),
        ("BTYPE", "Intensity"),
        ("TELESCOP", "OVRO-LWA"),
        ("OBSERVER", "lwams.py"),
        ("OBJECT", "zenith"),
        ("ORIGIN", "WSClean", "W-stacking imager written by Andre Offringa"),
        ("CTYPE1", "RA---SIN", "Right ascension angle cosine"),
        ("CRPIX1", size / 2 + 1.0),
        ("CRVAL1", zenith_ra_deg(when)),
        ("CDELT1", -cdelt),
        ("CUNIT1", "deg"),
        ("CTYPE2", "DEC--SIN", "Declination angle cosine"),
        ("CRPIX2", size / 2 + 1.0),
        ("CRVAL2", OVRO_LATITUDE_DEG),
        ("CDELT2", cdelt),
        ("CUNIT2", "deg"),
        ("CTYPE3", "FREQ", "Central frequency"),
        ("CRPIX3", 1.0),
        ("CRVAL3", subband.centre_hz),
        ("CDELT3", SUBBAND_WIDTH_HZ),
        ("CUNIT3", "Hz"),
        ("CTYPE4", "STOKES"),
        ("CRPIX4", 1.0),
        ("CRVAL4", 1.0),
        ("CDELT4", 1.0),
        ("CUNIT4", ""),
        ("SPECSYS", "TOPOCENT"),
        ("DATE-OBS", when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 100000}"),
    ]
    header = fits.Header()
    for card in cards:
        header.append(card)
    header.add_history("synthetic OVRO-LWA-like image written by ovro_ingest.synth")
    return header


class SkyModel:
    """A fixed sky (point sources and diffuse Galactic emission) seen from OVRO at any time."""

    def __init__(self, size: int, seed: int, n_sources: int = 60) -> None:
        rng = np.random.default_rng(seed)
        self.size = size
        self.seed = seed
        # source positions on the celestial sphere, fluxes at 60 MHz, spectral indices
        self.ra = rng.uniform(0, 2 * math.pi, n_sources)
        self.dec = np.arcsin(rng.uniform(-0.3, 1.0, n_sources))
        self.flux = 10 ** rng.uniform(0.5, 3.0, n_sources)
        self.alpha = rng.normal(-0.7, 0.15, n_sources)
        coords = (np.arange(size) - size / 2) * math.radians(128.0 / size)
        # FITS x (RA axis) runs east to west: l (direction cosine toward the east) = -x * |cdelt|
        self.l_axis = -coords
        self.m_axis = coords
        self._diffuse: tuple[datetime, npt.NDArray[np.float32]] | None = None

    def image(self, when: datetime, subband: Subband, index: int) -> npt.NDArray[np.float32]:
        """The (m, l) pixel array, FITS order (rows = DEC axis), float32."""
        size = self.size
        ghz = subband.centre_hz / 60e6
        ll = self.l_axis[np.newaxis, :].astype(np.float32)
        mm = self.m_axis[:, np.newaxis].astype(np.float32)
        rng = np.random.default_rng([self.seed, index, int(subband.centre_hz)])
        image = self.diffuse(when) * np.float32(200.0 * ghz**-2.5)
        image += rng.standard_normal((size, size), dtype=np.float32) * np.float32(2.0 * ghz**-1.0)
        self._add_sources(image, when, subband)
        image[ll * ll + mm * mm > 1.0] = np.nan
        return image

    def diffuse(self, when: datetime) -> npt.NDArray[np.float32]:
        """Relative diffuse brightness at each pixel at ``when`` (made once per time step, for all its subbands).

        Smooth on the scale of degrees, so it is computed on a grid of at most 512² and
        repeated to the image's pixels.
        """
        if self._diffuse is not None and self._diffuse[0] == when:
            return self._diffuse[1]
        step = max(1, self.size // 512)
        picked = np.minimum(np.arange(-(-self.size // step)) * step + step // 2, self.size - 1)
        l_dir, m_dir = np.meshgrid(self.l_axis[picked], self.m_axis[picked])
        icrs = pixel_directions(l_dir, m_dir, math.radians(zenith_ra_deg(when)), math.radians(OVRO_LATITUDE_DEG))
        x, y, z = np.tensordot(icrs_to_galactic(), icrs, axes=1)
        coarse = galactic_emission(np.arctan2(y, x), np.arcsin(np.clip(z, -1.0, 1.0))).astype(np.float32)
        full = np.repeat(np.repeat(coarse, step, axis=0), step, axis=1)[: self.size, : self.size]
        self._diffuse = (when, np.ascontiguousarray(full))
        return self._diffuse[1]

    def _add_sources(self, image: np.ndarray, when: datetime, subband: Subband) -> None:
        """Add each source above the horizon as a Gaussian of the beam's size (peak = flux density, Jy/beam)."""
        lst = math.radians(zenith_ra_deg(when))
        lat = math.radians(OVRO_LATITUDE_DEG)
        hour_angle = lst - self.ra
        # SIN projection about the zenith
        l_src = -np.cos(self.dec) * np.sin(hour_angle)
        m_src = np.sin(self.dec) * math.cos(lat) - np.cos(self.dec) * math.sin(lat) * np.cos(hour_angle)
        above = (np.sin(self.dec) * math.sin(lat) + np.cos(self.dec) * math.cos(lat) * np.cos(hour_angle)) > 0
        pixel = math.radians(128.0 / self.size)
        cols, rows = -l_src / pixel + self.size / 2, m_src / pixel + self.size / 2
        flux = self.flux * (subband.centre_hz / 60e6) ** self.alpha
        major, minor = (math.radians(fwhm) / pixel / FWHM_PER_SIGMA for fwhm in beam_deg(subband))
        reach = math.ceil(3 * major) + 1
        inside = above & (cols >= 0) & (cols < self.size) & (rows >= 0) & (rows < self.size)
        for row, col, peak in zip(rows[inside], cols[inside], flux[inside], strict=True):
            r0, c0 = max(0, int(row) - reach), max(0, int(col) - reach)
            r = np.arange(r0, min(self.size, int(row) + reach + 1))[:, np.newaxis]
            c = np.arange(c0, min(self.size, int(col) + reach + 1))[np.newaxis, :]
            image[r0 : r0 + r.shape[0], c0 : c0 + c.shape[1]] += np.float32(peak) * beam_shape(
                r - row, col - c, major, minor
            )


FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def beam_shape(north: np.ndarray, east: np.ndarray, major: float, minor: float) -> npt.NDArray[np.float32]:
    """The synthesized beam (peak 1) at pixel offsets ``north``, ``east``; ``major``/``minor`` sigmas in pixels."""
    pa = math.radians(BEAM_PA_DEG)  # from north through east
    along = north * math.cos(pa) + east * math.sin(pa)
    across = -north * math.sin(pa) + east * math.cos(pa)
    shape: npt.NDArray[np.float32] = np.exp(-0.5 * ((along / major) ** 2 + (across / minor) ** 2)).astype(np.float32)
    return shape


def pixel_directions(l_dir: np.ndarray, m_dir: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """ICRS unit vectors (3, ...) of the directions with SIN-projection direction cosines ``l`` (east), ``m`` (north).

    ``ra0``, ``dec0``: the projection centre in radians. Beyond the horizon (l² + m² > 1)
    the vector points at the horizon.
    """
    n = np.sqrt(np.clip(1.0 - l_dir * l_dir - m_dir * m_dir, 0.0, None))
    sin_ra, cos_ra, sin_dec, cos_dec = math.sin(ra0), math.cos(ra0), math.sin(dec0), math.cos(dec0)
    x = n * cos_dec * cos_ra - l_dir * sin_ra - m_dir * sin_dec * cos_ra
    y = n * cos_dec * sin_ra + l_dir * cos_ra - m_dir * sin_dec * sin_ra
    z = n * sin_dec + m_dir * cos_dec
    return np.stack([x, y, z])


@functools.cache
def icrs_to_galactic() -> np.ndarray:
    """The 3 x 3 rotation from ICRS to Galactic unit vectors, as astropy transforms them (no IERS data needed)."""
    from astropy.coordinates import SkyCoord
    from astropy.utils import iers

    with iers.conf.set_temp("auto_download", False):
        basis = SkyCoord(x=[1.0, 0, 0], y=[0, 1.0, 0], z=[0, 0, 1.0], representation_type="cartesian", frame="icrs")
        matrix: np.ndarray = basis.galactic.cartesian.xyz.value  # column j: the Galactic vector of ICRS axis j
    return matrix


def galactic_emission(longitude: np.ndarray, latitude: np.ndarray) -> np.ndarray:
    """Relative brightness of the diffuse low-frequency sky at Galactic ``longitude``, ``latitude`` (radians).

    A thin disc (half width ~3°) and a thick one (~15°), both brighter toward the
    Galactic centre (longitude 0), over a faint all-sky floor.
    """
    towards_centre = 0.25 + 0.75 * np.exp(-((longitude / 0.9) ** 2))
    disc = np.exp(-((latitude / 0.05) ** 2)) + 0.3 * np.exp(-((latitude / 0.25) ** 2))
    return 0.05 + towards_centre * disc


def write_image(path: Path, data: np.ndarray, header: fits.Header) -> None:
    """Write a 4-D (stokes, freq, m, l) float32 image with ``header``."""
    hdu = fits.PrimaryHDU(data=data[np.newaxis, np.newaxis, :, :], header=header)
    hdu.writeto(path, overwrite=True)


def generate(
    out_dir: str | os.PathLike[str],
    time_steps: int = 3,
    n_subbands: int = 10,
    size: int = 256,
    naming: str = "legacy",
    seed: int = 0,
    start: datetime = DEFAULT_START,
) -> list[Path]:
    """Write a synthetic OVRO-LWA data set.

    Parameters
    ----------
    out_dir : path
        Folder to write into (created if missing).
    time_steps : int
        Number of time steps, 10 s apart.
    n_subbands : int
        Number of subbands (10 to 16 in real data; 1 to 16 accepted).
    size : int
        Image side in pixels (real data: 2048 or 4096).
    naming : {"legacy", "current"}
        File name convention.
    seed : int
        Seed of the sky and the noise; the same arguments give identical files.
    start : datetime
        DATE-OBS of the first time step (UTC).

    Returns
    -------
    list of Path
        The files written, time-major, subbands ascending.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sky = SkyModel(size, seed)
    written = []
    for index in range(time_steps):
        when = start + timedelta(seconds=CADENCE_S * index)
        key = when.strftime("%Y%m%d_%H%M%S")
        for band in subbands(n_subbands):
            path = out / file_name(key, band.label, naming)
            write_image(path, sky.image(when, band, index), header_for(size, band, when))
            written.append(path)
    return written
