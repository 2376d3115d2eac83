"""The time-series store against the archive: dynamic spectra, light curves, images, and building it.

    python benchmarks/timeseries_read.py [--size 1024] [--subbands 10] [--steps 60 500 2000] [--quick]

An archive of ``max(steps)`` time steps x ``--subbands`` of ``--size``² (archive chunks
``min(1024, size)``², as ingested) is made from ``--distinct`` really ingested time steps
(synthetic FITS through ``ingest_directory``), the rest hard-linked copies of their
chunks with their own times and keys, so that N = 2,000 of 1024² images takes the disk of
the time-series store alone (~45 GB) and minutes, not hours. For each N, an archive of the
first N time steps (hard links again), then, each in its own process measured by
``measure.run_measured`` (wall time, peak memory of the process tree):

- **build**: ``ovro-ingest timeseries`` of that archive into a new time-series store (plain
  functions, no Prefect server: ``update_timeseries``);
- **floor**: a plain read-and-rewrite of the same bytes: the archive's ``SKY`` read and
  written into a new Zarr array with the archive's own chunks and codec by dask with the
  same threads (no rechunking). The time-series store is uncompressed since 2026-12-01;
  a floor written uncompressed took the same time at N = 60 and 500 (7.3 and 58.5 s,
  against 7.2 and 57.9 s compressed: reading the archive is the floor's cost) and does
  not fit a 73 GB disk at N = 2,000 (84 GB);

then, each read in its own process (a first read, which pays for the imports, then the
best of 3; page cache warm), each read opening the store with ``xr.open_zarr``
(``chunks=None`` for the time-series store, as docs/timeseries.md advises; the archive also with
``chunks=None``, its fastest): one pixel's dynamic spectrum (every time step and subband),
a tracked source's (the RA/Dec the same pixel sees at the first time step, whose pixel
then moves with the sky, from each time step's ``wcs_header``), one image (one time step and subband) and one time step's cube (every
subband). Results: ``benchmarks/results/timeseries.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.measure import machine, run_measured  # noqa: E402

# ---------------------------------------------------------------- the archives


def distinct_archive(work: Path, size: int, subbands: int, distinct: int) -> Path:
    """An archive of ``distinct`` really ingested time steps (synthetic FITS, then deleted)."""
    from ovro_ingest.pipeline import ingest_directory
    from ovro_ingest.store import StoreSettings
    from ovro_ingest.synth import generate

    base = work / "base.zarr"
    if not base.exists():
        generate(work / "fits", time_steps=distinct, n_subbands=subbands, size=size, seed=11)
        ingest_directory(work / "fits", base, settings=StoreSettings(chunk_lm=min(1024, size)), workers=2)
        shutil.rmtree(work / "fits")
    return base


def archive_of(base: Path, target: Path, n_time: int) -> Path:
    """An archive of ``n_time`` time steps: time step i holds base time step ``i % distinct``'s chunks (hard links).

    Times advance by 10 s and keys follow them, so it is a valid archive (``validate``
    passes); only the pixels repeat.
    """
    import zarr

    from ovro_ingest.store import SMALL_TIME_VARIABLES, read_state

    state = read_state(base)
    distinct = state.n_time
    linked = ("SKY", "source_files", "wcs_header")

    def per_time_step_chunks(folder: str, names: list[str]) -> list[str]:
        return ["c"] if Path(folder).name in linked and "c" in names else []

    shutil.copytree(base, target, ignore=per_time_step_chunks)  # all but the per-time-step chunks, linked below
    for name in linked:
        (target / name / "c").mkdir()
        for index in range(n_time):
            source = base / name / "c" / str(index % distinct)
            if source.is_file():  # a 1-D array's chunk is a file
                os.link(source, target / name / "c" / str(index))
                continue
            for path in source.rglob("*"):
                if path.is_file():
                    link = target / name / "c" / str(index) / path.relative_to(source)
                    link.parent.mkdir(parents=True, exist_ok=True)
                    os.link(path, link)
    group = zarr.open_group(str(target), mode="r+", use_consolidated=False)
    first_time = float(state.group()["time"][0])
    values = {name: np.asarray(state.group()[name][:distinct]) for name in SMALL_TIME_VARIABLES}
    for name in (*SMALL_TIME_VARIABLES, "SKY", "source_files", "wcs_header"):
        group[name].resize((n_time, *group[name].shape[1:]))
    times = first_time + np.arange(n_time) * 10.0 / 86400.0
    group["time"][:] = times
    keys = np.array([key_of(t) for t in times], dtype=object)
    group["time_key"][:] = keys
    for name in ("BEAM_FIT_PARAMS_SKY", "frequency_header", "date_obs_spread", "software_version"):
        repeats = (n_time + distinct - 1) // distinct
        tiled = np.concatenate([values[name]] * repeats)[:n_time]
        group[name][:] = tiled.astype(object) if tiled.dtype.kind in "OTU" else tiled
    zarr.consolidate_metadata(str(target))
    return target


def key_of(mjd: float) -> str:
    """A file-name time key (YYYYMMDD_HHMMSS) for an MJD."""
    from astropy.time import Time

    return Time(mjd, format="mjd", scale="utc").datetime.strftime("%Y%m%d_%H%M%S")


# ---------------------------------------------------------------- workloads (each in its own process)

BUILD = """
import json, sys, time
from ovro_ingest.timeseries import update_timeseries
started = time.perf_counter()
done = update_timeseries(sys.argv[1], sys.argv[2], workers=2)
print(json.dumps({"seconds": time.perf_counter() - started, "status": done.status, "bytes": done.bytes_copied}))
"""

FLOOR = """
import json, sys, time
import dask, dask.array as da, zarr
from ovro_ingest.store import read_state
state = read_state(sys.argv[1])
sky = state.group()["SKY"]
target = zarr.create_array(sys.argv[2], shape=sky.shape, chunks=sky.chunks, dtype=sky.dtype,
                           compressors=state.settings.compressors(), fill_value=float("nan"))
