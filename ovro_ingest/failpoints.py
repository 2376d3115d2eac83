"""Fail points: named places where the crash tests kill the process on purpose.

Set ``OVRO_INGEST_FAILPOINT=<name>`` and the process SIGKILLs itself when it reaches
that point, the way a power cut or an out-of-memory kill would stop it;
``OVRO_INGEST_FAILPOINT=<name>=ENOSPC`` raises a full-disk ``OSError`` there instead
(for machines where the tests cannot mount a small file system). Unset (always,
outside the tests), a fail point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal

ENVIRONMENT_VARIABLE = "OVRO_INGEST_FAILPOINT"


def failpoint(name: str) -> None:
    """SIGKILL this process (or raise ENOSPC) if the fail point ``name`` is armed."""
    armed = os.environ.get(ENVIRONMENT_VARIABLE)
    if armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
    elif armed == f"{name}=ENOSPC":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
