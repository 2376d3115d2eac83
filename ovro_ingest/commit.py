"""Step 5, append to Zarr: write a time step in parallel (staging), then commit it in order.

Two phases, so that the time steps of a run are written concurrently while the
store only ever changes by whole, committed time steps:

1. :func:`write_time_step` (parallel, heavy): writes the pixels of one time step
   into ``<store>/.staging/<key>-<hash>/``, a one-time-step copy of the ``SKY``
   array with the store's own chunking and codecs, plus the time step's small
   values (time, beams, ledger). The staging directory appears by a rename, so it
   is complete or absent.
2. :func:`commit_time_step` (in time order, light): moves the staged ``SKY`` chunks
   into place (one directory rename per array), writes the small values, and
   rewrites the consolidated metadata, the commit point. Its cost does not depend on
   how many time steps the store holds.

Every commit first writes a journal (``<store>/.ovro-ingest-journal.json``) naming
each move it will make; the moves are idempotent, so a commit interrupted at any
point (SIGKILL, power cut after the journal is on disk) is rolled forward by
:func:`recover`, which every commit, every run and ``ovro-ingest repair`` call
first. Readers that open the store through its consolidated metadata see only
committed time steps: an append never changes committed chunks. An insertion before
the last time step (a backfill) or a replacement moves committed chunks, so while
it runs, a reader may see the moved range inconsistent (see docs/guarantees.md).
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr
from zarr.codecs import TransposeCodec
from zarr.core.sync import sync

from ovro_ingest.errors import StoreError
from ovro_ingest.failpoints import failpoint
from ovro_ingest.handle import Store
from ovro_ingest.identity import describe, source_differences
from ovro_ingest.load import fits_order_block, sky_block, sky_planes
from ovro_ingest.models import AppendReceipt, Notice, StagedTimeStep, TimeStepPlan
from ovro_ingest.store import (
    FITS_ORDER,
    REWRITES_ATTR,
    SMALL_TIME_VARIABLES,
    STAGED_VARIABLES,
    TIME_VARIABLES,
    StoreState,
    array_of,
    attributes,
    check_fits_store,
    placement,
    read_state,
    time_step_values,
)

logger = logging.getLogger(__name__)

VALUES_FILE = "values.json"


# ---------------------------------------------------------------- paths


def staging_path(store: str | os.PathLike[str], plan: TimeStepPlan) -> Path:
    """The staging directory of ``plan``: named after its key and the fingerprint of its inputs."""
    return Store.at(store).staging_root / f"{plan.key}-{plan.fingerprint()[:12]}"


def chunk_suffixes(array: Path, zarr_format: int) -> list[str]:
    """What follows the time index in the keys of one time step's chunks of ``array``.

    Format 3 keeps chunk ``(t, ...)`` under the directory ``c/t/``, moved as one
    (suffix ``""``). Format 2 keeps it in files ``t.f.p.l.m`` (``.`` separator, which
    every format-2 reader, xradio included, walks correctly): one suffix per chunk
    of the other dimensions, computed from the chunk grid, not listed.
    """
    if zarr_format == 3:
        return [""]
    metadata = json.loads((array / metadata_file(2)).read_text())
    counts = [-(-size // chunk) for size, chunk in zip(metadata["shape"][1:], metadata["chunks"][1:], strict=True)]
    return ["".join(f".{i}" for i in index) for index in itertools.product(*(range(c) for c in counts))]


def time_step_key(zarr_format: int, index: int, suffix: str = "") -> str:
    """The key (relative path) of a chunk of time index ``index`` (see :func:`chunk_suffixes`)."""
    return f"c/{index}{suffix}" if zarr_format == 3 else f"{index}{suffix}"


def move_time_step(
    source: Path, source_index: int, target: Path, target_index: int, suffixes: list[str], fmt: int
) -> None:
    """Move the chunks of one time step from array folder ``source`` to ``target`` (renames only)."""
    for suffix in suffixes:
        move_if_present(
            source / time_step_key(fmt, source_index, suffix), target / time_step_key(fmt, target_index, suffix)
        )


def metadata_file(zarr_format: int) -> str:
    """The name of an array's metadata document."""
    return "zarr.json" if zarr_format == 3 else ".zarray"


def write_json_atomically(path: Path, payload: object) -> None:
    """Replace ``path`` with ``payload`` as JSON in one rename (readers see old or new, never half)."""
    partial = path.with_name(f"{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        partial.write_text(json.dumps(payload))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def disk_full_named(store: str | os.PathLike[str], doing: str) -> Iterator[None]:
    """Turn a full disk (or quota) into a one-line :class:`StoreError` naming the store and the fix."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StoreError(
            f"{store}: no space left on its device while {doing}; free space (or move the store), "
            "then run the ingest again: what is stored stays valid"
        ) from error


def move_if_present(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` unless it was moved already (a replayed journal)."""
    if source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)


