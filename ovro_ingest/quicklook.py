"""A quick-look picture of a time step: one frequency of the all-sky image, with the horizon."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

SHOWN_PIXELS = 1024
"""Images larger than this along an axis are shown every n-th pixel (the figure is 640 pixels wide)."""


def quicklook_png(store: str | os.PathLike[str], path: str | os.PathLike[str], time_index: int = -1) -> Path:
    """Draw ``SKY`` of one time step (default: the newest) at its middle channel with data; return the PNG path.

    The image is shown as the FITS file shows it (north up, east left: ``SKY[..., l, m]``
    is FITS pixel ``x = l, y = m``), on (l, m) axes, with the horizon (l² + m² = 1).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and safe in worker processes
    from matplotlib import pyplot as plt

    dataset = xr.open_zarr(store)
    step = dataset.isel(time=time_index)
    have_data = [f for f in range(step.sizes["frequency"]) if np.isfinite(step["frequency_header"].values[f])]
    channel = have_data[len(have_data) // 2] if have_data else step.sizes["frequency"] // 2
    stride = max(1, max(step.sizes["l"], step.sizes["m"]) // SHOWN_PIXELS)  # a 640-pixel figure shows no more
    shown_part = step.isel(frequency=channel, polarization=0, l=slice(None, None, stride), m=slice(None, None, stride))
    plane = shown_part["SKY"].values.T  # rows = m, columns = l
    l_values, m_values = shown_part["l"].values, shown_part["m"].values
    finite = plane[np.isfinite(plane)]
    low, high = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)

    figure, axes = plt.subplots(figsize=(6.4, 6.0), dpi=100)
    shown = axes.imshow(
        plane,
        origin="lower",
        extent=(l_values[0], l_values[-1], m_values[0], m_values[-1]),
        vmin=low,
        vmax=high,
        cmap="inferno",
        interpolation="nearest",
    )
    angle = np.linspace(0, 2 * np.pi, 361)
    axes.plot(np.cos(angle), np.sin(angle), color="cyan", linewidth=0.8, label="horizon")
    axes.set_xlabel("l")
    axes.set_ylabel("m")
    axes.set_aspect("equal")
    key = str(step["time_key"].values)
    label = str(step["frequency_label"].values[channel])
    axes.set_title(f"{key}  {label} ({step['frequency'].values[channel] / 1e6:.3f} MHz)  Stokes I")
    units = step["SKY"].attrs.get("units")
    figure.colorbar(shown, ax=axes, label=units if isinstance(units, str) else "")
    axes.legend(loc="lower right", fontsize="small")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out
