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
