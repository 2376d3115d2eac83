"""Tasks of step 5, append to Zarr: create the store, write time steps in parallel, commit them in order."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ovro_ingest.commit import commit_time_step, write_time_step
from ovro_ingest.models import AppendReceipt, StagedTimeStep, TimeStepPlan
from ovro_ingest.store import StoreSettings, create_store
from tasks.cache import STAGING, STORE_WRITE


@task(name="create_store", task_run_name="create-store", cache_policy=NO_CACHE)
def create_store_for(store: str, plans: list[TimeStepPlan], settings: StoreSettings) -> str:
    """Create the store for the run's time steps (all their channels); return its identity."""
    identity = create_store(store, plans, settings)
    get_run_logger().info("store %s (id %s)", store, identity)
    return identity


@task(name="write_time_step", task_run_name="write-{plan.key}", cache_policy=STAGING, persist_result=True)
def write_to_staging(plan: TimeStepPlan, store: str, replace: bool = False) -> StagedTimeStep:
    """Write ``plan``'s pixels into the store's staging area (runs in parallel with other time steps)."""
    staged = write_time_step(store, plan, replace)
    get_run_logger().info(
        "%s: %s (%d subbands, %.1f MB in %.2f s)",
        plan.key,
        staged.status,
        staged.n_subbands,
        staged.bytes_written / 1e6,
        staged.seconds,
    )
    return staged


@task(name="append_to_zarr", task_run_name="append-{staged.key}", cache_policy=STORE_WRITE, persist_result=True)
def append_to_zarr(staged: StagedTimeStep, store: str) -> AppendReceipt:
    """Commit a staged time step into the store (in time order, one at a time); return a receipt."""
    receipt = commit_time_step(store, staged)
    get_run_logger().info("%s: %s at index %d", staged.key, receipt.status, receipt.index)
    return receipt
