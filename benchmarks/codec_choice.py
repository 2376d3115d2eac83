"""Which lossless compressor should the Zarr store use by default for OVRO-LWA sky images?

The store holds float32 2-D sky planes (NaN outside the horizon circle in synthetic data).
For every candidate compressor and every input plane this script

* writes the plane into a fresh Zarr v3 array (``LocalStore`` in a temporary directory,
  chunks of up to 1024 x 1024, ``fill_value=NaN``) and times ``arr[:] = plane``
  (best of 3, a new array each time);
* times reading it back with ``arr[:]`` (best of 3; the files are in the OS page cache,
  so this measures decoding rather than disk speed);
* sums the sizes of the chunk files on disk (metadata excluded) and reports the
  compression ratio = raw bytes / stored bytes, and write / read throughput in raw
  MB (10**6 bytes) per second;
* checks that the round trip is bit-exact (NaN included) and stops with an error otherwise.

Candidates: Blosc with ``cname`` in {lz4, zstd} x ``clevel`` in {1, 3, 5} x ``shuffle`` in
{shuffle, bitshuffle}, plus no compression.

Inputs: the real OVRO-LWA image ``/work/shared/data/ovro-lwa/test_image.fits`` (skipped with
a message if absent) and two synthetic planes (1 time step x 2 subbands) from
``ovro_ingest.synth.generate`` at ``--size`` pixels. A plane smaller than a chunk gets a chunk
equal to its shape, so that edge padding does not distort its ratio.

The recommendation is computed, not written by hand. The ingest must keep up with the
telescope night after night, so write speed comes first: among the compressing candidates
that write at least 75 % as fast as the fastest compressing candidate, the one with the
best ratio. The fastest-writing candidate overall (no compression) and the best ratio are
reported too. It is computed per input
and for all inputs pooled (total raw bytes / total stored bytes, total raw MB / total time).

Run from the project root::

    .venv/bin/python benchmarks/codec_choice.py [--out benchmarks/results] [--size 4096]

It writes ``codec_choice.json`` (machine facts and one record per candidate x input) and
``codec_choice.md`` (a table per input and the recommendation) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numcodecs
import numpy as np
import zarr
from astropy.io import fits
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore

from ovro_ingest.synth import generate

REAL_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ovro-lwa" / "test_image.fits"
CHUNK = 1024
REPEATS = 3
SPEED_FRACTION = 0.75
"""A recommended codec writes at least this fraction as fast as the fastest compressing one."""
MB = 1e6


@dataclass(frozen=True)
class Candidate:
    """One compressor setting; ``cname`` is ``"none"`` for no compression."""

    cname: str
    clevel: int | None
    shuffle: str | None

    @property
    def label(self) -> str:
        if self.cname == "none":
            return "none"
        return f"blosc-{self.cname}-{self.clevel}-{self.shuffle}"

    def compressors(self) -> list[BloscCodec] | None:
        if self.cname == "none":
            return None
        return [BloscCodec(cname=self.cname, clevel=self.clevel, shuffle=self.shuffle)]


@dataclass
class Record:
    """The measurements of one candidate on one input plane."""

    input: str
    shape: list[int]
    nan_fraction: float
    chunks: list[int]
    codec: str
    cname: str
    clevel: int | None
    shuffle: str | None
    raw_bytes: int
    stored_bytes: int
    ratio: float
    write_s: list[float]
    read_s: list[float]
    write_mb_s: float
    read_mb_s: float
    round_trip_exact: bool


def candidates() -> list[Candidate]:
    """No compression, then Blosc lz4/zstd x levels 1, 3, 5 x shuffle/bitshuffle."""
    result = [Candidate("none", None, None)]
    for cname in ("lz4", "zstd"):
        for clevel in (1, 3, 5):
            for shuffle in ("shuffle", "bitshuffle"):
                result.append(Candidate(cname, clevel, shuffle))
    return result


def load_inputs(size: int, tmp: Path) -> list[tuple[str, np.ndarray]]:
    """The real image (if present) and two synthetic planes, as native-endian float32."""
    planes: list[tuple[str, np.ndarray]] = []
    if REAL_IMAGE.exists():
        planes.append((f"real {REAL_IMAGE.name}", np.asarray(fits.getdata(REAL_IMAGE)[0, 0], dtype=np.float32)))
    else:
        print(f"real image {REAL_IMAGE} not found: skipping it", flush=True)
    started = time.perf_counter()
    paths = generate(tmp / "synth", time_steps=1, n_subbands=2, size=size, naming="legacy", seed=0)
    print(f"generated {len(paths)} synthetic {size}x{size} images in {time.perf_counter() - started:.1f} s", flush=True)
    for path in paths:
        planes.append((f"synthetic {path.name}", np.asarray(fits.getdata(path)[0, 0], dtype=np.float32)))
    return planes


def chunk_bytes(root: Path) -> int:
    """Total size of the chunk files under an array directory (``zarr.json`` excluded)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "zarr.json")


