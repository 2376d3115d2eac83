"""Fail points: named places where the crash tests kill the process on purpose.

Set ``OVRO_INGEST_FAILPOINT=<name>`` and the process SIGKILLs itself when it reaches
that point, the way a power cut or an out-of-memory kill would stop it. Unset (always,
outside the tests), a fail point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENVIRONMENT_VARIABLE = "OVRO_INGEST_FAILPOINT"


def failpoint(name: str) -> None:
    """SIGKILL this process if the fail point ``name`` is armed."""
    if os.environ.get(ENVIRONMENT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
