"""ovro-ingest audit: headers only, nothing written; per time step what an ingest would meet; honest exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import xarray as xr
from astropy.io import fits

from ovro_ingest.audit import audit_directory

COMMAND = [str(Path(sys.executable).parent / "ovro-ingest")]


def ovro_ingest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=300)


def test_audit_of_a_clean_night_says_every_time_step_would_be_stored(make_data):
    folder = make_data(time_steps=3, n_subbands=3)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    result = ovro_ingest("audit", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 time steps: 3 would be stored, 0 would fail" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before, "the audit writes nothing"


def test_audit_reports_each_kind_of_trouble_per_time_step(make_data):
    folder = make_data(time_steps=5, n_subbands=3)
    next(folder.glob("20240524_050009_46MHz*.fits")).unlink()  # missing subband
    truncated = next(folder.glob("20240524_050019_41MHz*.fits"))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with fits.open(next(folder.glob("20240524_050029_50MHz*.fits")), mode="update") as hdul:
        hdul[0].header["BMAJ"] = 0.0  # invalid beam
    with fits.open(next(folder.glob("20240524_050039_41MHz*.fits")), mode="update") as hdul:
        hdul[0].header["CRVAL3"] += 3_000.0  # jitter
        hdul[0].header["DATE-OBS"] = "2024-05-24T05:00:44.3"  # 5 s later than its subbands
    report = audit_directory(folder)
    steps = {step.key: step for step in report.time_steps}
    assert steps["20240524_050009"].missing_subbands == ["46MHz"] and steps["20240524_050009"].ok
    assert not steps["20240524_050019"].ok and "truncated" in steps["20240524_050019"].problems[0]
    assert steps["20240524_050029"].ok and any("BMAJ=0.0" in note for note in steps["20240524_050029"].notes)
    assert abs(steps["20240524_050039"].date_obs_spread_s - 5.0) < 1e-3
    assert report.max_jitter_hz == 3_000.0 and len(report.channels_hz) == 3
    assert abs(steps["20240524_050049"].name_offset_s - 0.3) < 1e-3

    result = ovro_ingest("audit", str(folder))
    assert result.returncode == 1
    assert f"would fail 20240524_050019: {truncated}: truncated FITS file" in result.stdout
    assert "5 time steps: 4 would be stored, 1 would fail" in result.stdout


def test_audit_finds_files_needing_a_fixed_copy_and_a_second_pixel_grid(make_data):
    from tests.fits_cases import scaled_integer_image

    folder = make_data(time_steps=2, n_subbands=2, size=64)
    scaled_integer_image(folder / "20240524_050019_41MHz_averaged_20000_iterations-I-image.fits", size=32)
    steps = {step.key: step for step in audit_directory(folder).time_steps}
    later = steps["20240524_050019"]
    assert any("applied BSCALE=0.25" in note for note in later.notes)
    assert any("pixel grid 32x32" in problem for problem in later.problems)


def test_audit_of_a_missing_folder_exits_2(tmp_path):
    result = ovro_ingest("audit", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_audit_reads_the_frequency_as_the_ingest_does_units_included(make_data, tmp_path):
    from ovro_ingest.pipeline import ingest_directory
    from ovro_ingest.store import StoreSettings

    folder = make_data(time_steps=1, n_subbands=2, size=32)
    with fits.open(next(folder.glob("*_41MHz*.fits")), mode="update") as hdul:
        hdul[0].header["CRVAL3"] /= 1e6
        hdul[0].header["CDELT3"] /= 1e6
        hdul[0].header["CUNIT3"] = "MHz"
    audited = sorted(f.frequency_hz for f in audit_directory(folder).time_steps[0].files)
    ingest_directory(folder, tmp_path / "s.zarr", settings=StoreSettings(chunk_lm=32))
    stored = list(xr.open_zarr(tmp_path / "s.zarr")["frequency"].values)
    assert audited == stored and 40e6 < audited[0] < 50e6, (audited, stored)