def timed(action: Callable[[], object]) -> float:
    """Seconds taken by one call of ``action``."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(name: str, plane: np.ndarray, candidate: Candidate, tmp: Path) -> Record:
    """Write the plane ``REPEATS`` times into new arrays, read it ``REPEATS`` times, check it."""
    chunks = tuple(min(CHUNK, n) for n in plane.shape)
    write_s: list[float] = []
    root = tmp
    for attempt in range(REPEATS):
        root = tmp / f"{candidate.label}-{attempt}.zarr"
        arr = zarr.create_array(
            store=LocalStore(root),
            shape=plane.shape,
            chunks=chunks,
            dtype="float32",
            compressors=candidate.compressors(),
            fill_value=float("nan"),
        )

        def write(arr: zarr.Array = arr) -> None:
            arr[:] = plane

        write_s.append(timed(write))
    stored = chunk_bytes(root)
    arr = zarr.open_array(store=LocalStore(root, read_only=True), mode="r")
    read_s: list[float] = []
    result: np.ndarray | None = None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = arr[:]
        read_s.append(time.perf_counter() - started)
    exact = result is not None and result.dtype == plane.dtype and np.array_equal(result, plane, equal_nan=True)
    if not exact:
        raise RuntimeError(f"round trip NOT exact for {candidate.label} on {name}")
    raw = plane.nbytes
    return Record(
        input=name,
        shape=list(plane.shape),
        nan_fraction=float(np.isnan(plane).mean()),
        chunks=list(chunks),
        codec=candidate.label,
        cname=candidate.cname,
        clevel=candidate.clevel,
        shuffle=candidate.shuffle,
        raw_bytes=raw,
        stored_bytes=stored,
        ratio=raw / stored,
        write_s=write_s,
        read_s=read_s,
        write_mb_s=raw / MB / min(write_s),
        read_mb_s=raw / MB / min(read_s),
        round_trip_exact=exact,
    )


@dataclass
class Summary:
    """Pooled figures of one candidate (over one input or several)."""

    codec: str
    ratio: float
    write_mb_s: float
    read_mb_s: float


def pool(records: list[Record]) -> list[Summary]:
    """One summary per codec: total raw / total stored bytes, total raw MB / total best time."""
    by_codec: dict[str, list[Record]] = {}
    for record in records:
        by_codec.setdefault(record.codec, []).append(record)
    summaries = []
    for codec, group in by_codec.items():
        raw = sum(r.raw_bytes for r in group)
        summaries.append(
            Summary(
                codec=codec,
                ratio=raw / sum(r.stored_bytes for r in group),
                write_mb_s=raw / MB / sum(min(r.write_s) for r in group),
                read_mb_s=raw / MB / sum(min(r.read_s) for r in group),
            )
        )
    return summaries


def choose(summaries: list[Summary]) -> tuple[Summary, Summary, float]:
    """(recommended, fastest writer, best ratio): the best ratio among fast-enough compressing candidates."""
    best_ratio = max(s.ratio for s in summaries)
    compressing = [s for s in summaries if s.codec != "none"]
    fastest_compressing = max(s.write_mb_s for s in compressing)
    eligible = [s for s in compressing if s.write_mb_s >= SPEED_FRACTION * fastest_compressing]
    recommended = max(eligible, key=lambda s: s.ratio)
    fastest = max(summaries, key=lambda s: s.write_mb_s)
    return recommended, fastest, best_ratio


def describe(s: Summary) -> str:
    return f"`{s.codec}` (ratio {s.ratio:.3f}, write {s.write_mb_s:.0f} MB/s, read {s.read_mb_s:.0f} MB/s)"


def recommendation(records: list[Record], inputs: list[str]) -> tuple[str, dict[str, object]]:
    """The recommendation paragraph and its machine-readable form."""
    pooled_choice, pooled_fastest, pooled_best = choose(pool(records))
    per_input: dict[str, dict[str, str]] = {}
    sentences = []
    for name in inputs:
        chosen, fastest, best = choose(pool([r for r in records if r.input == name]))
        per_input[name] = {"recommended": chosen.codec, "fastest_write": fastest.codec}
        sentences.append(f"for {name} it is {describe(chosen)} (best ratio {best:.3f})")
    agree = len({v["recommended"] for v in per_input.values()}) == 1
    text = (
        f"Rule: among the compressing candidates that write at least {SPEED_FRACTION:.0%} as fast as the fastest "
        "compressing one, pick the one with the best compression ratio. "
        f"Pooled over all {len(inputs)} inputs (total raw bytes / total stored bytes; total raw MB / total "
        f"best time), the best ratio is {pooled_best:.3f} and the recommended default is {describe(pooled_choice)}. "
        f"The fastest-writing candidate overall is {describe(pooled_fastest)}. Per input, "
        + "; ".join(sentences)
        + (". The per-input choices agree." if agree else ". The per-input choices differ.")
    )
    data: dict[str, object] = {
        "rule": f"max ratio among compressing codecs with write MB/s >= {SPEED_FRACTION} * fastest compressing",
        "pooled": {"recommended": asdict(pooled_choice), "fastest_write": asdict(pooled_fastest)},
        "per_input": per_input,
        "per_input_agree": agree,
    }
    return text, data


def machine_facts() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "numpy": np.__version__,
        "zarr_async_concurrency": zarr.config.get("async.concurrency"),
        "zarr_threading_max_workers": zarr.config.get("threading.max_workers"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def markdown(facts: dict[str, object], records: list[Record], inputs: list[str], text: str, runtime: float) -> str:
    lines = [
        "# Codec choice for OVRO-LWA sky planes",
        "",
        "Generated by `benchmarks/codec_choice.py`; do not edit by hand.",
        "",
        f"Machine: {facts['cpu_count']} CPUs, {facts['platform']}; Python {facts['python']}, zarr {facts['zarr']}, "
        f"numcodecs {facts['numcodecs']}; zarr async.concurrency {facts['zarr_async_concurrency']}; "
        f"{facts['date']}. Total runtime {runtime:.1f} s.",
        "",
        f"Throughput is raw MB (10^6 bytes) per second, best of {REPEATS}; reads come from the OS page cache. "
        "Ratio = raw bytes / bytes of chunk files on disk. Every round trip was checked bit-exact (NaN included).",
    ]
    for name in inputs:
        group = [r for r in records if r.input == name]
        first = group[0]
        facts_line = (
            f"shape {first.shape[0]}x{first.shape[1]}, chunks {first.chunks[0]}x{first.chunks[1]}, "
            f"NaN fraction {first.nan_fraction:.3f}"
        )
        lines += [
            "",
            f"## {name}",
            "",
            facts_line,
            "",
            "| codec | level | shuffle | ratio | write MB/s | read MB/s |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for r in group:
            codec = "none" if r.cname == "none" else f"blosc {r.cname}"
            level = "-" if r.clevel is None else str(r.clevel)
            shuffle = r.shuffle or "-"
            lines.append(f"| {codec} | {level} | {shuffle} | {r.ratio:.3f} | {r.write_mb_s:.0f} | {r.read_mb_s:.0f} |")
    lines += ["", "## Recommendation", "", text, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    parser.add_argument("--size", type=int, default=4096, help="side of the synthetic planes in pixels")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    facts = machine_facts()
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="codec-choice-") as tmp_name:
        tmp = Path(tmp_name)
        planes = load_inputs(args.size, tmp)
        inputs = [name for name, _ in planes]
        for index, (name, plane) in enumerate(planes):
            nan_fraction = float(np.isnan(plane).mean())
            print(f"{name}: shape {plane.shape}, NaN fraction {nan_fraction:.3f}", flush=True)
            for candidate in candidates():
                work = tmp / f"input{index}"
                work.mkdir(exist_ok=True)
                record = measure(name, plane, candidate, work)
                records.append(record)
                print(
                    f"  {record.codec:28s} ratio {record.ratio:6.3f}  write {record.write_mb_s:7.0f} MB/s  "
                    f"read {record.read_mb_s:7.0f} MB/s",
                    flush=True,
                )
                shutil.rmtree(work)
    text, choice = recommendation(records, inputs)
    runtime = time.perf_counter() - started
    facts["runtime_s"] = round(runtime, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": facts,
        "settings": {"chunk": CHUNK, "repeats": REPEATS, "size": args.size, "mb": MB},
        "inputs": inputs,
        "records": [asdict(r) for r in records],
        "recommendation": {**choice, "text": text},
    }
    (args.out / "codec_choice.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "codec_choice.md").write_text(markdown(facts, records, inputs, text, runtime))
    print(f"\n{text}\n\nwrote {args.out / 'codec_choice.json'} and {args.out / 'codec_choice.md'} in {runtime:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
