"""A store as long as a year: what every run pays for the store's ledger as the store grows.

A night adds 4,320 time steps; a year, 1,576,800. What a run reads of the store grows
with it: the ``time_key`` column (every run and every hour's run, to skip what is
stored), a few ledger entries, the arrays a commit grows. This benchmark builds a store
of tiny images (2 subbands of 32²), grows its ledger to N time steps directly (the
per-time-step arrays a run reads: ``time``, ``time_key``, versions, header frequencies,
beams, and one ``source_files`` entry per time step, a copy of a real one; ``SKY``'s
chunks of those time steps are left out, since no run reads them), and measures at each N:

- opening the store with xarray (what a researcher does first);
- reading its committed state and the ``time_key`` column (every run, every hour);
- reading the ledger entries of an hour (360 ``source_files`` entries: what an hour's
  run reads when its time steps are stored already);
- appending one real time step at the end (plain functions: discover, plan, stage, commit);
- ``ovro-ingest validate`` (reads every ledger entry and looks for each entry's pixels;
  on this store it reports the left-out ``SKY`` chunks, which it has looked for all the same),
  and the validation of an hour's time steps that ``ovro-ingest run -v`` does;
- what a time-series update reads of the archive's ledger to plan: every time step's
  fingerprint (a first update, or one after a backfill or replacement; before 2026-12-01,
  every update, twice), and only a night's (an update after a nightly run).

Run it with::

    .venv/bin/python benchmarks/year_ledger.py            # N = 4,320 / 43,200 / 172,800 / 432,000
    .venv/bin/python benchmarks/year_ledger.py --quick    # N = 100 / 1,000 (checks that it runs)

It writes ``year_ledger.json`` and ``year_ledger.md`` into ``--out`` (default
``benchmarks/results``), with a linear extrapolation of each cost to a year.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.measure import best_of, machine  # noqa: E402
from ovro_ingest.handle import Store  # noqa: E402
from ovro_ingest.health import validate_store  # noqa: E402
from ovro_ingest.pipeline import ingest_directory  # noqa: E402
from ovro_ingest.store import SMALL_TIME_VARIABLES, StoreSettings  # noqa: E402
from ovro_ingest.synth import DEFAULT_START, generate  # noqa: E402
from ovro_ingest.timeseries import stable_fingerprints  # noqa: E402

NIGHT = 4_320
YEAR = 365 * NIGHT
STEP_S = 10.0
HOUR = 360
BATCH = 20_000
"""Time steps written per batch while the ledger grows (bounds the memory of the ``source_files`` strings)."""
REPEATS = 3


def seed_store(work: Path) -> Store:
    """A store holding one real time step of 2 subbands of 32²."""
    generate(work / "seed", time_steps=1, n_subbands=2, size=32)
    store = Store.at(work / "year.zarr")
    ingest_directory(work / "seed", store, settings=StoreSettings(chunk_lm=32))
    return store


def keys_of(indices) -> list[str]:
    """The time keys of time indices (time steps 10 s apart from the generator's start)."""
    return [(DEFAULT_START + timedelta(seconds=STEP_S * i)).strftime("%Y%m%d_%H%M%S") for i in indices]


def grow_ledger(store: Store, n_from: int, n_to: int) -> None:
    """Extend the ledger from ``n_from`` to ``n_to`` time steps (10 s apart), copying time step 0's values."""
    group = store.open_group(mode="r+", consolidated=False)
    first_time, entry = float(group["time"][0]), str(group["source_files"][0])
    for name in (*SMALL_TIME_VARIABLES, "source_files", "wcs_header", "SKY"):
        group[name].resize((n_to, *group[name].shape[1:]))
    for start in range(n_from, n_to, BATCH):
        stop = min(start + BATCH, n_to)
        indices = np.arange(start, stop)
        group["time"][start:stop] = first_time + indices * STEP_S / 86_400
        group["time_key"][start:stop] = np.array(keys_of(indices), dtype=object)
        for name in ("software_version", "date_obs_spread", "frequency_header", "BEAM_FIT_PARAMS_SKY"):
            array = group[name]
            value = array[0]
            array[start:stop] = np.broadcast_to(value, (stop - start, *array.shape[1:])).astype(
                object if array.dtype.kind in "OTU" else value.dtype
            )
        group["source_files"][start:stop] = np.array([entry] * (stop - start), dtype=object)
    store.consolidate()


def measure(store: Store, n: int, work: Path) -> dict:
    """The per-run costs at ``n`` time steps, then one real time step appended (the store then holds n + 1)."""
    import xarray as xr

    def open_with_xarray() -> None:
        xr.open_zarr(store.path).close()

    def state_and_keys() -> None:
        store.state().column("time_key")

    def an_hours_ledger() -> None:
        store.state().values("source_files", list(range(max(0, n - HOUR), n)))

    started = time.perf_counter()
    _, every = stable_fingerprints(store)
    every_entry_s = time.perf_counter() - started
    known = (store.state().rewrite_mark, every[: max(0, n - NIGHT)])  # a time-series store a night behind

    row = {
        "time_steps": n,
        "open_with_xarray_s": best_of(open_with_xarray, REPEATS),
        "state_and_time_keys_s": best_of(state_and_keys, REPEATS),
        "an_hours_ledger_s": best_of(an_hours_ledger, REPEATS),
        "validate_s": best_of(lambda: validate_store(store), repeat=1),
        "validate_an_hour_s": best_of(lambda: validate_store(store, keys_of(range(max(0, n - HOUR), n))), REPEATS),
        "timeseries_plan_every_entry_s": every_entry_s,
        "timeseries_plan_after_a_night_s": best_of(lambda: stable_fingerprints(store, known), REPEATS),
    }
    folder = work / f"next-{n}"
    generate(folder, time_steps=1, n_subbands=2, size=32, start=DEFAULT_START + timedelta(seconds=STEP_S * n))
    started = time.perf_counter()
    receipts = ingest_directory(folder, store)
    row["append_one_time_step_s"] = time.perf_counter() - started
    assert [(r.status, r.index) for r in receipts] == [("written", n)], receipts
    shutil.rmtree(folder)
    return row


def extrapolate(rows: list[dict]) -> dict:
    """Each cost at a year: the least-squares straight line through every N, or the mean when the cost does not grow."""
    sizes = np.array([row["time_steps"] for row in rows], dtype=float)
    year = {}
    for key in (k for k in rows[0] if k.endswith("_s")):
        costs = np.array([row[key] for row in rows])
        slope, intercept = np.polyfit(sizes, costs, 1)
        year[key] = round(float(slope * YEAR + intercept if slope > 0 else costs.mean()), 3)
    return year


def markdown(report: dict) -> str:
    rows = report["rows"]
    keys = [k for k in rows[0] if k.endswith("_s")]
    lines = [
        "# A store as long as a year: what each run pays for the ledger",
        "",
        f"Generated by `{report['command']}`; do not edit by hand. Machine: {report['machine']}. "
        f"Total {report['total_seconds']:.0f} s. Best of {REPEATS} for the reads; the append is one real time step "
        "(2 subbands of 32²) through the plain functions.",
        "",
        "| N time steps | nights | " + " | ".join(k.removesuffix("_s").replace("_", " ") + " s" for k in keys) + " |",
        "| ---: | ---: | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for row in rows:
        cells = " | ".join(f"{row[k]:.3f}" for k in keys)
        lines.append(f"| {row['time_steps']:,} | {row['time_steps'] / NIGHT:.2f} | {cells} |")
    year = report["year"]
    lines.append(f"| {YEAR:,} (extrapolated) | 365 | " + " | ".join(f"{year[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N: checks that the script runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    sizes = [100, 1_000] if args.quick else [NIGHT, 10 * NIGHT, 40 * NIGHT, 100 * NIGHT]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        work = Path(scratch)
        store = seed_store(work)
        rows, held = [], 1
        for n in sizes:
            grow_ledger(store, held, n)
            rows.append(measure(store, n, work))
            held = n + 1
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "command": "benchmarks/year_ledger.py" + (" --quick" if args.quick else ""),
        "machine": machine(),
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
        "year": extrapolate(rows),
        "median_append_s": statistics.median(r["append_one_time_step_s"] for r in rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "year_ledger.json").write_text(json.dumps(report, indent=2))
    (args.out / "year_ledger.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
