"""Inspect and heal a store: ``validate`` checks it, ``repair`` rolls back what no commit finished.

A healthy store: its consolidated metadata opens and is current (every array's own
metadata agrees with it), every per-time-step array has one entry per committed time
step, time and time keys strictly increase, each ledger entry names files whose
channels hold pixels, and nothing uncommitted lies in it (no journal, no chunks
beyond the last committed time step).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ovro_ingest.commit import recover, resize_along_time, time_step_key
from ovro_ingest.errors import StoreError
from ovro_ingest.handle import Store
from ovro_ingest.store import (
    SAME_CHANNEL_TOLERANCE_HZ,
    STAGED_VARIABLES,
    TIME_VARIABLES,
    StoreState,
    array_of,
    is_ovro_ingest_group,
    leftovers_beside,
    read_state,
)

if TYPE_CHECKING:
    from ovro_ingest.timeseries import TimeSeriesState


@dataclass
class HealthReport:
    """What ``validate`` found, or what ``repair`` did."""

    store: str
    n_time: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    """What ``repair`` changed (empty: there was nothing to repair); also the first notes."""

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def validate_store(path: str | os.PathLike[str], time_keys: Collection[str] | None = None) -> HealthReport:
    """Check a store without changing it; see the module docstring for what is checked.

    ``time_keys``, when given, limits the one check whose cost grows with every stored time
    step (each ledger entry and its pixels: about 0.3 ms per time step, 8 minutes for a
    year; ``benchmarks/year_ledger.py``) to those time steps; the store's structure, time
    axis and uncommitted chunks are checked whole either way. A time-series store is checked
    by :func:`ovro_ingest.timeseries.validate_timeseries`.
    """
    from ovro_ingest.timeseries import is_timeseries_store, validate_timeseries

    if is_timeseries_store(path):
        return validate_timeseries(path)
    report = HealthReport(store=str(path))
    store = Store.at(path)
    if not store.exists():
        report.problems.append(f"{path}: no Zarr store here")
        return report
    try:
        state = store.state()
    except StoreError as error:
        report.problems.append(str(error))
        return report
    report.n_time = state.n_time
    if store.journal.exists():
        report.problems.append("an interrupted commit left its journal; `ovro-ingest repair` finishes it")
    check_metadata_is_current(state, report)
    check_time_axis(state, report)
    check_ledger_has_pixels(state, report, time_keys)
    if time_keys is not None:
        report.notes.append(
            f"ledger entries and pixels checked for {len(set(time_keys))} chosen time step(s) of {state.n_time}; "
            f"`ovro-ingest validate {path}` checks them all"
        )
    check_nothing_uncommitted(state, report)
    staged = list(store.staging_root.iterdir()) if store.staging_root.exists() else []
    if staged:
        report.notes.append(
            f"{len(staged)} staged time step(s) not committed (an ingest is running, or was interrupted; "
            "the next run or `ovro-ingest repair` clears them)"
        )
    return report


def check_metadata_is_current(state: StoreState | TimeSeriesState, report: HealthReport) -> None:
    """Each array's own metadata must agree with the consolidated metadata (the commit record)."""
    consolidated = state.group()
    actual = Store.at(state.path).open_group(consolidated=False)
    names = {name for name, _ in actual.arrays()}
    if names != {name for name, _ in consolidated.arrays()}:
        report.problems.append("the consolidated metadata does not list the store's arrays; `ovro-ingest repair`")
        return
    for name in sorted(names):
        shape, committed = array_of(actual, name).shape, array_of(consolidated, name).shape
        if shape != committed:
            report.problems.append(
                f"{name}: shape {shape} differs from the committed {committed} "
                "(an uncommitted append); `ovro-ingest repair` rolls it back"
            )
    for name in TIME_VARIABLES:
        n_time = array_of(consolidated, name).shape[0]
        if n_time != state.n_time:
            report.problems.append(f"{name}: {n_time} time steps, `time` has {state.n_time}")


def check_time_axis(state: StoreState | TimeSeriesState, report: HealthReport) -> None:
    """Time and time keys strictly increase; every time step has a version and a ledger entry."""
    times, keys = np.asarray(state.column("time")), state.column("time_key")
    if np.any(~np.isfinite(times)) or np.any(np.diff(times) <= 0):
        report.problems.append("time is not strictly increasing (or has missing values)")
    if any(a >= b for a, b in itertools.pairwise(keys)) or any(not k for k in keys):
        report.problems.append("time_key is not strictly increasing (duplicate or missing time steps)")
    if any(not v for v in state.column("software_version")):
        report.problems.append("software_version is missing for some time steps")


def check_ledger_has_pixels(state: StoreState, report: HealthReport, time_keys: Collection[str] | None = None) -> None:
    """Each ledger entry (of ``time_keys`` only, when given) parses, its frequencies are channels of the store, and
    those channels hold pixels."""
    fmt = state.settings.zarr_format
    keys, wanted = state.column("time_key"), None if time_keys is None else set(time_keys)
    indices = [i for i, key in enumerate(keys) if wanted is None or key in wanted]
    entries = state.column("source_files") if time_keys is None else state.values("source_files", indices)
    for index, entry in zip(indices, entries, strict=True):
        key = keys[index]
        try:
            files = json.loads(entry)
        except ValueError:
            report.problems.append(f"time step {key}: its source_files ledger entry is not JSON")
            continue
        sep = "." if fmt == 2 else "/"
        for item in (f for f in files if "excluded" not in f):
            offsets = np.abs(state.frequencies_hz - item["frequency_hz"])
            channel = int(np.argmin(offsets))
            if offsets[channel] > SAME_CHANNEL_TOLERANCE_HZ:
                report.problems.append(f"time step {key}: {item['path']} is not on the store's frequency grid")
            elif not (state.path / "SKY" / time_step_key(fmt, index, f"{sep}{channel}{sep}0{sep}0{sep}0")).exists():
                report.problems.append(f"time step {key}: no pixels for {Path(item['path']).name} (channel {channel})")


