"""Candidate layouts of the time-series store's ``SKY``, measured side by side (the chunking decision).

    python benchmarks/timeseries_layouts.py [--size 1024] [--subbands 10] [--time-steps 64] [--out DIR]

Writes ``--time-steps`` x ``--subbands`` synthetic all-sky planes (``ovro_ingest.synth``'s sky, noise and
horizon) in each candidate layout (Blosc lz4, the archive's codec, or uncompressed), then times, with the
page cache warm, best of 3: one pixel's dynamic spectrum (all time steps, all subbands) and one image (one
time step, one subband), both through ``xarray.open_zarr`` as a user reads them, plus the number of files
and their bytes.
``--codec-pipeline zarrs`` reads and writes every candidate with zarrs' Rust codec pipeline (the
``zarrs`` package, not a dependency of ovro-ingest: install it beside) and writes
``timeseries_layouts_zarrs.{json,md}``, for the comparison. Per
(time step, subband) costs grow linearly with N, so a short block gives the per-time-step numbers the
choice needs; ``timeseries_read.py`` measures the chosen layout at N = 60, 500 and 2,000.
Results: ``benchmarks/results/timeseries_layouts.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.measure import machine  # noqa: E402

# (name, inner chunk (t, f, l, m), shard (t, f, l, m) or None meaning "no sharding", codec: "lz4" or "none")
CANDIDATES = [
    ("archive (1, 1, 1024²)", (1, 1, 1024, 1024), None, "lz4"),
    ("chunks (2, 1, 256²)", (2, 1, 256, 256), None, "lz4"),
    ("chunks (4, 1, 128²)", (4, 1, 128, 128), None, "lz4"),
    ("chunks (2, F, 64²)", (2, "F", 64, 64), None, "lz4"),
    ("shards (T, F, 128²) of (1, 1, 128²)", (1, 1, 128, 128), ("T", "F", 128, 128), "lz4"),
    ("shards (T, F, 256²) of (2, 1, 256²)", (2, 1, 256, 256), ("T", "F", 256, 256), "lz4"),
    ("shards (T, F, 64²) of (2, F, 64²)", (2, "F", 64, 64), ("T", "F", 64, 64), "lz4"),
    ("shards (T, F, 256²) of (2, F, 64²)", (2, "F", 64, 64), ("T", "F", 256, 256), "lz4"),
    ("shards (8, F, 256²) of (2, F, 64²) [first choice]", (2, "F", 64, 64), (8, "F", 256, 256), "lz4"),
    ("shards (8, F, 256²) of (4, F, 64²)", (4, "F", 64, 64), (8, "F", 256, 256), "lz4"),
    ("shards (8, F, 256²) of (8, F, 64²) [second choice]", (8, "F", 64, 64), (8, "F", 256, 256), "lz4"),
    ("shards (8, F, 256²) of (8, F, 32²)", (8, "F", 32, 32), (8, "F", 256, 256), "lz4"),
    ("shards (T, F, 128²) of (4, F, 32²)", (4, "F", 32, 32), ("T", "F", 128, 128), "lz4"),
    ("shards (T, F, 256²) of (1, F, 64²)", (1, "F", 64, 64), ("T", "F", 256, 256), "lz4"),
    ("shards (T, F, 256²) of (4, 1, 128²)", (4, 1, 128, 128), ("T", "F", 256, 256), "lz4"),
    ("shards (8, F, 256²) of (8, 2, 128²)", (8, 2, 128, 128), (8, "F", 256, 256), "lz4"),
    ("shards (8, F, 256²) of (4, 1, 256²)", (4, 1, 256, 256), (8, "F", 256, 256), "lz4"),
    ("shards (8, F, 256²) of (8, F, 128²)", (8, "F", 128, 128), (8, "F", 256, 256), "lz4"),
    # uncompressed inner chunks: a reader then reads their bytes without decoding them
    ("shards (8, F, 256²) of (8, F, 64²), uncompressed", (8, "F", 64, 64), (8, "F", 256, 256), "none"),
    (
        "shards (8, F, 256²) of (8, F, 128²), uncompressed [third choice]",
        (8, "F", 128, 128),
        (8, "F", 256, 256),
        "none",
    ),
    ("shards (8, F, 256²) of (4, F, 128²), uncompressed [chosen]", (4, "F", 128, 128), (8, "F", 256, 256), "none"),
    ("shards (8, F, 256²) of (2, F, 128²), uncompressed", (2, "F", 128, 128), (8, "F", 256, 256), "none"),
    ("shards (8, F, 256²) of (8, 2, 128²), uncompressed", (8, 2, 128, 128), (8, "F", 256, 256), "none"),
    ("shards (16, F, 256²) of (16, 2, 128²), uncompressed", (16, 2, 128, 128), (16, "F", 256, 256), "none"),
]


def planes(size: int, n_time: int, n_freq: int) -> np.ndarray:
    """(time, frequency, l, m) float32 planes of the synthetic sky (NaN beyond the horizon)."""
    from ovro_ingest.synth import CADENCE_S, DEFAULT_START, SkyModel, subbands

    sky, bands = SkyModel(size, seed=1), subbands(n_freq)
    data = np.empty((n_time, n_freq, size, size), np.float32)
    for t in range(n_time):
        when = DEFAULT_START + timedelta(seconds=CADENCE_S * t)
        for f, band in enumerate(bands):
            data[t, f] = sky.image(when, band, t).T
    return data


def resolve(shape, n_time: int, n_freq: int, size: int) -> tuple[int, ...]:
    t, f, side_l, side_m = shape
    t = n_time if t == "T" else t
    f = n_freq if f == "F" else f
    return (min(t, n_time), min(f, n_freq), 1, min(side_l, size), min(side_m, size))


def write(path: Path, data: np.ndarray, chunks: tuple, shards: tuple | None, codec: str = "lz4") -> float:
    import zarr
    from zarr.codecs import BloscCodec

    n_time, n_freq, size, _ = data.shape
    array = zarr.open_group(str(path), mode="w").create_array(
        "SKY",
        shape=(n_time, n_freq, 1, size, size),
        chunks=chunks,
        shards=shards,
        dtype="float32",
        compressors=[BloscCodec(cname="lz4", clevel=3, shuffle="shuffle")] if codec == "lz4" else [],
        fill_value=np.nan,
        dimension_names=("time", "frequency", "polarization", "l", "m"),
    )
    started = time.perf_counter()
    block = (shards or chunks)[0]
    for t0 in range(0, n_time, block):
        array[t0 : t0 + block, :, 0] = data[t0 : t0 + block]
    seconds = time.perf_counter() - started
    zarr.consolidate_metadata(str(path))
    return seconds


def best_of(function, repeat: int = 3) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - started)
    return min(times), value


def measure(path: Path, data: np.ndarray, pixel_l: int, pixel_m: int) -> dict:
    """Read times (best of 3, page cache warm): xarray without dask (``chunks=None``) and with (its default)."""
    import xarray as xr

    t = data.shape[0] // 2
    reads = {
        "spectrum": lambda ds: ds["SKY"].isel(polarization=0, l=pixel_l, m=pixel_m).values,
        "image": lambda ds: ds["SKY"].isel(time=t, frequency=3, polarization=0).values,
        "cube": lambda ds: ds["SKY"].isel(time=t, polarization=0).values,
    }
    expected = {"spectrum": data[:, :, pixel_l, pixel_m], "image": data[t, 3], "cube": data[t]}
    row = {}
    for mode, chunks in (("plain", None), ("dask", {})):
        for name, read in reads.items():
            seconds, got = best_of(lambda read=read, chunks=chunks: read(xr.open_zarr(path, chunks=chunks)))
            assert np.array_equal(got, expected[name], equal_nan=True), (name, mode)
            row[f"{name}_{mode}_s"] = seconds
    row["files"] = sum(1 for p in path.rglob("*") if p.is_file())
    row["bytes"] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--subbands", type=int, default=10)
    parser.add_argument("--time-steps", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--codec-pipeline", choices=("zarr", "zarrs"), default="zarr")
    args = parser.parse_args()
    if args.codec_pipeline == "zarrs":
        import zarr
        import zarrs  # noqa: F401  (registers its pipeline)

        zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
    data = planes(args.size, args.time_steps, args.subbands)
    work = Path(tempfile.mkdtemp(prefix="ts-layouts-", dir=args.work))
    pixel = (args.size // 2 + 37, args.size // 2 - 85)  # a pixel inside the horizon
    rows = []
    try:
        for name, chunks, shards, codec in CANDIDATES:
            chunks = resolve(chunks, args.time_steps, args.subbands, args.size)
            shards = resolve(shards, args.time_steps, args.subbands, args.size) if shards else None
            path = work / "candidate.zarr"
            write_s = write(path, data, chunks, shards, codec)
            row = {"layout": name, "chunks": chunks, "shards": shards, "codec": codec, "write_s": write_s}
            row.update(measure(path, data, *pixel))
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "machine": machine(),
        "size": args.size,
        "subbands": args.subbands,
        "time_steps": args.time_steps,
        "codec_pipeline": args.codec_pipeline,
        "zarr": version("zarr"),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "timeseries_layouts" + ("_zarrs" if args.codec_pipeline == "zarrs" else "")
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    """The table: milliseconds, and the ratio to the archive layout (first row)."""
    rows, base = report["rows"], report["rows"][0]
    lines = [
        f"# Time-series layouts: {report['time_steps']} time steps x {report['subbands']} subbands of "
        f"{report['size']}², Blosc lz4 unless uncompressed, codec pipeline: {report.get('codec_pipeline', 'zarr')}, "
        f"zarr {report.get('zarr', '?')}",
        "",
        f"Machine: {report['machine']}. Page cache warm, best of 3, each read opens the store.",
        "plain: `xr.open_zarr(path, chunks=None)` (zarr reads, no dask); dask: `xr.open_zarr(path)`.",
        "Spectrum: one pixel, every time step and subband; image: one time step and subband; cube: one time "
        "step, every subband. In parentheses: archive time / layout time (spectrum), layout / archive (images).",
        "",
        "| layout | spectrum plain ms | spectrum dask ms | image plain ms | image dask ms | cube plain ms | files | GB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cells = [r["layout"]]
        for key in ("spectrum_plain_s", "spectrum_dask_s"):
            cells.append(f"{r[key] * 1e3:.1f} ({base[key] / r[key]:.0f}x)")
        for key in ("image_plain_s", "image_dask_s", "cube_plain_s"):
            cells.append(f"{r[key] * 1e3:.1f} ({r[key] / base[key]:.1f}x)")
        cells.append(str(r["files"]))
        cells.append(f"{r['bytes'] / 1e9:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
