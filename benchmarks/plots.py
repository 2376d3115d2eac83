"""Plots of the committed benchmark results, for the documentation's benchmark pages.

Reads the JSON files the benchmark scripts write into ``benchmarks/results/`` and draws
one PNG per result file into ``docs/benchmarks/``. A result file that is missing is
skipped with a message; the other plots are drawn all the same.

Run it with::

    .venv/bin/python benchmarks/plots.py
    .venv/bin/python benchmarks/plots.py --results FOLDER --out FOLDER
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parent.parent
Result = dict[str, Any]


def log_n_axis(ax: Axes, counts: list[int], label: str = "N time steps") -> None:
    """Put the measured counts as ticks on a logarithmic x axis.

    Parameters
    ----------
    ax
        The axes to change.
    counts
        The values of N that were measured.
    label
        The x axis label.
    """
    ax.set_xscale("log")
    ax.set_xticks(counts, [f"{n:,}" for n in counts])
    ax.minorticks_off()
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)


def night_scale(result: Result) -> Figure:
    """Seconds per time step and peak memory against N, flow and plain functions (``night_scale.py``).

    Parameters
    ----------
    result
        The content of ``night_scale.json``.

    Returns
    -------
    Figure
        Two panels: seconds per time step, and peak memory of the process tree.
    """
    runs, counts = result["results"], result["parameters"]["counts"]
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for kind, label in (("flow", "`ingest` flow"), ("plain", "plain functions")):
        speed.plot(counts, [runs[f"{kind}_{n}"]["seconds_per_time_step"] for n in counts], "o-", label=label)
        memory.plot(counts, [runs[f"{kind}_{n}"]["peak_rss_gb"] for n in counts], "o-", label=label)
    orchestration = [
        runs[f"flow_{n}"]["seconds_per_time_step"] - runs[f"plain_{n}"]["seconds_per_time_step"] for n in counts
    ]
    speed.plot(counts, orchestration, "s--", label="orchestration (flow - plain)")
    speed.axhline(0.25, color="grey", linestyle=":", label="target for orchestration, 0.25 s")
    memory.axhline(1.0, color="grey", linestyle=":", label="target, 1.0 GB")
    speed.set(ylabel="seconds per time step", ylim=(0, None), title="Work per time step, 10 x 64²")
    memory.set(ylabel="peak memory, process tree (GB)", ylim=(0, 1.1), title="Peak memory")
    for ax in (speed, memory):
        log_n_axis(ax, counts)
        ax.legend(fontsize="small")
    return figure


def year_ledger(result: Result) -> Figure:
    """What every run pays for the ledger as a store grows to a year (``year_ledger.py``).

    Parameters
    ----------
    result
        The content of ``year_ledger.json``.

    Returns
    -------
    Figure
        Two log-log panels: what reads the whole ledger, and what reads a night or an hour of it;
        the extrapolation to a year as open markers.
    """
    rows, year = result["rows"], result["year"]
    counts = [row["time_steps"] for row in rows]
    whole = {
        "validate_s": "validate",
        "timeseries_plan_every_entry_s": "time-series plan, every entry",
        "state_and_time_keys_s": "state and time keys",
        "open_with_xarray_s": "open with xarray",
    }
    part = {
        "timeseries_update_after_a_night_s": "time-series update after a night",
        "validate_an_hour_s": "validate an hour",
        "timeseries_plan_after_a_night_s": "time-series plan, a night's",
        "an_hours_ledger_s": "an hour's ledger",
        "append_one_time_step_s": "append one time step",
        "a_nights_quick_look_found_s": "a night's quick look found",
        "a_nights_keys_located_s": "a night's keys located",
    }
    figure, axes = plt.subplots(1, 2, figsize=(11, 5.5), layout="constrained")
    for ax, columns, title in zip(
        axes, (whole, part), ("Reads the whole ledger", "Reads a night or an hour"), strict=True
    ):
        for key, label in columns.items():
            (line,) = ax.plot(counts, [row[key] for row in rows], "o-", label=label)
            ax.plot([counts[-1], 1_576_800], [rows[-1][key], year[key]], ":", color=line.get_color())
            ax.plot([1_576_800], [year[key]], "o", markerfacecolor="none", color=line.get_color())
        ax.set_yscale("log")
        log_n_axis(ax, [*counts, 1_576_800], "N time steps (open marker: a year, extrapolated)")
        ax.tick_params(axis="x", labelrotation=30)
        ax.set(ylabel="seconds", title=title)
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=2)
    return figure


def timeseries_read(result: Result) -> Figure:
    """Time-series store against archive, and the build against a plain copy (``timeseries_read.py``).

    Parameters
    ----------
    result
        The content of ``timeseries.json``.

    Returns
    -------
    Figure
        Three panels: read times of both stores, build and floor throughput, peak memory.
    """
    rows = result["rows"]
    counts = [row["n_time"] for row in rows]
    reads = {
        "spectrum": "dynamic spectrum",
        "tracked": "tracked source",
        "light_curve": "light curve",
        "image": "one image",
        "cube": "one time step, every subband",
    }
    figure, (read, build, memory) = plt.subplots(1, 3, figsize=(14, 4.5), layout="constrained")
    for key, label in reads.items():
        (line,) = read.plot(counts, [row["timeseries_s"][key] for row in rows], "o-", label=label)
        read.plot(counts, [row["archive_s"][key] for row in rows], "o--", color=line.get_color())
    read.set_yscale("log")
    read.set(ylabel="seconds", title="Reads: time-series store (solid), archive (dashed)")
    read.legend(fontsize="small")
    for key, style, label in (
        ("build", "o-", "build (`update_timeseries`)"),
        ("floor", "o--", "plain read-and-rewrite"),
    ):
        build.plot(counts, [row["gb"] / row[key]["seconds"] for row in rows], style, label=label)
    build.set(ylabel="GB of pixels per second", ylim=(0, None), title="Building it from the archive")
    build.legend(fontsize="small")
    memory.plot(counts, [row["build"]["peak_rss_gb"] for row in rows], "o-", label="build")
    memory.plot(counts, [row["floor"]["peak_rss_gb"] for row in rows], "o--", label="plain read-and-rewrite")
    memory.axhline(1.5, color="grey", linestyle=":", label="target, 1.5 GB")
    memory.set(ylabel="peak memory (GB)", ylim=(0, 1.6), title="Peak memory of the build")
    memory.legend(fontsize="small", loc="center right")
    for ax in (read, build, memory):
        log_n_axis(ax, counts)
    return figure


def ingest_speed(result: Result) -> Figure:
    """Work seconds and peak memory of each measurement, side by side (``ingest_speed.py``).

    Parameters
    ----------
    result
        The content of ``ingest_speed.json``.

    Returns
    -------
    Figure
        Two bar panels; memory on a logarithmic axis, since the reference takes 12 GB.
    """
    labels = {
        "floor": "floor: memmap -> one Zarr array",
        "plain_functions": "plain functions",
        "flow": "`ingest` flow, 10 time steps",
        "cli_with_server": "`ovro-ingest run`, server running",
        "flow_cached_rerun": "the flow again, fully cached",
        "flow_first_3": "flow, first 3 time steps",
        "flow_2048": "flow, 10 time steps of 2048²",
        "reference_first_3": "ovro-lwa-portal 0.1.0, first 3",
    }
    runs = {key: result["results"][key] for key in labels if key in result["results"]}
    names = [labels[key] for key in runs][::-1]
    figure, (work, memory) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained", sharey=True)
    work.barh(names, [run["work_seconds"] for run in runs.values()][::-1], color="tab:blue")
    memory.barh(names, [run["peak_rss_gb"] for run in runs.values()][::-1], color="tab:orange")
    memory.axvline(1.5, color="grey", linestyle=":", label="target, 1.5 GB")
    work.set(xlabel="work seconds", title="10 x 10 x 4096² (6.7 GB of FITS)")
    memory.set(xscale="log", xlabel="peak memory, process tree (GB)", title="Peak memory")
    memory.legend(fontsize="small")
    for ax in (work, memory):
        ax.grid(True, axis="x", alpha=0.3)
    return figure


def append_cost(result: Result) -> Figure:
    """Seconds per append as the store grows (``append_cost.py``).

    Parameters
    ----------
    result
        The content of ``append_cost.json``.

    Returns
    -------
    Figure
        One panel: the write, the commit and both, per append.
    """
    appends = result["appends"]
    stored = [a["n_stored_before"] for a in appends]
    figure, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    for key, label in (("append_s", "append (write + commit)"), ("write_s", "write (staging)"), ("commit_s", "commit")):
        ax.plot(stored, [a[key] for a in appends], ".-", linewidth=0.8, label=label)
    p = result["parameters"]
    ax.set(
        xlabel="time steps in the store before the append",
        ylabel="seconds",
        ylim=(0, None),
        title=f"Append cost, {p['subbands']} subbands of {p['size']}²",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return figure


def codec_choice(result: Result) -> Figure:
    """Compression ratio against write speed of each codec, per input (``codec_choice.py``).

    Parameters
    ----------
    result
        The content of ``codec_choice.json``.

    Returns
    -------
    Figure
        One panel per input image; the chosen default ringed.
    """
    chosen = result["recommendation"]["pooled"]["recommended"]["codec"]
    inputs = result["inputs"]
    figure, axes = plt.subplots(1, len(inputs), figsize=(4.5 * len(inputs), 4), layout="constrained", squeeze=False)
    for ax, name in zip(axes[0], inputs, strict=True):
        for family, marker in (("none", "s"), ("lz4", "o"), ("zstd", "^")):
            records = [r for r in result["records"] if r["input"] == name and r["cname"] == family]
            ax.plot([r["write_mb_s"] for r in records], [r["ratio"] for r in records], marker, label=family)
        best = [r for r in result["records"] if r["input"] == name and r["codec"] == chosen]
        ax.plot([r["write_mb_s"] for r in best], [r["ratio"] for r in best], "ko", markersize=14, fillstyle="none")
        ax.set(
            xlabel="write MB/s",
            ylabel="ratio",
            title=name.split("_averaged")[0] + (", 512²" if "real" in name else ", 4096²"),
        )
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", title=f"ringed: {chosen}", title_fontsize="small")
    return figure


def timeseries_layouts(result: Result) -> Figure:
    """The candidate time-series layouts: spectrum speed-up against image cost (``timeseries_layouts.py``).

    Parameters
    ----------
    result
        The content of ``timeseries_layouts.json``.

    Returns
    -------
    Figure
        One log-log panel; the archive and the choices named.
    """
    rows = result["rows"]
    archive = rows[0]

    def where(row: Result) -> tuple[float, float]:
        return archive["spectrum_plain_s"] / row["spectrum_plain_s"], row["image_plain_s"] / archive["image_plain_s"]

    figure, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    ax.plot(*where(archive), "k*", markersize=10, label="the archive (1, 1, 1024²)")
    for compressed, marker, label in ((True, "o", "Blosc lz4"), (False, "s", "uncompressed")):
        xs, ys = zip(*(where(r) for r in rows[1:] if ("uncompressed" not in r["layout"]) == compressed), strict=True)
        ax.plot(xs, ys, marker, label=label)
    ax.axvline(50, color="grey", linestyle=":", label="targets: spectrum 50x faster, image at most 3x slower")
    ax.axhline(3, color="grey", linestyle=":")
    choices = [r for r in rows if "[" in r["layout"]]
    offsets = [(-170, 25), (-60, 35), (-190, -45), (-110, -70)]  # points, so that the four names stay apart
    for i, r in enumerate(choices):
        # "shards (8, F, 256²) of (4, F, 128²), uncompressed [chosen]" -> "chosen: (4, F, 128²), uncompressed"
        name = r["layout"].split("[")[1].rstrip("]") + ": " + r["layout"].split(" of ")[-1].split(" [")[0]
        ax.annotate(
            name,
            where(r),
            xytext=offsets[i % len(offsets)],
            textcoords="offset points",
            fontsize="x-small",
            arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5},
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="dynamic spectrum, archive time / layout time (higher is better)",
        ylabel="one image, layout time / archive time (lower is better)",
        title=f"{result['time_steps']} time steps x {result['subbands']} subbands of {result['size']}², plain zarr reads",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return figure


PLOTS: dict[str, tuple[str, Callable[[Result], Figure]]] = {
    "night_scale.png": ("night_scale.json", night_scale),
    "year_ledger.png": ("year_ledger.json", year_ledger),
    "timeseries_read.png": ("timeseries.json", timeseries_read),
    "ingest_speed.png": ("ingest_speed.json", ingest_speed),
    "append_cost.png": ("append_cost.json", append_cost),
    "codec_choice.png": ("codec_choice.json", codec_choice),
    "timeseries_layouts.png": ("timeseries_layouts.json", timeseries_layouts),
}
"""Each plot's file name, the result file it is drawn from, and the function that draws it."""


def main(argv: list[str] | None = None) -> int:
    """Draw every plot whose result file exists.

    Parameters
    ----------
    argv
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0, also when some result files were missing.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", type=Path, default=REPO / "benchmarks" / "results", help="folder of the JSON results"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks", help="folder for the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for png, (source, draw) in PLOTS.items():
        path = args.results / source
        if not path.is_file():
            print(f"skipped {png}: no {path} (run the benchmark that writes it)")
            continue
        figure = draw(json.loads(path.read_text()))
        figure.savefig(args.out / png, dpi=110)
        plt.close(figure)
        print(f"wrote {args.out / png} from {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
