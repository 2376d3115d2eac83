"""Ingest speed and memory, side by side: the pipeline, the codec floor and the reference implementation.

One command generates the data, runs every measurement in its own process (the
process tree's peak memory is sampled from outside) and writes
``ingest_speed.json`` and ``ingest_speed.md`` into ``--out``::

    .venv/bin/python benchmarks/ingest_speed.py            # 4096² x 10 subbands x 10 time steps (~12 min)
    .venv/bin/python benchmarks/ingest_speed.py --quick    # tiny data, no reference, no run without a server (the smoke test)

Measured, on the same files with the page cache warm:

- the floor: each plane read (memmap) and written into one Zarr array, same codec,
  chunks and 2 threads, no pipeline;
- the ``ingest`` flow called directly, against a running local Prefect server;
  then the same flow again (fully cached re-run);
- ``ovro-ingest run`` against that server;
- the same five steps as plain functions (no Prefect, no Dask): the Prefect share;
- the flow on the first 3 time steps and on 2048² images: memory against N and size;
- a tiny run (1 time step) with the server and without (the CLI starts a temporary one);
- ovro-lwa-portal 0.1.0 on the first 3 time steps, installed in its own virtual
  environment (``.venv-portal``, Python 3.12) unless ``--skip-reference``;
- the append cost as a store grows to 100 time steps (``append_cost.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.measure import Measured, machine, run_measured  # noqa: E402
from ovro_ingest.discover import discover_time_steps  # noqa: E402
from ovro_ingest.health import validate_store  # noqa: E402
from ovro_ingest.synth import generate  # noqa: E402

PYTHON = sys.executable
WORKLOADS = str(REPO / "benchmarks" / "workloads.py")
CLI = str(Path(sys.executable).parent / "ovro-ingest")
PORTAL_PYTHON = REPO / ".venv-portal" / "bin" / "python"
THREADS = 2
"""Threads of the floor and workers of the pipeline: one per core of the development machine."""


class Bench:
    """The data, the work folder and the results of one benchmark run."""

    def __init__(self, work: Path, size: int, subbands: int, time_steps: int, chunk: int) -> None:
        self.work, self.size, self.subbands, self.time_steps, self.chunk = work, size, subbands, time_steps, chunk
        self.results: dict[str, dict] = {}
        self.env = {
            "PREFECT_HOME": str(work / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "OVRO_INGEST_LOG_LEVEL": "WARNING",
        }

    def data(self, size: int, time_steps: int) -> Path:
        """A generated data set (made once per size), with its page cache warmed."""
        folder = self.work / f"input-{size}-{self.subbands}x{time_steps}"
        if not folder.is_dir():
            started = time.perf_counter()
            generate(folder, time_steps=time_steps, n_subbands=self.subbands, size=size)
            print(f"generated {folder.name} in {time.perf_counter() - started:.0f} s", flush=True)
        for path in sorted(folder.glob("*.fits")):
            with open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass
        return folder

    def store(self, name: str) -> Path:
        """A fresh store path; earlier stores are removed and written data flushed first.

        Every measurement starts on a quiet disk: without this, the kernel writing back
        the gigabytes the previous one left in the page cache slowed the next by up to 50%.
        """
        stores = self.work / "stores"
        if stores.is_dir():
            shutil.rmtree(stores)
        os.sync()
        return stores / f"{name}.zarr"

    def record(self, name: str, measured: Measured, input_bytes: int, **extra) -> dict:
        """Keep a measurement: wall time, time inside the process, input MB/s, peak memory."""
        if measured.returncode != 0:
            raise RuntimeError(f"{name} failed ({measured.returncode}):\n{measured.output[-4000:]}")
        seconds = measured.result().get("seconds", measured.seconds)
        row = {
            **measured.summary(),
            "work_seconds": round(seconds, 3),
            "input_gb": round(input_bytes / 1e9, 3),
            "input_mb_per_s": round(input_bytes / 1e6 / seconds, 1),
            **extra,
        }
        self.results[name] = row
        print(f"{name}: {row}", flush=True)
        return row


def input_bytes(folder: Path, keys: list[str] | None = None) -> int:
    """Bytes of the FITS files of ``folder`` (only the time steps ``keys``, when given)."""
    steps = discover_time_steps(folder).time_steps
    return sum(f.size for s in steps if keys is None or s.key in keys for f in s.files)


def first_keys(folder: Path, n: int) -> list[str]:
    """The first ``n`` time-step keys of ``folder``."""
    return [s.key for s in discover_time_steps(folder).time_steps[:n]]


def check_store(path: Path, n_time: int) -> None:
    """Benchmarks of a broken store mean nothing: validate it."""
    report = validate_store(path)
    if not report.ok or report.n_time != n_time:
        raise RuntimeError(f"{path}: not a valid store of {n_time} time steps: {report}")


def measure_pipeline(bench: Bench, big: Path, api_url: str) -> None:
    """Every measurement that runs against the running server."""
    env = {**bench.env, "PREFECT_API_URL": api_url}
    size_bytes = input_bytes(big)
    chunk, n = str(bench.chunk), bench.time_steps

    store = bench.store("flow")
    bench.record("flow", run_measured([PYTHON, WORKLOADS, "flow", str(big), str(store), "2", chunk], env), size_bytes)
    check_store(store, n)
    bench.record(
        "flow_cached_rerun",
        run_measured([PYTHON, WORKLOADS, "flow", str(big), str(store), "2", chunk], env),
        size_bytes,
    )
    store = bench.store("cli")
    command = [CLI, "run", str(big), str(store), "--chunk-lm", chunk, "--workers", "2", "--quiet"]
    bench.record("cli_with_server", run_measured(command, env), size_bytes)
    check_store(store, n)
    store = bench.store("plain")
    bench.record(
        "plain_functions", run_measured([PYTHON, WORKLOADS, "plain", str(big), str(store), "2", chunk], env), size_bytes
    )
    check_store(store, n)

    keys = first_keys(big, 3)
    store = bench.store("flow-3")
    measured = run_measured([PYTHON, WORKLOADS, "flow", str(big), str(store), "2", chunk, *keys], env)
    bench.record("flow_first_3", measured, input_bytes(big, keys), time_steps=3)
    if bench.size > 2048:
        small = bench.data(2048, n)
        store = bench.store("flow-2048")
        measured = run_measured([PYTHON, WORKLOADS, "flow", str(small), str(store), "2", chunk], env)
        bench.record("flow_2048", measured, input_bytes(small), size=2048)

    tiny = bench.work / "input-tiny"
    if not tiny.is_dir():
        generate(tiny, time_steps=1, n_subbands=2, size=256)
    store = bench.store("tiny-server")
    bench.record(
        "tiny_cli_with_server",
        run_measured([CLI, "run", str(tiny), str(store), "--chunk-lm", "256", "--quiet"], env),
        input_bytes(tiny),
    )


def measure_without_server(bench: Bench) -> None:
    """A tiny run with no server configured: the CLI starts (and stops) a temporary one."""
    tiny = bench.work / "input-tiny"
    store = bench.store("tiny-no-server")
    command = [CLI, "run", str(tiny), str(store), "--chunk-lm", "256", "--quiet"]
    bench.record("tiny_cli_without_server", run_measured(command, bench.env), input_bytes(tiny))


def portal_python() -> Path | None:
    """ovro-lwa-portal's interpreter, installing it (scripts/make-portal-venv) when missing; None if impossible."""
    if not PORTAL_PYTHON.exists():
        print("installing ovro-lwa-portal 0.1.0 into .venv-portal (Python 3.12) ...", flush=True)
        done = subprocess.run([str(REPO / "scripts" / "make-portal-venv")], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"reference skipped: cannot install ovro-lwa-portal:\n{done.stderr[-2000:]}", flush=True)
            return None
    return PORTAL_PYTHON


