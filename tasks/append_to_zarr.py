"""Task: append a time step to the Zarr store."""

from __future__ import annotations

from prefect import get_run_logger, task

from ovro_ingest.models import AppendReceipt, TimeStepPlan
from ovro_ingest.store import StoreSettings, append_time_step
from tasks.cache import STORE_WRITE


@task(name="append_to_zarr", task_run_name="append-{plan.key}", cache_policy=STORE_WRITE, persist_result=True)
def append_to_zarr(plan: TimeStepPlan, store: str, settings: StoreSettings) -> AppendReceipt:
    """Write ``plan``'s pixels straight from its files into the store; return a receipt."""
    receipt = append_time_step(store, plan, settings)
    get_run_logger().info(
        "%s: %s at index %d (%d subbands, %.1f MB in %.2f s)",
        plan.key,
        receipt.status,
        receipt.index,
        receipt.n_subbands,
        receipt.bytes_written / 1e6,
        receipt.seconds,
    )
    return receipt
