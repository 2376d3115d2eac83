"""The sky frame of each time step, from the store alone: celestial WCS and RA/Dec of any pixel.

OVRO-LWA images are zenith-centred, so the sky frame changes with every time step
(CRVAL1 follows the sidereal time). The store keeps the exact celestial FITS WCS of
each time step in ``wcs_header``; these helpers turn it back into astropy objects and
coordinates, with a ``time`` dimension, never one frame for all times.

Combine uses :func:`shared_wcs` to keep that one WCS true for every stored subband: it
compares where two celestial WCS place an image's pixels.

Pixel convention: ``SKY[..., i, j]`` is FITS pixel ``x = i, y = j`` (0-based) of the
source image (``SKY[t, f, p] == data[0, 0].T``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning


def checked_time_index(dataset: xr.Dataset, time_index: int) -> int:
    """``time_index`` as a non-negative index of the store's time axis (negative ones count from the end).

    Raises
    ------
    IndexError
        The store has no such time step; the message gives the valid range.
    """
    n_time = dataset.sizes["time"]
    if not isinstance(time_index, int | np.integer) or isinstance(time_index, bool):
        raise TypeError(f"time_index must be an integer, got {time_index!r}")
    if not -n_time <= time_index < n_time:
        raise IndexError(
            f"time_index {time_index} is out of range: the store has {n_time} time steps "
            f"(time_index 0 .. {n_time - 1}, or -{n_time} .. -1 from the end)"
            if n_time
            else f"time_index {time_index} is out of range: the store holds no time step yet"
        )
    return int(time_index) % n_time


def checked_pixel_index(dataset: xr.Dataset, dim: str, index: npt.ArrayLike) -> npt.NDArray[Any]:
    """``index`` (a pixel index along ``dim``, ``"l"`` or ``"m"``, or an array of them) as an array, checked.

    Fractional indices are positions between pixel centres; anything outside the
    image (below 0, beyond the last pixel, NaN) is an error, never a NaN coordinate
    that would look like a pixel beyond the horizon.

    Raises
    ------
    IndexError
        Some index lies outside the image; the message gives the valid range.
    """
    values = np.asarray(index)
    if values.dtype.kind not in "iuf":
        raise TypeError(f"{dim}_index must be numbers, got {values.dtype} ({index!r})")
    size = dataset.sizes[dim]
    outside = ~((values >= 0) & (values <= size - 1))  # NaN is outside too
    if np.any(outside):
        first = values[outside].flat[0]
        raise IndexError(
            f"{dim}_index {first} is outside the image: valid pixel indices along {dim} are 0 .. {size - 1} "
            f"(the store's images are {dataset.sizes['l']} x {dataset.sizes['m']} pixels)"
        )
    return values


def celestial_wcs(dataset: xr.Dataset, time_index: int) -> WCS:
    """The celestial WCS of time step ``time_index`` of a store opened with xarray.

    Raises
    ------
    IndexError
        The store has no such time step.
    """
    index = checked_time_index(dataset, time_index)
    return wcs_from_text(str(dataset["wcs_header"].values[index]))


def wcs_from_text(text: str) -> WCS:
    """A celestial WCS from a ``wcs_header`` entry (FITS cards, one per line)."""
    header = fits.Header.fromstring(text, sep="\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def pixel_to_radec(
    dataset: xr.Dataset, time_index: int, l_index: npt.ArrayLike, m_index: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """RA and Dec of pixels ``(l_index, m_index)`` of ``SKY`` at one time step, in degrees.

    Parameters
    ----------
    dataset : xarray.Dataset
        A store opened with ``xarray.open_zarr``.
    time_index : int
        The time step (``0 .. n_time - 1``; negative ones count from the end).
    l_index, m_index : int, float or array_like
        0-based pixel indices along ``l`` and ``m`` (``0 .. size - 1``; fractional
        ones lie between pixel centres), of one shape or broadcastable.

    Returns
    -------
    ra, dec : numpy.ndarray
        Degrees in the header's frame (ICRS/FK5 J2000 for OVRO-LWA), RA in
        [0, 360), Dec in [-90, 90], of the broadcast shape of the indices; NaN
        exactly for pixels beyond the horizon (which have no sky position).

    Raises
    ------
    IndexError
        ``time_index`` is not a time step of the store, or a pixel index lies
        outside the image; the message gives the valid range.
    """
    wcs = celestial_wcs(dataset, time_index)
    l_values, m_values = checked_pixel_index(dataset, "l", l_index), checked_pixel_index(dataset, "m", m_index)
    ra, dec = wcs.all_pix2world(l_values, m_values, 0)
    return wrapped_ra(np.asarray(ra)), np.asarray(dec)


def wrapped_ra(ra: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Right ascension in [0, 360) degrees (WCSLIB returns it near CRVAL1, which may be negative); NaN kept."""
    wrapped = np.mod(ra, 360.0)
    # the remainder of a tiny negative angle rounds to 360.0 itself
    return np.where(wrapped >= 360.0, 0.0, wrapped)