def measure_reference(bench: Bench, big: Path) -> None:
    """ovro-lwa-portal on the first 3 time steps (a folder of links to the same files)."""
    python = portal_python()
    if python is None:
        bench.results["reference"] = {"skipped": "ovro-lwa-portal could not be installed"}
        return
    keys = first_keys(big, 3)
    subset = bench.work / "input-first-3"
    shutil.rmtree(subset, ignore_errors=True)
    subset.mkdir()
    for step in discover_time_steps(big).time_steps:
        if step.key in keys:
            for source in step.files:
                (subset / source.name).symlink_to(source.path)
    out = bench.work / "reference-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    measured = run_measured([str(python), WORKLOADS, "reference", str(subset), str(out), str(bench.chunk)])
    bench.record("reference_first_3", measured, input_bytes(big, keys), time_steps=3)
    shutil.rmtree(out, ignore_errors=True)


def measure_append_cost(bench: Bench, steps: int) -> None:
    """``append_cost.py`` in its own process; its summary is kept."""
    out = bench.work / "append-cost"
    command = [PYTHON, str(REPO / "benchmarks" / "append_cost.py"), "--time-steps", str(steps), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"append_cost.py failed:\n{done.stderr[-3000:]}")
    report = json.loads((out / "append_cost.json").read_text())
    bench.results["append_cost"] = {"time_steps": steps, **report["summary"]["append_s"]}


