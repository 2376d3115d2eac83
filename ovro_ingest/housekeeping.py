"""Housekeeping: what runs leave beside the store and in the result storage does not pile up.

A run writes beside the store, in ``<store>.work``: manifests (the time steps of an
input listing), fixed copies of files the loader cannot read as they are, and one
quick-look picture per night. Prefect keeps every task's small result in its result
storage. Both only speed up a re-run or a retry (the store's ledger says what is stored),
so what is older than a retention period can go: a later run that needs it again makes
it again. The quick-look pictures (one small file per night) are kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ovro_ingest.handle import Store

DAY_S = 86_400.0
PRUNED_WORK_FOLDERS = ("manifests", "fixed")
"""Folders of ``<store>.work`` whose files are pruned (``quicklook`` is kept: one small picture per night)."""


@dataclass
class Pruned:
    """What a prune removed."""

    files: int = 0
    bytes: int = 0
    folders: list[str] = field(default_factory=list)

    def add(self, other: Pruned) -> None:
        """Count ``other``'s removals in this one."""
        self.files += other.files
        self.bytes += other.bytes
        self.folders += other.folders

    def one_line(self) -> str:
        """E.g. ``removed 12 files (3.4 MB) older than 30 days from 2 folders``."""
        return f"removed {self.files} files ({self.bytes / 1e6:.1f} MB) from {len(self.folders)} folders"


def prune_files(folder: str | os.PathLike[str], older_than_days: float, now: float | None = None) -> Pruned:
    """Delete the files under ``folder`` last modified more than ``older_than_days`` ago (folders are kept).

    Parameters
    ----------
    folder : path
        Where to look (recursively); a missing folder prunes nothing and is not named.
    older_than_days : float
        Age in days (modification time) beyond which a file goes; must be positive.
    now : float, optional
        The present, seconds since the epoch (default: the clock).

    Raises
    ------
    ValueError
        ``older_than_days`` is not positive.
    """
    if older_than_days <= 0:
        raise ValueError(f"a retention of {older_than_days} days would remove what runs use now; give at least 1")
    cutoff = (time.time() if now is None else now) - older_than_days * DAY_S
    root = Path(folder)
    if not root.is_dir():
        return Pruned()  # a folder that is not there is not named as pruned
    pruned = Pruned(folders=[str(folder)])
    for path in root.rglob("*"):
        try:
            stat = path.lstat()
            if path.is_file() and not path.is_symlink() and stat.st_mtime < cutoff:
                path.unlink()
                pruned.files += 1
                pruned.bytes += stat.st_size
        except FileNotFoundError:  # removed meanwhile
            continue
    return pruned


def prune_work(store: str | os.PathLike[str], older_than_days: float, now: float | None = None) -> Pruned:
    """Prune the manifests and fixed copies in ``<store>.work`` older than ``older_than_days`` (callers hold the lock).

    A time step whose fixed copy is gone and that is not stored yet gets the copy made
    again by its next run (the fix task's cache key includes the copy, so a missing copy
    is never taken from the cache).
    """
    pruned = Pruned()
    for name in PRUNED_WORK_FOLDERS:
        pruned.add(prune_files(Store.at(store).work_dir / name, older_than_days, now))
    return pruned
