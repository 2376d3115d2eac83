"""What a run shows in the Prefect UI: a table per time step, a markdown summary with a quick-look picture."""

from __future__ import annotations

import base64
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.summary import IngestSummary
from ovro_ingest.handle import Store
from ovro_ingest.models import Manifest
from ovro_ingest.quicklook import QuickLook, draw_nights, thumbnail_png

LISTED = 20
"""Failures and left-out files the summary names one by one."""


def time_step_rows(summary: IngestSummary) -> list[dict]:
    """One table row per time step: files, subbands, status, seconds, bytes written."""
    return [
        {
            "time step": o.key,
            "files": o.n_files,
            "subbands": o.n_subbands,
            "status": o.status,
            "index": "" if o.index is None else o.index,
            "seconds": round(o.seconds, 2),
            "MB written": round(o.bytes_written / 1e6, 1),
            "error": o.error or "",
        }
        for o in summary.outcomes
    ]


MAX_EMBEDDED_IMAGE_CHARS = 60_000
"""Largest quick-look thumbnail embedded in the summary artifact, base64 characters: every run's artifact is
kept in the Prefect server's database (measured: 18-36 kB for synthetic and real images, 4096² and 512²)."""


def summary_markdown(
    summary: IngestSummary, manifest: Manifest, pictures: list[QuickLook], thumbnail: bytes | None = None
) -> str:
    """Totals, frequency range, store size, and what was skipped or failed and why."""
    written = sum(o.bytes_written for o in summary.outcomes)
    seconds = sum(o.seconds for o in summary.outcomes)
    lines = [
        f"### Ingest into `{summary.store}`",
        "",
        f"- **time steps**: {summary.one_line()}",
        f"- **written**: {written / 1e6:.1f} MB of pixels in {seconds:.1f} s of writing",
        f"- **input**: `{manifest.path}` lists {manifest.n_files} files in {manifest.n_time_steps} time steps",
    ]
    store = Store.at(summary.store)
    if store.exists():
        state = store.state()
        sky = Path(summary.store) / "SKY"
        newest = sky / "c" / str(state.n_time - 1) if state.settings.zarr_format == 3 else None
        per_step = sum(p.stat().st_size for p in newest.rglob("*") if p.is_file()) if newest and newest.exists() else 0
        lines += [
            f"- **frequencies**: {len(state.frequencies_hz)} channels, "
            f"{state.frequencies_hz.min() / 1e6:.3f} to {state.frequencies_hz.max() / 1e6:.3f} MHz",
            f"- **store**: {state.n_time} time steps"
            + (f", about {per_step * state.n_time / 1e9:.2f} GB (newest time step x time steps)" if per_step else ""),
        ]
    if manifest.n_skipped:
        examples = ", ".join(f"`{name}`" for name in manifest.skipped_examples)
        lines.append(f"- **skipped**: {manifest.n_skipped} files named after neither convention, e.g. {examples}")
    left_out = [item for o in summary.outcomes for item in o.left_out]
    lines += [f"- **left out** {item.source.path}: {item.reason}" for item in left_out[:LISTED]]
    failed = summary.failed
    lines += [f"- **failed** {o.key}: {o.error}" for o in failed[:LISTED]]
    if len(left_out) > LISTED or len(failed) > LISTED:
        lines.append(
            f"- ... {len(left_out)} files left out and {len(failed)} time steps failed in all: see each hour's table"
        )
    lines += quicklook_lines(pictures, thumbnail)
    return "\n".join(lines)


def quicklook_lines(pictures: list[QuickLook], thumbnail: bytes | None) -> list[str]:
    """The newest night's picture, embedded (the UI shows a ``data:`` image; a file path it cannot open), and where
    the full pictures are, on the machine that ran the flow."""
    if not pictures:
        return []
    newest = pictures[-1]
    lines = ["", f"**Quick look**, night {newest.night}: {newest.title} (time step {newest.time_key})"]
    encoded = base64.b64encode(thumbnail).decode() if thumbnail else ""
    if encoded and len(encoded) <= MAX_EMBEDDED_IMAGE_CHARS:
        lines += ["", f"![quick look of {newest.night}](data:image/png;base64,{encoded})"]
    lines += [""] + [f"- full picture of {p.night}: `{p.path}` (on the machine that ran the flow)" for p in pictures]
    return lines


def publish(summary: IngestSummary, manifest: Manifest, work_dir: str) -> Path | None:
    """Create the run's summary artifact and redraw the quick look of each night the run stored time steps of.

    The pictures go to ``<work_dir>/quicklook/<YYYY-MM-DD>.png`` (one per night, UTC
    date); the summary artifact embeds a thumbnail of the newest. Returns the newest
    picture's path (None when the run stored nothing or drawing failed), for the CLI to print.
    The table of time steps is each hour's (:func:`publish_hour`): a night's 4,320 rows
    in one artifact would be one large row of the server's database.
    """
    pictures: list[QuickLook] = []
    thumbnail = None
    changed = [o.key for o in summary.outcomes if o.status in ("written", "replaced")]
    if changed and Store.at(summary.store).exists():  # else the nights' pictures are still current
        try:
            pictures = draw_nights(summary.store, work_dir, changed)
            thumbnail = thumbnail_png(pictures[-1].path) if pictures else None
        except Exception as error:  # a picture must never fail a run that stored its data
            get_run_logger().warning("no quick-look picture: %s", error)
    create_markdown_artifact(
        key="ingest-summary",
        markdown=summary_markdown(summary, manifest, pictures, thumbnail),
        description="Summary",
    )
    return pictures[-1].path if pictures else None


def publish_hour(summary: IngestSummary) -> None:
    """The table of an hour's time steps (the artifact of an ``ingest-hour`` child run)."""
    create_table_artifact(key="ingest-time-steps", table=time_step_rows(summary), description="Each time step")
