"""One writer at a time: an exclusive lock per store, held for a whole ingest run.

The lock is an advisory ``flock`` on ``<store>.lock`` (beside the store, so it
survives a rebuild). The kernel releases it when the holding process ends, however
it ends, so a crashed holder never leaves a stale lock. On NFS, Linux maps
``flock`` to POSIX byte-range locks, which the NFS lock manager shares across
machines. After taking the lock, the holder writes who it is into the file, so
that a refused writer can say whom it waits for.

Why not the ``filelock`` package: it truncates the lock file when it opens it,
which would erase the holder's description whenever someone else tries the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ovro_ingest.errors import StoreBusy, StoreError
from ovro_ingest.handle import Store


def describe_holder(path: Path) -> str:
    """The holder's description, as written in the lock file (or 'unknown')."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "an unknown writer"
    if not holder:
        return "an unknown writer"
    return f"{holder.get('who', 'a writer')} (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')})"


@contextmanager
def writer_lock(store: str | os.PathLike[str], who: str = "ovro-ingest", wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the store's writer lock for the duration of the ``with`` block.

    Parameters
    ----------
    store : path
        The Zarr store (it need not exist yet).
    who : str
        How to describe this writer to a refused one (e.g. the flow run's name).
    wait_seconds : float
        How long to wait for the lock; 0 fails at once.

    Raises
    ------
    StoreBusy
        Another writer holds the lock (after ``wait_seconds``); the message names it.
    """
    path = Store.at(store).lock_file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise StoreError(
            f"{path}: cannot create the store's lock file ({error.strerror}); choose a writable store location"
        ) from error
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"{Path(store)}: another ingest is writing this store: {describe_holder(path)}; "
                        "wait for it to finish, or pass --wait-for-lock SECONDS"
                    ) from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        holder = {
            "who": who,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)  # releases the flock
