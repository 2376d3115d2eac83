"""A quick-look picture of a night: one frequency of the all-sky image, on an RA/Dec grid, one picture per night.

The picture shows ``SKY`` of a time step at its middle channel with data, as the FITS
file shows it (north up, east left: ``SKY[..., l, m]`` is FITS pixel ``x = l, y = m``),
with an asinh stretch between percentiles (the Galactic plane and the point sources
both visible), the time step's own celestial WCS as an RA/Dec grid (astropy WCSAxes),
the horizon, and the UTC time and frequency in its title.

One picture per night is kept, ``<work_dir>/quicklook/<YYYY-MM-DD>.png``, named by
the UTC date of its time step (an OVRO-LWA night, 01-13 UTC, never spans two UTC
dates); each run redraws the nights it stored time steps of, from the newest time
step of that night. :func:`thumbnail_png` makes the small copy a Prefect artifact embeds.
"""

from __future__ import annotations

import bisect
import io
import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from astropy.time import Time

from ovro_ingest.handle import Store
from ovro_ingest.sky import wcs_from_text
from ovro_ingest.store import StoreState, array_of, read_array, read_state

if TYPE_CHECKING:
    from astropy.wcs import WCS
    from matplotlib.figure import Figure

QUICKLOOK_DIR = "quicklook"
"""In the runs' working folder (``<store>.work``): one picture per night."""
SHOWN_PIXELS = 640
"""Images larger than this along an axis are shown binned (the mean of n x n pixels): about the picture's
resolution (the sky is drawn about 600 pixels across), so that matplotlib need not resample it again."""
PERCENTILES = (5.0, 99.95)
"""The values mapped to the ends of the colour scale: only the brightest 0.05% saturate (a few point sources)."""
ASINH_SOFTENING = 0.05
"""asinh stretch parameter: linear below ~2% of the range (the noise), logarithmic above (ridge and sources)."""
FIGURE_INCHES, FIGURE_DPI = (7.8, 6.8), 100
THUMBNAIL_WIDTH = 300
"""Width in pixels of the artifact's copy (its PNG about 40 KB; see :func:`thumbnail_png`)."""
THUMBNAIL_COLOURS = 64
PNG_COMPRESSION = 1
"""zlib level of the full picture: level 1 encodes a noisy sky about 3x faster than matplotlib's 6, for ~10% more bytes."""


@dataclass(frozen=True)
class QuickLook:
    """A drawn quick-look picture."""

    path: Path
    """The full picture (PNG)."""
    night: str
    """UTC date of the time step, ``YYYY-MM-DD``."""
    time_key: str
    time_utc: str
    """DATE-OBS of the time step, ISO 8601, UTC (from the ``time`` coordinate)."""
    frequency_hz: float
    title: str


def night_of(time_mjd: float) -> str:
    """The UTC date (``YYYY-MM-DD``) of an MJD (UTC) time."""
    night: str = Time(time_mjd, format="mjd", scale="utc").strftime("%Y-%m-%d")  # astropy publishes no types
    return night


def picture_path(work_dir: str | os.PathLike[str], night: str) -> Path:
    """Where the quick look of ``night`` (``YYYY-MM-DD``) is kept: ``<work_dir>/quicklook/<night>.png``."""
    return Path(work_dir) / QUICKLOOK_DIR / f"{night}.png"


def forget_pictures(work_dir: str | os.PathLike[str]) -> None:
    """Remove every night's picture: a rebuilt store draws its own (a night it no longer holds keeps none)."""
    shutil.rmtree(Path(work_dir) / QUICKLOOK_DIR, ignore_errors=True)


def draw_nights(
    store: str | os.PathLike[str], work_dir: str | os.PathLike[str], keys: Iterable[str]
) -> list[QuickLook]:
    """Redraw the quick look of every night that has a time step among ``keys``, newest night last.

    Parameters
    ----------
    store : path
        The store.
    work_dir : path
        The store's work folder; pictures go to ``<work_dir>/quicklook/``.
    keys : iterable of str
        Time-step keys (e.g. those a run wrote); keys the store does not hold are ignored.

    Returns
    -------
    list of QuickLook
        One per night, each of the newest stored time step of that night.
    """
    newest = newest_of_nights(read_state(store), keys)
    return [quicklook(store, index, picture_path(work_dir, night)) for night, index in newest.items()]


def newest_of_nights(state: StoreState, keys: Iterable[str]) -> dict[str, int]:
    """Each night (UTC date, ``YYYY-MM-DD``) with a time step among ``keys`` -> the time index of its newest stored one.

    A UTC date is a whole MJD day and the time axis ascends, so a night's newest time
    step is the last one before the next day: found by bisection of ``time``, as the
    keys' indices are (:meth:`~ovro_ingest.store.StoreState.indices_of`), never by
    reading a year's 1.6 million times. Nights in time order.
    """
    days = sorted({math.floor(t) for t in state.values("time", sorted(state.indices_of(keys).values()))})
    times = state.sorted_column("time")
    return {night_of(day): bisect.bisect_left(times, day + 1) - 1 for day in days}