# ---------------------------------------------------------------- phase 1: staging


def write_time_step(store: str | os.PathLike[str], plan: TimeStepPlan, replace: bool = False) -> StagedTimeStep:
    """Write ``plan``'s pixels into the store's staging area (parallel-safe; the store is unchanged).

    Parameters
    ----------
    store : path
        An existing store (see :func:`ovro_ingest.store.create_store`).
    plan : TimeStepPlan
        The time step, as ``combine_frequencies`` made it.
    replace : bool
        Stage the time step even when the store holds it with other source files.

    Returns
    -------
    StagedTimeStep
        Where the staged time step is, or that the store already holds it.

    Raises
    ------
    StoreMismatch
        The time step does not fit the store (grid, polarizations, frequencies).
    """
    started = time.perf_counter()
    state = read_state(store)
    index, where = placement(state, plan.key, plan.time_mjd)
    status = "staged"
    if where == "stored":
        differences = source_differences(state, index, plan)
        if not (replace and differences):
            changed = (Notice(kind="changed", subject=plan.key, detail=describe(differences)),) if differences else ()
            if differences:  # the run warns once for all its time steps (ovro_ingest.notices)
                logger.info(
                    "time step %s: stored, but its source files changed since: %s", plan.key, describe(differences)
                )
            return StagedTimeStep(
                key=plan.key,
                time_mjd=plan.time_mjd,
                store_id=state.store_id,
                status="already stored",
                index=index,
                n_subbands=len(plan.subbands),
                seconds=time.perf_counter() - started,
                notices=changed,
            )
        status = "staged to replace"
    channels = check_fits_store(state, plan)
    target = staging_path(store, plan)
    written = 0
    if not target.exists():  # a complete staging of these very inputs is reused
        with disk_full_named(store, f"staging time step {plan.key}"):
            written = stage_pixels(state, plan, channels, target)
    return StagedTimeStep(
        key=plan.key,
        time_mjd=plan.time_mjd,
        store_id=state.store_id,
        status=status,
        path=str(target),
        n_subbands=len(plan.subbands),
        bytes_written=written,
        seconds=time.perf_counter() - started,
    )


def stage_pixels(state: StoreState, plan: TimeStepPlan, channels: list[int], target: Path) -> int:
    """Write the staging directory ``target`` for ``plan``; return the pixel bytes written.

    It holds one-time-step copies of the staged arrays (same chunks and codecs as the
    store's) and ``values.json``, the values the commit writes into the other arrays.
    """
    partial = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        staged = {name: staging_array(state, partial, name) for name in STAGED_VARIABLES}
        written = 0
        with ThreadPoolExecutor(max_workers=STAGING_THREADS) as pool:
            for subband, channel in zip(plan.subbands, channels, strict=True):
                started = time.perf_counter()
                size = stage_subband(pool, staged["SKY"], subband.file.path, channel)
                written += size
                logger.debug(
                    "%s: %.1f MB read and staged in %.3f s",
                    subband.file.source.name,
                    size / 1e6,
                    time.perf_counter() - started,
                )
        values = time_step_values(plan, state, channels)
        for name in STAGED_VARIABLES[1:]:
            staged[name][0] = values.pop(name)
        (partial / VALUES_FILE).write_text(json.dumps(values))
        failpoint("stage:written", plan.key)
        try:
            os.rename(partial, target)
        except OSError:  # staged meanwhile by another attempt at the same inputs: keep that one
            if not target.exists():
                raise
        return written
    finally:
        shutil.rmtree(partial, ignore_errors=True)


STAGING_THREADS = 2
"""Chunks of a time step transposed and compressed at once (Blosc and the copies release the GIL)."""


def stage_subband(pool: ThreadPoolExecutor, sky: zarr.Array[Any], path: str, channel: int) -> int:
    """Write one image into channel ``channel`` of the staged ``SKY``, chunk by chunk; return its bytes.

    Each chunk is cut from the memory-mapped file straight into its own C-ordered
    block, the exact shape of a store chunk, so that zarr encodes it as it is (a
    write spanning several chunks would first copy each into a NaN-filled chunk).
    """
    _, _, _, chunk_l, chunk_m = sky.chunks
    cut = fits_order_block if keeps_fits_order(sky) else sky_block
    with sky_planes(path) as planes:
        n_l, n_m = planes.shape[2], planes.shape[1]
        pending = [
            pool.submit(write_chunk, sky, channel, p, cut, planes[p], slice(l0, l0 + chunk_l), slice(m0, m0 + chunk_m))
            for p in range(planes.shape[0])
            for l0 in range(0, n_l, chunk_l)
            for m0 in range(0, n_m, chunk_m)
        ]
        for done in pending:  # the memory map stays open until every chunk is written
            done.result()
    return int(planes.shape[0] * n_l * n_m * 4)


