"""A Prefect server for runs that have none configured (the embedded default).

With no ``PREFECT_API_URL``, Prefect would start a temporary server in every Dask
worker process. One temporary server, started here before the cluster and shared
with the workers through the environment, avoids that.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the Prefect API URL to use, starting a temporary local server if none is configured."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url  # for the Dask worker processes
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # send the run's last log lines while the server still listens
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


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
    import subprocess
    import sys
    import time

    import httpx

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
            while not _healthy(httpx, url):
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


def _healthy(httpx, url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
