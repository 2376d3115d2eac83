"""The bad-input corpus: each kind of bad file has a defined outcome, and the rest of the night is stored.

One night holds one time step per case (2 subbands of 32², generated here; no binary
files in the repository). One ``ovro-ingest run`` ingests it; each case's outcome is
then read from the CLI's output and the store:

- stored correctly (scaled integers, all-NaN image, image in an extension, odd names),
- stored without a file, with a warning (missing or zero beam, a file that cannot be
  opened: no read permission, a dangling link),
- skipped before grouping, with a warning (unparseable names, junk),
- the time step fails with one line naming the file and the fix (everything else),

and no traceback reaches the terminal unless ``-v`` asks for it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.time import Time

from ovro_ingest.discover import discover_time_steps
from ovro_ingest.health import validate_store
from ovro_ingest.synth import generate
from tests.fits_cases import compress_whole_file, raw_card, scaled_integer_image, tile_compressed

CLI = str(Path(sys.executable).parent / "ovro-ingest")
DROP_FILE_PERMISSION_BYPASS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
"""Run a command as root without the capabilities that let root read any file (so chmod 000 bites)."""


def as_unprivileged_root() -> list[str] | None:
    """A command prefix under which file permissions apply to this user; None when there is none."""
    if os.geteuid() != 0:
        return []
    return DROP_FILE_PERMISSION_BYPASS if shutil.which("setpriv") else None


def run_cli(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """``ovro-ingest`` in a subprocess (the session's Prefect server, one worker)."""
    return subprocess.run(
        [*(prefix or []), CLI, *args], capture_output=True, text=True, timeout=600, env=os.environ.copy()
    )


def rewrite(path: str, change) -> None:
    """Rewrite a FITS file (same name) as ``change(hdulist)`` returns it, or as it changed it in place."""
    with fits.open(path) as hdulist:
        hdulist = fits.HDUList([hdu.copy() for hdu in hdulist])
    hdulist = change(hdulist) or hdulist
    hdulist.writeto(path, overwrite=True, output_verify="silentfix")


def set_keyword(name: str, value):
    def change(hdulist):
        if value is None:
            del hdulist[0].header[name]
        else:
            hdulist[0].header[name] = value

    return change


def make_2d_without_frequency(hdulist):
    header = hdulist[0].header
    flat = fits.PrimaryHDU(data=hdulist[0].data[0, 0])
    for key in ("CTYPE1", "CRPIX1", "CRVAL1", "CDELT1", "CTYPE2", "CRPIX2", "CRVAL2", "CDELT2", "DATE-OBS"):
        flat.header[key] = header[key]
    flat.header.update({k: header[k] for k in ("BMAJ", "BMIN", "BPA")})
    return fits.HDUList([flat])


def move_to_extension(hdulist):
    return fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data=hdulist[0].data, header=hdulist[0].header)])


def reshape(hdulist):
    hdulist[0].data = np.ones((1, 1, 48, 48), dtype=np.float32)


def as_cd_matrix(hdulist):
    header = hdulist[0].header
    header["CD1_1"], header["CD2_2"] = header.pop("CDELT1"), header.pop("CDELT2")


def aips_date(hdulist):
    header = hdulist[0].header
    header["MJD-OBS"] = Time(header["DATE-OBS"], scale="utc").mjd
    header["DATE-OBS"] = header["DATE-OBS"][:10]


def flip_one_pixel(path: Path) -> None:
    with fits.open(path) as hdulist:
        offset = hdulist.fileinfo(0)["datLoc"] + 4 * 100
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def odd_name(path: Path) -> Path:
    """``path`` renamed with blanks and accents, still in the legacy naming convention."""
    return path.with_name(path.name.replace("_iterations", " iterations é ü"))


