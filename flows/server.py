"""The Prefect server a run reports to: the configured one, a local one kept running, or a temporary one.

In order: ``PREFECT_API_URL`` when set; else the local server that ``ovro-ingest server
start`` keeps running for this Prefect home (its address is in
``<PREFECT_HOME>/ovro-ingest-server.json``), so that repeated ad-hoc runs pay no server
start; else a temporary server for this one run (12-40 s to start on a fresh SQLite).
One server, started before the Dask cluster and shared with its workers through the
environment, also keeps Prefect from starting one in every worker process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

KEPT_SERVER_FILE = "ovro-ingest-server.json"


def prefect_home() -> Path:
    """The Prefect home of this environment (``PREFECT_HOME``, Prefect's default ``~/.prefect``), without importing Prefect."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


RESULTS_FOLDER = "ovro-ingest-results"


def keep_results_apart() -> None:
    """Send this process's Prefect results to ``<PREFECT_HOME>/ovro-ingest-results`` (before Prefect is imported).

    Unless ``PREFECT_RESULTS_LOCAL_STORAGE_PATH`` names a folder already. A Prefect home
    (``~/.prefect`` by default) is often shared with other projects, and what
    ``ovro-ingest prune --results`` and a run's retention prune must be ovro-ingest's
    results only, not every flow's in that home.
    """
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(prefect_home() / RESULTS_FOLDER))


def kept_server(home: Path | None = None) -> dict | None:
    """The local server ``ovro-ingest server start`` keeps for Prefect home ``home`` (this one), if it answers; else None."""
    try:
        server = json.loads(((home or prefect_home()) / KEPT_SERVER_FILE).read_text())
        os.kill(server["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return server if healthy(server["api_url"]) else None


def start_kept_server(port: int | None = None, timeout_s: float = 180, home: Path | None = None) -> dict:
    """Start a local Prefect server (127.0.0.1, the SQLite of Prefect home ``home``, by default this one) that outlives this process.

    Returns its record (pid, API URL, UI URL, log); an already running one is returned as it is.

    Raises
    ------
    RuntimeError
        The server did not answer within ``timeout_s`` (its log says why).
    """
    running = kept_server(home)
    if running:
        return running
    home = home or prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = home / "ovro-ingest-server.log"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
            start_new_session=True,  # not stopped by the terminal's Ctrl-C or hang-up
        )
    server = {
        "pid": process.pid,
        "api_url": f"http://127.0.0.1:{port}/api",
        "ui_url": f"http://127.0.0.1:{port}",
        "log": str(log),
        "prefect_home": str(home),
    }
    deadline = time.monotonic() + timeout_s
    while not healthy(server["api_url"]):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process_group(process.pid)
            raise RuntimeError(f"the Prefect server did not start; see {log}")
        time.sleep(0.5)
    (home / KEPT_SERVER_FILE).write_text(json.dumps(server))
    return server


def stop_kept_server(timeout_s: float = 30, home: Path | None = None) -> dict | None:
    """Stop the kept local server of Prefect home ``home`` (this one); return its record (None when none was running)."""
    record = (home or prefect_home()) / KEPT_SERVER_FILE
    try:
        server = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    stop_process_group(server["pid"], timeout_s)
    record.unlink(missing_ok=True)
    return server


def stop_process_group(pid: int, timeout_s: float = 30) -> None:
    """SIGTERM the process group of ``pid`` (the server and its children), SIGKILL what is left after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)


class PrefectServerUnreachable(RuntimeError):
    """``PREFECT_API_URL`` names a Prefect server that does not answer (the message says what to do)."""


CONFIGURED_SERVER_WAIT_S = 5.0
"""How long a run waits for the server ``PREFECT_API_URL`` names to answer its health check (a busy one is slow)."""


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the Prefect API URL to use: the configured one, the kept local server, or a temporary one.

    Raises
    ------
    PrefectServerUnreachable
        ``PREFECT_API_URL`` is set and no server answers there within
        :data:`CONFIGURED_SERVER_WAIT_S` (checked before anything starts, so that the run
        stops in one line instead of deep inside Prefect's client).
    """
    configured = os.environ.get("PREFECT_API_URL")
    if configured and not answers_within(configured, CONFIGURED_SERVER_WAIT_S):
        raise PrefectServerUnreachable(
            f"no Prefect server answers at {configured} (PREFECT_API_URL): start it (`deployments/stand-up` starts "
            "the operators' one), or unset PREFECT_API_URL to use the server `ovro-ingest server start` keeps, "
            "or a temporary one"
        )
    configured = configured or (kept_server() or {}).get("api_url")
    if configured:
        os.environ["PREFECT_API_URL"] = configured
        yield configured
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url  # for the Dask worker processes
    dead_links = NoLinksToATemporaryServer()
    logging.getLogger("prefect.flow_runs").addFilter(dead_links)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # send the run's last log lines while the server still listens
        os.environ.pop("PREFECT_API_URL", None)
        logging.getLogger("prefect.flow_runs").removeFilter(dead_links)
        server.stop()


class NoLinksToATemporaryServer(logging.Filter):
    """Drops Prefect's "View at http://127.0.0.1:<port>/runs/..." lines: that server is gone when the run ends."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("View at ")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_server_process(log_path: str | os.PathLike[str], start_timeout_s: float = 180) -> Iterator[str]:
    """Run ``prefect server start`` on 127.0.0.1 (a free port) as a child process; yield its API URL.

    The server uses the environment's ``PREFECT_HOME`` (its SQLite database). It is
    terminated on exit; its output goes to ``log_path``.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        )
        try:
            deadline = time.monotonic() + start_timeout_s
            while not healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Prefect server did not start; see {log_path}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def answers_within(url: str, seconds: float) -> bool:
    """True as soon as the Prefect API at ``url`` answers its health check; False when it has not after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not healthy(url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def healthy(url: str) -> bool:
    """True when the Prefect API at ``url`` answers its health check."""
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
