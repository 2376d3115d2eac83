"""Fail points: named places where the crash tests kill the process on purpose.

Set ``OVRO_INGEST_FAILPOINT=<name>`` and the process SIGKILLs itself when it reaches
that point, the way a power cut or an out-of-memory kill would stop it;
``OVRO_INGEST_FAILPOINT=<name>=ENOSPC`` raises a full-disk ``OSError`` there instead
(for machines where the tests cannot mount a small file system). With
``OVRO_INGEST_FAILPOINT_ONCE=<folder>`` a point fires only once per ``instance`` (say,
per staged time step), across processes: a marker file in that folder remembers it,
so that work retried elsewhere (a Dask worker's replacement) gets through. Unset
(always, outside the tests), a fail point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

ENVIRONMENT_VARIABLE = "OVRO_INGEST_FAILPOINT"
ONCE_VARIABLE = "OVRO_INGEST_FAILPOINT_ONCE"


def failpoint(name: str, instance: str = "") -> None:
    """SIGKILL this process (or raise ENOSPC) if the fail point ``name`` is armed (and, with once, not yet fired)."""
    armed = os.environ.get(ENVIRONMENT_VARIABLE)
    if armed not in (name, f"{name}=ENOSPC") or not first_time(name, instance):
        return
    if armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


def first_time(name: str, instance: str) -> bool:
    """False when ``OVRO_INGEST_FAILPOINT_ONCE`` is set and this point already fired for ``instance``."""
    folder = os.environ.get(ONCE_VARIABLE)
    if not folder:
        return True
    marker = Path(folder) / f"{name}-{instance}".replace("/", "_")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
