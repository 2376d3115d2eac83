"""The sky frame of each time step, from the store alone: celestial WCS and RA/Dec of any pixel.

OVRO-LWA images are zenith-centred, so the sky frame changes with every time step
(CRVAL1 follows the sidereal time). The store keeps the exact celestial FITS WCS of
each time step in ``wcs_header``; these helpers turn it back into astropy objects and
coordinates, with a ``time`` dimension, never one frame for all times.

Pixel convention: ``SKY[..., i, j]`` is FITS pixel ``x = i, y = j`` (0-based) of the
source image (``SKY[t, f, p] == data[0, 0].T``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning


def celestial_wcs(dataset: xr.Dataset, time_index: int) -> WCS:
    """The celestial WCS of time step ``time_index`` of a store opened with xarray."""
    header = fits.Header.fromstring(str(dataset["wcs_header"].values[time_index]), sep="\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def pixel_to_radec(dataset: xr.Dataset, time_index: int, l_index, m_index) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec (degrees, in the header's frame) of pixels ``(l_index, m_index)`` at one time step."""
    ra, dec = celestial_wcs(dataset, time_index).all_pix2world(np.asarray(l_index), np.asarray(m_index), 0)
    return np.asarray(ra), np.asarray(dec)


def sky_coordinates(dataset: xr.Dataset, time_indices: Sequence[int] | None = None) -> xr.Dataset:
    """RA/Dec of every pixel, as ``right_ascension`` and ``declination`` with dims (time, l, m), in degrees.

    Parameters
    ----------
    dataset : xarray.Dataset
        A store opened with ``xarray.open_zarr``.
    time_indices : sequence of int, optional
        The time steps to compute (default: all; each costs two float64 planes).

    Returns
    -------
    xarray.Dataset
        Coordinates with the store's ``time``, ``l`` and ``m``; pixels beyond the
        horizon are NaN.
    """
    indices = list(range(dataset.sizes["time"])) if time_indices is None else list(time_indices)
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