CASES = {
    # index of the time step: (case, expected outcome)
    0: ("a good time step", "stored"),
    1: ("truncated FITS", "failed"),
    2: ("zero-byte file", "failed"),
    3: ("not FITS, named .fits", "failed"),
    4: ("integer data with BSCALE/BZERO", "stored"),
    5: ("all-NaN image", "stored"),
    6: ("two files for one subband", "failed"),
    7: ("one subband of another shape", "failed"),
    8: ("no BMAJ", "stored without it"),
    9: ("BMAJ = 0", "stored without it"),
    10: ("GLON/GLAT axes", "failed"),
    11: ("2-D image, no frequency", "failed"),
    12: ("image in an extension, empty primary HDU", "stored"),
    13: ("permission denied", "stored without it"),
    14: ("non-ASCII and blanks in the name", "stored"),
    15: ("integer data and a card astropy cannot write (CRDER1 = nan)", "stored"),
    16: ("a zero pixel scale (CDELT1 = 0)", "failed"),
    17: ("a pixel changed after DATASUM was written", "failed"),
    18: ("the pixel scale as a CD matrix", "stored"),
    19: ("DATE-OBS a date only, the time in MJD-OBS", "stored"),
    20: ("a dangling symbolic link named like a subband (its disk unmounted)", "stored without it"),
    21: ("names ending .FITS and .fit", "stored"),
    22: ("tile-compressed (lossy, named .fits) and gzip-compressed (named .fits.gz)", "stored"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[int, Path]]:
    """The night: one time step per case; returns the folder and the damaged file per case."""
    night = tmp_path_factory.mktemp("corpus") / "night"
    generate(night, time_steps=len(CASES), n_subbands=2, size=32)
    steps = discover_time_steps(night).time_steps
    first = {index: Path(step.files[0].path) for index, step in enumerate(steps)}
    first[1].write_bytes(first[1].read_bytes()[:-4000])  # the header is whole, the pixels are not
    first[2].write_bytes(b"")
    first[3].write_text("SIMPLE? no: this is a text file someone named .fits\n")
    date_obs = fits.getheader(first[4])["DATE-OBS"]
    scaled_integer_image(first[4])
    rewrite(str(first[4]), set_keyword("DATE-OBS", date_obs))
    rewrite(str(first[5]), lambda h: h[0].data.fill(np.nan))
    (night / "again").mkdir()
    shutil.copy(first[6], night / "again" / first[6].name)
    rewrite(str(first[7]), reshape)
    rewrite(str(first[8]), set_keyword("BMAJ", None))
    rewrite(str(first[9]), set_keyword("BMAJ", 0.0))
    rewrite(str(first[10]), lambda h: h[0].header.update(CTYPE1="GLON-SIN", CTYPE2="GLAT-SIN"))
    rewrite(str(first[11]), make_2d_without_frequency)
    rewrite(str(first[12]), move_to_extension)
    first[13].chmod(0)
    for source in steps[14].files:  # names still follow the convention, with blanks and accents inside
        Path(source.path).rename(odd_name(Path(source.path)))
    first[14] = odd_name(first[14])
    date_obs = fits.getheader(first[15])["DATE-OBS"]
    scaled_integer_image(first[15])
    fits.setval(first[15], "DATE-OBS", value=date_obs)  # in place: the scaled integers stay
    raw_card(first[15], "OBSERVER", "CRDER1  =                  nan")
    rewrite(str(first[16]), set_keyword("CDELT1", 0.0))
    with fits.open(first[17]) as hdulist:
        hdulist.writeto(first[17], overwrite=True, checksum=True)
    flip_one_pixel(first[17])
    rewrite(str(first[18]), as_cd_matrix)
    rewrite(str(first[19]), aips_date)
    first[20].unlink()
    first[20].symlink_to(night.parent / "unmounted-disk" / first[20].name)
    for source, ending in zip(steps[21].files, (".FITS", ".fit"), strict=True):
        Path(source.path).rename(Path(source.path).with_suffix(ending))
    first[21] = first[21].with_suffix(".FITS")
    rewrite(str(first[22]), tile_compressed(1, compression_type="RICE_1"))  # fpack's default: quantized
    compress_whole_file(Path(steps[22].files[1].path), "gzip", Path(steps[22].files[1].path).name + ".gz")
    # files that are not images of this night
    (night / "notes.fits").write_bytes(first[0].read_bytes())  # no DATE-OBS, and a name that says no time either
    rewrite(str(night / "notes.fits"), set_keyword("DATE-OBS", None))
    junk = night / "logs"
    junk.mkdir()
    for i in range(3000):
        (junk / f"wsclean-{i:04d}.log").write_text("junk")
    return night, first


@pytest.fixture(scope="module")
def ingested(corpus, prefect_server, tmp_path_factory):
    """One CLI run over the corpus; returns (completed process, store)."""
    night, _ = corpus
    store = tmp_path_factory.mktemp("store") / "s.zarr"
    prefix = as_unprivileged_root()
    if prefix is None:
        (corpus[1][13]).chmod(0o644)  # root without setpriv: permissions cannot be enforced
    result = run_cli("run", str(night), str(store), "--workers", "1", "--chunk-lm", "32", prefix=prefix)
    return result, store, prefix is not None


def failure_lines(result: subprocess.CompletedProcess) -> dict[str, str]:
    """Time step key -> its one-line failure message, from the CLI's summary."""
    lines = [line for line in result.stdout.splitlines() if line.startswith("failed ")]
    return {line.split()[1].rstrip(":"): line for line in lines}


def test_each_bad_file_fails_only_its_time_step_with_one_line_naming_the_file_and_the_fix(corpus, ingested):
    night, first = corpus
    result, _store, _ = ingested
    keys = [s.key for s in discover_time_steps(night).time_steps]
    failures = failure_lines(result)
    expected_failures = {k for i, k in enumerate(keys) if CASES[i][1] == "failed"}
    assert set(failures) == expected_failures, result.stdout
    assert result.returncode == 1
    fixes = {
        1: ("truncated", "re-copy or regenerate"),
        2: ("empty file", "re-copy or regenerate"),
        3: ("not a readable FITS file", "re-copy or regenerate"),
        6: ("two files for one frequency", "remove one of them"),
        7: ("pixel grid", first[7].name),
        10: ("not RA/Dec", "reproject it to RA/Dec"),
        11: ("2-D image with no frequency", "add a FREQ axis"),
        16: ("CDELT1=0 is a zero pixel scale", "write the pixel size in degrees into CDELT1"),
        17: ("corrupted: its pixels do not match its DATASUM", "--keep-bad-checksums"),
    }
    for index, words in fixes.items():
        if keys[index] in failures:
            line = failures[keys[index]]
            assert first[index].name in line, line
            assert all(w in line for w in words), line
    assert "Traceback" not in result.stdout + result.stderr
    assert " | INFO " not in result.stdout + result.stderr, "without a terminal: the summary, not Prefect's lines"


def test_the_other_time_steps_are_stored_exactly(corpus, ingested):
    night, first = corpus
    _result, store, _ = ingested
    keys = [s.key for s in discover_time_steps(night).time_steps]
    ds = xr.open_zarr(store)
    stored = {k: i for i, k in enumerate(ds["time_key"].values)}
    expected = [k for i, k in enumerate(keys) if CASES[i][1] in ("stored", "stored without it")]
    assert list(stored) == expected
    assert validate_store(store).ok
    with fits.open(first[4]) as hdulist:  # scaled integers: the physical values
        physical = hdulist[0].data[0, 0].astype(np.float32)
    np.testing.assert_array_equal(ds["SKY"].values[stored[keys[4]], 0, 0], physical.T)
    assert np.isnan(ds["SKY"].values[stored[keys[5]], 0, 0]).all(), "an all-NaN image is stored as it is"
    with fits.open(first[12]) as hdulist:
        np.testing.assert_array_equal(ds["SKY"].values[stored[keys[12]], 0, 0], hdulist[1].data[0, 0].T)
    assert np.isfinite(ds["SKY"].values[stored[keys[14]], 0, 0]).any(), "odd characters in names are fine"
    with fits.open(first[15]) as hdulist:  # the card that is not valid FITS is in the copy as astropy fixes it
        np.testing.assert_array_equal(
            ds["SKY"].values[stored[keys[15]], 0, 0], hdulist[0].data[0, 0].astype(np.float32).T
        )
    ledger = json.loads(str(ds["source_files"].values[stored[keys[15]]]))
    assert any(c.startswith("fixed the card CRDER1 as astropy does") for c in ledger[0]["corrections"])
    np.testing.assert_array_equal(ds["SKY"].values[stored[keys[18]], 0, 0], fits.getdata(first[18])[0, 0].T)
    stored_time = Time(ds["time"].values[stored[keys[19]]], format="mjd", scale="utc").isot
    assert stored_time == Time(fits.getheader(first[19])["MJD-OBS"], format="mjd", scale="utc").isot


def test_a_file_with_a_bad_beam_or_an_entry_that_cannot_be_opened_is_left_out_with_a_warning_and_a_ledger_entry(
    corpus, ingested
):
    night, first = corpus
    result, store, permissions_enforced = ingested
    output = result.stderr + result.stdout
    ds = xr.open_zarr(store)
    reasons = {8: "no BMAJ", 9: "BMAJ=0.0", 20: "a symbolic link to", 13: "permission denied"}
    for index, reason in reasons.items():
        if index == 13 and not permissions_enforced:
            continue
        position = list(ds["time_key"].values).index(discover_time_steps(night).time_steps[index].key)
        ledger = json.loads(str(ds["source_files"].values[position]))
        left_out = [entry for entry in ledger if "excluded" in entry]
        assert [Path(e["path"]).name for e in left_out] == [first[index].name]
        assert reason in left_out[0]["excluded"], left_out
        assert np.isnan(ds["SKY"].values[position, 0, 0]).all() and np.isfinite(ds["SKY"].values[position, 1, 0]).any()
    warned = [line for line in output.splitlines() if "named like subband images that cannot be opened" in line]
    assert len(warned) == 1 and first[20].name in warned[0] and "unmounted disk" in warned[0], output
    beams = [line for line in output.splitlines() if "with an invalid beam" in line and "WARNING" in line]
    assert len(beams) == 1 and "left out 2 file(s)" in beams[0], "one line per run for two time steps"
    assert first[8].name in beams[0] and first[9].name in beams[0] and "--keep-bad-beams" in beams[0]
    assert "Traceback" not in output


def test_image_names_ending_in_any_case_of_fits_fit_or_fts_are_ingested(corpus, ingested):
    night, first = corpus
    _result, store, _ = ingested
    step = discover_time_steps(night).time_steps[21]
    assert sorted(Path(f.path).suffix for f in step.files) == [".FITS", ".fit"] and not step.left_out
    ds = xr.open_zarr(store)
    position = list(ds["time_key"].values).index(step.key)
    ledger = json.loads(str(ds["source_files"].values[position]))
    assert {Path(e["path"]).name for e in ledger} == {Path(f.path).name for f in step.files}
    np.testing.assert_array_equal(ds["SKY"].values[position, 0, 0], fits.getdata(first[21])[0, 0].T)


def test_names_and_files_that_are_not_images_of_the_night_are_skipped_with_a_warning(corpus, ingested):
    result, _, _ = ingested
    output = result.stdout + result.stderr
    assert "skipped 1 FITS file(s) whose names follow neither OVRO-LWA convention: notes.fits" in output
    assert len([line for line in output.splitlines() if "follow neither OVRO-LWA convention" in line]) == 1, "once"
    assert "wsclean-" not in output, "non-FITS files are not even listed"


def test_compressed_images_are_stored_as_astropy_decodes_them_and_a_lossy_one_is_said_once(corpus, ingested):
    night, first = corpus
    result, store, _ = ingested
    key = discover_time_steps(night).time_steps[22].key
    lossy = [line for line in (result.stdout + result.stderr).splitlines() if "lossy compression" in line]
    assert len(lossy) == 1 and "1 file(s)" in lossy[0] and first[22].name in lossy[0], lossy
    ds = xr.open_zarr(store)
    position = list(ds["time_key"].values).index(key)
    with fits.open(first[22]) as hdulist:
        np.testing.assert_array_equal(ds["SKY"].values[position, 0, 0], hdulist[1].data[0, 0].T)
    ledger = json.loads(str(ds["source_files"].values[position]))
    assert ledger[0]["compression"]["lossy"] and ledger[1]["compression"]["whole_file"] == "gzip"
    assert np.isfinite(ds["SKY"].values[position, 1, 0]).any()


def test_a_failure_shows_its_traceback_only_with_verbose(corpus, prefect_server, tmp_path):
    night, _first = corpus
    single = tmp_path / "night"
    single.mkdir()
    for path in discover_time_steps(night).time_steps[1].files:  # the truncated file and its partner
        shutil.copy(path.path, single / Path(path.path).name)
    quiet = run_cli("run", str(single), str(tmp_path / "a.zarr"), "--workers", "1")
    verbose = run_cli("run", str(single), str(tmp_path / "b.zarr"), "--workers", "1", "-v")
    assert quiet.returncode == verbose.returncode == 1
    assert "Traceback" not in quiet.stdout + quiet.stderr
    assert "Traceback" in verbose.stdout + verbose.stderr


@pytest.mark.usefixtures("prefect_server")
def test_a_store_path_that_is_a_file_or_not_writable_stops_the_run_in_one_line(tmp_path, make_data):
    night = make_data(time_steps=1, n_subbands=2, size=32)
    a_file = tmp_path / "s.zarr"
    a_file.write_text("not a store")
    result = run_cli("run", str(night), str(a_file), "--workers", "1", "--chunk-lm", "32")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{a_file}: exists and is not an ovro-ingest store" in result.stderr
    assert a_file.read_text() == "not a store"
    assert "Traceback" not in result.stdout + result.stderr

    prefix = as_unprivileged_root()
    if prefix is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be enforced")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    result = run_cli("run", str(night), str(read_only / "s.zarr"), "--workers", "1", prefix=prefix)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(read_only) in result.stderr and "writable" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert list(read_only.iterdir()) == []
