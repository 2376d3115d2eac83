"""Every reader opens the store: xarray, xradio (with its schema check), and ovro-lwa-portal 0.1.0 for format 2."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS

from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings

PORTAL_CHECK = """
import json, sys
import ovro_lwa_portal
ds = ovro_lwa_portal.open_dataset(sys.argv[1])
accessor = ds.radport
ra, dec = accessor.pixel_to_coords(10, 20)
print(json.dumps({"has_wcs": bool(accessor.has_wcs), "ra": float(ra), "dec": float(dec), "sizes": dict(ds.sizes)}))
"""


PORTAL_DYNAMIC_SPECTRUM = """
import sys
import numpy as np
import ovro_lwa_portal
for path, out in zip(sys.argv[1::2], sys.argv[2::2]):
    ds = ovro_lwa_portal.open_dataset(path)
    fixed = ds.radport.dynamic_spectrum(l=0.1, m=-0.05)
    ra, dec = ds.radport.pixel_to_coords(40, 25)
    tracked = ds.radport.dynamic_spectrum(ra=float(ra), dec=float(dec))
    np.savez(out, fixed=fixed.values, tracked=tracked.values)
"""


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[int, Path]:
    from ovro_ingest.synth import generate

    root = tmp_path_factory.mktemp("readers")
    generate(root / "night", time_steps=2, n_subbands=3, size=64)
    built = {}
    for zarr_format in (2, 3):
        built[zarr_format] = root / f"v{zarr_format}.zarr"
        ingest_directory(
            root / "night", built[zarr_format], settings=StoreSettings(chunk_lm=32, zarr_format=zarr_format)
        )
    return built


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_xradio_opens_the_store_and_its_schema_check_finds_no_issue(stores, zarr_format):
    from xradio.image import check_image, open_image

    opened = open_image(str(stores[zarr_format]))
    assert opened.sizes["time"] == 2 and opened.sizes["frequency"] == 3
    for dataset in (opened, xr.open_zarr(stores[zarr_format])):
        issues = check_image(dataset)
        assert not issues, str(issues)


def test_ovro_lwa_portal_reads_a_format_2_store_and_finds_its_wcs(stores):
    python = os.environ.get("OVRO_INGEST_PORTAL_PYTHON")
    if not python:
        pytest.skip("optional: run scripts/make-portal-venv and set OVRO_INGEST_PORTAL_PYTHON=.venv-portal/bin/python")
    result = subprocess.run([python, "-c", PORTAL_CHECK, str(stores[2])], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["has_wcs"] and seen["sizes"]["time"] == 2
    header = fits.Header.fromstring(xr.open_zarr(stores[2]).attrs["fits_wcs_header"], sep="\n")
    ra, dec = WCS(header).all_pix2world(10, 20, 0)
    assert abs((seen["ra"] - float(ra) + 180) % 360 - 180) < 1e-6 and abs(seen["dec"] - float(dec)) < 1e-6


def test_ovro_lwa_portal_dynamic_spectrum_of_the_timeseries_store_equals_the_archives(stores, tmp_path):
    import numpy as np

    from ovro_ingest.timeseries import TimeSeriesLayout, update_timeseries

    python = os.environ.get("OVRO_INGEST_PORTAL_PYTHON")
    if not python:
        pytest.skip("optional: run scripts/make-portal-venv and set OVRO_INGEST_PORTAL_PYTHON=.venv-portal/bin/python")
    timeseries = tmp_path / "v2.timeseries.zarr"  # format 2, like its archive: plain chunks, no shards
    update_timeseries(stores[2], timeseries, layout=TimeSeriesLayout(time_block=2, plain_chunk_lm=32))
    outputs = [str(tmp_path / "archive.npz"), str(tmp_path / "timeseries.npz")]
    command = [python, "-c", PORTAL_DYNAMIC_SPECTRUM, str(stores[2]), outputs[0], str(timeseries), outputs[1]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    archive, series = np.load(outputs[0]), np.load(outputs[1])
    for name in ("fixed", "tracked"):
        assert archive[name].shape == (2, 3) and np.isfinite(archive[name]).any(), name
        np.testing.assert_array_equal(series[name], archive[name], err_msg=name)
