"""``ovro-ingest`` commands run in the test's own process (typer's CliRunner), for tests not about the process.

A CLI subprocess costs a Python start and its imports (about 3 s of CPU under coverage's
tracer); in-process the same command runs the same code and prints the same output. Keep
subprocesses for what only a process shows: exit by signal, terminals, Prefect's logging
set-up (``run``, ``timeseries``, ``demo``), environment variables read at start-up.
"""

from __future__ import annotations

import subprocess


def ovro_ingest(*args: str) -> subprocess.CompletedProcess:
    """Run ``ovro-ingest ARGS`` in this process; returns what ``subprocess.run`` would (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, list(args), prog_name="ovro-ingest")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["ovro-ingest", *args], result.exit_code, result.stdout, result.stderr)
