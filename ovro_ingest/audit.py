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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ovro_ingest.combine import integration_problem
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import IngestError, file_boundary
from ovro_ingest.facts import beams_table, header_facts
from ovro_ingest.headers import (
    READING,
    REGENERATE,
    check_checksums,
    check_complete,
    image_hdu_index,
    open_fits,
    plan_fix,
)
from ovro_ingest.load import name_time_offset_s
from ovro_ingest.models import ExcludedFile, SourceFile, SpatialGrid
from ovro_ingest.sky import shared_wcs
from ovro_ingest.store import SAME_CHANNEL_TOLERANCE_HZ, merge_channels

if TYPE_CHECKING:
    from ovro_ingest.store import StoreState

T = TypeVar("T")


@dataclass
class FileAudit:
    """What the headers of one file say."""

    path: str
    subband: str
    frequency_hz: float | None = None
    time_mjd: float | None = None
    grid: SpatialGrid | None = None
    celestial_wcs: str | None = None
    spectral_frame: str | None = None
    polarizations: tuple[str, ...] | None = None
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
    left_out: list[ExcludedFile] = field(default_factory=list)
    """Entries named like subband images that cannot be opened: a run leaves them out of their time steps."""

    @property
    def ok(self) -> bool:
        """True when an ingest would store every time step."""
        return all(step.ok for step in self.time_steps)


def audit_file(source: SourceFile, keep_bad_checksums: bool = False) -> FileAudit:
    """Read the facts an ingest needs from one file's header, and what would go wrong.

    The same functions as the ingest: checksums (pixels read only when the header has
    CHECKSUM/DATASUM), the fix plan, and the header facts of the header the loader
    would read (the planned fixed copy's, when the file needs one).
    """
    result = FileAudit(path=source.path, subband=source.subband)
    try:
        with file_boundary(source.path, READING, REGENERATE), open_fits(source.path) as hdulist:
            index = image_hdu_index(hdulist, source.path)
            plan = plan_fix(hdulist, index, source)
            check_complete(hdulist, index, source.path, plan.compression)
            kept = check_checksums(hdulist, index, source.path, keep_bad_checksums)
            result.corrections = [*plan.corrections, *plan.notes, *kept]
            facts = header_facts(plan.header, source.path, beams_table(hdulist, plan.header))
        result.frequency_hz = facts.frequency_hz
        result.time_mjd = facts.time_mjd
        result.grid = facts.grid
        result.celestial_wcs = facts.celestial_wcs
        result.spectral_frame = facts.spectral_frame
        result.polarizations = facts.polarizations
        result.beam_problem = facts.beam_problem
    except IngestError as error:
        result.error = str(error)
    return result


def subband_channels(subband_files: Mapping[str, Sequence[SourceFile]]) -> list[tuple[float, str]]:
    """The channels of a night, ascending: (frequency in Hz, subband label), from one header per subband.

    For each subband label of the night's file names, the frequency comes from the
    header of its first file that gives one (a file that cannot be read is passed
    over: it fails in its own time step); frequencies within the channel tolerance are
    one channel. A whole night's channels are known from a few headers, before any
    time step is planned (see :func:`ovro_ingest.discover.subband_files`).
    """
    found = []
    for label, files in subband_files.items():
        for source in files:
            frequency = audit_file(source).frequency_hz
            if frequency is not None:
                found.append((frequency, label))
                break
    return merge_channels(found)


def channels_of(files: list[FileAudit]) -> list[float]:
    """The channels an ingest of these files would create (frequencies closer than the tolerance merged)."""
    channels: list[float] = []
    for frequency in sorted(f.frequency_hz for f in files if f.frequency_hz is not None):
        if not channels or frequency - channels[-1] > SAME_CHANNEL_TOLERANCE_HZ:
            channels.append(frequency)
    return channels


