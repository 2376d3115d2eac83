"""ovro-ingest audit: headers only, nothing written; per time step what an ingest would meet; honest exit code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import xarray as xr
from astropy.io import fits

from ovro_ingest.audit import audit_directory
from tests.cli import ovro_ingest

COMMAND = [str(Path(sys.executable).parent / "ovro-ingest")]


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
    dangling = next(folder.glob("20240524_050049_46MHz*.fits"))  # its disk unmounted
    dangling.unlink()
    dangling.symlink_to(folder.parent / "unmounted" / dangling.name)
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
    assert steps["20240524_050049"].ok and steps["20240524_050049"].missing_subbands == ["46MHz"]
    assert any(note.startswith(f"{dangling.name}: a symbolic link to") for note in steps["20240524_050049"].notes)

    result = ovro_ingest("audit", str(folder))
    assert result.returncode == 1
    assert f"would fail 20240524_050019: {truncated}: truncated FITS file" in result.stdout
    assert "5 time steps: 4 would be stored, 1 would fail" in result.stdout
    left_out = [line for line in result.stdout.splitlines() if "cannot be opened and would be left out" in line]
    assert len(left_out) == 1 and left_out[0].startswith("1 entry") and dangling.name in left_out[0], result.stdout


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


def run_on_a_terminal(args: list[str], columns: int) -> str:
    """Run ``ovro-ingest *args`` on a pseudo-terminal ``columns`` wide; return its output without colours."""
    import fcntl
    import os
    import pty
    import re
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen([*COMMAND, *args], stdin=slave, stdout=slave, stderr=slave, env=environment)
    os.close(slave)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        process.wait(timeout=300)
    finally:
        process.kill()
        os.close(master)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))


def assert_keys_whole(output: str, keys: list[str]) -> None:
    assert "…" not in output, output
    for key in keys:
        assert re.search(rf"\b{key}\b", output), f"{key} not whole in:\n{output}"


def widest_line_but_the_paths(output: str, folder: Path) -> int:
    """The width of the widest line that does not name ``folder``: a path is printed whole, however long."""
    assert str(folder) in output, "the folder's path, whole"
    return max(len(line) for line in output.splitlines() if str(folder) not in line)


def test_audit_keeps_time_step_keys_whole_on_80_columns_piped_or_not(make_data):
    import os

    folder = make_data(time_steps=2, n_subbands=3, naming="current")
    next(folder.glob("46MHz-*-20240524_050009.fits")).unlink()  # a missing subband: a wider table
    keys = ["20240524_050009", "20240524_050019"]
    for environment in ({**os.environ, "COLUMNS": "80"}, {k: v for k, v in os.environ.items() if k != "COLUMNS"}):
        result = subprocess.run([*COMMAND, "audit", str(folder)], capture_output=True, text=True, env=environment)
        assert result.returncode == 0, result.stderr
        assert_keys_whole(result.stdout, keys)
        assert "would be stored" in result.stdout and "46MHz" in result.stdout
        if "COLUMNS" in environment:
            assert widest_line_but_the_paths(result.stdout, folder) <= 80, "the width asked for"
        else:
            rows = [line for line in result.stdout.splitlines() if line.startswith("│ 2024")]
            assert len(rows) == 2 and all("│ ok " in row for row in rows), "one line per time step, verdict included"
    on_terminal = run_on_a_terminal(["audit", str(folder)], columns=80)
    assert_keys_whole(on_terminal, keys)
    assert widest_line_but_the_paths(on_terminal, folder) <= 80, "fits the terminal"


def test_audit_json_gives_every_time_step_whole(make_data):
    import json

    folder = make_data(time_steps=3, n_subbands=3)
    next(folder.glob("20240524_050009_46MHz*.fits")).unlink()
    truncated = next(folder.glob("20240524_050019_41MHz*.fits"))
    truncated.write_bytes(truncated.read_bytes()[:3000])
    result = ovro_ingest("audit", str(folder), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["input_dir"] == str(folder) and report["ok"] is False
    assert [s["key"] for s in report["time_steps"]] == ["20240524_050009", "20240524_050019", "20240524_050029"]
    first, second, _ = report["time_steps"]
    assert first["verdict"] == "ok" and first["missing_subbands"] == ["46MHz"] and len(first["files"]) == 2
    assert second["verdict"] == "would fail" and f"{truncated}: not a readable FITS file" in second["problems"][0]
    assert first["files"][0]["frequency_hz"] == fits.getval(first["files"][0]["path"], "CRVAL3")
    assert report["counts"] == {"ok": 2, "would fail": 1}
    assert len(report["channels_hz"]) == 3 and report["skipped"] == []


def test_audit_with_a_store_says_what_it_already_holds(make_data, tmp_path):
    from ovro_ingest.pipeline import ingest_directory
    from ovro_ingest.store import StoreSettings

    folder, store = make_data(time_steps=3, n_subbands=2, size=32), tmp_path / "s.zarr"
    ingest_directory(folder, store, settings=StoreSettings(chunk_lm=32))
    result = ovro_ingest("audit", str(folder), "--store", str(store))
    assert result.returncode == 0 and "3 time steps: 0 append, 0 backfill, 3 already stored" in result.stdout
    wrong = ovro_ingest("audit", str(store))
    assert wrong.returncode == 2 and f"--store {store}" in wrong.stderr, "a store where the images were meant"