def headline(results: dict[str, dict]) -> dict:
    """The ratios the issue sets targets for."""

    def mbps(name: str) -> float | None:
        return results.get(name, {}).get("input_mb_per_s")

    ratios: dict[str, float | None] = {
        "flow_to_floor": mbps("flow") / mbps("floor"),
        "cli_to_floor": mbps("cli_with_server") / mbps("floor"),
        "cached_rerun_fraction": results["flow_cached_rerun"]["work_seconds"] / results["flow"]["work_seconds"],
        "prefect_share_flow_over_plain": results["flow"]["work_seconds"] / results["plain_functions"]["work_seconds"],
        "append_last_ten_over_first_ten": results["append_cost"]["ratio_last_to_first"],
        "peak_rss_gb_flow": results["flow"]["peak_rss_gb"],
        "peak_rss_gb_cli": results["cli_with_server"]["peak_rss_gb"],
    }
    # the cost of one more time step, start-up excluded: what a night of thousands of time steps sees
    extra_mb = (results["flow"]["input_gb"] - results["flow_first_3"]["input_gb"]) * 1e3
    extra_s = results["flow"]["work_seconds"] - results["flow_first_3"]["work_seconds"]
    if extra_mb > 0 and extra_s > 0:
        ratios["flow_marginal_mb_per_s"] = extra_mb / extra_s
        ratios["flow_marginal_to_floor"] = extra_mb / extra_s / mbps("floor")
    reference = results.get("reference_first_3", {})
    if "input_mb_per_s" in reference:
        ratios["throughput_flow_over_reference"] = mbps("flow") / reference["input_mb_per_s"]
        ratios["throughput_flow_first_3_over_reference"] = mbps("flow_first_3") / reference["input_mb_per_s"]
        ratios["peak_rss_reference_over_flow"] = reference["peak_rss_gb"] / results["flow_first_3"]["peak_rss_gb"]
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in ratios.items()}


LABELS = {
    "floor": "floor: memmap -> one Zarr array, no pipeline",
    "flow": "`ingest` flow, called directly (server running)",
    "flow_cached_rerun": "the same flow again (fully cached)",
    "cli_with_server": "`ovro-ingest run` (server running)",
    "plain_functions": "plain functions, no Prefect/Dask (threads)",
    "flow_first_3": "flow, first 3 time steps",
    "flow_2048": "flow, 2048² images",
    "reference_first_3": "ovro-lwa-portal 0.1.0, first 3 time steps",
    "tiny_cli_with_server": "tiny run (1 x 2 x 256²), server running",
    "tiny_cli_without_server": "tiny run, no server (CLI starts one)",
}