def audit_time_step(
    key: str,
    files: list[FileAudit],
    grid: SpatialGrid | None,
    labels: set[str],
    spectral_frame: str | None = None,
    polarizations: tuple[str, ...] | None = None,
    left_out: Sequence[ExcludedFile] = (),
) -> TimeStepAudit:
    """Judge one time step: what fails it, what is only worth a note.

    ``grid``, ``spectral_frame`` and ``polarizations`` are the run's (those of most files):
    a store holds one of each. ``left_out``: the time step's entries discovery left out.
    """
    step = TimeStepAudit(key=key, files=files)
    usable = [f for f in files if f.error is None and f.beam_problem is None]
    step.problems += [f.error for f in files if f.error]
    step.notes += [f"{e.source.name}: {e.reason}; it would be left out" for e in left_out]
    if not files:
        step.problems.append(f"time step {key}: no subband image that can be opened")
    step.notes += [f"{Path(f.path).name}: {f.beam_problem}; it would be left out" for f in files if f.beam_problem]
    step.notes += [f"{Path(f.path).name}: {'; '.join(f.corrections)}" for f in files if f.corrections and not f.error]
    if not usable and not step.problems:
        step.problems.append(f"time step {key}: no file with a valid beam")
    counts = Counter(f.subband for f in files)
    step.problems += [f"time step {key}: {n} files for subband {label}" for label, n in counts.items() if n > 1]
    by_frequency = sorted(((f.frequency_hz, f) for f in usable if f.frequency_hz is not None), key=lambda p: p[0])
    for (lower_hz, lower), (upper_hz, upper) in itertools.pairwise(by_frequency):
        if upper_hz - lower_hz < SAME_CHANNEL_TOLERANCE_HZ and lower.subband != upper.subband:
            step.problems.append(f"time step {key}: two files for one frequency: {lower.path} and {upper.path}")
    misplaced = misplaced_files(usable)
    step.notes += [f"{Path(path).name}: {reason}; it would be left out" for path, reason in misplaced.items()]
    usable = [f for f in usable if f.path not in misplaced]
    step.missing_subbands = sorted(labels - set(counts), key=lambda label: int(label.removesuffix("MHz")))
    if step.missing_subbands:
        step.notes.append(f"missing subbands {', '.join(step.missing_subbands)} (stored as NaN)")
    for f in usable:
        if grid is not None and f.grid is not None and not f.grid.matches(grid):
            step.problems.append(f"{f.path}: pixel grid {f.grid.describe()} differs from the run's {grid.describe()}")
        if spectral_frame is not None and f.spectral_frame is not None and f.spectral_frame != spectral_frame:
            step.problems.append(f"{f.path}: SPECSYS {f.spectral_frame!r} differs from the run's {spectral_frame!r}")
        if polarizations is not None and f.polarizations is not None and f.polarizations != polarizations:
            step.problems.append(f"{f.path}: polarizations {f.polarizations} differ from the run's {polarizations}")
    timed = [(f.path, f.time_mjd) for f in usable if f.time_mjd is not None]
    if timed:
        times = [t for _, t in timed]
        step.date_obs_spread_s = (max(times) - min(times)) * 86400.0
        step.name_offset_s = name_time_offset_s(key, min(times))
        if problem := integration_problem(key, timed):
            step.problems.append(problem)
    return step


def misplaced_files(files: list[FileAudit]) -> dict[str, str]:
    """Path -> why, for the files of one time step an ingest leaves out for placing pixels elsewhere (``combine.split_misplaced``)."""
    placed = sorted((f for f in files if f.celestial_wcs and f.grid), key=lambda f: f.frequency_hz or 0.0)
    shapes = {f.grid.shape_lm for f in placed if f.grid}
    if len(shapes) != 1:
        return {}  # no file, or shapes that differ (a problem of their own)
    _, reasons = shared_wcs([f.celestial_wcs or "" for f in placed], shapes.pop())
    return {placed[index].path: reason for index, reason in reasons.items()}


def audit_directory(input_dir: str | os.PathLike[str], keep_bad_checksums: bool = False) -> AuditReport:
    """Audit every time step under ``input_dir`` (see the module docstring); writes nothing.

    ``keep_bad_checksums`` predicts a run given the same option.
    """
    found = discover_time_steps(input_dir)
    audited = {step.key: [audit_file(f, keep_bad_checksums) for f in step.files] for step in found.time_steps}
    every_file = [f for files in audited.values() for f in files]
    grid = most_common([f.grid for f in every_file])
    spectral_frame = most_common([f.spectral_frame for f in every_file])
    polarizations = most_common([f.polarizations for f in every_file])
    labels = {f.subband for f in every_file}
    channels = channels_of(every_file)
    jitter = max(
        (min(abs(f.frequency_hz - c) for c in channels) for f in every_file if f.frequency_hz is not None),
        default=0.0,
    )
    steps = [
        audit_time_step(step.key, audited[step.key], grid, labels, spectral_frame, polarizations, step.left_out)
        for step in found.time_steps
    ]
    flag_equal_times(steps)
    return AuditReport(
        input_dir=str(input_dir),
        time_steps=steps,
        skipped=found.skipped,
        channels_hz=channels,
        max_jitter_hz=jitter,
        left_out=found.left_out,
    )


