"""Append cost as the store grows: is adding a time step O(size of that time step)?

Generates N time steps with the project's generator, then appends them one by one
to a fresh store (plain functions, no Prefect, one process) and times each append:
the parallel phase (``write_time_step``: pixels into the staging area) and the
ordered phase (``commit_time_step``: moves, small values, consolidated metadata).
The headline is the ratio of the median of the last ten appends to that of the first ten.

Run it with::

    .venv/bin/python benchmarks/append_cost.py                 # 120 time steps of 10 x 256^2
    .venv/bin/python benchmarks/append_cost.py --time-steps 200 --size 512

It writes ``append_cost.json`` and ``append_cost.md`` into ``--out`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.measure import machine  # noqa: E402
from ovro_ingest.commit import commit_time_step, write_time_step  # noqa: E402
from ovro_ingest.discover import discover_time_steps  # noqa: E402
from ovro_ingest.pipeline import plan_time_step  # noqa: E402
from ovro_ingest.store import StoreSettings, create_store  # noqa: E402
from ovro_ingest.synth import generate  # noqa: E402


def measure(time_steps: int, subbands: int, size: int, chunk_lm: int, work: Path) -> list[dict]:
    """Append ``time_steps`` generated time steps one by one; return one timing record per append."""
    inputs, store = work / "input", work / "store.zarr"
    generate(inputs, time_steps=time_steps, n_subbands=subbands, size=size)
    plans = [plan_time_step(step) for step in discover_time_steps(inputs).time_steps]
    create_store(store, plans, StoreSettings(chunk_lm=chunk_lm))
    records = []
    for n_stored, plan in enumerate(plans):
        started = time.perf_counter()
        staged = write_time_step(store, plan)
        written = time.perf_counter()
        receipt = commit_time_step(store, staged)
        committed = time.perf_counter()
        assert receipt.index == n_stored and receipt.status == "written", receipt
        records.append(
            {
                "n_stored_before": n_stored,
                "write_s": written - started,
                "commit_s": committed - written,
                "append_s": committed - started,
                "bytes": staged.bytes_written,
            }
        )
    return records


def summarize(records: list[dict]) -> dict:
    """Medians of the first and last ten appends, and their ratios.

    Medians, because one append of a tenth of a second can be slowed several times
    over by anything else the machine does; a trend moves the median, a hiccup not.
    """
    first, last = records[:10], records[-10:]

    def median(rows: list[dict], field: str) -> float:
        return statistics.median(r[field] for r in rows)

    return {
        field: {
            "first_ten_median_s": median(first, field),
            "last_ten_median_s": median(last, field),
            "ratio_last_to_first": median(last, field) / median(first, field),
        }
        for field in ("append_s", "write_s", "commit_s")
    }


def markdown(report: dict) -> str:
    """The report as a short markdown page."""
    p, s = report["parameters"], report["summary"]
    lines = [
        "# Append cost as the store grows",
        "",
        f"{p['time_steps']} time steps x {p['subbands']} subbands of {p['size']}² float32, chunk {p['chunk_lm']}; "
        f"{report['machine']['cpus']} CPUs, {report['machine']['platform']}, {report['machine']['date']}.",
        "",
        "| phase | first ten (median s) | last ten (median s) | last / first |",
        "| --- | --- | --- | --- |",
    ]
    for field, label in (
        ("append_s", "append (write + commit)"),
        ("write_s", "write (staging)"),
        ("commit_s", "commit"),
    ):
        row = s[field]
        lines.append(
            f"| {label} | {row['first_ten_median_s']:.4f} | {row['last_ten_median_s']:.4f} | "
            f"{row['ratio_last_to_first']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-steps", type=int, default=120)
    parser.add_argument("--subbands", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk-lm", type=int, default=256)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if args.time_steps < 20:
        parser.error("--time-steps must be at least 20 (first ten vs last ten)")
    with tempfile.TemporaryDirectory(prefix="ovro-append-cost-") as work:
        records = measure(args.time_steps, args.subbands, args.size, args.chunk_lm, Path(work))
    report = {
        "parameters": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": machine(),
        "summary": summarize(records),
        "appends": records,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "append_cost.json").write_text(json.dumps(report, indent=2))
    (args.out / "append_cost.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
