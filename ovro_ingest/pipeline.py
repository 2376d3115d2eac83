"""The five steps chained as plain functions, without Prefect (for tests, scripts and benchmarks)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ovro_ingest.combine import combine_frequencies
from ovro_ingest.commit import clear_staging, commit_time_step, drop_committed_stagings, recover, write_time_step
from ovro_ingest.discover import discover_time_steps, left_out_notes
from ovro_ingest.errors import IngestError
from ovro_ingest.handle import Store
from ovro_ingest.headers import make_time_step_readable
from ovro_ingest.load import load_subbands
from ovro_ingest.models import AppendReceipt, SourceFile, TimeStepFiles, TimeStepPlan
from ovro_ingest.notices import notice_lines
from ovro_ingest.store import (
    StoreSettings,
    create_store,
    frequency_grid,
    leftovers_beside,
    merge_channels,
    record_run,
)

logger = logging.getLogger(__name__)


def plan_time_step(
    step: TimeStepFiles,
    fixed_dir: str | os.PathLike[str] | None = None,
    keep_bad_beams: bool = False,
    keep_bad_checksums: bool = False,
) -> TimeStepPlan:
    """Fix, load and combine one time step (no pixel is read)."""
    return combine_frequencies(
        load_subbands(make_time_step_readable(step, fixed_dir, keep_bad_checksums)), keep_bad_beams
    )


def create_store_for_night(
    store: str | os.PathLike[str],
    candidates: Sequence[TimeStepFiles],
    subband_files: Mapping[str, Sequence[SourceFile]],
    settings: StoreSettings | None = None,
    fixed_dir: str | os.PathLike[str] | None = None,
    keep_bad_beams: bool = False,
    keep_bad_checksums: bool = False,
) -> str | None:
    """Create a store for a night before any of its time steps is written (callers hold the writer lock).

    The pixel grid, coordinates and attributes come from the first of ``candidates``
    that plans without error; the channels from one header per subband label of the
    night (:func:`ovro_ingest.audit.subband_channels`), so the frequency axis is the
    union of the night's subbands without planning the whole night first.

    Returns
    -------
    str or None
        The store's identity (an existing store is kept), or None when no candidate
        plans (each then fails in its own time step, with its reason).
    """
    from ovro_ingest.audit import subband_channels

    if (handle := Store.at(store)).exists():
        return handle.state().store_id
    channels = subband_channels(subband_files)
    for step in candidates:
        try:
            plan = plan_time_step(step, fixed_dir, keep_bad_beams, keep_bad_checksums)
        except IngestError:
            continue
        return create_store(store, [plan], settings, channels=merge_channels([*channels, *frequency_grid([plan])]))
    return None


def prepare_store(store: str | os.PathLike[str]) -> None:
    """Before a run writes (writer lock held): finish an interrupted commit, drop half-written staging.

    Also drops stagings of time steps already committed (:func:`drop_committed_stagings`)
    and removes what an interrupted create or rebuild left beside the store.
    """
    for leftover in leftovers_beside(store):
        shutil.rmtree(leftover, ignore_errors=True)
    if Store.at(store).exists():
        recover(store)
        drop_committed_stagings(store)
        clear_staging(store)


def settle_store(store: str | os.PathLike[str]) -> None:
    """After a run wrote (writer lock held): finish a commit that an error stopped, drop half-written staging.

    A commit stopped after its journal (a full disk, say) is finished here; when that
    fails for want of space, the complete stagings kept for the next attempt are dropped
    to make room, and it is tried once more. Should it still fail, the journal stays for
    the next run or ``ovro-ingest repair``; readers see the last committed state either way.
    """
    try:
        recover(store)
    except OSError:
        clear_staging(store, keep_complete=False)
        try:
            recover(store)
        except OSError as error:
            logger.warning("%s: an interrupted commit remains (%s); `ovro-ingest repair` finishes it", store, error)
    clear_staging(store)


def append_plans(
    store: str | os.PathLike[str],
    plans: Sequence[TimeStepPlan],
    settings: StoreSettings | None = None,
    workers: int = 1,
    replace: bool = False,
) -> list[AppendReceipt]:
    """Write ``plans`` into the store: staged by ``workers`` threads at once, committed in time order.

    The store is created from all the plans (their union of channels) when it does
    not exist. Callers hold the writer lock.
    """
    plans = sorted(plans, key=lambda p: p.key)
    if plans and not Store.at(store).exists():
        create_store(store, plans, settings)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        staged = [pool.submit(write_time_step, store, plan, replace) for plan in plans]
        receipts = [commit_time_step(store, future.result()) for future in staged]
    if plans:
        settle_store(store)
    return receipts


def ingest_plans(
    store: str | os.PathLike[str],
    plans: Sequence[TimeStepPlan],
    who: str,
    source: str,
    settings: StoreSettings | None = None,
    workers: int = 1,
    replace: bool = False,
) -> list[AppendReceipt]:
    """Append ``plans`` holding the writer lock, and record the run in the store when it changed it."""
    with Store.at(store).lock(who=who):
        prepare_store(store)
        receipts = append_plans(store, plans, settings, workers=workers, replace=replace)
        if any(r.status in ("written", "replaced") for r in receipts):  # a run that changed nothing leaves no trace
            record_run(store, run_record(who, source, receipts))
        return receipts


def run_record(who: str, source: str, receipts: Sequence[AppendReceipt]) -> dict[str, Any]:
    """What the store remembers of an ingest run."""
    statuses = sorted({r.status for r in receipts})
    return {
        "who": who,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "input_dir": source,
        "time_steps": {status: sum(r.status == status for r in receipts) for status in statuses},
    }


def ingest_time_step(
    step: TimeStepFiles,
    store: str | os.PathLike[str],
    fixed_dir: str | None = None,
    settings: StoreSettings | None = None,
    replace: bool = False,
    keep_bad_beams: bool = False,
    keep_bad_checksums: bool = False,
) -> AppendReceipt:
    """Fix, load, combine and append one time step."""
    plan = plan_time_step(step, fixed_dir, keep_bad_beams, keep_bad_checksums)
    source = str(Path(step.files[0].path).parent)
    return ingest_plans(store, [plan], "ovro_ingest.pipeline.ingest_time_step", source, settings, replace=replace)[0]


def ingest_directory(
    input_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    fixed_dir: str | None = None,
    settings: StoreSettings | None = None,
    workers: int = 1,
    replace: bool = False,
    keep_bad_beams: bool = False,
    keep_bad_checksums: bool = False,
) -> list[AppendReceipt]:
    """Ingest every time step under ``input_dir`` into ``store``."""
    exclude = (Path(fixed_dir),) if fixed_dir else ()
    steps = discover_time_steps(input_dir, exclude=exclude).time_steps
    plans = [plan_time_step(step, fixed_dir, keep_bad_beams, keep_bad_checksums) for step in steps]
    who, source = "ovro_ingest.pipeline.ingest_directory", str(Path(input_dir).resolve())
    receipts = ingest_plans(store, plans, who, source, settings, workers=workers, replace=replace)
    stored = [plan for plan, r in zip(plans, receipts, strict=True) if r.status != "already stored"]
    left_out = left_out_notes(e for plan in stored for e in plan.excluded if e.kind != "entry")  # discovery named those
    notices = [*(n for plan in stored for n in plan.notices), *(n for r in receipts for n in r.notices)]
    for line in [*left_out, *notice_lines(notices)]:
        logger.warning(line)
    return receipts