def keeps_fits_order(sky: zarr.Array[Any]) -> bool:
    """True when ``SKY``'s chunks keep FITS order (the transpose codec of :data:`FITS_ORDER`, format 3 stores
    created since 2026-11-30): its blocks then go in as FITS has them, untransposed."""
    if sky.metadata.zarr_format != 3:
        return False
    return any(isinstance(c, TransposeCodec) and tuple(c.order) == FITS_ORDER for c in sky.metadata.codecs)


Cut = Callable[[npt.NDArray[Any], slice, slice], npt.NDArray[np.float32]]
"""Cuts one store chunk out of a FITS plane (m, l): :func:`sky_block` or :func:`fits_order_block`."""


def write_chunk(
    sky: zarr.Array[Any],
    channel: int,
    polarization: int,
    cut: Cut,
    plane: npt.NDArray[Any],
    l_range: slice,
    m_range: slice,
) -> None:
    """Write one chunk of a FITS plane, cut out by ``cut`` (:func:`sky_block` or :func:`fits_order_block`)."""
    block = cut(plane, l_range, m_range)
    failpoint("stage:chunk")
    sky[0:1, channel : channel + 1, polarization : polarization + 1, l_range, m_range] = block[None, None, None]


def staging_array(state: StoreState, staging: Path, name: str) -> zarr.Array[Any]:
    """A one-time-step copy of the store's array ``name`` in ``staging`` (its metadata, time length 1).

    Every chunk is written, even an all-NaN one, so that ``validate`` can check each
    ledger entry has its pixels.
    """
    fmt = state.settings.zarr_format
    metadata = json.loads((state.path / name / metadata_file(fmt)).read_text())
    metadata["shape"][0] = 1
    (staging / name).mkdir(parents=True)
    (staging / name / metadata_file(fmt)).write_text(json.dumps(metadata))
    array = zarr.open_array(str(staging / name), mode="r+", zarr_format=fmt)
    return array.with_config({"write_empty_chunks": True})  # open_array's config= argument is ignored (zarr 3.1)


# ---------------------------------------------------------------- phase 2: commit


def commit_time_step(store: str | os.PathLike[str], staged: StagedTimeStep) -> AppendReceipt:
    """Make a staged time step part of the store, in time order (callers hold the writer lock).

    Returns
    -------
    AppendReceipt
        The time step's index, or that the store already held it.

    Raises
    ------
    StoreError
        The staging belongs to another store or is gone, or the time step's place
        on the time axis is ambiguous.
    """
    started = time.perf_counter()
    recover(store)
    state = read_state(store)

    def receipt(status: str, index: int) -> AppendReceipt:
        return AppendReceipt(
            key=staged.key,
            time_mjd=staged.time_mjd,
            store_id=state.store_id,
            index=index,
            status=status,
            n_subbands=staged.n_subbands,
            bytes_written=staged.bytes_written,
            seconds=staged.seconds + time.perf_counter() - started,
            notices=staged.notices,
        )

    if state.store_id != staged.store_id:
        raise StoreError(f"time step {staged.key} was staged for another store than {store}; run the ingest again")
    if staged.path is None:
        return receipt("already stored", staged.index if staged.index is not None else -1)
    staging = Path(staged.path)
    index, where = placement(state, staged.key, staged.time_mjd)
    if where == "stored" and (staged.status != "staged to replace" or not staging.exists()):
        # stored meanwhile, e.g. by the recovery above when a killed worker's commit is retried
        discard_staging(staging, "commit")
        return receipt("already stored", index)
    if not staging.exists():
        raise StoreError(f"{staging}: the staged time step {staged.key} is gone; run the ingest again")
    values = json.loads((staging / VALUES_FILE).read_text())
    journal: dict[str, Any] = {
        "key": staged.key,
        "staging": str(staging),
        "index": index,
        "n_before": state.n_time,
        "mode": "replace" if where == "stored" else "insert",
        "phase": "prepared",
        "values": {name: [values[name]] for name in SMALL_TIME_VARIABLES},
    }
    if where == "insert":
        logger.info(  # a retry of a failed time step does this: nothing for a person to do
            "time step %s is earlier than the store's last one: inserted at position %d", staged.key, index
        )
        for name in SMALL_TIME_VARIABLES:
            journal["values"][name] += state.column(name, index)
    with disk_full_named(store, f"committing time step {staged.key}"):
        write_json_atomically(Store.at(store).journal, journal)
        failpoint("commit:journaled")
        apply_journal(store, journal)
    return receipt("replaced" if journal["mode"] == "replace" else "written", index)


