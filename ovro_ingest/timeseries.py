"""The time-series store: the archive's ``SKY`` laid out for dynamic spectra and light curves, kept up to date.

The archive is written one time step at a time, so its ``SKY`` chunks are
``(1, 1, 1, 1024, 1024)``: one pixel's dynamic spectrum decodes a whole 4 MiB chunk
per time step and subband. The time-series store holds the same variables,
coordinates, attributes and per-time-step ledger, made from the archive (never from
the FITS files), with ``SKY`` in blocks of :attr:`TimeSeriesLayout.time_block` time
steps x every subband x small tiles of pixels (see :class:`TimeSeriesLayout` and the
docs/benchmarks/timeseries.md for the measured choice).

Kept up to date by :func:`update_timeseries`, which holds the time-series store's
writer lock, not the archive's: an ingest may append to the archive all the while
(appends never touch stored chunks), and a backfill or replacement committed in the
archive while it is read is noticed by the mark each such commit leaves (the
archive's ``ovro_ingest_rewrites``; :func:`check_unchanged`), so that nothing read
half moved is kept. It goes window by window (:data:`WINDOW_TIME_STEPS`), and for each

1. plans (:func:`plan_update`): the first time index where the archive and the
   time-series store differ, found from the time-series store's ``archive_fingerprint``
   (per time index: a hash of the archive's time key, time and ledger entry) against
   the archive's ledger, rounded down to the start of its time block. An append
   redoes the last, partial block; a backfill or a ``--replace`` in the archive redoes
   everything from the block it touched; a store made from another archive is refused;
2. stages (:func:`stage_update`): the blocks from there on are copied into
   ``<timeseries>/.staging/update-<digest>/`` by dask (``dask.array.from_array`` of the
   archive, ``dask.array.store`` into a staging copy of ``SKY``), block by block, each
   dask chunk at most :func:`block_strip`'s bytes, so memory is bounded whatever the
   number of time steps; the ledger values go beside them as JSON;
3. commits (:func:`commit_update`), journaled as the archive's commits are
   (:mod:`ovro_ingest.commit`): the replaced time blocks are shelved, the staged ones
   renamed into place, the per-time-step arrays grown and written, and the consolidated
   metadata rewritten: the commit point. A kill at any point is rolled forward by
   :func:`recover_timeseries`, which every update and ``ovro-ingest repair`` call first.

No Prefect here: ``flows/timeseries.py`` and ``tasks/timeseries.py`` wrap these functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt
import xarray as xr
import zarr
from pydantic import BaseModel, ConfigDict, Field
from zarr.core.sync import sync

from ovro_ingest.commit import (
    chunk_suffixes,
    clear_staging,
    disk_full_named,
    metadata_file,
    move_time_step,
    resize_along_time,
    rewrite_under_way,
    seal_commit,
    write_json_atomically,
    write_time_values,
)
from ovro_ingest.errors import StoreError
from ovro_ingest.failpoints import failpoint
from ovro_ingest.handle import Store
from ovro_ingest.store import (
    REWRITES_ATTR,
    RUNS_ATTR,
    SMALL_TIME_CHUNK,
    STORE_ID_ATTR,
    TIME_VARIABLES,
    TIMESERIES_ATTR,
    StoreState,
    array_of,
    attributes,
    leftovers_beside,
    read_array,
    read_state,
    record_run,
)

if TYPE_CHECKING:
    from ovro_ingest.health import HealthReport

logger = logging.getLogger(__name__)

FINGERPRINT = "archive_fingerprint"
"""Per time index: what the time-series store holds there (a hash of the archive's ledger entry)."""
LEDGER_VARIABLES = tuple(name for name in TIME_VARIABLES if name != "SKY")
"""The per-time-step arrays besides ``SKY`` that the time-series store copies from the archive."""
VALUES_FILE = "values.json"
JOURNAL_KIND = "timeseries"

warnings.filterwarnings("ignore", message="The specified chunks separate the stored chunks")


class TimeSeriesLayout(BaseModel):
    """How the time-series store's ``SKY`` is chunked and stored (fixed when it is created).

    Zarr format 3 (the default): shards of ``time_block`` time steps x every subband x
    ``shard_lm``² pixels (one file each), made of inner chunks of ``chunk_time`` time
    steps x every subband x ``chunk_lm``² pixels, the unit a reader reads. Zarr format
    2 has no sharding: plain chunks of ``time_block`` x every subband x ``plain_chunk_lm``².
    Sizes larger than the image are cut to the image. ``codec``: uncompressed chunks
    (``"none"``), which a reader takes as they are on disk, or the archive's codec.
    The default is the layout measured best (docs/benchmarks/timeseries.md).
    """

    model_config = ConfigDict(frozen=True)

    time_block: int = Field(8, ge=1, description="Time steps per shard (format 3) or chunk (format 2).")
    chunk_time: int = Field(4, ge=1, description="Time steps per inner chunk (format 3; at most time_block).")
    chunk_lm: int = Field(128, ge=8, description="Pixels along l and m per inner chunk (format 3).")
    shard_lm: int = Field(256, ge=8, description="Pixels along l and m per shard (format 3).")
    plain_chunk_lm: int = Field(128, ge=8, description="Pixels along l and m per chunk (format 2).")
    codec: Literal["none", "archive"] = Field(
        "none", description="SKY's codec: none (uncompressed) or the archive's (Blosc lz4 unless it has another)."
    )

    @classmethod
    def recorded(cls, layout: dict[str, Any]) -> TimeSeriesLayout:
        """The layout a store recorded. Stores made before 2026-12-01 recorded no codec: theirs is the archive's."""
        return cls.model_validate({"codec": "archive", **layout})

    def sky_chunks(self, shape: Sequence[int], zarr_format: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """(chunks, shards) of ``SKY`` for a store of ``shape`` = (time, frequency, polarization, l, m)."""
        _, n_freq, _, n_l, n_m = shape
        if zarr_format == 2:
            return (self.time_block, n_freq, 1, min(self.plain_chunk_lm, n_l), min(self.plain_chunk_lm, n_m)), None
        shard_l, shard_m = min(self.shard_lm, n_l), min(self.shard_lm, n_m)
        chunk_l, chunk_m = min(self.chunk_lm, shard_l), min(self.chunk_lm, shard_m)
        chunk_time = min(self.chunk_time, self.time_block)
        if shard_l % chunk_l or shard_m % chunk_m or self.time_block % chunk_time:
            raise ValueError(f"inner chunks must divide the shards: {self}")
        return (chunk_time, n_freq, 1, chunk_l, chunk_m), (self.time_block, n_freq, 1, shard_l, shard_m)


class TimeSeriesPlan(BaseModel):
    """What an update will do (small: it travels as a Prefect result and into cache keys)."""

    model_config = ConfigDict(frozen=True)

    archive: str
    timeseries: str
    archive_store_id: str
    timeseries_store_id: str
    n_archive: int
    """Time steps the time-series store will hold after this update: the archive's, or fewer when the
    update goes window by window (:data:`WINDOW_TIME_STEPS`)."""
    n_before: int
    """Time steps the time-series store holds now."""
    start: int
    """First time index rewritten (the start of a time block); ``n_archive`` when there is nothing to do."""
    first_difference: int
    """First time index where the two stores differ (``start`` rounds it down to its block)."""
    target_digest: str
    """Hash of the archive fingerprints of every time index after the update."""
    archive_rewrite_mark: str = ""
    """The archive's rewrite mark when planned (``ovro_ingest_rewrites``): what was read is exact while it stays."""
    archive_n_time: int = 0
    """Time steps the archive held when planned: the end of a whole update, whose windows stop there."""

    @property
    def up_to_date(self) -> bool:
        """True when the time-series store already holds exactly what the archive holds."""
        return self.start >= self.n_archive and self.n_before == self.n_archive


class StagedUpdate(BaseModel):
    """A staged update: where its blocks are, and how much was copied."""

    model_config = ConfigDict(frozen=True)

    plan: TimeSeriesPlan
    path: str
    bytes_copied: int
    seconds: float


class TimeSeriesReceipt(BaseModel):
    """What an update did."""

    model_config = ConfigDict(frozen=True)

    archive: str
    timeseries: str
    status: str
    """``"up to date"`` (nothing to do), ``"appended"`` or ``"rewritten"`` (a backfill or replacement)."""
    n_time: int
    start: int
    time_steps_copied: int
    bytes_copied: int = 0
    seconds: float = 0.0

    def one_line(self) -> str:
        """A summary line for logs and the console."""
        if self.status == "up to date":
            return f"{self.timeseries}: up to date with {self.archive} ({self.n_time} time steps)"
        return (
            f"{self.timeseries}: {self.status} time steps {self.start}..{self.n_time - 1} from {self.archive} "
            f"({self.time_steps_copied} time steps, {self.bytes_copied / 1e9:.2f} GB in {self.seconds:.1f} s); "
            f"it holds {self.n_time} time steps"
        )


@dataclass(frozen=True)
class TimeSeriesState:
    """The committed state of a time-series store, as its consolidated metadata says."""

    path: Path
    store_id: str
    archive_store_id: str
    archive_path: str
    n_time: int
    layout: TimeSeriesLayout
    zarr_format: Literal[2, 3]
    archive_rewrite_mark: str | None = None
    """The archive's rewrite mark when this store was last updated (None: not recorded)."""

    def group(self) -> zarr.Group:
        """The store opened read-only through its consolidated metadata."""
        return Store.at(self.path).open_group()

    def fingerprints(self) -> list[str]:
        """The archive fingerprint of every committed time index (all in memory: a year is 1.6 M strings)."""
        return [str(v) for v in read_array(self.group(), FINGERPRINT, slice(self.n_time))] if self.n_time else []

    def fingerprint_column(self) -> FingerprintColumn:
        """The committed fingerprints, read block by block when needed (what updates use)."""
        return FingerprintColumn(self)

    def content_digest(self) -> str:
        """:func:`digest` of :meth:`fingerprints`, read block by block."""
        return digest_of_blocks(self.fingerprint_column().blocks())

    def column(self, name: str, start: int = 0) -> list[Any]:
        """Values ``start..`` of a per-time-step array other than ``SKY``."""
        if self.n_time <= start:
            return []
        values = read_array(self.group(), name, slice(start, self.n_time))
        return [v.tolist() if isinstance(v, np.ndarray) else v for v in values]

    @property
    def n_blocks(self) -> int:
        """Time blocks (shard or chunk rows along time) the committed time steps occupy."""
        return math.ceil(self.n_time / self.layout.time_block)


# ---------------------------------------------------------------- identity and state


def default_timeseries_path(archive: str | os.PathLike[str]) -> Path:
    """Where the time-series store of ``archive`` goes by default: ``archive.zarr`` -> ``archive.timeseries.zarr``."""
    path = Path(archive)
    stem = path.name.removesuffix(".zarr")
    return path.with_name(f"{stem}.timeseries.zarr")


def is_timeseries_store(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds a time-series store (its attributes name the archive it was made from)."""
    if not Store.at(path).exists():
        return False
    try:
        return TIMESERIES_ATTR in Store.at(path).open_group(consolidated=False).attrs
    except Exception:
        return False


def read_timeseries_state(path: str | os.PathLike[str]) -> TimeSeriesState:
    """The committed state of the time-series store at ``path``.

    Raises
    ------
    StoreError
        ``path`` is not a time-series store, or cannot be opened (one line, with the fix).
    """
    try:
        group = Store.at(path).open_group()
        attrs = attributes(group)
        link = attrs.get(TIMESERIES_ATTR)
        if link is None:
            raise StoreError(
                f"{path}: not a time-series store (no {TIMESERIES_ATTR} attribute); give another time-series path"
            )
        return TimeSeriesState(
            path=Path(path),
            store_id=attrs[STORE_ID_ATTR],
            archive_store_id=link["archive_store_id"],
            archive_path=link["archive"],
            n_time=array_of(group, "time").shape[0],
            layout=TimeSeriesLayout.recorded(link["layout"]),
            zarr_format=group.metadata.zarr_format,
            archive_rewrite_mark=link.get("archive_rewrite_mark"),
        )
    except StoreError:
        raise
    except Exception as error:
        raise StoreError(
            f"{path}: cannot open the time-series store ({error}); run `ovro-ingest repair {path}`, "
            "or delete it and run `ovro-ingest timeseries` again (it is made from the archive)"
        ) from error


def archive_fingerprints(archive: StoreState, start: int = 0, stop: int | None = None) -> list[str]:
    """Per time index ``start..stop`` (default: to the end): a hash of the archive's time key, time and ledger entry.

    A time step stored again from other files (``--replace``) changes its ledger entry;
    a backfill shifts every later index; so the first index whose fingerprint differs is
    where the time-series store must be rewritten from.
    """
    keys = archive.column("time_key", start, stop)
    times = archive.column("time", start, stop)
    entries = archive.column("source_files", start, stop)
    return [
        hashlib.sha256(json.dumps([k, float(t).hex(), e]).encode()).hexdigest()[:24]
        for k, t, e in zip(keys, times, entries, strict=True)
    ]


def digest(fingerprints: Sequence[str]) -> str:
    """One hash of a list of fingerprints (the content of a time-series store, in brief)."""
    return digest_of_blocks([fingerprints])


def digest_of_blocks(blocks: Iterable[Sequence[str]]) -> str:
    """:func:`digest` of the concatenation of ``blocks``, without holding it whole."""
    hashed, first = hashlib.sha256(), True
    for block in blocks:
        if len(block):
            hashed.update((("" if first else "\n") + "\n".join(block)).encode())
            first = False
    return hashed.hexdigest()[:32]


FINGERPRINT_BLOCK = 65_536
"""Fingerprints read at once from a time-series store (about 5 MB as Python strings)."""


class FingerprintColumn:
    """A time-series store's committed fingerprints, read block by block.

    A year is 1.6 million of them, about 130 MB as Python strings: an update's plans and
    commits need their count, the last one and their digest, none of them all at once.
    """

    def __init__(self, state: TimeSeriesState) -> None:
        self.state = state

    def __len__(self) -> int:
        return self.state.n_time

    def __getitem__(self, index: int) -> str:
        """One fingerprint (negative indices count from the end)."""
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(index)
        return str(read_array(self.state.group(), FINGERPRINT, position))

    def blocks(self, stop: int | None = None) -> Iterator[list[str]]:
        """The fingerprints ``0..stop`` (default: all), :data:`FINGERPRINT_BLOCK` at a time."""
        stop = len(self) if stop is None else min(stop, len(self))
        if not stop:
            return
        array = array_of(self.state.group(), FINGERPRINT)
        for start in range(0, stop, FINGERPRINT_BLOCK):
            yield [str(v) for v in np.asarray(array[start : min(start + FINGERPRINT_BLOCK, stop)])]


@dataclass(frozen=True)
class Prefixed:
    """Fingerprints known to begin with ``prefix`` (unchanged, not read again), followed by ``tail``."""

    prefix: Sequence[str] | FingerprintColumn
    tail: list[str]

    def __len__(self) -> int:
        return len(self.prefix) + len(self.tail)


Fingerprints = Sequence[str] | Prefixed | FingerprintColumn
"""An ordered run of fingerprints: a list, or one read lazily."""


def blocks_of(fingerprints: Fingerprints, stop: int | None = None) -> Iterator[Sequence[str]]:
    """``fingerprints[:stop]`` as consecutive blocks."""
    stop = len(fingerprints) if stop is None else min(stop, len(fingerprints))
    if isinstance(fingerprints, Prefixed):
        yield from blocks_of(fingerprints.prefix, stop)
        if stop > len(fingerprints.prefix):
            yield fingerprints.tail[: stop - len(fingerprints.prefix)]
    elif isinstance(fingerprints, FingerprintColumn):
        yield from fingerprints.blocks(stop)
    else:
        yield fingerprints[:stop]


def first_difference(wanted: Fingerprints, held: Fingerprints) -> int:
    """The first index where ``wanted`` and ``held`` differ (or the shorter one's length); ``held`` block by block."""
    limit = min(len(wanted), len(held))
    if isinstance(wanted, Prefixed) and wanted.prefix is held:
        return limit  # held is the known, unchanged prefix of wanted: nothing to compare
    theirs = [f for block in blocks_of(wanted, limit) for f in block]
    position = 0
    for block in blocks_of(held, limit):
        other = theirs[position : position + len(block)]
        if list(block) != other:
            return position + next(i for i, (a, b) in enumerate(zip(block, other, strict=True)) if a != b)
        position += len(block)
    return limit


def check_distinct(archive: str | os.PathLike[str], timeseries: str | os.PathLike[str]) -> None:
    """Raise when the two paths are one store."""
    if Path(timeseries).resolve() == Path(archive).resolve():
        raise StoreError(f"{timeseries}: is the archive itself; give another path for the time-series store")


REWRITE_GRACE_S = 10.0
"""Seconds an update waits for a backfill or replacement under way in the archive to commit, before refusing."""


DERIVED_STORES_FILE = "timeseries-stores.json"
"""In an archive's work folder: the time-series stores made from it (paths), so that a rebuild can name them."""


def remember_timeseries_store(archive: str | os.PathLike[str], timeseries: str | os.PathLike[str]) -> None:
    """Record in ``archive``'s work folder that the time-series store ``timeseries`` was made from it."""
    listed = Store.at(archive).work_dir / DERIVED_STORES_FILE
    known = timeseries_stores_of(archive)
    path = str(Path(timeseries).resolve())
    if path in known:
        return
    listed.parent.mkdir(parents=True, exist_ok=True)
    partial = listed.with_name(f"{listed.name}.partial-{uuid.uuid4().hex[:8]}")
    partial.write_text(json.dumps(sorted([*known, path]), indent=1))
    os.replace(partial, listed)  # an update beside another never leaves half a list


def timeseries_stores_of(archive: str | os.PathLike[str]) -> list[str]:
    """The time-series stores made from ``archive`` that still exist (paths), as its work folder lists them."""
    listed = Store.at(archive).work_dir / DERIVED_STORES_FILE
    try:
        paths = json.loads(listed.read_text())
    except (OSError, ValueError):
        return []
    return [path for path in paths if Store.at(path).exists()]


def require_archive(archive: str | os.PathLike[str]) -> None:
    """Raise a one-line ``StoreError`` when there is no store at ``archive`` (what a caller can tell before a run)."""
    if not Store.at(archive).exists():
        raise StoreError(
            f"{archive}: no archive store here; give the path of an ovro-ingest archive (`ovro-ingest run` makes one)"
        )


def check_archive(archive: str | os.PathLike[str]) -> StoreState:
    """The archive's committed state, read while no commit moves its stored time steps; else a one-line error.

    No lock is taken: appends (what an ingest does all night) never touch stored
    chunks. A backfill or replacement under way is waited for (``REWRITE_GRACE_S``);
    the returned ``rewrite_mark`` tells a later look whether one committed meanwhile
    (:func:`check_unchanged`).

    Raises
    ------
    StoreError
        No store there, not an archive (a time-series store), unreadable, or a
        rewriting commit in it that does not finish (an interrupted one: repair it).
    """
    require_archive(archive)
    deadline = time.monotonic() + REWRITE_GRACE_S
    while True:
        # a rewrite counts itself before its journal goes: no journal, then the count, then no journal again
        if not rewrite_under_way(archive):
            state = read_state(archive)
            if not rewrite_under_way(archive):
                return state
        if time.monotonic() >= deadline:
            raise StoreError(
                f"{archive}: an interrupted commit (a backfill or a --replace) is unfinished in the archive, or an "
                f"ingest is still committing it; if no ingest runs, run `ovro-ingest repair {archive}` first"
            )
        time.sleep(0.1)


def check_unchanged(plan: TimeSeriesPlan) -> StoreState:
    """The archive's state now, when its time steps ``0..plan.n_archive`` are still what ``plan`` saw.

    Raises
    ------
    StoreError
        The archive was rebuilt, or a backfill or replacement committed since the plan
        (its stored time steps moved: whatever was read of them meanwhile may be mixed).
    """
    now = check_archive(plan.archive)
    if now.store_id != plan.archive_store_id:
        raise StoreError(f"{plan.archive}: the archive was rebuilt since the update was planned; run the update again")
    if now.rewrite_mark != plan.archive_rewrite_mark or now.n_time < plan.n_archive:
        raise StoreError(
            f"{plan.archive}: stored time steps were moved or replaced (a backfill or a --replace) while the update "
            "read them; run the update again (it copies from the first time block that differs)"
        )
    return now


# ---------------------------------------------------------------- creation


def create_timeseries_store(
    archive: StoreState, path: str | os.PathLike[str], layout: TimeSeriesLayout | None = None
) -> str:
    """Create an empty time-series store for ``archive`` at ``path`` (built beside it, renamed into place).

    It has the archive's variables, coordinates and attributes (its own identity and
    run list), a ``SKY`` laid out by ``layout``, and the ``archive_fingerprint`` ledger.
    Returns its identity.

    Raises
    ------
    StoreError
        ``path`` exists and is not an empty folder.
    """
    target = Path(path)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise StoreError(f"{target}: exists and is not a time-series store; choose another path or remove it")
    layout = layout or TimeSeriesLayout()
    fmt = archive.settings.zarr_format
    source = xr.open_zarr(archive.path, chunks=None, mask_and_scale=False, decode_times=False)
    template = source.isel(time=slice(0, 1)).load() if archive.n_time else None
    if template is None:
        raise StoreError(f"{archive.path}: the archive holds no time step yet; ingest a night first")
    chunks, shards = layout.sky_chunks((1, *source["SKY"].shape[1:]), fmt)
    identity = str(uuid.uuid4())
    template[FINGERPRINT] = ("time", np.array([""], dtype=object), {"description": FINGERPRINT_DESCRIPTION})
    template.attrs = {k: v for k, v in source.attrs.items() if k not in (RUNS_ATTR, STORE_ID_ATTR, REWRITES_ATTR)}
    template.attrs.update(
        {
            STORE_ID_ATTR: identity,
            TIMESERIES_ATTR: {
                "archive": str(Path(archive.path).resolve()),
                "archive_store_id": archive.store_id,
                "layout": layout.model_dump(mode="json"),
            },
            RUNS_ATTR: [],
        }
    )
    encoding = timeseries_encoding(template, archive, layout, chunks, shards)
    building = target.with_name(f".{target.name}.creating-{identity[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        template.to_zarr(building, mode="w-", zarr_format=fmt, consolidated=True, encoding=encoding, compute=True)
        group = zarr.open_group(str(building), mode="r+", use_consolidated=False)
        for name in (*TIME_VARIABLES, FINGERPRINT):
            array = array_of(group, name)
            sync(array._async_array.resize((0, *array.shape[1:]), False))
        shutil.rmtree(building / "SKY" / "c", ignore_errors=True)  # the template's pixels are not kept
        for stray in (building / "SKY").glob("0.*"):
            stray.unlink()
        zarr.consolidate_metadata(str(building))
        if target.exists():
            target.rmdir()
        os.rename(building, target)
    except OSError as error:
        raise StoreError(
            f"{target}: cannot create the time-series store ({error.strerror}); choose a writable location"
        ) from error
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return identity


FINGERPRINT_DESCRIPTION = "hash of the archive's time key, time and source_files at this time index"


def timeseries_encoding(
    template: xr.Dataset,
    archive: StoreState,
    layout: TimeSeriesLayout,
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
) -> dict[str, dict[str, Any]]:
    """Encoding of every variable with a time dimension: ``SKY`` by the layout, the ledger in large time chunks."""
    fmt = archive.settings.zarr_format
    key_encoding = {"name": "default", "separator": "/"} if fmt == 3 else {"name": "v2", "separator": "."}
    encoding: dict[str, dict[str, Any]] = {
        name: {"chunks": (SMALL_TIME_CHUNK, *template[name].shape[1:]), "chunk_key_encoding": key_encoding}
        for name in (*LEDGER_VARIABLES, FINGERPRINT)
        if name in template.data_vars
    }
    encoding["time"] = {"chunks": (SMALL_TIME_CHUNK,), "chunk_key_encoding": key_encoding}
    encoding["SKY"] = {
        "chunks": chunks,
        "dtype": "float32",
        "compressors": None if layout.codec == "none" else archive.settings.compressors(),
        "chunk_key_encoding": key_encoding,
        "_FillValue": np.float32("nan"),
    }
    if shards is not None:
        encoding["SKY"]["shards"] = shards
    for name, settings in encoding.items():  # the archive's fill values (xarray keeps them as _FillValue attrs)
        if "_FillValue" in template[name].attrs:
            settings["_FillValue"] = template[name].attrs.pop("_FillValue")
    return encoding


# ---------------------------------------------------------------- plan


WINDOW_TIME_STEPS = 360
"""Time steps an update copies and commits at a time (an hour of a night, rounded up to whole time blocks).

A night's update copies 4.4 TB for hours; window by window, each committed before
the next is planned, a crash or a failure loses one window's work, the re-run goes on
from the first window not committed, and readers see the store grow hour by hour.
"""


def plan_update(
    archive: str | os.PathLike[str],
    timeseries: str | os.PathLike[str],
    layout: TimeSeriesLayout | None = None,
    create: bool = True,
    window: int | None = None,
    until: int | None = None,
) -> TimeSeriesPlan:
    """Find what an update must copy; create the time-series store when there is none (callers hold its writer lock).

    With ``create=False`` (a dry run) nothing is written: a missing time-series store
    is planned as empty (``timeseries_store_id`` empty). With ``window``, the plan
    copies that many time steps (rounded up to whole time blocks) from the first that
    differs, or up to the store's current end when that is further (a rewrite is never
    cut short); planning again after its commit gives the next window. ``until``: plan
    no further than this time index (an update's windows stop where its first plan
    saw the archive end, rather than chase an ingest that keeps appending).

    Raises
    ------
    StoreError
        The archive is missing or unreadable, the time-series store is not one, or it
        was made from another archive (one line each, with the fix).
    """
    check_distinct(archive, timeseries)
    if window is not None and window < 1:
        raise ValueError(f"window must be at least one time step, not {window}")
    source = check_archive(archive)
    if not Store.at(timeseries).exists():
        if not create:
            source, every = stable_fingerprints(archive, stop=until)
            return TimeSeriesPlan(
                archive=str(Path(archive).resolve()),
                timeseries=str(Path(timeseries).resolve()),
                archive_store_id=source.store_id,
                timeseries_store_id="",
                n_archive=len(every),
                n_before=0,
                start=0,
                first_difference=0,
                target_digest=digest(every),
                archive_rewrite_mark=source.rewrite_mark,
                archive_n_time=source.n_time,
            )
        create_timeseries_store(source, timeseries, layout)
        remember_timeseries_store(archive, timeseries)
    state = read_timeseries_state(timeseries)
    held = state.fingerprint_column()  # read block by block, and only when compared or hashed
    block = state.layout.time_block
    span = None if window is None else math.ceil(window / block) * block
    # after appends only, a window's plan reads the archive's ledger up to the window's end, not the archive's
    reach = until if span is None else int(min(until or math.inf, (len(held) // block) * block + span))
    source, wanted = stable_fingerprints(archive, (state.archive_rewrite_mark, held), stop=reach)
    if state.archive_store_id != source.store_id:
        raise StoreError(
            f"{timeseries}: was made from another archive (store id {state.archive_store_id}, {state.archive_path}), "
            f"not from {archive} (store id {source.store_id}); make it again from this archive with "
            f"`ovro-ingest timeseries --rebuild {archive} {timeseries}`, or give another time-series path"
        )
    first = first_difference(wanted, held)
    start = len(wanted) if first == len(wanted) == len(held) else (first // block) * block
    # a window never ends before the store's current end: rewritten blocks are replaced at once, never cut off
    stop = len(wanted) if span is None else min(len(wanted), max(len(held), start + span))
    return TimeSeriesPlan(
        archive=str(Path(archive).resolve()),
        timeseries=str(Path(timeseries).resolve()),
        archive_store_id=source.store_id,
        timeseries_store_id=state.store_id,
        n_archive=stop,
        n_before=state.n_time,
        start=start,
        first_difference=first,
        target_digest=digest_of_blocks(blocks_of(wanted, stop)),
        archive_rewrite_mark=source.rewrite_mark,
        archive_n_time=source.n_time,
    )


@overload
def stable_fingerprints(
    archive: str | os.PathLike[str], known: None = None, stop: int | None = None, attempts: int = 3
) -> tuple[StoreState, list[str]]: ...
@overload
def stable_fingerprints(
    archive: str | os.PathLike[str],
    known: tuple[str | None, Sequence[str] | FingerprintColumn],
    stop: int | None = None,
    attempts: int = 3,
) -> tuple[StoreState, list[str] | Prefixed]: ...
def stable_fingerprints(
    archive: str | os.PathLike[str],
    known: tuple[str | None, Sequence[str] | FingerprintColumn] | None = None,
    stop: int | None = None,
    attempts: int = 3,
) -> tuple[StoreState, list[str] | Prefixed]:
    """The archive's state and the fingerprints of its time indices ``0..stop``, read while nothing was rewritten.

    ``known``: a time-series store's recorded rewrite mark of the archive and its
    fingerprints. While the archive's mark is still that one and its fingerprint at the
    last known index still matches (a store restored from a backup and grown again
    does not), nothing known has moved or changed since, so only the fingerprints after
    the known ones are read: an update after a night reads a night's ledger entries,
    not a year's (one chunk per entry), and the answer is :class:`Prefixed` by the
    known ones (not read again). Otherwise every one is read, into a list.

    Raises
    ------
    StoreError
        Stored time steps kept moving (``attempts`` reads in a row), or :func:`check_archive`'s errors.
    """
    source = check_archive(archive)
    for _ in range(attempts):
        end = source.n_time if stop is None else min(stop, source.n_time)
        wanted: list[str] | Prefixed | None = None
        if known is not None and len(known[1]) and known[0] == source.rewrite_mark and len(known[1]) <= end:
            after = archive_fingerprints(source, len(known[1]) - 1, end)
            if after[0] == known[1][-1]:
                wanted = Prefixed(known[1], after[1:])
        if wanted is None:
            wanted = archive_fingerprints(source, 0, end)
        now = check_archive(archive)
        if (now.store_id, now.rewrite_mark) == (source.store_id, source.rewrite_mark):
            return source, wanted
        source = now
    raise StoreError(
        f"{archive}: stored time steps kept moving while the update read them (backfills or replacements); run the "
        "update again once the ingest is done"
    )


# ---------------------------------------------------------------- stage


DEFAULT_MAX_MEMORY = 512 * 2**20
"""Bytes of pixels in flight while staging (all dask threads together): about a third of the 1.5 GB bound."""
ZARR_CONCURRENCY = 2
"""Chunks or shards zarr reads or writes at once within one dask chunk while staging (its default: 10).

An uncompressed shard is written from two copies of its bytes (its inner chunks', then
the shard's); ten at once per dask thread took the build of 10 subbands of 1024² to a
peak of 1.17-1.36 GB, two to 0.79 GB, and no slower: the copy is bound by the cores.
zarr's configuration is the process's: other zarr work in the process meanwhile gets
it too (the ``timeseries`` flow and command run updates in a process of their own).
"""
ONE_STAGING_AT_A_TIME = threading.Lock()
"""Stagings in one process take turns, so that each restores zarr's configuration as it found it."""


def dask_chunks(
    archive_sky: zarr.Array[Any], staged: zarr.Array[Any], layout: TimeSeriesLayout, workers: int, max_memory: int
) -> tuple[int, ...]:
    """Chunks of the dask array that copies the archive: each holds whole shards (or format-2 chunks) of the target.

    One time block x every subband and polarization x the archive's chunk along l
    (rounded up to whole target shards) x a strip along m (:func:`block_strip`). A
    target shard is then written by one task, whole: two tasks never write one shard.
    """
    _, n_freq, n_pol, n_l, _ = archive_sky.shape
    target = staged.shards or staged.chunks
    _, _, _, chunk_l, chunk_m = archive_sky.chunks
    width_l = min(n_l, -(-chunk_l // target[3]) * target[3])
    strip = block_strip(n_freq * n_pol, width_l, chunk_m, target[4], layout.time_block, workers, max_memory)
    return (layout.time_block, n_freq, n_pol, width_l, strip)


def block_strip(
    n_freq: int, chunk_l: int, chunk_m: int, shard_m: int, time_block: int, workers: int, max_memory: int
) -> int:
    """Pixels along m of one dask chunk: the archive's whole chunk when it fits ``max_memory``, else a strip.

    A dask chunk is ``time_block`` time steps x every subband x the archive's chunk
    along l x this many pixels along m (a multiple of the shard, so that each shard is
    written once and whole). A strip narrower than the archive's chunk decodes each
    archive chunk more than once (once per strip), the price of the memory bound.
    """
    whole = -(-chunk_m // shard_m) * shard_m  # the archive's chunk, rounded up to whole shards
    per_pixel_column = time_block * n_freq * chunk_l * 4 * workers
    fits = max(1, max_memory // max(1, per_pixel_column))
    return max(shard_m, (min(fits, whole) // shard_m) * shard_m)


class TimeRange:
    """Time indices ``start..stop`` of a zarr array, for ``dask.array.from_array`` to read lazily.

    ``dask.array.from_zarr`` of the whole archive, sliced to a window afterwards, makes
    and culls a graph of every chunk the archive holds: at 100 nights of 4096² about
    300 MB and 5 s per window (a year: about 1 GB), for a window of 360 time steps.
    Over this view the graph holds the window's chunks only, whatever the archive's length.

    Parameters
    ----------
    array
        A zarr array whose first axis is time.
    start, stop
        The time indices seen as ``0..stop - start``.
    """

    def __init__(self, array: zarr.Array[Any], start: int, stop: int) -> None:
        if not 0 <= start <= stop <= array.shape[0]:
            raise ValueError(f"time range {start}..{stop} is outside the array's {array.shape[0]} time steps")
        self.array, self.start = array, start
        self.shape = (stop - start, *array.shape[1:])
        self.dtype, self.ndim = array.dtype, array.ndim

    def __getitem__(self, key: tuple[slice, ...]) -> npt.NDArray[Any]:
        """``key``: one forward slice per axis (what dask asks for), the first one in the range's own indices."""
        if not (isinstance(key, tuple) and key and all(isinstance(k, slice) for k in key)):
            raise TypeError(f"a time range is read with one slice per axis, not {key!r}")
        along_time, *rest = key
        first, last, step = along_time.indices(self.shape[0])
        if step != 1:
            raise ValueError(f"a time range is read in order, one time step after the other, not with step {step}")
        return np.asarray(self.array[(slice(self.start + first, self.start + max(first, last)), *rest)])


def stage_update(plan: TimeSeriesPlan, workers: int = 2, max_memory: int = DEFAULT_MAX_MEMORY) -> StagedUpdate:
    """Copy the archive's time steps ``plan.start..`` into the time-series store's staging area.

    The pixels go through dask: the archive's ``SKY`` in the plan's time range
    (:class:`TimeRange`, ``dask.array.from_array``) in chunks of one time block x every
    subband x a tile (:func:`block_strip`), stored with ``dask.array.store`` into a
    staging copy of the time-series ``SKY`` (same chunks, shards and codec), by
    ``workers`` threads, so at most ``max_memory`` bytes of pixels are in flight. The
    staging directory appears by a rename: complete or absent.

    The archive is read without its lock, so an ingest may append to it meanwhile; the
    copy is checked before it is kept (:func:`check_unchanged`).

    Raises
    ------
    StoreError
        The archive was rebuilt, or stored time steps of it moved or were replaced
        since the plan (what was read may be mixed), or the disk is full.
    """
    import dask
    import dask.array as da

    started = time.perf_counter()
    target = staging_path(plan)
    if target.exists():
        return StagedUpdate(plan=plan, path=str(target), bytes_copied=0, seconds=0.0)
    source = check_unchanged(plan)
    state = read_timeseries_state(plan.timeseries)
    partial = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        with disk_full_named(plan.timeseries, "staging the time-series update"):
            staged = staging_sky(state, partial, plan.n_archive)
            sky = array_of(source.group(), "SKY")
            pixels = da.from_array(  # type: ignore[no-untyped-call]  # dask's from_array has no annotations
                TimeRange(sky, plan.start, plan.n_archive),
                chunks=dask_chunks(sky, staged, state.layout, workers, max_memory),
                name=f"archive-sky-{plan.start}-{plan.n_archive}-{uuid.uuid4().hex[:8]}",
                fancy=False,
                meta=np.empty((0,) * sky.ndim, dtype=sky.dtype),
            )
            region = (slice(plan.start, plan.n_archive),)
            with (
                ONE_STAGING_AT_A_TIME,
                dask.config.set(scheduler="threads", num_workers=workers),
                zarr.config.set({"async.concurrency": ZARR_CONCURRENCY}),
            ):
                # dask annotates store()'s targets as ArrayLike, but takes any array with numpy-style __setitem__ (as its
                # docstring says), such as this zarr array
                da.store(pixels, staged, regions=region, lock=False)  # type: ignore[arg-type]
            failpoint("timeseries:pixels-staged")
            values = {name: source.column(name, plan.start, plan.n_archive) for name in LEDGER_VARIABLES}
            values[FINGERPRINT] = archive_fingerprints(source, plan.start, plan.n_archive)
            check_unchanged(plan)  # no lock on the archive: what was read is exact only if nothing moved meanwhile
            (partial / VALUES_FILE).write_text(json.dumps(values))
            failpoint("timeseries:staged")
            os.rename(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    copied = (plan.n_archive - plan.start) * int(np.prod(sky.shape[1:])) * 4
    return StagedUpdate(plan=plan, path=str(target), bytes_copied=copied, seconds=time.perf_counter() - started)


def staging_path(plan: TimeSeriesPlan) -> Path:
    """The staging directory of ``plan``: named after what it will make the store hold."""
    return Store.at(plan.timeseries).staging_root / f"update-{plan.start}-{plan.target_digest[:12]}"


def staging_sky(state: TimeSeriesState, staging: Path, n_time: int) -> zarr.Array[Any]:
    """A copy of the time-series ``SKY``'s metadata in ``staging``, ``n_time`` long, opened for writing."""
    fmt = state.zarr_format
    (staging / "SKY").mkdir(parents=True)
    for name in ("zarr.json",) if fmt == 3 else (".zarray", ".zattrs"):
        source = state.path / "SKY" / name
        if source.exists():
            shutil.copyfile(source, staging / "SKY" / name)
    metadata_path = staging / "SKY" / metadata_file(fmt)
    metadata = json.loads(metadata_path.read_text())
    metadata["shape"][0] = n_time
    metadata_path.write_text(json.dumps(metadata))
    return zarr.open_array(str(staging / "SKY"), mode="r+", zarr_format=fmt)


# ---------------------------------------------------------------- commit


def commit_update(staged: StagedUpdate) -> TimeSeriesReceipt:
    """Make a staged update part of the time-series store (callers hold its writer lock).

    Raises
    ------
    StoreError
        The staging is gone, or the store changed since the plan.
    """
    started = time.perf_counter()
    plan = staged.plan
    recover_timeseries(plan.timeseries)
    state = read_timeseries_state(plan.timeseries)
    if state.n_time == plan.n_archive and state.content_digest() == plan.target_digest:
        shutil.rmtree(staged.path, ignore_errors=True)  # committed already (by the recovery above)
        return receipt(plan, staged, started)
    if state.store_id != plan.timeseries_store_id or state.n_time != plan.n_before:
        raise StoreError(f"{plan.timeseries}: the time-series store changed since the update was planned; run it again")
    if not Path(staged.path).exists():
        raise StoreError(f"{staged.path}: the staged update is gone; run the update again")
    journal = {
        "kind": JOURNAL_KIND,
        "staging": staged.path,
        "start": plan.start,
        "n_before": plan.n_before,
        "n_after": plan.n_archive,
        "archive_rewrite_mark": plan.archive_rewrite_mark,
        "phase": "prepared",
    }
    with disk_full_named(plan.timeseries, "committing the time-series update"):
        write_json_atomically(Store.at(plan.timeseries).journal, journal)
        failpoint("timeseries:journaled")
        apply_timeseries_journal(plan.timeseries, journal)
    return receipt(plan, staged, started)


def receipt(plan: TimeSeriesPlan, staged: StagedUpdate, started: float) -> TimeSeriesReceipt:
    """The receipt of a committed update."""
    return TimeSeriesReceipt(
        archive=plan.archive,
        timeseries=plan.timeseries,
        status="appended" if plan.first_difference >= plan.n_before else "rewritten",
        n_time=plan.n_archive,
        start=plan.start,
        time_steps_copied=plan.n_archive - plan.start,
        bytes_copied=staged.bytes_copied,
        seconds=staged.seconds + time.perf_counter() - started,
    )


def apply_timeseries_journal(store: str | os.PathLike[str], journal: dict[str, Any]) -> None:
    """Carry out (or finish) the update a journal describes; every step may be repeated safely.

    Phases: ``prepared`` -> the store's time blocks from the update's first block on are
    moved onto a shelf in the staging directory; ``shelved`` -> the staged blocks are
    renamed into place; ``placed`` -> the per-time-step arrays are resized and written,
    the consolidated metadata rewritten (the commit), the journal and staging removed.
    """
    root, staging = Path(store), Path(journal["staging"])
    shelf = staging / "shelf"
    fmt = Store.at(root).open_group(consolidated=False).metadata.zarr_format
    layout = TimeSeriesLayout.recorded(
        attributes(Store.at(root).open_group(consolidated=False))[TIMESERIES_ATTR]["layout"]
    )
    first_block = journal["start"] // layout.time_block
    before = range(first_block, math.ceil(journal["n_before"] / layout.time_block))
    after = range(first_block, math.ceil(journal["n_after"] / layout.time_block))
    suffixes = chunk_suffixes(root / "SKY", fmt)
    if journal["phase"] == "prepared":
        for block in before:
            move_time_step(root / "SKY", block, shelf / "SKY", block, suffixes, fmt)
        journal["phase"] = "shelved"
        write_json_atomically(Store.at(store).journal, journal)
        failpoint("timeseries:shelved")
    if journal["phase"] == "shelved":
        for block in after:
            move_time_step(staging / "SKY", block, root / "SKY", block, suffixes, fmt)
        journal["phase"] = "placed"
        write_json_atomically(Store.at(store).journal, journal)
        failpoint("timeseries:placed")
    group = Store.at(root).open_group(mode="r+", consolidated=False)
    for name in (*TIME_VARIABLES, FINGERPRINT):
        resize_along_time(array_of(group, name), journal["n_after"])
    write_time_values(group, journal["start"], json.loads((staging / VALUES_FILE).read_text()), "timeseries")
    record_archive_rewrite_mark(store, journal.get("archive_rewrite_mark"))
    seal_commit(store, staging, "timeseries")


def record_archive_rewrite_mark(store: str | os.PathLike[str], mark: str | None) -> None:
    """Note in the store's link to its archive the archive's rewrite mark its content now matches.

    The group is opened through its consolidated metadata (see
    :func:`~ovro_ingest.store.record_run`); the commit's consolidation that follows keeps it.
    """
    group = Store.at(store).open_group(mode="r+")
    link = dict(attributes(group)[TIMESERIES_ATTR])
    if mark is None:
        link.pop("archive_rewrite_mark", None)
    else:
        link["archive_rewrite_mark"] = mark
    group.attrs[TIMESERIES_ATTR] = link


def recover_timeseries(store: str | os.PathLike[str]) -> bool:
    """Finish an update that was interrupted (callers hold the writer lock). True when there was one."""
    path = Store.at(store).journal
    if not path.exists():
        return False
    journal = json.loads(path.read_text())
    if journal.get("kind") != JOURNAL_KIND:
        raise StoreError(f"{store}: holds an archive's commit journal; run `ovro-ingest repair` on it")
    logger.warning("finishing the interrupted time-series update of %s from time index %d", store, journal["start"])
    apply_timeseries_journal(store, journal)
    return True


def prepare_timeseries(store: str | os.PathLike[str]) -> None:
    """Before an update (writer lock held): finish an interrupted commit, drop half-written staging and leftovers."""
    for leftover in leftovers_beside(store):
        shutil.rmtree(leftover, ignore_errors=True)
    if Store.at(store).exists():
        recover_timeseries(store)
        clear_staging(store)


def settle_timeseries(store: str | os.PathLike[str]) -> None:
    """After an update that brought the store up to date (writer lock held): drop every staging.

    Nothing is left to stage then, so a complete staging can only be stale: a crash
    between a commit and the removal of its staging (:func:`~ovro_ingest.commit.discard_staging`)
    or a window staged for an update that a later one planned differently. Kept, a
    window's staging (an hour of pixels) would never be reused nor removed.
    """
    clear_staging(store, keep_complete=False)


# ---------------------------------------------------------------- the whole update


def update_timeseries(
    archive: str | os.PathLike[str],
    timeseries: str | os.PathLike[str],
    who: str = "ovro-ingest timeseries",
    wait_seconds: float = 0.0,
    workers: int = 2,
    max_memory: int = DEFAULT_MAX_MEMORY,
    layout: TimeSeriesLayout | None = None,
    window: int = WINDOW_TIME_STEPS,
) -> TimeSeriesReceipt:
    """Bring the time-series store up to date with the archive (plain functions; the flow does the same as tasks).

    Holds the time-series store's writer lock (``wait_seconds`` for it); the archive is
    only read, while ingests may go on appending to it (see the module's docstring).
    Copies ``window`` time steps at a time, each window committed before the next is
    planned (:data:`WINDOW_TIME_STEPS`).

    Raises
    ------
    StoreBusy
        Another update holds the time-series store.
    StoreError
        A bad archive or time-series store, or the archive's stored time steps moved
        while they were read (one line, with the fix); the windows committed before stay.
    """
    with holding_timeseries(archive, timeseries, who, wait_seconds):
        prepare_timeseries(timeseries)
        receipts = []
        plan = plan_update(archive, timeseries, layout, window=window)
        until = plan.archive_n_time  # where the archive ended at the first plan: what is appended since waits
        while not plan.up_to_date:
            receipts.append(commit_update(stage_update(plan, workers=workers, max_memory=max_memory)))
            plan = plan_update(archive, timeseries, window=window, until=until)
        settle_timeseries(timeseries)
        if not receipts:
            return up_to_date(plan)
        done = combined(receipts)
        record_run(timeseries, run_record(who, done))
        return done


def combined(windows: Sequence[TimeSeriesReceipt]) -> TimeSeriesReceipt:
    """One receipt for an update's windows, in the order they were committed."""
    first, last = windows[0], windows[-1]
    return first.model_copy(
        update={
            "status": "rewritten" if any(w.status == "rewritten" for w in windows) else "appended",
            "start": min(w.start for w in windows),
            "n_time": last.n_time,
            "time_steps_copied": sum(w.time_steps_copied for w in windows),
            "bytes_copied": sum(w.bytes_copied for w in windows),
            "seconds": sum(w.seconds for w in windows),
        }
    )


@contextmanager
def holding_timeseries(
    archive: str | os.PathLike[str], timeseries: str | os.PathLike[str], who: str, wait_seconds: float
) -> Iterator[None]:
    """Hold the time-series store's writer lock, once the two paths are known to be distinct and the archive there."""
    check_distinct(archive, timeseries)
    if not Store.at(archive).exists():  # before a lock file is made beside a path that holds nothing
        check_archive(archive)
    with Store.at(timeseries).lock(who=who, wait_seconds=wait_seconds):
        yield


def up_to_date(plan: TimeSeriesPlan) -> TimeSeriesReceipt:
    """The receipt of an update that had nothing to do."""
    return TimeSeriesReceipt(
        archive=plan.archive,
        timeseries=plan.timeseries,
        status="up to date",
        n_time=plan.n_archive,
        start=plan.start,
        time_steps_copied=0,
    )


def run_record(who: str, done: TimeSeriesReceipt) -> dict[str, Any]:
    """What the time-series store remembers of an update."""
    from datetime import UTC, datetime

    return {
        "who": who,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "archive": done.archive,
        "status": done.status,
        "time_steps": f"{done.start}..{done.n_time - 1}",
    }


# ---------------------------------------------------------------- validate and repair


def validate_timeseries(path: str | os.PathLike[str]) -> HealthReport:
    """Check a time-series store without changing it (what ``ovro-ingest validate`` runs on one).

    Its metadata is current and committed, every per-time-step array has one entry per
    time step, time and keys increase, every time block has its ``SKY`` files and none
    lies beyond the committed ones, no journal is left; and, when its archive is at
    the recorded path, the archive is the one it was made from (a note says how far
    behind the archive it is).
    """
    from ovro_ingest.health import HealthReport, check_metadata_is_current, check_time_axis, uncommitted_chunks

    report = HealthReport(store=str(path))
    try:
        state = read_timeseries_state(path)
    except StoreError as error:
        report.problems.append(str(error))
        return report
    report.n_time = state.n_time
    if Store.at(path).journal.exists():
        report.problems.append("an interrupted update left its journal; `ovro-ingest repair` finishes it")
    check_metadata_is_current(state, report)
    if array_of(state.group(), FINGERPRINT).shape[0] != state.n_time:
        report.problems.append(f"{FINGERPRINT}: not one entry per time step; `ovro-ingest repair`")
    check_time_axis(state, report)
    if any(not f for f in state.fingerprints()):
        report.problems.append(f"{FINGERPRINT} is missing for some time steps")
    missing = [b for b in range(state.n_blocks) if not block_present(state, b)]
    if missing:
        report.problems.append(
            f"SKY has no pixels for time block(s) {', '.join(str(b) for b in missing[:5])}; delete the time-series "
            "store and run `ovro-ingest timeseries` again (it is made from the archive)"
        )
    stray = uncommitted_chunks(state.path / "SKY", state.zarr_format, state.n_blocks)
    if stray:
        report.problems.append(
            f"SKY holds {len(stray)} uncommitted time block(s) ({', '.join(str(k) for k in sorted(stray)[:5])}); "
            "`ovro-ingest repair` removes them"
        )
    check_against_archive(state, report)
    staging = Store.at(path).staging_root
    if staging.exists() and any(staging.iterdir()):
        report.notes.append("a staged update is not committed (an update is running, or was interrupted)")
    return report


def block_present(state: TimeSeriesState, block: int) -> bool:
    """True when time block ``block`` of ``SKY`` has its files (format 3: its folder; format 2: a chunk file)."""
    folder = state.path / "SKY"
    if state.zarr_format == 3:
        return (folder / "c" / str(block)).is_dir()
    return any(folder.glob(f"{block}.*"))


def check_against_archive(state: TimeSeriesState, report: HealthReport) -> None:
    """The recorded archive is the one the store was made from; a note says whether it is up to date."""
    if not Store.at(state.archive_path).exists():
        report.notes.append(f"its archive {state.archive_path} is not there (moved?); not compared")
        return
    try:
        archive = read_state(state.archive_path)
    except StoreError as error:
        report.notes.append(f"its archive could not be read: {error}")
        return
    if archive.store_id != state.archive_store_id:
        report.problems.append(
            f"made from archive store id {state.archive_store_id}, but {state.archive_path} is now another store "
            f"({archive.store_id}, rebuilt?); delete the time-series store and run `ovro-ingest timeseries` again"
        )
        return
    wanted, held = archive_fingerprints(archive), state.fingerprints()
    if wanted != held:
        first = next((i for i, (a, b) in enumerate(zip(wanted, held, strict=False)) if a != b), len(held))
        report.notes.append(
            f"behind its archive from time index {first} (archive {len(wanted)}, here {len(held)} time steps); "
            f"`ovro-ingest timeseries {state.archive_path} {state.path}` brings it up to date"
        )


def repair_timeseries(path: str | os.PathLike[str], wait_seconds: float = 0.0) -> HealthReport:
    """Bring a time-series store back to its last committed state (or finish its update), then validate it."""
    from ovro_ingest.health import remove_leftovers_beside, roll_back_to_committed

    with Store.at(path).lock(who="ovro-ingest repair", wait_seconds=wait_seconds):
        actions = remove_leftovers_beside(path)
        if recover_timeseries(path):
            actions.append("finished an interrupted update")
        state = read_timeseries_state(path)
        actions += roll_back_to_committed(
            path, state.zarr_format, (*TIME_VARIABLES, FINGERPRINT), state.n_time, {"SKY": state.n_blocks}, "time block"
        )
    report = validate_timeseries(path)
    report.actions = actions
    report.notes = actions + report.notes
    return report
