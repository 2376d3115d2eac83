"""Task: prune what runs leave behind (``<store>.work`` files, Prefect result files) past the retention period."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ovro_ingest.handle import Store
from ovro_ingest.housekeeping import prune_files, prune_work
from tasks.refusals import refusals_as_failed_states


def result_storage() -> Path:
    """The folder of Prefect's local result storage (``PREFECT_RESULTS_LOCAL_STORAGE_PATH``)."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path).expanduser()


@task(name="prune", task_run_name="prune", cache_policy=NO_CACHE)
@refusals_as_failed_states
def prune(store: Store, older_than_days: float) -> str:
    """Remove manifests, fixed copies and Prefect result files older than ``older_than_days`` (writer lock held)."""
    pruned = prune_work(store, older_than_days)
    pruned.add(prune_files(result_storage(), older_than_days))
    summary = f"{pruned.one_line()}, older than {older_than_days:g} days"
    get_run_logger().info(summary)
    return summary