def apply_journal(store: str | os.PathLike[str], journal: dict[str, Any]) -> None:
    """Carry out (or finish) the commit a journal describes; every step may be repeated safely.

    Phases: ``prepared`` -> move the chunks the commit displaces onto a shelf in the
    staging directory; ``shelved`` -> put them back one index up (insert) and the
    staged chunks in place; ``placed`` -> grow the arrays, write the small values and
    rewrite the consolidated metadata (the commit), then forget the journal.
    """
    store = Store.at(store)
    root = store.path
    state = store.state()
    fmt = state.settings.zarr_format
    index, n_before, insert = journal["index"], journal["n_before"], journal["mode"] == "insert"
    staging = Path(journal["staging"])
    shelf = staging / "shelf"
    moved = range(index, n_before) if insert else range(index, index + 1)
    suffixes = {name: chunk_suffixes(root / name, fmt) for name in STAGED_VARIABLES}
    if journal["phase"] == "prepared":
        for name in STAGED_VARIABLES:
            for k in moved:
                move_time_step(root / name, k, shelf / name, k, suffixes[name], fmt)
        journal["phase"] = "shelved"
        write_json_atomically(store.journal, journal)
        failpoint("commit:shelved")
    if journal["phase"] == "shelved":
        for name in STAGED_VARIABLES:
            if insert:
                for k in reversed(moved):
                    move_time_step(shelf / name, k, root / name, k + 1, suffixes[name], fmt)
            move_time_step(staging / name, 0, root / name, index, suffixes[name], fmt)
        journal["phase"] = "placed"
        write_json_atomically(store.journal, journal)
        failpoint("commit:placed")
    n_after = n_before + 1 if insert else n_before
    group = store.open_group(mode="r+", consolidated=False)
    for name in TIME_VARIABLES:
        resize_along_time(array_of(group, name), n_after)
    write_time_values(group, index, journal["values"], "commit")
    if rewrites_stored_steps(journal):
        count_rewrite(store)
    seal_commit(store, staging, "commit")


def rewrites_stored_steps(journal: dict[str, Any]) -> bool:
    """True for a commit that moves or replaces stored time steps (a backfill or a replacement), not an append.

    A journal that does not say (unreadable, or from an older version) counts as one.
    """
    try:
        return bool(journal["mode"] == "replace" or journal["index"] < journal["n_before"])
    except (KeyError, TypeError):
        return True


def count_rewrite(store: Store) -> None:
    """Record one more commit that moved or replaced stored time steps (:data:`~ovro_ingest.store.REWRITES_ATTR`).

    Written before the journal is removed, so a reader that sees no journal afterwards
    sees the new mark. The group is opened through its consolidated metadata, as in
    :func:`~ovro_ingest.store.record_run`, so the root metadata keeps it; a replayed
    journal records the commit twice, which only makes a reader copy again.
    """
    group = store.open_group(mode="r+")
    count = int((attributes(group).get(REWRITES_ATTR) or {}).get("count", 0))
    group.attrs[REWRITES_ATTR] = {"count": count + 1, "last": uuid.uuid4().hex}
    failpoint("commit:counted")


