"""Assertions shared by the store tests: two stores hold the same data and coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

COMPARED = ("SKY", "BEAM_FIT_PARAMS_SKY", "time", "time_key", "source_files", "software_version", "wcs_header")


def assert_same_store(got: Path, want: Path) -> None:
    """Every data variable and coordinate of ``got`` equals ``want``'s, value for value (NaN equals NaN)."""
    a, b = xr.open_zarr(got), xr.open_zarr(want)
    assert a.sizes == b.sizes, (dict(a.sizes), dict(b.sizes))
    for name in (*COMPARED, *b.coords):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def assert_time_steps_match(got: Path | xr.Dataset, want: Path) -> None:
    """Every time step ``got`` holds is in ``want``, with the same pixels, time and ledger."""
    a = got if isinstance(got, xr.Dataset) else xr.open_zarr(got)
    b = xr.open_zarr(want)
    keys = list(b["time_key"].values)
    assert list(a["time_key"].values) == sorted(a["time_key"].values), "time keys out of order"
    for index, key in enumerate(a["time_key"].values):
        other = keys.index(key)
        for name in COMPARED:
            np.testing.assert_array_equal(
                a[name].isel(time=index).values, b[name].isel(time=other).values, err_msg=f"{name} of {key}"
            )
