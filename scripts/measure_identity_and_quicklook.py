"""Measure what knowing a file by its content costs against staging it, and the quick look's time and sizes.

Usage: ``.venv/bin/python scripts/measure_identity_and_quicklook.py [WORK_DIR]`` (about 1 minute; writes
two 4096² float32 files, 128 MB, and a store into WORK_DIR, default a temporary folder, removed afterwards).

Per 4096² file, page cache warm, medians of 5: staging it (``stage_pixels``, what an ingest
does with its pixels), astropy's DATASUM, zlib.crc32, sha256, a plain read, a hash of
the header block, and :func:`ovro_ingest.identity.same_pixels` (the comparison with the
store that a file whose mtime alone changed costs). Then the quick look of the newest
time step (first and later calls in one process that imported the flow, as the flow
does) and the size of its thumbnail in base64.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

from astropy.io import fits

import flows.ingest  # noqa: F401  (the quick look runs in the flow's process, with its imports)
from ovro_ingest.commit import stage_pixels
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.identity import same_pixels, source_differences
from ovro_ingest.pipeline import ingest_directory, plan_time_step
from ovro_ingest.quicklook import quicklook_png, thumbnail_png
from ovro_ingest.store import check_fits_store, read_state
from ovro_ingest.synth import generate


def median_seconds(action, repeat: int = 5) -> float:
    """Median wall time of ``action()`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(work: Path) -> None:
    night, store = work / "night", work / "s.zarr"
    files = generate(night, time_steps=1, n_subbands=2, size=4096)
    ingest_directory(night, store)
    plan = plan_time_step(discover_time_steps(night).time_steps[0])
    state = read_state(store)
    channels = check_fits_store(state, plan)
    sky = state.group()["SKY"]
    for path in files:
        path.read_bytes()  # page cache warm: what a run meets right after the files were written

    def stage() -> None:
        target = work / "staged"
        shutil.rmtree(target, ignore_errors=True)
        stage_pixels(state, plan, channels, target)
        shutil.rmtree(target)

    def each_file(action):
        return lambda: [action(path) for path in files]

    def datasum(path: Path) -> None:
        with fits.open(path, memmap=True) as hdulist:
            hdulist[0].add_datasum()

    def crc32(path: Path) -> None:
        checksum = 0
        with open(path, "rb") as stream:
            while block := stream.read(4 << 20):
                checksum = zlib.crc32(block, checksum)

    def sha256(path: Path) -> None:
        with open(path, "rb") as stream:
            hashlib.file_digest(stream, "sha256")

    def plain_read(path: Path) -> None:
        with open(path, "rb") as stream:
            while stream.read(4 << 20):
                pass

    def header_hash(path: Path) -> None:
        with open(path, "rb") as stream:
            fits.Header.fromfile(stream)
            length = stream.tell()
            stream.seek(0)
            hashlib.sha256(stream.read(length))
        path.stat()

    staging = median_seconds(stage) / len(files)
    rows = [
        ("staging (stage_pixels)", staging),
        ("astropy DATASUM (add_datasum)", median_seconds(each_file(datasum)) / len(files)),
        ("zlib.crc32, 4 MiB reads", median_seconds(each_file(crc32)) / len(files)),
        ("sha256 (hashlib.file_digest)", median_seconds(each_file(sha256)) / len(files)),
        ("plain read, 4 MiB reads", median_seconds(each_file(plain_read)) / len(files)),
        ("header block sha256 + stat", median_seconds(each_file(header_hash)) / len(files)),
        (
            "compare with the store (same_pixels)",
            median_seconds(lambda: [same_pixels(sky, 0, c, str(p)) for p, c in zip(files, channels, strict=True)])
            / len(files),
        ),
    ]
    print(f"{'per 4096² float32 file (64 MB), page cache warm':50s} {'ms':>7s} {'of staging':>11s}")
    for name, seconds in rows:
        print(f"{name:50s} {seconds * 1e3:7.1f} {100 * seconds / staging:10.1f}%")
    print(
        f"source_differences, nothing changed: {median_seconds(lambda: source_differences(state, 0, plan)) * 1e3:.1f} ms"
    )

    picture = work / "quicklook.png"
    started = time.perf_counter()
    quicklook_png(store, picture)
    first = time.perf_counter() - started
    later = median_seconds(lambda: quicklook_png(store, picture))
    thumbnail = median_seconds(lambda: thumbnail_png(picture))
    encoded = len(base64.b64encode(thumbnail_png(picture)))
    print(
        f"quick look of 4096²: first {first:.2f} s, later {later:.2f} s, thumbnail {thumbnail * 1e3:.0f} ms; "
        f"picture {picture.stat().st_size / 1e3:.0f} kB, thumbnail {encoded / 1e3:.1f} kB in base64"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="ovro-measure-") as folder:
            main(Path(folder))
