"""Prefect tasks of the pipeline, one module per step, each a thin wrapper of a domain function.

The domain package logs through the ``ovro_ingest`` loggers, which Prefect forwards to
the run's logs (``PREFECT_LOGGING_EXTRA_LOGGERS=ovro_ingest``) but leaves at Python's
default level; ``OVRO_INGEST_LOG_LEVEL`` (set by ``ovro-ingest -v/-q``) sets it in
every process that runs tasks, Dask workers included.
"""

import logging
import os

logging.getLogger("ovro_ingest").setLevel(os.environ.get("OVRO_INGEST_LOG_LEVEL", "INFO"))

from tasks.console import apply_from_environment  # noqa: E402

apply_from_environment()