def check_nothing_uncommitted(state: StoreState, report: HealthReport) -> None:
    """No chunks of the staged arrays at or beyond the committed length."""
    for name in STAGED_VARIABLES:
        stray = uncommitted_chunks(state.path / name, state.settings.zarr_format, state.n_time)
        if stray:
            report.problems.append(
                f"{name} holds chunks of {len(stray)} uncommitted time index(es) "
                f"({', '.join(str(k) for k in sorted(stray)[:5])}); `ovro-ingest repair` removes them"
            )


def uncommitted_chunks(array: Path, zarr_format: int, n_time: int) -> dict[int, list[Path]]:
    """The chunk folders (format 3) or files (format 2) of ``array`` at time indices ``>= n_time``, by index."""
    folder = array / "c" if zarr_format == 3 else array
    found: dict[int, list[Path]] = {}
    if folder.exists():
        for path in folder.iterdir():
            head = path.name.split(".")[0]
            if head.isdigit() and int(head) >= n_time:
                found.setdefault(int(head), []).append(path)
    return found


def remove_leftovers_beside(path: str | os.PathLike[str]) -> list[str]:
    """Remove what an interrupted create or rebuild left beside the store (callers hold its lock); say what."""
    actions = []
    for leftover in leftovers_beside(path):
        shutil.rmtree(leftover, ignore_errors=True)
        actions.append(f"removed {leftover.name}")
    return actions


def roll_back_to_committed(
    path: str | os.PathLike[str],
    zarr_format: int,
    time_variables: Sequence[str],
    n_time: int,
    chunked: dict[str, int],
    unit: str = "time index",
) -> list[str]:
    """Undo what an unfinished commit wrote beyond the committed state (callers hold the writer lock).

    Cuts the per-time-step arrays ``time_variables`` back to ``n_time`` entries, removes
    the chunks of each array in ``chunked`` at ``unit`` indices from its committed count
    on, clears the staging area and rewrites the consolidated metadata. Shared by the
    archive's repair and the time-series store's. Returns what was done, one line each.
    """
    actions: list[str] = []
    store = Store.at(path)
    actual = store.open_group(mode="r+", consolidated=False)
    for name in time_variables:
        if resize_along_time(array_of(actual, name), n_time):
            actions.append(f"{name}: rolled back to {n_time} time steps")
    for name, n_committed in chunked.items():
        for index, paths in sorted(uncommitted_chunks(store.path / name, zarr_format, n_committed).items()):
            for chunk in paths:
                shutil.rmtree(chunk) if chunk.is_dir() else chunk.unlink()
            actions.append(f"removed uncommitted {name} chunks at {unit} {index}")
    if store.staging_root.exists():
        shutil.rmtree(store.staging_root)
        actions.append("cleared the staging area")
    store.consolidate()
    return actions


def restore_consolidated_metadata(path: str | os.PathLike[str]) -> bool:
    """Rewrite a store's consolidated metadata when it is missing; True when it was.

    Before 2026-11-27, a kill while the run record was written could leave the
    root metadata without its consolidated part. Outside a commit every array's own
    metadata is committed, so consolidating them restores the commit record; the
    per-time-step arrays are first cut to their common length, the most a commit
    can have finished (a commit in progress has a journal and is finished after this).
    """
    if not is_ovro_ingest_group(path):
        return False
    try:
        Store.at(path).open_group()
        return False
    except (ValueError, KeyError):  # zarr 3.1: ValueError when the record is missing (format 2 and 3)
        pass
    actual = Store.at(path).open_group(mode="r+", consolidated=False)
    n_time = min(array_of(actual, name).shape[0] for name in TIME_VARIABLES)
    for name in TIME_VARIABLES:
        array = array_of(actual, name)
        if array.shape[0] != n_time:
            array.resize((n_time, *array.shape[1:]))
    Store.at(path).consolidate()
    return True


def repair_store(path: str | os.PathLike[str], wait_seconds: float = 0.0) -> HealthReport:
    """Bring a store back to its last committed state, then validate it.

    Finishes an interrupted commit (its journal), removes chunks beyond the committed
    length, shrinks arrays an uncommitted append grew, clears the staging area and
    the leftovers of an interrupted create or rebuild beside the store. Holds the
    writer lock, so it never races a running ingest. A time-series store is repaired by
    :func:`ovro_ingest.timeseries.repair_timeseries`.
    """
    from ovro_ingest.timeseries import is_timeseries_store, repair_timeseries

    if is_timeseries_store(path):
        return repair_timeseries(path, wait_seconds)
    store = Store.at(path)
    with store.lock(who="ovro-ingest repair", wait_seconds=wait_seconds):
        actions = remove_leftovers_beside(path)
        if store.exists():
            if restore_consolidated_metadata(path):
                actions.append("rewrote the missing consolidated metadata")
            if recover(path):
                actions.append("finished an interrupted commit")
            state = read_state(path)
            staged = {name: state.n_time for name in STAGED_VARIABLES}
            actions += roll_back_to_committed(path, state.settings.zarr_format, TIME_VARIABLES, state.n_time, staged)
    report = validate_store(path)
    report.actions = actions
    report.notes = actions + report.notes
    return report
