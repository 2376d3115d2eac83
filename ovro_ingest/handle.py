"""The store handle: where a store lives and how to reach what it holds, passed around instead of a path string.

Every place beside or inside a store that the pipeline uses is named here once:

    <store>/                         the Zarr store (the ledger of what is ingested)
    <store>/.staging/                time steps written but not committed yet
    <store>/.ovro-ingest-journal.json   only while a commit is under way
    <store>.lock                     the writer lock (beside the store, so it outlives a rebuild)
    <store>.work/                    manifests, fixed copies, quick looks

A :class:`Store` is small (a path), immutable and JSON-serializable, so a Prefect
task or flow run can take it as a parameter and a result can name it. It is also
path-like (``os.fspath(store)`` is its folder), so a function that takes a path takes
a handle too. Today a store is a POSIX folder; the handle is where object storage
(an ``s3://`` URL read through fsspec) would be added.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import zarr
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ovro_ingest.store import StoreState

STAGING_DIR = ".staging"
"""Inside the store: one folder per staged time step (see :mod:`ovro_ingest.commit`)."""
JOURNAL_FILE = ".ovro-ingest-journal.json"
"""Inside the store, only while a commit is under way: what the commit moves, so that it can be finished."""


class Store(BaseModel):
    """A Zarr store, by where it lives: what the pipeline passes around instead of a path string.

    Attributes
    ----------
    path : Path
        The store's folder, as given (it need not exist yet).
    """

    model_config = ConfigDict(frozen=True)

    path: Path

    @classmethod
    def at(cls, where: str | os.PathLike[str] | Store) -> Store:
        """The handle of the store at ``where`` (a path, or a handle, returned as it is)."""
        return where if isinstance(where, Store) else cls(path=Path(os.fspath(where)))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def url(self) -> str:
        """The store's location as a URL (``file://`` for a POSIX folder), for readers that take one."""
        return self.path.absolute().as_uri()

    def beside(self, suffix: str) -> Path:
        """A path beside the store: its folder's real name plus ``suffix`` (``.lock``, ``.work``)."""
        real = self.path.resolve()
        return real.with_name(real.name + suffix)

    @property
    def work_dir(self) -> Path:
        """The runs' working folder, ``<store>.work``: manifests, fixed copies, quick looks."""
        return self.beside(".work")

    @property
    def lock_file(self) -> Path:
        """The writer lock's file, ``<store>.lock`` (see :meth:`lock`)."""
        return self.beside(".lock")

    @property
    def staging_root(self) -> Path:
        """The staging area: one folder per time step written but not committed yet."""
        return self.path / STAGING_DIR

    @property
    def journal(self) -> Path:
        """The commit journal (present only while a commit is under way)."""
        return self.path / JOURNAL_FILE

    def exists(self) -> bool:
        """True when a Zarr store (format 2 or 3) is there."""
        return (self.path / "zarr.json").is_file() or (self.path / ".zmetadata").is_file()

    def open_group(self, mode: Literal["r", "r+", "a", "w", "w-"] = "r", consolidated: bool = True) -> zarr.Group:
        """The store's root group; ``consolidated``: as readers see it, committed time steps only."""
        return zarr.open_group(str(self.path), mode=mode, use_consolidated=consolidated)

    def consolidate(self) -> None:
        """Rewrite the consolidated metadata from every array's own: the commit point (one atomic file replacement)."""
        zarr.consolidate_metadata(str(self.path))

    def state(self) -> StoreState:
        """What the store holds, as committed (see :func:`ovro_ingest.store.read_state`).

        Raises
        ------
        StoreError
            No ovro-ingest store is there, or it cannot be read (the message says what to do).
        """
        from ovro_ingest.store import read_state

        return read_state(self)

    def identity(self) -> str | None:
        """The store's identity (a UUID written at its creation); None when there is no store."""
        from ovro_ingest.store import store_id

        return store_id(self)

    @contextmanager
    def lock(self, who: str = "ovro-ingest", wait_seconds: float = 0.0) -> Iterator[None]:
        """Hold the writer lock for the ``with`` block (see :func:`ovro_ingest.lock.writer_lock`)."""
        from ovro_ingest.lock import writer_lock

        with writer_lock(self, who, wait_seconds):
            yield
