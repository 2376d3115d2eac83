"""Discovery: both file name conventions, grouping by time stamp, unrelated files skipped."""

import logging
import os
from pathlib import Path

import pytest

from ovro_ingest.discover import discover_time_steps, parse_file_name


@pytest.mark.parametrize(
    ("name", "key", "subband"),
    [
        ("20240524_050009_41MHz_averaged_20000_iterations-I-image.fits", "20240524_050009", "41MHz"),
        ("73MHz-I-Deep-Taper-Robust-0-image-20241221_102109_b.fits", "20241221_102109", "73MHz"),
        ("73MHz-I-Deep-Taper-Robust-0-image-20241221_102109.fits", "20241221_102109", "73MHz"),
    ],
)
def test_parse_file_name_reads_both_conventions(name, key, subband):
    parsed = parse_file_name(name)
    assert (parsed.key, parsed.subband) == (key, subband)


@pytest.mark.parametrize(
    "name",
    [
        "notes.fits",
        "20240524_050009_41MHz_averaged_20000_iterations-I-image_fixed.fits",
        "20240524_050009_41MHz_averaged_20000_iterations-I-psf.fits",
        "41MHz-I-Deep-image-2024052_102109.fits",
    ],
)
def test_parse_file_name_rejects_other_names(name):
    assert parse_file_name(name) is None


@pytest.mark.parametrize("naming", ["legacy", "current"])
def test_discover_groups_files_into_time_steps_in_order(make_data, naming):
    folder = make_data(time_steps=3, n_subbands=4, naming=naming)
    found = discover_time_steps(folder)
    assert [s.key for s in found.time_steps] == ["20240524_050009", "20240524_050019", "20240524_050029"]
    for step in found.time_steps:
        assert [f.subband for f in step.files] == ["41MHz", "46MHz", "50MHz", "55MHz"]
        assert all(f.size > 0 and f.mtime_ns > 0 for f in step.files)
    assert found.skipped == []


def test_discover_skips_and_lists_unrelated_fits_files(make_data, caplog):
    folder = make_data(time_steps=1, n_subbands=2)
    (folder / "calibrator.fits").write_bytes(b"x")
    (folder / "readme.txt").write_text("not a FITS file")
    with caplog.at_level(logging.WARNING):
        found = discover_time_steps(folder)
    assert [p.rsplit("/", 1)[-1] for p in found.skipped] == ["calibrator.fits"]
    assert "calibrator.fits" in caplog.text
    assert len(found.time_steps) == 1


def test_discover_searches_subfolders_and_excludes_the_fixed_dir(make_data):
    folder = make_data(time_steps=1, n_subbands=2)
    sub = folder / "46MHz"
    sub.mkdir()
    moved = next(folder.glob("*46MHz*.fits"))
    moved.rename(sub / moved.name)
    fixed = folder / "fixed"
    fixed.mkdir()
    (fixed / moved.name).write_bytes(b"a stale copy")
    found = discover_time_steps(folder, exclude=(fixed,))
    assert [f.path for f in found.time_steps[0].files][1] == str(sub / moved.name)
    assert len(found.time_steps[0].files) == 2


def test_discover_names_a_missing_input_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_time_steps(tmp_path / "nowhere")


def test_discover_result_stays_small_for_a_full_night_and_its_manifest_round_trips(tmp_path):
    from ovro_ingest.discover import Discovery, read_manifest, write_manifest
    from ovro_ingest.models import SourceFile, TimeStepFiles

    night = [
        TimeStepFiles(
            key=f"20240524_{step // 360:02d}{step // 6 % 60:02d}{step % 6 * 10:02d}",
            files=tuple(
                SourceFile(
                    path=f"/data/night/{step}_{sb}MHz-image.fits", subband=f"{sb}MHz", size=67_115_520, mtime_ns=1
                )
                for sb in range(41, 85, 3)
            ),
        )
        for step in range(4320)  # 12 hours at 10 s, 15 subbands
    ]
    manifest = write_manifest(Discovery(time_steps=night), tmp_path / "manifests", "f" * 32)
    assert len(manifest.model_dump_json()) < 2048, "the persisted result of discover stays small"
    assert manifest.n_time_steps == 4320 and manifest.n_files == 4320 * 15
    assert read_manifest(manifest) == night