def rewrite_under_way(store: str | os.PathLike[str]) -> bool:
    """True when the store's journal describes a commit that moves or replaces stored time steps.

    Such a commit is running or was interrupted (``ovro-ingest repair`` finishes it);
    while it lasts, the stored time steps from its index on may be read half moved.
    An append's journal does not count: it never touches stored chunks.
    """
    try:
        journal = json.loads(Store.at(store).journal.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    if not isinstance(journal, dict):
        return True
    return journal.get("kind") != "timeseries" and rewrites_stored_steps(journal)


def resize_along_time(array: zarr.Array[Any], n_time: int) -> bool:
    """Grow or shrink a per-time-step array to ``n_time`` entries; True when its length changed.

    Without listing the array's chunks (zarr would, to delete the cut ones; callers
    remove chunks beyond the ledger themselves, and an append cuts none).
    """
    if array.shape[0] == n_time:
        return False
    sync(array._async_array.resize((n_time, *array.shape[1:]), False))
    return True


def write_time_values(group: zarr.Group, start: int, values: dict[str, list[Any]], failpoint_prefix: str) -> None:
    """Write the small per-time-step values of a commit from time index ``start`` on, one array at a time."""
    for name, column in values.items():
        array = array_of(group, name)
        if column:
            stop = start + len(column)
            array[start:stop] = np.array(column, dtype=object if array.dtype.kind in "OTU" else float)
        failpoint(f"{failpoint_prefix}:wrote-{name}")


def seal_commit(store: str | os.PathLike[str], staging: Path, failpoint_prefix: str) -> None:
    """The commit itself (rewrite the consolidated metadata, one atomic file replacement), then forget the journal."""
    store = Store.at(store)
    store.consolidate()
    failpoint(f"{failpoint_prefix}:consolidated")
    store.journal.unlink(missing_ok=True)
    failpoint(f"{failpoint_prefix}:forgotten")
    discard_staging(staging, failpoint_prefix)


def discard_staging(staging: Path, failpoint_prefix: str) -> None:
    """Remove a committed staging directory: first renamed as partial, so that a crash midway never leaves it complete.

    A complete staging is kept by the next run for reuse (:func:`clear_staging`); one
    whose time steps are already committed would never be reused, and would stay. The
    moment between the journal's removal and the rename is left to the next run's
    :func:`drop_committed_stagings` (the archive's; the time-series store's update
    drops every staging once it is up to date).
    """
    doomed = staging.with_name(f"{staging.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        staging.rename(doomed)
    except FileNotFoundError:
        return
    except OSError:  # the commit is done whatever happens here: remove it where it is
        doomed = staging
    failpoint(f"{failpoint_prefix}:discarding")
    shutil.rmtree(doomed, ignore_errors=True)


def recover(store: str | os.PathLike[str]) -> bool:
    """Finish a commit that was interrupted (callers hold the writer lock). True when there was one."""
    path = Store.at(store).journal
    if not path.exists():
        return False
    journal = json.loads(path.read_text())
    if journal.get("kind") == "timeseries":  # a time-series store's update (ovro_ingest.timeseries finishes it)
        raise StoreError(f"{store}: is a time-series store; give the archive, or `ovro-ingest repair {store}`")
    logger.warning("finishing the interrupted commit of time step %s", journal["key"])
    apply_journal(store, journal)
    return True


def drop_committed_stagings(store: str | os.PathLike[str]) -> list[Path]:
    """Remove complete stagings of time steps the store already holds from their files (writer lock held).

    A kill in the moment between a commit's journal removal and its staging's rename
    (:func:`discard_staging`) leaves a complete staging whose chunks the commit moved
    into the store (its ``source_files`` entry reads as the fill value ``""``); one
    between a redundant staging's check and its rename leaves one staged from the very
    files the store holds. No later run would reuse such a staging (the time step is
    stored) or remove it (it is complete): they are removed here. A staging from other
    files is a replacement not yet committed, and kept. Call after :func:`recover`.
    Reads each staging's ``values.json`` and ``source_files`` and the store's ledger
    entries of their keys (:meth:`StoreState.indices_of`), never pixels.
    """
    root = Store.at(store).staging_root
    entries = [read_staged_entry(p) for p in root.iterdir()] if root.exists() else []
    staged = [entry for entry in entries if entry is not None]
    if not staged:
        return []
    state = read_state(store)
    index_of = state.indices_of(key for _, key, _ in staged)
    held = [(path, key, files) for path, key, files in staged if key in index_of]
    stored = state.values("source_files", [index_of[key] for _, key, _ in held])
    doomed = [path for (path, _, files), entry in zip(held, stored, strict=True) if files in ("", entry)]
    for path in doomed:
        discard_staging(path, "sweep")
    return doomed


def read_staged_entry(staging: Path) -> tuple[Path, str, str] | None:
    """A complete staging's (path, time key, ``source_files`` entry); None when incomplete or unreadable (left as it is)."""
    try:
        key = json.loads((staging / VALUES_FILE).read_text())["time_key"]
        return staging, key, str(zarr.open_array(str(staging / "source_files"), mode="r")[0])
    except (OSError, ValueError, KeyError, TypeError):  # zarr's errors are ValueErrors or OSErrors
        return None


def clear_staging(store: str | os.PathLike[str], keep_complete: bool = True) -> list[Path]:
    """Remove staging left by interrupted runs (callers hold the writer lock); return what was removed.

    Complete stagings are kept by default: the next attempt at the same inputs reuses them.
    """
    root = Store.at(store).staging_root
    if not root.exists():
        return []
    doomed = [p for p in root.iterdir() if not keep_complete or ".partial-" in p.name]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    if not any(root.iterdir()):
        root.rmdir()
    return doomed
