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
- finding a night's time keys in the store (what every run and every hour's run does
  to skip what is stored, by bisection since 2026-12-01: before, each read the whole
  ``time_key`` column, the column above) and the newest time step of that night (what
  the quick look draws);
- appending one real time step at the end (plain functions: discover, plan, stage, commit);
- ``ovro-ingest validate`` (reads every ledger entry and looks for each entry's pixels;
  on this store it reports the left-out ``SKY`` chunks, which it has looked for all the same),
  and the validation of an hour's time steps that ``ovro-ingest run -v`` does;
- what a time-series update reads of the archive's ledger to plan: every time step's
  fingerprint (a first update, or one after a backfill or replacement; before 2026-12-01,
  every update, twice), and only a night's (an update after a nightly run);
- the whole time-series update after a night (``update_timeseries`` in a process of its
  own, its time and peak memory): a time-series store of the same archive holding all but
  the last night's time steps (its ledger grown the same way, its pixels left out as the
  archive's are) brought up to date, window by window. Its plans and commits read the
  time-series store's own ``archive_fingerprint`` column, which grows with N.

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

from benchmarks.measure import best_of, machine, run_measured  # noqa: E402
from ovro_ingest.handle import Store  # noqa: E402
from ovro_ingest.health import validate_store  # noqa: E402
from ovro_ingest.pipeline import ingest_directory  # noqa: E402
from ovro_ingest.quicklook import newest_of_nights  # noqa: E402
from ovro_ingest.store import SMALL_TIME_VARIABLES, TIMESERIES_ATTR, StoreSettings  # noqa: E402
from ovro_ingest.synth import DEFAULT_START, generate  # noqa: E402
from ovro_ingest.timeseries import (  # noqa: E402
    FINGERPRINT,
    LEDGER_VARIABLES,
    create_timeseries_store,
    read_timeseries_state,
    stable_fingerprints,
)

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


def grow_timeseries(archive: Store, path: Path, n_to: int, fingerprints: list[str]) -> None:
    """The archive's time-series store at ``path`` (made when missing) holding the ledger of its first ``n_to`` time steps.

    Grown directly, as :func:`grow_ledger` grows the archive: the per-time-step arrays
    and the fingerprints copied, ``SKY`` resized with its chunks left out, and the
    archive's rewrite mark recorded, so that an update trusts what it holds.
    """
    if not Store.at(path).exists():
        create_timeseries_store(archive.state(), path)
    group = Store.at(path).open_group(mode="r+", consolidated=False)
    source = archive.open_group(consolidated=False)
    n_from = group["time"].shape[0]
    for name in (*LEDGER_VARIABLES, FINGERPRINT, "SKY"):
        group[name].resize((n_to, *group[name].shape[1:]))
    for start in range(n_from, n_to, BATCH):
        stop = min(start + BATCH, n_to)
        for name in LEDGER_VARIABLES:
            group[name][start:stop] = source[name][start:stop]
        group[FINGERPRINT][start:stop] = np.array(fingerprints[start:stop], dtype=object)
    link = dict(group.attrs[TIMESERIES_ATTR])
    link["archive_rewrite_mark"] = archive.state().rewrite_mark
    group.attrs[TIMESERIES_ATTR] = link
    Store.at(path).consolidate()


UPDATE = "import sys; from ovro_ingest.timeseries import update_timeseries; update_timeseries(sys.argv[1], sys.argv[2])"
"""A time-series update in a process of its own (as ``ovro-ingest timeseries`` runs it, without the CLI)."""


def update_after_a_night(store: Store, n: int, work: Path, fingerprints: list[str]) -> dict:
    """Time and peak memory of bringing a time-series store that lacks the last night (or half of N) up to date."""
    behind = min(NIGHT, n // 2)
    path = work / "year.timeseries.zarr"
    grow_timeseries(store, path, n - behind, fingerprints)
    measured = run_measured([sys.executable, "-c", UPDATE, str(store.path), str(path)])
    assert measured.returncode == 0, measured.output[-2000:]
    assert read_timeseries_state(path).n_time == n, "the update did not reach the archive's end"
    return {
        "timeseries_update_after_a_night_s": measured.seconds,
        "timeseries_update_peak_gb": measured.peak_rss_bytes / 1e9,
    }


def measure(store: Store, n: int, work: Path) -> dict:
    """The per-run costs at ``n`` time steps, then one real time step appended (the store then holds n + 1)."""
    import xarray as xr

    def open_with_xarray() -> None:
        xr.open_zarr(store.path).close()

    def state_and_keys() -> None:
        store.state().column("time_key")

    def an_hours_ledger() -> None:
        store.state().values("source_files", list(range(max(0, n - HOUR), n)))

    last_night = keys_of(range(max(0, n - NIGHT), n))

    def a_nights_keys_located() -> None:
        store.state().indices_of(last_night)

    def a_nights_quick_look_found() -> None:
        newest_of_nights(store.state(), last_night)

    started = time.perf_counter()
    _, every = stable_fingerprints(store)
    every_entry_s = time.perf_counter() - started
    known = (store.state().rewrite_mark, every[: max(0, n - NIGHT)])  # a time-series store a night behind

    row = {
        "time_steps": n,
        "open_with_xarray_s": best_of(open_with_xarray, REPEATS),
        "state_and_time_keys_s": best_of(state_and_keys, REPEATS),
        "an_hours_ledger_s": best_of(an_hours_ledger, REPEATS),
        "a_nights_keys_located_s": best_of(a_nights_keys_located, REPEATS),
        "a_nights_quick_look_found_s": best_of(a_nights_quick_look_found, REPEATS),
        "validate_s": best_of(lambda: validate_store(store), repeat=1),
        "validate_an_hour_s": best_of(lambda: validate_store(store, keys_of(range(max(0, n - HOUR), n))), REPEATS),
        "timeseries_plan_every_entry_s": every_entry_s,
        "timeseries_plan_after_a_night_s": best_of(lambda: stable_fingerprints(store, known), REPEATS),
        **update_after_a_night(store, n, work, every),
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
    for key in measured_keys(rows[0]):
        costs = np.array([row[key] for row in rows])
        slope, intercept = np.polyfit(sizes, costs, 1)
        year[key] = round(float(slope * YEAR + intercept if slope > 0 else costs.mean()), 3)
    return year


def measured_keys(row: dict) -> list[str]:
    """The measured columns of a row: seconds (``_s``) and gigabytes (``_gb``)."""
    return [k for k in row if k.endswith(("_s", "_gb"))]


def column_title(key: str) -> str:
    """``validate_s`` -> ``validate s``; ``timeseries_update_peak_gb`` -> ``timeseries update peak GB``."""
    name, unit = key.rsplit("_", 1)
    return f"{name.replace('_', ' ')} {'GB' if unit == 'gb' else unit}"


def markdown(report: dict) -> str:
    rows = report["rows"]
    keys = measured_keys(rows[0])
    lines = [
        "# A store as long as a year: what each run pays for the ledger",
        "",
        f"Generated by `{report['command']}`; do not edit by hand. Machine: {report['machine']}. "
        f"Total {report['total_seconds']:.0f} s. Best of {REPEATS} for the reads; the append is one real time step "
        "(2 subbands of 32²) through the plain functions.",
        "",
        "| N time steps | nights | " + " | ".join(column_title(k) for k in keys) + " |",
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
