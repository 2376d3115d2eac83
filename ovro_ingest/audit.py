"""Audit an input directory without writing anything: would an ingest succeed, and what will it meet?

Reads headers only (no pixels, no xradio), so a night of files is audited in
seconds. Per time step it reports the subbands found and missing, the DATE-OBS
spread, the offset between the file-name time stamp and DATE-OBS, frequency jitter,
beam problems, pixel-grid mismatches, files that will need a fixed copy, and files
that cannot be ingested at all.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ovro_ingest.combine import SAME_CHANNEL_TOLERANCE_HZ
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import IngestError
from ovro_ingest.headers import (
    check_complete,
    frequency_from_header,
    image_hdu_index,
    needed_corrections,
    open_fits,
)
from ovro_ingest.load import (
    beam_problem,
    frequency_of,
    header_wcs,
    name_time_offset_s,
    observation_time,
    spatial_grid,
)
from ovro_ingest.models import SourceFile, SpatialGrid


@dataclass
class FileAudit:
    """What the headers of one file say."""

    path: str
    subband: str
    frequency_hz: float | None = None
    time_mjd: float | None = None
    grid: SpatialGrid | None = None
    corrections: list[str] = field(default_factory=list)
    beam_problem: str | None = None
    error: str | None = None


@dataclass
class TimeStepAudit:
    """What an ingest would meet in one time step."""

    key: str
    files: list[FileAudit]
    missing_subbands: list[str] = field(default_factory=list)
    date_obs_spread_s: float = 0.0
    name_offset_s: float | None = None
    problems: list[str] = field(default_factory=list)
    """Why the time step would fail (empty: it would be stored)."""
    notes: list[str] = field(default_factory=list)
    """What would be stored with a warning or a correction."""

    @property
    def ok(self) -> bool:
        """True when an ingest would store this time step."""
        return not self.problems


@dataclass
class AuditReport:
    """The audit of an input directory."""

    input_dir: str
    time_steps: list[TimeStepAudit]
    skipped: list[str]
    channels_hz: list[float]
    max_jitter_hz: float

    @property
    def ok(self) -> bool:
        """True when an ingest would store every time step."""
        return all(step.ok for step in self.time_steps)


def audit_file(source: SourceFile) -> FileAudit:
    """Read the facts an ingest needs from one file's header, and what would go wrong."""
    result = FileAudit(path=source.path, subband=source.subband)
    try:
        with open_fits(source.path) as hdulist:
            index = image_hdu_index(hdulist, source.path)
            check_complete(hdulist, index, source.path)
            header = hdulist[index].header
            result.corrections = needed_corrections(header, index > 0, source)
            result.frequency_hz = header_frequency(header, source)
            result.time_mjd, _ = observation_time(header, source.path)
            result.grid = spatial_grid(header)
            result.beam_problem = beam_problem(header)
    except IngestError as error:
        result.error = str(error)
    except (KeyError, ValueError, OSError) as error:
        result.error = f"{source.path}: unreadable header ({type(error).__name__}: {error})"
    return result


def header_frequency(header: fits.Header, source: SourceFile) -> float:
    """The image frequency as the ingest reads it: its FREQ axis (units included), else RESTFRQ."""
    axes = range(1, header["NAXIS"] + 1)
    if any(str(header.get(f"CTYPE{axis}", "")).strip().startswith("FREQ") for axis in axes):
        return frequency_of(header, header_wcs(header), source.path)
    return frequency_from_header(header, source)[0]


def channels_of(files: list[FileAudit]) -> list[float]:
    """The channels an ingest of these files would create (frequencies closer than the tolerance merged)."""
    channels: list[float] = []
    for frequency in sorted(f.frequency_hz for f in files if f.frequency_hz is not None):
        if not channels or frequency - channels[-1] > SAME_CHANNEL_TOLERANCE_HZ:
            channels.append(frequency)
    return channels


def audit_time_step(key: str, files: list[FileAudit], grid: SpatialGrid | None, labels: set[str]) -> TimeStepAudit:
    """Judge one time step: what fails it, what is only worth a note."""
    step = TimeStepAudit(key=key, files=files)
    usable = [f for f in files if f.error is None and f.beam_problem is None]
    step.problems += [f.error for f in files if f.error]
    step.notes += [f"{Path(f.path).name}: {f.beam_problem}; it would be left out" for f in files if f.beam_problem]
    step.notes += [f"{Path(f.path).name}: {'; '.join(f.corrections)}" for f in files if f.corrections and not f.error]
    if not usable and not step.problems:
        step.problems.append(f"time step {key}: no file with a valid beam")
    counts = Counter(f.subband for f in files)
    step.problems += [f"time step {key}: {n} files for subband {label}" for label, n in counts.items() if n > 1]
    by_frequency = sorted((f for f in usable if f.frequency_hz is not None), key=lambda f: f.frequency_hz)
    for lower, upper in itertools.pairwise(by_frequency):
        if upper.frequency_hz - lower.frequency_hz < SAME_CHANNEL_TOLERANCE_HZ and lower.subband != upper.subband:
            step.problems.append(f"time step {key}: two files for one frequency: {lower.path} and {upper.path}")
    step.missing_subbands = sorted(labels - set(counts), key=lambda label: int(label.removesuffix("MHz")))
    if step.missing_subbands:
        step.notes.append(f"missing subbands {', '.join(step.missing_subbands)} (stored as NaN)")
    for f in usable:
        if grid is not None and f.grid != grid:
            step.problems.append(f"{f.path}: pixel grid {f.grid.describe()} differs from the run's {grid.describe()}")
    times = [f.time_mjd for f in usable if f.time_mjd is not None]
    if times:
        step.date_obs_spread_s = (max(times) - min(times)) * 86400.0
        step.name_offset_s = name_time_offset_s(key, min(times))
    return step


