"""Tasks of step 5, append to Zarr: create the store, write time steps in parallel, commit them in order."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ovro_ingest.commit import commit_time_step, write_time_step
from ovro_ingest.discover import read_manifest
from ovro_ingest.handle import Store
from ovro_ingest.models import AppendReceipt, Manifest, SourceFile, StagedTimeStep, TimeStepPlan
from ovro_ingest.pipeline import create_store_for_night
from ovro_ingest.store import StoreSettings
from tasks.cache import STAGING, STORE_WRITE
from tasks.dask_cluster import on_dask
from tasks.refusals import refusals_as_failed_states


@task(name="create_store", task_run_name="create-store", cache_policy=NO_CACHE)
@refusals_as_failed_states
def create_store_for(
    store: Store,
    manifest: Manifest,
    candidates: list[str],
    subband_files: dict[str, list[SourceFile]],
    settings: StoreSettings,
    fixed_dir: str,
    keep_bad_beams: bool = False,
    keep_bad_checksums: bool = False,
) -> str | None:
    """Create the store from the first of the time steps ``candidates`` (keys) that plans, with the night's channels."""
    identity = create_store_for_night(
        store,
        read_manifest(manifest, candidates),
        subband_files,
        settings,
        fixed_dir,
        keep_bad_beams,
        keep_bad_checksums,
    )
    if identity:
        get_run_logger().info("store %s (id %s)", store, identity)
    return identity


@task(name="write_time_step", task_run_name="write-{plan.key}", cache_policy=STAGING, persist_result=True)
@refusals_as_failed_states
def write_to_staging(plan: TimeStepPlan, store: Store, replace: bool = False) -> StagedTimeStep:
    """Write ``plan``'s pixels into the store's staging area, on the run's Dask cluster (in parallel)."""
    staged = on_dask(write_time_step, store, plan, replace, name=f"write-{plan.key}")
    get_run_logger().debug(
        "%s: %s (%d subbands, %.1f MB in %.2f s)",
        plan.key,
        staged.status,
        staged.n_subbands,
        staged.bytes_written / 1e6,
        staged.seconds,
    )
    return staged


@task(name="append_to_zarr", task_run_name="append-{staged.key}", cache_policy=STORE_WRITE, persist_result=True)
@refusals_as_failed_states
def append_to_zarr(staged: StagedTimeStep, store: Store) -> AppendReceipt:
    """Commit a staged time step into the store (in time order, one at a time); return a receipt."""
    receipt = commit_time_step(store, staged)
    get_run_logger().debug("%s: %s at index %d", staged.key, receipt.status, receipt.index)
    return receipt
