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