def markdown(report: dict) -> str:
    """The report as a markdown page (docs/benchmarks/ingest-speed.md copies its tables)."""
    p, m, r = report["parameters"], report["machine"], report["results"]
    lines = [
        "# Ingest speed and memory",
        "",
        f"Generated by `{report['command']}`; do not edit by hand.",
        "",
        f"Data: {p['time_steps']} time steps x {p['subbands']} subbands of {p['size']}² float32 "
        f"({r['flow']['input_gb']} GB of FITS, page cache warm), chunk {p['chunk']}, Blosc lz4 level 3 + shuffle. "
        f"Machine: {m['cpus']} CPUs, {m['memory_gb']} GB, {m['platform']}, Python {m['python']}, {m['date']}. "
        f"Benchmark total {report['total_seconds']:.0f} s.",
        "",
        "| what | wall s | work s | input MB/s | peak RSS GB (tree) | peak private GB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in LABELS.items():
        row = r.get(name)
        if row and "seconds" in row:
            lines.append(
                f"| {label} | {row['seconds']:.1f} | {row['work_seconds']:.1f} | {row['input_mb_per_s']:.0f} | "
                f"{row['peak_rss_gb']:.2f} | {row['peak_private_gb']:.2f} |"
            )
        elif row:
            lines.append(f"| {label} | skipped: {row.get('skipped')} | | | | |")
    lines += [
        "",
        "wall s: the whole process (imports, Prefect and Dask start-up); work s: timed inside it, around the "
        "work itself; MB/s from work s. Peak memory: largest sum over the process and its descendants "
        "(flow process, Dask workers, a temporary server if the CLI starts one), sampled every 100 ms (the list of processes every 0.5 s); "
        "private = RSS minus file-backed pages.",
        "",
        "| headline | value |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {value} |" for name, value in report["headline"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--subbands", type=int, default=10)
    parser.add_argument("--time-steps", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--append-steps", type=int, default=100)
    parser.add_argument("--skip-reference", action="store_true", help="do not install or run ovro-lwa-portal")
    parser.add_argument("--quick", action="store_true", help="tiny data and no reference: checks the script runs")
    parser.add_argument("--work", type=Path, default=REPO / ".benchmark-work", help="data and stores (removed after)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--api-url", help="use this running Prefect server instead of starting one")
    args = parser.parse_args()
    if args.quick:
        args.size, args.subbands, args.time_steps, args.chunk = 128, 2, 3, 64
        args.append_steps, args.skip_reference = 20, True
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.work, args.size, args.subbands, args.time_steps, args.chunk)
    (args.work / "prefect").mkdir(exist_ok=True)
    os.environ.update(bench.env)
    try:
        big = bench.data(args.size, args.time_steps)
        floor_store = bench.store("floor")
        files = [f.path for s in discover_time_steps(big).time_steps for f in s.files]
        command = [PYTHON, WORKLOADS, "floor", str(floor_store), str(args.chunk), str(THREADS), *files]
        bench.record("floor", run_measured(command, bench.env), input_bytes(big))

        from flows.server import local_server_process

        if args.api_url:
            measure_pipeline(bench, big, args.api_url)
        else:
            with local_server_process(args.work / "prefect" / "server.log") as api_url:
                measure_pipeline(bench, big, api_url)
        if not args.quick:  # it starts a Prefect server of its own; the suite's demo test runs the CLI so already
            measure_without_server(bench)
        if not args.skip_reference:
            measure_reference(bench, big)
        bench.store("none")  # flush before the append cost, the most timing-sensitive measurement
        measure_append_cost(bench, args.append_steps)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    report = {
        "command": "benchmarks/ingest_speed.py" + (" --quick" if args.quick else ""),
        "parameters": {
            "size": args.size,
            "subbands": args.subbands,
            "time_steps": args.time_steps,
            "chunk": args.chunk,
        },
        "machine": machine(),
        "total_seconds": time.perf_counter() - started,
        "results": bench.results,
    }
    report["headline"] = headline(bench.results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest_speed.json").write_text(json.dumps(report, indent=2))
    (args.out / "ingest_speed.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
