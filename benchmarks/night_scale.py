"""A real night at scale: what 4,320 time steps cost, measured at N = 20, 500 and 2,000 and extrapolated.

    .venv/bin/python benchmarks/night_scale.py            # tiny N = 20, 500, 2,000 and 10 x 10 x 4096² (~30 min)
    .venv/bin/python benchmarks/night_scale.py --quick    # tiny sizes: the test suite's smoke run
    .venv/bin/python benchmarks/night_scale.py --quick --api-url URL --server-home DIR  # against a running server

Tiny images (10 subbands of 64²) make the cost per time step show: the ``ingest`` flow
and the same five steps as plain functions (no Prefect, no Dask) each run on N time
steps against one running Prefect server (its own SQLite), every run in its own
process while the peak memory of its process tree is sampled. Per run: seconds per
time step, time to the first stored time step (since the flow started), the server's
CPU seconds, the growth of the server's database and of the result files, and the
largest run graph (nodes of ``/flow_runs/{id}/graph-v2``, which the UI draws). The cost
of one more time step comes from the difference between the two largest N, so start-up
does not count. A 4096² case (10 time steps of 10 subbands) gives memory, the codec
floor and the CLI's wall time against it (first 3 time steps), and the per-time-step
time that the extrapolation to a 4,320 x 16 x 4096² night uses. A run with nothing to
do is timed through the CLI with and without a server.

Writes ``night_scale.json`` and ``night_scale.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.measure import Measured, machine, run_measured  # noqa: E402
from flows.server import RESULTS_FOLDER  # noqa: E402
from ovro_ingest.discover import discover_time_steps  # noqa: E402
from ovro_ingest.synth import generate  # noqa: E402

PYTHON = sys.executable
WORKLOADS = str(REPO / "benchmarks" / "workloads.py")
CLI = str(Path(sys.executable).parent / "ovro-ingest")
THREADS = 2
NIGHT_TIME_STEPS = 4320
NIGHT_SUBBANDS = 16
RETENTION_DAYS = 30


class Server:
    """The running Prefect server the measured runs report to: its API, process, database and the runs' result folder.

    ``home`` is the server's Prefect home (its SQLite database), ``results_home`` the runs'
    (their result files). A server that others use too (``--api-url``) counts their work
    as well: its CPU and database numbers then only show that the measurement runs.
    """

    def __init__(self, api_url: str, home: Path, results_home: Path) -> None:
        self.api_url, self.home, self.results_home = api_url, home, results_home
        port = api_url.rsplit(":", 1)[1].split("/")[0]
        self.process = next(p for p in psutil.process_iter() if port in command_line(p))

    def cpu_seconds(self) -> float:
        """User and system CPU seconds of the server and its children so far."""
        total = 0.0
        for process in (self.process, *self.process.children(recursive=True)):
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def database_bytes(self) -> int:
        """The SQLite database with its write-ahead log."""
        return sum(p.stat().st_size for p in self.home.glob("prefect.db*"))

    def events_share(self) -> float:
        """The part of the database the events take (tables and indexes; vacuumed by the events retention)."""
        import sqlite3

        copy = self.results_home / "measured.db"
        with sqlite3.connect(self.home / "prefect.db") as live, sqlite3.connect(copy) as snapshot:
            live.backup(snapshot)  # a consistent copy while the server writes (its write-ahead log included)
        try:
            with sqlite3.connect(copy) as db:
                sizes = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
                tables = dict(db.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
        finally:
            copy.unlink()
        events = sum(size for name, size in sizes.items() if tables.get(name, name).startswith("event"))
        return events / sum(sizes.values())

    def result_files(self) -> tuple[int, int]:
        """(count, bytes) of Prefect's result files: its default local storage and the CLI's (``ovro-ingest-results``)."""
        folders = ("storage", RESULTS_FOLDER)
        files = [p for folder in folders for p in (self.results_home / folder).rglob("*") if p.is_file()]
        return len(files), sum(p.stat().st_size for p in files)

    def graph_nodes(self, flow_run_id: str) -> dict:
        """Nodes of the run graph of a flow run and of each of its child runs: the largest and how many runs."""
        children = httpx.post(
            f"{self.api_url}/flow_runs/filter",
            json={"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}, "limit": 200},
            timeout=60,
        ).json()
        sizes = {}
        for run_id in (flow_run_id, *(child["id"] for child in children)):
            response = httpx.get(f"{self.api_url}/flow_runs/{run_id}/graph-v2", timeout=120)
            sizes[run_id] = len(response.json()["nodes"]) if response.status_code == 200 else response.text[:200]
        numbers = [v for v in sizes.values() if isinstance(v, int)]
        return {
            "parent_nodes": sizes[flow_run_id],
            "child_runs": len(children),
            "largest_child_nodes": max(
                (v for k, v in sizes.items() if k != flow_run_id and isinstance(v, int)), default=0
            ),
            "over_the_limit": [v for v in sizes.values() if not isinstance(v, int)],
            "largest_nodes": max(numbers, default=0),
        }


def command_line(process: psutil.Process) -> list[str]:
    """The arguments of ``process``, or none when it cannot be read (gone, or another user's)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def first_write(store: Path, moments: list[float]):
    """A watch for ``run_measured``: True once the store's commit record holds a time step (its epoch into ``moments``)."""

    def stored() -> bool:
        try:
            metadata = json.loads((store / "zarr.json").read_text())
            held = metadata["consolidated_metadata"]["metadata"]["time"]["shape"][0] > 0
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if held:
            moments.append(time.time())
        return held

    return stored


def tiny_folders(work: Path, counts: list[int], size: int) -> dict[int, Path]:
    """One folder per N: hard links to the first N time steps of one generated night (10 subbands)."""
    source = work / "tiny-night"
    if not source.is_dir():
        started = time.perf_counter()
        generate(source, time_steps=max(counts), n_subbands=10, size=size)
        print(f"generated {max(counts)} tiny time steps in {time.perf_counter() - started:.0f} s", flush=True)
    steps = discover_time_steps(source).time_steps
    folders = {}
    for n in counts:
        folder = work / f"tiny-{n}"
        if not folder.is_dir():
            folder.mkdir()
            for step in steps[:n]:
                for f in step.files:
                    os.link(f.path, folder / Path(f.path).name)
        folders[n] = folder
    return folders


def fresh_store(work: Path, name: str) -> Path:
    """A new store path; earlier stores are removed and the disk flushed first."""
    stores = work / "stores"
    shutil.rmtree(stores, ignore_errors=True)
    os.sync()
    return stores / f"{name}.zarr"


def measure_run(server: Server, command: list[str], env: dict, store: Path, n: int) -> dict:
    """One measured run against ``server``: time, memory, first write, server CPU, database and result growth."""
    moments: list[float] = []
    cpu, database, (count, size) = server.cpu_seconds(), server.database_bytes(), server.result_files()
    measured: Measured = run_measured(command, env, watch=first_write(store, moments))
    if measured.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{measured.output[-4000:]}")
    time.sleep(2)  # the server's last event writes
    result = measured.result()
    after_count, after_size = server.result_files()
    row = {
        **measured.summary(),
        "time_steps": n,
        "work_seconds": round(result.get("seconds", measured.seconds), 3),
        "seconds_per_time_step": round(result.get("seconds", measured.seconds) / n, 4),
        "server_cpu_seconds": round(server.cpu_seconds() - cpu, 2),
        "database_bytes": server.database_bytes() - database,
        "result_files": after_count - count,
        "result_bytes": after_size - size,
    }
    if "started_at" in result and moments:
        row["first_write_after_flow_start_s"] = round(moments[0] - result["started_at"], 2)
    if "flow_run_id" in result:
        row["graph"] = server.graph_nodes(result["flow_run_id"])
    print(f"{Path(command[2]).name if len(command) > 2 else command[0]} {n}: {row}", flush=True)
    return row


def measure_tiny(server: Server, work: Path, counts: list[int], size: int, env: dict) -> dict:
    """Flow and plain functions on N tiny time steps, for every N."""
    results = {}
    for n, folder in tiny_folders(work, counts, size).items():
        store = fresh_store(work, f"flow-{n}")
        results[f"flow_{n}"] = measure_run(
            server, [PYTHON, WORKLOADS, "flow", str(folder), str(store), str(THREADS), str(size)], env, store, n
        )
        store = fresh_store(work, f"plain-{n}")
        results[f"plain_{n}"] = measure_run(
            server, [PYTHON, WORKLOADS, "plain", str(folder), str(store), str(THREADS), str(size)], env, store, n
        )
    return results


def measure_large(server: Server, work: Path, size: int, time_steps: int, chunk: int, env: dict) -> dict:
    """The large-image case: floor, flow on 3 and on all time steps, plain functions, the CLI on 3, no-op re-runs."""
    folder = work / f"large-{size}"
    if not folder.is_dir():
        started = time.perf_counter()
        generate(folder, time_steps=time_steps, n_subbands=10, size=size)
        print(f"generated {time_steps} x 10 x {size}² in {time.perf_counter() - started:.0f} s", flush=True)
    steps = discover_time_steps(folder).time_steps
    for path in sorted(folder.glob("*.fits")):  # a warm page cache, for every measurement alike
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    three = [s.key for s in steps[:3]]
    results: dict[str, dict] = {}
    files_3 = [f.path for s in steps[:3] for f in s.files]
    store = fresh_store(work, "floor-3")
    floor = run_measured([PYTHON, WORKLOADS, "floor", str(store), str(chunk), str(THREADS), *files_3], env)
    results["floor_3"] = {**floor.summary(), "work_seconds": round(floor.result()["seconds"], 3)}
    store = fresh_store(work, "cli-3")
    command = [CLI, "run", str(folder), str(store), "--chunk-lm", str(chunk), "--workers", str(THREADS), "--quiet"]
    command += [arg for key in three for arg in ("--time-steps", key)]
    results["cli_3_with_server"] = measure_run(server, command, env, store, 3)
    results["cli_3_noop_with_server"] = measure_run(server, command, env, store, 3)
    no_server = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    no_server["PREFECT_HOME"] = str(work / "prefect-none")
    measured = run_measured(command, {**no_server, "PREFECT_API_URL": ""})
    results["cli_3_noop_without_server"] = {**measured.summary(), "time_steps": 3}
    for n in (3, time_steps):
        store = fresh_store(work, f"flow-large-{n}")
        keys = [s.key for s in steps[:n]]
        command = [PYTHON, WORKLOADS, "flow", str(folder), str(store), str(THREADS), str(chunk), *keys]
        results[f"flow_large_{n}"] = measure_run(server, command, env, store, n)
    store = fresh_store(work, "plain-large")
    command = [PYTHON, WORKLOADS, "plain", str(folder), str(store), str(THREADS), str(chunk)]
    results[f"plain_large_{time_steps}"] = measure_run(server, command, env, store, time_steps)
    return results


def marginal(results: dict, kind: str, small: int, large: int) -> float:
    """Seconds of one more time step: the difference of two runs over the difference of their sizes."""
    a, b = results[f"{kind}_{small}"], results[f"{kind}_{large}"]
    return (b["work_seconds"] - a["work_seconds"]) / (large - small)


def headline(results: dict, counts: list[int], large_steps: int) -> dict:
    """Per-time-step costs, flatness of memory, and the extrapolation to a night of 4,320 x 16 x 4096²."""
    small, large = counts[-2], counts[-1]
    flow_step, plain_step = marginal(results, "flow", small, large), marginal(results, "plain", small, large)
    big = [results[f"flow_{n}"] for n in counts]
    per_step = {
        key: (big[-1][key] - big[-2][key]) / (large - small)
        for key in ("server_cpu_seconds", "database_bytes", "result_files", "result_bytes")
    }
    large_flow = (results[f"flow_large_{large_steps}"]["work_seconds"] - results["flow_large_3"]["work_seconds"]) / (
        large_steps - 3
    )
    night_step = large_flow * NIGHT_SUBBANDS / 10
    floor, cli = results["floor_3"], results["cli_3_with_server"]
    night_db = NIGHT_TIME_STEPS * per_step["database_bytes"]
    events = results["database"]["events_share"]
    return {
        "flow_s_per_time_step": round(flow_step, 4),
        "plain_s_per_time_step": round(plain_step, 4),
        "orchestration_s_per_time_step": round(flow_step - plain_step, 4),
        "server_cpu_s_per_time_step": round(per_step["server_cpu_seconds"], 4),
        "peak_rss_gb_by_n": {n: results[f"flow_{n}"]["peak_rss_gb"] for n in counts},
        "peak_rss_gb_large": results[f"flow_large_{large_steps}"]["peak_rss_gb"],
        "first_write_s_by_n": {n: results[f"flow_{n}"].get("first_write_after_flow_start_s") for n in counts},
        "largest_graph_nodes": max(results[f"flow_{n}"]["graph"]["largest_nodes"] for n in counts),
        "database_kb_per_time_step": round(per_step["database_bytes"] / 1e3, 2),
        "result_files_per_time_step": round(per_step["result_files"], 2),
        "result_kb_per_time_step": round(per_step["result_bytes"] / 1e3, 2),
        "cli_3_over_floor_3_wall": round(floor["seconds"] / cli["seconds"], 3),
        "cli_noop_with_server_s": results["cli_3_noop_with_server"]["seconds"],
        "cli_noop_without_server_s": results["cli_3_noop_without_server"]["seconds"],
        "large_flow_s_per_time_step": round(large_flow, 3),
        "night": {
            "time_steps": NIGHT_TIME_STEPS,
            "subbands": NIGHT_SUBBANDS,
            "hours": round(NIGHT_TIME_STEPS * night_step / 3600, 2),
            "orchestration_hours": round(NIGHT_TIME_STEPS * (flow_step - plain_step) / 3600, 3),
            "server_cpu_hours": round(NIGHT_TIME_STEPS * per_step["server_cpu_seconds"] / 3600, 3),
            "database_mb": round(night_db / 1e6, 1),
            "result_mb": round(NIGHT_TIME_STEPS * per_step["result_bytes"] / 1e6, 1),
            "database_events_share": events,
            "database_gb_after_a_year_without_retention": round(365 * night_db / 1e9, 2),
            "database_gb_with_retention": round(RETENTION_DAYS * night_db / 1e9, 2),
            "database_gb_with_retention_events_7_days": round(
                (7 * events + RETENTION_DAYS * (1 - events)) * night_db / 1e9, 2
            ),
            "result_gb_with_retention": round(RETENTION_DAYS * NIGHT_TIME_STEPS * per_step["result_bytes"] / 1e9, 2),
            "graph_nodes_per_child_run": 360 * 5,
        },
    }


def markdown(report: dict) -> str:
    """The report as a page (docs/benchmarks/night-scale.md copies its tables)."""
    p, m, r, h = report["parameters"], report["machine"], report["results"], report["headline"]
    lines = [
        "# A night at scale",
        "",
        f"Generated by `{report['command']}`; do not edit by hand. Machine: {m['cpus']} CPUs, {m['memory_gb']} GB, "
        f"{m['platform']}, Python {m['python']}, {m['date']}. Total {report['total_seconds']:.0f} s. "
        f"Load average at start and end (1, 5, 15 min): {m['load_average_1_5_15_min']}.",
        "",
        f"Tiny images: 10 subbands of {p['tiny_size']}²; large: {p['large_steps']} x 10 x {p['large_size']}². "
        "Every run against one running Prefect server (SQLite).",
        "",
        "| run | N | work s | s / time step | peak RSS GB (tree) | first write s | server CPU s | DB kB | result files | largest graph |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in r.items():
        if not isinstance(row, dict) or "time_steps" not in row:
            continue
        graph = row.get("graph", {}).get("largest_nodes", "")
        lines.append(
            f"| {name} | {row['time_steps']} | {row.get('work_seconds', row['seconds'])} | "
            f"{row.get('seconds_per_time_step', '')} | {row['peak_rss_gb']} | {row.get('first_write_after_flow_start_s', '')} | "
            f"{row.get('server_cpu_seconds', '')} | {round(row.get('database_bytes', 0) / 1e3)} | {row.get('result_files', '')} | {graph} |"
        )
    lines += ["", "| headline | value |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in h.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--work", type=Path, default=REPO / ".benchmark-work" / "night")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--api-url", help="report to this running Prefect server instead of starting one")
    parser.add_argument("--server-home", type=Path, help="that server's Prefect home (its database), with --api-url")
    args = parser.parse_args()
    if bool(args.api_url) != bool(args.server_home):
        parser.error("--api-url and --server-home go together")
    counts, tiny, large_size, large_steps, chunk = [20, 500, 2000], 64, 4096, 10, 1024
    if args.quick:
        # 12 large time steps: the one-more-time-step cost (12 against 3) stands above a busy machine's noise
        counts, tiny, large_size, large_steps, chunk = [2, 4], 32, 128, 12, 64
    started, load_before = time.perf_counter(), os.getloadavg()
    shutil.rmtree(args.work, ignore_errors=True)
    home = args.work / "prefect"
    home.mkdir(parents=True)
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "OVRO_INGEST_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    from flows.server import local_server_process

    try:
        with ExitStack() as stack:
            api_url = args.api_url or stack.enter_context(local_server_process(home / "server.log"))
            server = Server(api_url, args.server_home or home, home)
            env["PREFECT_API_URL"] = api_url
            results = measure_tiny(server, args.work, counts, tiny, env)
            results["database"] = {"events_share": round(server.events_share(), 3)}
            results.update(measure_large(server, args.work, large_size, large_steps, chunk, env))
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    report = {
        "command": "benchmarks/night_scale.py" + (" --quick" if args.quick else ""),
        "parameters": {"counts": counts, "tiny_size": tiny, "large_size": large_size, "large_steps": large_steps},
        "machine": {**machine(), "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()}},
        "total_seconds": time.perf_counter() - started,
        "results": results,
        "headline": headline(results, counts, large_steps),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "night_scale.json").write_text(json.dumps(report, indent=2))
    (args.out / "night_scale.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