def audit_directory(input_dir: str | os.PathLike[str]) -> AuditReport:
    """Audit every time step under ``input_dir`` (see the module docstring); writes nothing."""
    found = discover_time_steps(input_dir)
    audited = {step.key: [audit_file(f) for f in step.files] for step in found.time_steps}
    every_file = [f for files in audited.values() for f in files]
    grids = Counter(f.grid for f in every_file if f.grid is not None)
    grid = grids.most_common(1)[0][0] if grids else None
    labels = {f.subband for f in every_file}
    channels = channels_of(every_file)
    jitter = max(
        (min(abs(f.frequency_hz - c) for c in channels) for f in every_file if f.frequency_hz is not None),
        default=0.0,
    )
    return AuditReport(
        input_dir=str(input_dir),
        time_steps=[audit_time_step(key, files, grid, labels) for key, files in audited.items()],
        skipped=found.skipped,
        channels_hz=channels,
        max_jitter_hz=jitter,
    )


@dataclass
class PlannedStep:
    """What a run would do with one time step (``ovro-ingest run --dry-run``)."""

    audit: TimeStepAudit
    action: str
    """``"append"``, ``"backfill"``, ``"already stored"`` or ``"would fail"``."""
    gap_s: float | None = None
    """Seconds since the previous time step, when more than 1.5 cadences (a gap in the data)."""


def plan_run(
    input_dir: str | os.PathLike[str], store: str | os.PathLike[str], keys: list[str] | None = None
) -> list[PlannedStep]:
    """What ``ovro-ingest run INPUT_DIR STORE`` would do, time step by time step, without writing anything."""
    from ovro_ingest.store import read_state, store_exists

    report = audit_directory(input_dir)
    steps = [s for s in report.time_steps if not keys or s.key in keys]
    stored, last = set(), None
    if store_exists(store):
        state = read_state(store)
        stored, last = set(state.column("time_key")), (state.last() or (None,))[0]
    times = [min((f.time_mjd for f in s.files if f.time_mjd is not None), default=None) for s in steps]
    known = [t for t in times if t is not None]
    cadence = float(np.median(np.diff(known))) if len(known) > 2 else None
    planned = []
    for index, step in enumerate(steps):
        if not step.ok:
            action = "would fail"
        elif step.key in stored:
            action = "already stored"
        else:
            action = "backfill" if last is not None and step.key < last else "append"
        gap = None
        if cadence and index and times[index] is not None and times[index - 1] is not None:
            delta = times[index] - times[index - 1]
            gap = delta * 86400.0 if delta > 1.5 * cadence else None
        planned.append(PlannedStep(audit=step, action=action, gap_s=gap))
    return planned


def file_as_dict(audit: FileAudit) -> dict:
    """One file of an audit as JSON-able values (SI units: Hz, MJD)."""
    return {
        "path": audit.path,
        "subband": audit.subband,
        "frequency_hz": audit.frequency_hz,
        "time_mjd": audit.time_mjd,
        "corrections": list(audit.corrections),
        "beam_problem": audit.beam_problem,
        "error": audit.error,
    }


def time_step_as_dict(step: TimeStepAudit) -> dict:
    """One time step of an audit as JSON-able values; ``verdict`` is ``"ok"`` or ``"would fail"``."""
    return {
        "key": step.key,
        "verdict": "ok" if step.ok else "would fail",
        "files": [file_as_dict(f) for f in step.files],
        "missing_subbands": list(step.missing_subbands),
        "date_obs_spread_s": step.date_obs_spread_s,
        "name_offset_s": step.name_offset_s,
        "problems": list(step.problems),
        "notes": list(step.notes),
    }


def report_as_dict(report: AuditReport) -> dict:
    """The audit as one JSON-able document (``ovro-ingest audit --json``).

    Every time step is one entry of ``time_steps`` with its whole ``key`` and a
    ``verdict``; ``counts`` maps each verdict to its number of time steps.
    """
    steps = [time_step_as_dict(step) for step in report.time_steps]
    return {
        "input_dir": report.input_dir,
        "ok": report.ok,
        "counts": {verdict: sum(s["verdict"] == verdict for s in steps) for verdict in ("ok", "would fail")},
        "channels_hz": list(report.channels_hz),
        "max_jitter_hz": report.max_jitter_hz,
        "skipped": list(report.skipped),
        "time_steps": steps,
    }


PLAN_ACTIONS = ("append", "backfill", "already stored", "would fail")


def plan_as_dict(input_dir: str | os.PathLike[str], store: str | os.PathLike[str], planned: list[PlannedStep]) -> dict:
    """What a run would do, as one JSON-able document (``ovro-ingest run --dry-run --json``).

    Every time step is one entry of ``time_steps`` with its whole ``key`` and an
    ``action`` (one of :data:`PLAN_ACTIONS`); ``counts`` maps each action to its
    number of time steps.
    """
    steps = [
        {
            "key": step.audit.key,
            "action": step.action,
            "subbands": len(step.audit.files),
            "missing_subbands": list(step.audit.missing_subbands),
            "gap_before_s": step.gap_s,
            "problems": list(step.audit.problems),
            "notes": list(step.audit.notes),
        }
        for step in planned
    ]
    return {
        "input_dir": str(input_dir),
        "store": str(store),
        "ok": all(step.action != "would fail" for step in planned),
        "counts": {action: sum(s["action"] == action for s in steps) for action in PLAN_ACTIONS},
        "time_steps": steps,
    }
