"""Cache policies of the pipeline's tasks: each key says exactly what the cached result depends on.

A cached result is reused only while everything it was derived from is unchanged:
the task's inputs (which carry file fingerprints), its source code, the software
version, and, where the result speaks of files or of the store, those files and
that store.

A key is computed before the task runs. A task that creates a file must therefore
have no key (no cache) while that file is missing: a key meaning "missing" would
be stored with a result that claims the file, and would come back once the file is
deleted. Prefect's compound policies skip a part that returns no key, so these
policies are whole policies, not parts to add together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

import ovro_ingest
from ovro_ingest import __version__
from ovro_ingest.commit import staging_path
from ovro_ingest.discover import listing_fingerprint
from ovro_ingest.headers import planned_fixed_copy
from ovro_ingest.store import store_id
from ovro_ingest.timeseries import read_timeseries_state
from ovro_ingest.timeseries import staging_path as timeseries_staging


def source_fingerprint(package: Path) -> str:
    """A hash of every ``.py`` file under ``package`` (names and contents): what its code is, version or not."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


DOMAIN_SOURCE = source_fingerprint(Path(ovro_ingest.__file__).parent)
"""The domain code's fingerprint, in every key: the version alone stays the same across the changes made between
releases, and a cached result made by other domain code (how files are grouped, read, fixed) is never reused."""


@dataclass
class InputsAndState(CachePolicy):
    """Keys on the inputs, the task's source, the software version, the domain code and :meth:`state` (None: no key)."""

    def state(self, inputs: dict[str, Any]) -> object | None:
        """What the result depends on beyond the inputs; None when the result cannot be reused."""
        return ""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        state = self.state(inputs)
        if state is None:
            return None
        return hash_objects(
            INPUTS.compute_key(task_ctx, inputs, flow_parameters, **kwargs),
            TASK_SOURCE.compute_key(task_ctx, inputs, flow_parameters, **kwargs),
            __version__,
            DOMAIN_SOURCE,
            state,
        )


@dataclass
class InputListing(InputsAndState):
    """The FITS files under ``input_dir`` (names, sizes, mtimes).

    The manifest file a cached result names may have been deleted since: the flow
    then runs ``discover`` again with ``refresh_cache`` (see ``flows.ingest.discovered``).
    """

    def state(self, inputs: dict[str, Any]) -> object | None:
        exclude = tuple(Path(p) for p in inputs.get("exclude") or ())
        return listing_fingerprint(inputs["input_dir"], exclude)


@dataclass
class FixedCopies(InputsAndState):
    """The fixed copies the time step needs (their mtimes); no key while one is missing."""

    def state(self, inputs: dict[str, Any]) -> object | None:
        if not inputs.get("fixed_dir"):
            return "no-fixed-dir"
        states = []
        for source in inputs["step"].files:
            copy = planned_fixed_copy(source, inputs["fixed_dir"])
            if copy is not None and not copy.exists():
                return None
            states.append(copy.stat().st_mtime_ns if copy is not None else None)
        return states


@dataclass
class StagedInStore(InputsAndState):
    """The store's identity and the staged copy of the time step; no key while either is missing.

    A staged time step is consumed by its commit, so a cached staging is reused
    only while it is still there (a run interrupted between staging and commit).
    """

    def state(self, inputs: dict[str, Any]) -> object | None:
        identity = store_id(inputs["store"])
        staged = staging_path(inputs["store"], inputs["plan"])
        if identity is None or not staged.exists():
            return None
        return [identity, staged.stat().st_mtime_ns]


@dataclass
class InputsInStore(InputsAndState):
    """The identity of the store in ``inputs['store']``; no store, no key.

    A deleted or rebuilt store (new identity) is never reported as holding a time
    step from the cache.
    """

    def state(self, inputs: dict[str, Any]) -> object | None:
        return store_id(inputs["store"])


@dataclass
class TimeSeriesStaged(InputsAndState):
    """The staged copy of a time-series update (its mtime); no key while it is missing.

    The plan in the inputs names the archive's content (its fingerprints' digest), so a
    staging is reused only for the very update it was made for, and only while it exists
    (its commit consumes it).
    """

    def state(self, inputs: dict[str, Any]) -> object | None:
        staged = timeseries_staging(inputs["plan"])
        return staged.stat().st_mtime_ns if staged.exists() else None


@dataclass
class TimeSeriesHolds(InputsAndState):
    """A key only while the time-series store already holds what the update makes it hold.

    Computed before the commit runs: a store that does not hold it yet (or was deleted,
    rebuilt, or restored from a backup) gets no key, so a cached result never claims a
    commit the store does not show.
    """

    def state(self, inputs: dict[str, Any]) -> object | None:
        plan = inputs["staged"].plan
        try:
            held = read_timeseries_state(plan.timeseries)
        except Exception:
            return None
        if held.n_time != plan.n_archive or held.content_digest() != plan.target_digest:
            return None
        return [held.store_id, plan.target_digest]


DISCOVERY = InputListing()
FIXING = FixedCopies()
PURE = InputsAndState()
"""For steps whose result depends only on their inputs (which carry file fingerprints)."""
STAGING = StagedInStore()
STORE_WRITE = InputsInStore()
TIMESERIES_STAGING = TimeSeriesStaged()
TIMESERIES_COMMIT = TimeSeriesHolds()