started = time.perf_counter()
with dask.config.set(scheduler="threads", num_workers=2):
    da.store(da.from_zarr(sky), target, lock=False)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def measured(code: str, *args: str) -> dict:
    """Run ``code`` in its own Python process, measured; its last JSON line plus wall time and peak memory."""
    result = run_measured([sys.executable, "-c", code, *args], cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(result.output[-3000:])
    return {**result.summary(), **result.result()}


# ---------------------------------------------------------------- reads


def tracked_pixels(store: Path, n_time: int, start: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The (l, m) pixel, at each time step, of the fixed RA/Dec that pixel ``start`` sees at the first time step.

    From the stored ``wcs_header`` of each time step (nearest pixel): the pixel moves
    as the sky turns. (The benchmark's archive repeats its distinct time steps' headers,
    so the track repeats too; the cost per time step is the same.)
    """
    import xarray as xr

    from ovro_ingest.sky import pixel_to_radec, wcs_from_text

    opened = xr.open_zarr(store, chunks=None)
    headers, size = opened["wcs_header"].values[:n_time], opened.sizes["l"]
    ra, dec = (float(v) for v in pixel_to_radec(opened, 0, *start))
    cache: dict[str, tuple[int, int]] = {}
    l_index, m_index = np.empty(n_time, int), np.empty(n_time, int)
    for t, text in enumerate(headers):
        if text not in cache:
            x, y = wcs_from_text(str(text)).all_world2pix(ra, dec, 0)
            # below the horizon (NaN) or off a small test image: the nearest edge pixel, still one pixel a step
            x, y = (int(np.clip(np.nan_to_num(float(v), nan=0.0).round(), 0, size - 1)) for v in (x, y))
            cache[text] = (x, y)
        l_index[t], m_index[t] = cache[text]
    return l_index, m_index


READ = """
import json, sys
import numpy as np
from benchmarks.measure import best_of
from benchmarks.timeseries_read import read_of
read = read_of(sys.argv[1], sys.argv[2], sys.argv[3])
answer = read()  # the first read pays for the imports and the first opening, as a session's first read does
seconds = best_of(read)
np.save(sys.argv[4], answer)
print(json.dumps({"seconds": seconds}))
"""


def read_of(store: str, name: str, where: str):
    """The read ``name`` on ``store`` as a function; ``where``: an .npz with ``pixel`` (l, m) and ``track``."""
    import xarray as xr

    saved = np.load(where)
    (pixel_l, pixel_m), track_l, track_m = (int(v) for v in saved["pixel"]), saved["track_l"], saved["track_m"]
    t_mid = len(track_l) // 2

    def sky():
        return xr.open_zarr(store, chunks=None)["SKY"]

    return {
        "spectrum": lambda: sky().isel(polarization=0, l=pixel_l, m=pixel_m).values,
        "tracked": lambda: (
            sky()
            .isel(polarization=0, l=xr.DataArray(track_l, dims="time"), m=xr.DataArray(track_m, dims="time"))
            .values
        ),
        "light_curve": lambda: np.nanmean(sky().isel(polarization=0, l=pixel_l, m=pixel_m).values, axis=1),
        "image": lambda: sky().isel(time=t_mid, frequency=-1, polarization=0).values,
        "cube": lambda: sky().isel(time=t_mid, polarization=0).values,
    }[name]


READS = ("spectrum", "tracked", "light_curve", "image", "cube")


def reads(store: Path, where: Path, check: dict | None) -> dict:
    """Time the reads on ``store``, each in a fresh process; compare each answer with ``check`` (the archive's)."""
    timings, got = {}, {}
    for name in READS:
        answer_file = where.with_name(f"{name}.npy")
        timings[name] = measured(READ, str(store), name, str(where), str(answer_file))["seconds"]
        got[name] = np.load(answer_file)
        answer_file.unlink()
        if check is not None:
            assert np.array_equal(got[name], check[name], equal_nan=True), f"{name} differs from the archive's"
    return {"seconds": timings, "answers": got}


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ts-bench-", dir=args.work))
    rows = []
    try:
        base = distinct_archive(work, args.size, args.subbands, args.distinct)
        pixel = (args.size // 2 + args.size // 9, args.size // 2 - args.size // 7)
        for n_time in args.steps:
            archive = archive_of(base, work / f"archive-{n_time}.zarr", n_time)
            timeseries = work / f"archive-{n_time}.timeseries.zarr"
            floor = measured(FLOOR, str(archive), str(work / f"floor-{n_time}.zarr"))
            shutil.rmtree(work / f"floor-{n_time}.zarr")  # before the build: the disk holds one copy at a time
            build = measured(BUILD, str(archive), str(timeseries))
            os.sync()  # the reads never overlap the build's writeback (it did not explain the slower images at N = 60)
            where = work / "where.npz"
            np.savez(where, pixel=pixel, track_l=(track := tracked_pixels(archive, n_time, pixel))[0], track_m=track[1])
            on_archive = reads(archive, where, None)
            on_timeseries = reads(timeseries, where, on_archive["answers"])
            rows.append(
                {
                    "n_time": n_time,
                    "gb": n_time * args.subbands * args.size**2 * 4 / 1e9,
                    "build": build,
                    "floor": floor,
                    "archive_s": on_archive["seconds"],
                    "timeseries_s": on_timeseries["seconds"],
                    "timeseries_files": sum(1 for p in (timeseries / "SKY").rglob("*") if p.is_file()),
                    "archive_files": sum(1 for p in (archive / "SKY").rglob("*") if p.is_file()),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(archive)
            shutil.rmtree(timeseries)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "machine": machine(),
        "load_average_at_end": os.getloadavg(),
        "size": args.size,
        "subbands": args.subbands,
        "distinct": args.distinct,
        "rows": rows,
    }


def markdown(report: dict) -> str:
    """The tables of docs/benchmarks/timeseries.md."""
    lines = [
        f"# Time-series store vs archive: {report['subbands']} subbands of {report['size']}²",
        "",
        f"Machine: {report['machine']}; load average at the end {report['load_average_at_end']}.",
        "Reads: each in its own process after a first read, page cache warm, best of 3, each opening the store "
        "(`xr.open_zarr(path, chunks=None)`).",
        "",
        "| N | read | archive s | time-series s | archive / time-series |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        for name in READS:
            a, t = row["archive_s"][name], row["timeseries_s"][name]
            lines.append(f"| {row['n_time']} | {name} | {a:.4f} | {t:.4f} | {a / t:.2f} |")
    lines += [
        "",
        "| N | GB of pixels | build s | floor s | build / floor throughput | build peak GB (tree RSS) | "
        "floor peak GB | SKY files archive / time-series |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        b, f = row["build"], row["floor"]
        lines.append(
            f"| {row['n_time']} | {row['gb']:.2f} | {b['seconds']:.1f} | {f['seconds']:.1f} | "
            f"{f['seconds'] / b['seconds']:.2f} | {b['peak_rss_gb']:.2f} | {f['peak_rss_gb']:.2f} | "
            f"{row['archive_files']} / {row['timeseries_files']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--subbands", type=int, default=10)
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 500, 2000])
    parser.add_argument("--distinct", type=int, default=20, help="Time steps really ingested; the rest are links.")
    parser.add_argument("--quick", action="store_true", help="Tiny data (the test suite's smoke run).")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=None, help="Folder for the data (default: the temp folder).")
    args = parser.parse_args()
    if args.quick:
        # one N: every N runs the same code (24 processes for two N took 35 s of CPU in the suite's smoke run)
        args.size, args.subbands, args.steps, args.distinct = 64, 3, [8], 4
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "timeseries_quick" if args.quick else "timeseries"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