@pytest.mark.parametrize("ending", [".FITS", ".fit", ".fts", ".Fits"])
def test_image_names_with_any_fits_ending_in_any_case_are_found(make_data, ending):
    folder = make_data(time_steps=1, n_subbands=2)
    renamed = next(folder.glob("*46MHz*.fits"))
    renamed.rename(renamed.with_suffix(ending))
    found = discover_time_steps(folder)
    assert [f.subband for f in found.time_steps[0].files] == ["41MHz", "46MHz"] and found.skipped == []
    assert found.time_steps[0].files[1].path.endswith(ending)


def test_an_entry_named_like_a_subband_that_cannot_be_opened_is_left_out_of_its_time_step_with_one_warning(
    make_data, caplog, tmp_path
):
    from ovro_ingest.discover import listing_fingerprint

    folder = make_data(time_steps=3, n_subbands=2)
    steps = discover_time_steps(folder).time_steps
    dangling, looping = Path(steps[0].files[1].path), Path(steps[1].files[0].path)
    dangling.unlink()
    dangling.symlink_to(tmp_path / "unmounted" / dangling.name)
    looping.unlink()
    looping.symlink_to(looping)
    fifo = folder / steps[2].files[0].path.rsplit("/", 1)[1].replace("_41MHz_", "_46MHz_")
    Path(steps[2].files[1].path).unlink()
    os.mkfifo(fifo)
    before = listing_fingerprint(folder)
    with caplog.at_level(logging.WARNING):
        found = discover_time_steps(folder)
    assert [[f.subband for f in step.files] for step in found.time_steps] == [["41MHz"], ["46MHz"], ["41MHz"]]
    left_out = {e.source.name: e.reason for e in found.left_out}
    assert (
        left_out[dangling.name].startswith(f"a symbolic link to {tmp_path / 'unmounted'}")
        and "unmounted" in left_out[dangling.name]
    )
    assert "a loop" in left_out[looping.name] and left_out[fifo.name] == "not a regular file"
    assert [len(step.left_out) for step in found.time_steps] == [1, 1, 1]
    assert found.time_steps[0].left_out[0].source.path == str(dangling), "the entry, not its missing target"
    warnings = [r for r in caplog.records if "cannot be opened" in r.getMessage()]
    assert len(warnings) == 1 and "left out 3 file(s)" in warnings[0].getMessage()
    assert dangling.name in warnings[0].getMessage() and "remount" in warnings[0].getMessage()
    (tmp_path / "unmounted").mkdir()
    os.link(steps[0].files[0].path, tmp_path / "unmounted" / dangling.name)  # its disk is back
    assert listing_fingerprint(folder) != before, "the target coming back changes the listing"
    assert [f.subband for f in discover_time_steps(folder).time_steps[0].files] == ["41MHz", "46MHz"]


def test_a_time_step_of_entries_that_cannot_be_opened_fails_alone_naming_them(make_data, tmp_path):
    from ovro_ingest.errors import TimeStepRejected
    from ovro_ingest.pipeline import plan_time_step

    folder = make_data(time_steps=2, n_subbands=2)
    for source in discover_time_steps(folder).time_steps[0].files:
        Path(source.path).unlink()
        Path(source.path).symlink_to(tmp_path / "gone" / Path(source.path).name)
    first, second = discover_time_steps(folder).time_steps
    with pytest.raises(TimeStepRejected, match=r"no subband images; left out .*: a symbolic link to"):
        plan_time_step(first)
    assert len(plan_time_step(second).subbands) == 2