def quicklook(store: str | os.PathLike[str], time_index: int, path: str | os.PathLike[str]) -> QuickLook:
    """Draw time step ``time_index`` (negative: from the end) of ``store`` into the PNG ``path``.

    About 0.3 s for a 4096² image once matplotlib and astropy are imported (read,
    binned to 585², drawn at 820 x 740 pixels).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and safe in worker processes
    from matplotlib import pyplot as plt

    figure, look = quicklook_figure(store, time_index, path)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    figure.savefig(partial, format="png", pil_kwargs={"compress_level": PNG_COMPRESSION})
    plt.close(figure)
    os.replace(partial, out)  # a reader (the UI, a browser) never sees half a picture
    return look


@dataclass(frozen=True)
class ShownStep:
    """What the picture of one time step needs from the store (read with zarr: no xarray or dask overhead)."""

    plane: npt.NDArray[np.float32]
    """``SKY`` of the shown channel, (l, m) float32."""
    time_mjd: float
    time_key: str
    frequency_hz: float
    label: str
    wcs_text: str
    units: str


def read_shown_step(store: str | os.PathLike[str], time_index: int) -> ShownStep:
    """Read the middle channel with data of time step ``time_index`` and its facts, through the consolidated metadata."""
    group = Store.at(store).open_group()
    n_time = array_of(group, "time").shape[0]
    if not -n_time <= time_index < n_time:
        raise IndexError(f"time_index {time_index} is out of range: the store has {n_time} time steps")
    index = time_index % n_time
    channel = middle_channel_with_data(read_array(group, "frequency_header", index))
    units = array_of(group, "SKY").attrs.get("units")
    return ShownStep(
        plane=np.asarray(read_array(group, "SKY", (index, channel, 0)), dtype=np.float32),
        time_mjd=float(read_array(group, "time", index)),
        time_key=str(read_array(group, "time_key", index)),
        frequency_hz=float(read_array(group, "frequency", channel)),
        label=str(read_array(group, "frequency_label", channel)),
        wcs_text=str(read_array(group, "wcs_header", index)),
        units=units if isinstance(units, str) else "",
    )


def quicklook_figure(
    store: str | os.PathLike[str], time_index: int, path: str | os.PathLike[str]
) -> tuple[Figure, QuickLook]:
    """The quick-look figure of one time step and its description (see :func:`quicklook`); the caller closes it."""
    from astropy import units
    from astropy.visualization import AsinhStretch, AsymmetricPercentileInterval, ImageNormalize
    from astropy.visualization.wcsaxes.frame import EllipticalFrame, RectangularFrame
    from matplotlib import pyplot as plt

    step = read_shown_step(store, time_index)
    factor = max(1, math.ceil(max(step.plane.shape) / SHOWN_PIXELS))
    plane = binned(step.plane, factor).T  # rows = m (Dec axis), columns = l (RA axis): as the FITS file shows it
    wcs = wcs_from_text(step.wcs_text)
    if factor > 1:
        wcs = wcs.slice((slice(None, None, factor), slice(None, None, factor)))  # a bin of n pixels per pixel
    all_sky = shows_whole_horizon(plane.shape, wcs)
    if is_sin(wcs):
        plane = np.where(inside_horizon(plane.shape, wcs), plane, np.float32(np.nan))  # beyond it: no sky
    finite = plane[np.isfinite(plane)]
    norm = ImageNormalize(
        finite if finite.size else np.zeros(1),
        interval=AsymmetricPercentileInterval(*PERCENTILES),
        stretch=AsinhStretch(ASINH_SOFTENING),
    )
    time_utc = Time(step.time_mjd, format="mjd", scale="utc").isot[:21]
    title = f"{time_utc} UTC   {step.frequency_hz / 1e6:.3f} MHz ({step.label})   Stokes I"

    figure = plt.figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    figure.subplots_adjust(left=0.07, right=0.97, bottom=0.08, top=0.9)  # the sky fills the picture
    # an all-sky image is framed by its horizon, where the grid lines meet it their RA/Dec are written
    axes = figure.add_subplot(projection=wcs, frame_class=EllipticalFrame if all_sky else RectangularFrame)
    colormap = plt.get_cmap("inferno").with_extremes(bad="#202020")
    shown = axes.imshow(plane, origin="lower", norm=norm, cmap=colormap, interpolation="antialiased")
    if all_sky:
        (x0, x1), (y0, y1) = horizon_box(wcs)
        axes.set_xlim(x0, x1)
        axes.set_ylim(y0, y1)
    ra, dec = axes.coords[0], axes.coords[1]
    ra.set_format_unit(units.hourangle)
    ra.set_major_formatter("hh")
    dec.set_major_formatter("dd")
    ra.set_ticks(values=np.arange(0, 24, 4) * units.hourangle)  # not 24h as well as 0h where the meridian wraps
    dec.set_ticks(values=np.arange(-60, 90, 30) * units.deg)
    for coordinate in (ra, dec):
        if all_sky:  # labelled where the grid meets the horizon
            coordinate.set_ticks_position("c")
            coordinate.set_ticklabel_position("c")
        coordinate.set_axislabel("")
    axes.coords.grid(color="white", alpha=0.35, linestyle="solid", linewidth=0.6)
    axes.set_title(title, fontsize=10, pad=22)  # above the RA labels at the top of the horizon
    axes.text(0.0, -0.07, "grid: right ascension (h), declination (°)", transform=axes.transAxes, fontsize=8)
    figure.colorbar(shown, ax=axes, label=step.units, shrink=0.85)
    look = QuickLook(
        path=Path(path),
        night=night_of(step.time_mjd),
        time_key=step.time_key,
        time_utc=time_utc,
        frequency_hz=step.frequency_hz,
        title=title,
    )
    return figure, look


def middle_channel_with_data(frequency_header: npt.NDArray[np.float64]) -> int:
    """The middle one of the channels that hold an image (a finite header frequency) at a time step."""
    have_data = np.flatnonzero(np.isfinite(frequency_header))
    return int(have_data[len(have_data) // 2]) if have_data.size else len(frequency_header) // 2


def binned(plane: npt.NDArray[np.float32], factor: int) -> npt.NDArray[np.float32]:
    """``plane`` averaged over ``factor`` x ``factor`` blocks (edges that do not fill a block dropped).

    Averaging, not picking every n-th pixel: a point source of a few pixels is never
    skipped, and the grid's WCS, sliced with the same step, describes each block's centre.
    A block with a NaN (beyond the horizon) is NaN.
    """
    if factor == 1:
        return plane
    n_l, n_m = (size // factor * factor for size in plane.shape)
    blocks = plane[:n_l, :n_m].reshape(n_l // factor, factor, n_m // factor, factor)
    mean: npt.NDArray[np.float32] = blocks.mean(axis=(1, 3), dtype=np.float32)
    return mean


def horizon_box(wcs: WCS) -> tuple[tuple[float, float], tuple[float, float]]:
    """Pixel limits (x, y) of the horizon (l² + m² = 1) of a zenith-centred SIN image, just inside it.

    0.1% inside, so that every point of the frame has a sky position (at the horizon
    itself rounding may leave the sphere).
    """
    centre_x, centre_y = wcs.wcs.crpix - 1.0  # 0-based pixel of the zenith
    radius_x, radius_y = (0.999 / abs(math.radians(d)) for d in wcs.wcs.cdelt)
    return (centre_x - radius_x, centre_x + radius_x), (centre_y - radius_y, centre_y + radius_y)


def is_sin(wcs: WCS) -> bool:
    """True for the SIN projection (OVRO-LWA's), whose sky ends at l² + m² = 1 around the reference pixel."""
    return str(wcs.wcs.ctype[0]).endswith("-SIN")


def shows_whole_horizon(shape: tuple[int, int], wcs: WCS) -> bool:
    """True when a SIN image of ``shape`` (rows, columns) holds its whole horizon: an all-sky image."""
    if not is_sin(wcs):
        return False
    (x0, x1), (y0, y1) = horizon_box(wcs)
    return x0 >= -1.0 and y0 >= -1.0 and x1 <= shape[1] and y1 <= shape[0]  # a pixel of slack


def inside_horizon(shape: tuple[int, int], wcs: WCS) -> npt.NDArray[np.bool_]:
    """Boolean (rows, columns) mask of the pixels above the horizon of a zenith-centred SIN image."""
    (x0, x1), (y0, y1) = horizon_box(wcs)
    y, x = np.ogrid[: shape[0], : shape[1]]
    return ((x - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 + ((y - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 <= 1.0


def thumbnail_png(path: str | os.PathLike[str], width: int = THUMBNAIL_WIDTH) -> bytes:
    """A small PNG copy of the picture at ``path``, for a Prefect artifact (its base64 about 40-55 KB).

    Resampled to ``width`` pixels (Lanczos) and reduced to a palette of
    :data:`THUMBNAIL_COLOURS` colours, which a colour-mapped picture survives well;
    measured on synthetic and real 4096² and 512² images: 30-40 KB of PNG.
    """
    from PIL import Image

    with Image.open(path) as picture:
        height = round(picture.height * width / picture.width)
        small = picture.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.quantize(colors=THUMBNAIL_COLOURS, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def quicklook_png(store: str | os.PathLike[str], path: str | os.PathLike[str], time_index: int = -1) -> Path:
    """Draw time step ``time_index`` (default: the newest) of ``store`` into ``path``; return the path."""
    return quicklook(store, time_index, path).path