def most_common(values: list[T | None]) -> T | None:
    """The most common of the values that are not None (the first seen of equals), or None."""
    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def flag_equal_times(steps: list[TimeStepAudit]) -> None:
    """A time step with the time of an earlier one would be refused by the store (one time, one time step)."""
    seen: dict[float, str] = {}
    for step in steps:
        if not step.ok:
            continue
        times = [f.time_mjd for f in step.files if f.time_mjd is not None and f.error is None and not f.beam_problem]
        if not times:
            continue
        earlier = seen.setdefault(min(times), step.key)
        if earlier != step.key:
            step.problems.append(
                f"time step {step.key} has the same time as time step {earlier} (MJD {min(times):.8f}); "
                "check the file names and DATE-OBS of both"
            )


def store_mismatches(step: TimeStepAudit, state: StoreState) -> list[str]:
    """What the store would refuse in a time step, as ``store.check_fits_store`` does.

    A pixel grid (frame included), SPECSYS, polarizations or a frequency other than the store's.
    """
    problems = []
    for f in step.files:
        if f.error is not None or f.grid is None:
            continue
        if not f.grid.matches(state.grid):
            problems.append(
                f"{f.path}: pixel grid {f.grid.describe()} differs from the store's {state.grid.describe()}"
            )
        if state.spectral_frame is not None and f.spectral_frame != state.spectral_frame:
            problems.append(f"{f.path}: SPECSYS {f.spectral_frame!r} differs from the store's {state.spectral_frame!r}")
        if f.polarizations is not None and list(f.polarizations) != state.polarizations:
            problems.append(
                f"{f.path}: polarizations {list(f.polarizations)} differ from the store's {state.polarizations}"
            )
        if (
            f.frequency_hz is not None
            and np.min(np.abs(state.frequencies_hz - f.frequency_hz)) > SAME_CHANNEL_TOLERANCE_HZ
        ):
            problems.append(f"{f.path}: frequency {f.frequency_hz / 1e6:.3f} MHz is not on the store's frequency grid")
    return problems


@dataclass
class PlannedStep:
    """What a run would do with one time step (``ovro-ingest run --dry-run``)."""

    audit: TimeStepAudit
    action: str
    """``"append"``, ``"backfill"``, ``"already stored"`` or ``"would fail"``."""
    gap_s: float | None = None
    """Seconds since the previous time step, when more than 1.5 cadences (a gap in the data)."""


def plan_run(
    input_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    keys: list[str] | None = None,
    keep_bad_checksums: bool = False,
) -> list[PlannedStep]:
    """What ``ovro-ingest run INPUT_DIR STORE`` would do, time step by time step, without writing anything."""
    from ovro_ingest.handle import Store

    report = audit_directory(input_dir, keep_bad_checksums)
    steps = [s for s in report.time_steps if not keys or s.key in keys]
    stored, last = set(), None
    if Store.at(store).exists():
        state = Store.at(store).state()
        stored, last = set(state.indices_of(step.key for step in steps)), (state.last() or (None,))[0]
        for step in steps:
            if step.key not in stored:
                step.problems += store_mismatches(step, state)
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
        if cadence and index and (now := times[index]) is not None and (before := times[index - 1]) is not None:
            delta = now - before
            gap = delta * 86400.0 if delta > 1.5 * cadence else None
        planned.append(PlannedStep(audit=step, action=action, gap_s=gap))
    return planned


def file_as_dict(audit: FileAudit) -> dict[str, Any]:
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


def time_step_as_dict(step: TimeStepAudit) -> dict[str, Any]:
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


def report_as_dict(report: AuditReport) -> dict[str, Any]:
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
        "left_out": [{"path": e.source.path, "reason": e.reason} for e in report.left_out],
        "time_steps": steps,
    }


PLAN_ACTIONS = ("append", "backfill", "already stored", "would fail")


def plan_as_dict(
    input_dir: str | os.PathLike[str], store: str | os.PathLike[str], planned: list[PlannedStep]
) -> dict[str, Any]:
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