def sky_coordinates(dataset: xr.Dataset, time_indices: Sequence[int] | None = None) -> xr.Dataset:
    """RA/Dec of every pixel, as ``right_ascension`` and ``declination`` with dims (time, l, m), in degrees.

    Parameters
    ----------
    dataset : xarray.Dataset
        A store opened with ``xarray.open_zarr``.
    time_indices : sequence of int, optional
        The time steps to compute (default: all; each costs two float64 planes of
        ``l x m``). Negative ones count from the end.

    Returns
    -------
    xarray.Dataset
        Coordinates with the store's ``time``, ``l`` and ``m``; RA in [0, 360);
        pixels beyond the horizon are NaN.

    Raises
    ------
    IndexError
        A time index is not a time step of the store.
    """
    indices = (
        list(range(dataset.sizes["time"]))
        if time_indices is None
        else [checked_time_index(dataset, t) for t in time_indices]
    )
    l_index, m_index = np.meshgrid(np.arange(dataset.sizes["l"]), np.arange(dataset.sizes["m"]), indexing="ij")
    planes = [pixel_to_radec(dataset, t, l_index, m_index) for t in indices]
    dims = ("time", "l", "m")
    coords = {"time": dataset["time"].values[indices], "l": dataset["l"], "m": dataset["m"]}
    return xr.Dataset(
        {
            "right_ascension": (dims, np.stack([ra for ra, _ in planes]), {"units": "deg"}),
            "declination": (dims, np.stack([dec for _, dec in planes]), {"units": "deg"}),
        },
        coords=coords,
    )


PLACEMENT_TOLERANCE_PX = 0.1
"""Two celestial WCS place a pixel alike when they put it within this many pixels of each other."""
PLACEMENT_SAMPLES = 16
"""Pixels sampled along each image axis (edges included) to compare where two WCS place them."""


def placement_offset_px(text: str, other: str, shape_lm: tuple[int, int]) -> float:
    """How far apart (pixels) two celestial WCS place the same pixels of an image of ``shape_lm``, at most.

    A grid of :data:`PLACEMENT_SAMPLES`² pixels is taken to the sky by each WCS and back to
    pixels by the other; pixels a WCS puts off the sky (beyond the horizon of an all-sky
    SIN image) are not compared, but a pixel that one puts on the sky and the other does
    not is infinitely far. What moves a pixel (projection, CRVAL, CRPIX, the pixel matrix,
    LONPOLE/LATPOLE, PV parameters) shows, whichever keyword says it.

    Returns
    -------
    float
        The largest distance in pixels; 0.0 when the texts are the same.
    """
    if text == other:
        return 0.0
    a, b = wcs_from_text(text), wcs_from_text(other)
    x, y = (np.linspace(0, n - 1, PLACEMENT_SAMPLES) for n in shape_lm)
    xx, yy = (v.ravel() for v in np.meshgrid(x, y))
    largest = 0.0
    for first, second in ((a, b), (b, a)):
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # wcslib warns for pixels off the sky
            ra, dec = first.pixel_to_world_values(xx, yy)
            on_sky = np.isfinite(ra) & np.isfinite(dec)
            back_x, back_y = second.world_to_pixel_values(ra[on_sky], dec[on_sky])
        distance = np.hypot(back_x - xx[on_sky], back_y - yy[on_sky])
        if distance.size and not np.all(np.isfinite(distance)):
            return math.inf
        largest = max(largest, float(distance.max(initial=0.0)))
    return largest


def differing_cards(text: str, other: str) -> str:
    """The cards two celestial WCS texts give differently, as ``KEY a vs b`` (``KEY a vs absent`` for one side only)."""
    a, b = (fits.Header.fromstring(t, sep="\n") for t in (text, other))
    keys = [k for k in dict.fromkeys([*a.keys(), *b.keys()]) if k not in ("COMMENT", "HISTORY", "")]
    return ", ".join(f"{k} {a.get(k, 'absent')!r} vs {b.get(k, 'absent')!r}" for k in keys if a.get(k) != b.get(k))


def shared_wcs(texts: Sequence[str], shape_lm: tuple[int, int]) -> tuple[int, dict[int, str]]:
    """The celestial WCS most of a time step's subbands share, and why each other subband differs from it.

    Parameters
    ----------
    texts : sequence of str
        Each subband's celestial WCS (``SubbandImage.celestial_wcs``), in ascending frequency.
    shape_lm : (int, int)
        The subbands' image shape (pixels along l and m).

    Returns
    -------
    (int, dict of int to str)
        The index of a subband with the shared WCS (on a tie, the lowest frequency's), and
        index -> reason for every subband that places a sampled pixel more than
        :data:`PLACEMENT_TOLERANCE_PX` away from it. Identical texts are never compared.
    """
    distinct = list(dict.fromkeys(texts))
    if len(distinct) == 1:
        return 0, {}
    offsets = {(a, b): placement_offset_px(a, b, shape_lm) for a in distinct for b in distinct}
    agreeing = {a: sum(offsets[a, t] <= PLACEMENT_TOLERANCE_PX for t in texts) for a in distinct}
    reference = max(distinct, key=lambda a: agreeing[a])  # max keeps the first of equals: the lowest frequency's
    reasons = {
        index: (
            f"its celestial WCS places pixels {'on the sky where' if math.isinf(offset) else f'up to {offset:.3g} pixels from where'} "
            f"the time step's WCS {'puts none' if math.isinf(offset) else 'puts them'} ({differing_cards(text, reference)})"
        )
        for index, text in enumerate(texts)
        if (offset := offsets[text, reference]) > PLACEMENT_TOLERANCE_PX
    }
    return texts.index(reference), reasons
