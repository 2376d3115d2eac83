"""Cache policies of the pipeline's tasks: each key says exactly what the cached result depends on.

A cached result is reused only while everything it was derived from is unchanged:
the task's inputs (which carry file fingerprints), the software version, and,
where the result speaks of files or of the store, those files and that store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from ovro_ingest import __version__
from ovro_ingest.discover import listing_fingerprint
from ovro_ingest.headers import fixed_copy_path
from ovro_ingest.store import store_id


@dataclass
class SoftwareVersion(CachePolicy):
    """Keys on the ovro-ingest version, so that an upgrade recomputes."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        return __version__


@dataclass
class InputListing(CachePolicy):
    """Keys on the names, sizes and mtimes of the FITS files under ``inputs['input_dir']``."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        exclude = tuple(Path(p) for p in inputs.get("exclude") or ())
        return listing_fingerprint(inputs["input_dir"], exclude)


@dataclass
class FixedCopies(CachePolicy):
    """Keys on the fixed copies a time step may use (present or not, and their mtimes).

    A deleted or rewritten fixed copy therefore never comes back from the cache.
    """

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        if not inputs.get("fixed_dir"):
            return "no-fixed-dir"
        states = []
        for source in inputs["step"].files:
            copy = fixed_copy_path(source, Path(inputs["fixed_dir"]))
            states.append(copy.stat().st_mtime_ns if copy.exists() else None)
        return hash_objects(states)


@dataclass
class InputsInStore(CachePolicy):
    """Keys on the inputs and on the identity of the store in ``inputs['store']``.

    No store, no key (and no cache): a deleted or rebuilt store (new identity) is
    never reported as holding a time step from the cache.
    """

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        identity = store_id(inputs["store"])
        if identity is None:
            return None
        inputs_key = INPUTS.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        return hash_objects(identity, inputs_key, __version__)


DISCOVERY = INPUTS + InputListing() + SoftwareVersion() + TASK_SOURCE
FIXING = INPUTS + FixedCopies() + SoftwareVersion() + TASK_SOURCE
PURE = INPUTS + SoftwareVersion() + TASK_SOURCE
"""For steps whose result depends only on their inputs (which carry file fingerprints)."""
STORE_WRITE = InputsInStore()
