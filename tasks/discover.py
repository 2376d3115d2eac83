"""Task: discover the time steps of an input directory and list them in a manifest file."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from ovro_ingest.discover import discover_time_steps, listing_fingerprint, write_manifest
from ovro_ingest.models import Manifest
from tasks.cache import DISCOVERY
from tasks.refusals import refusals_as_failed_states


@task(name="discover", task_run_name="discover", cache_policy=DISCOVERY, persist_result=True)
@refusals_as_failed_states
def discover(input_dir: str, manifest_dir: str, exclude: tuple[str, ...] = ()) -> Manifest:
    """Group the FITS files under ``input_dir`` into time steps, listed in a manifest in ``manifest_dir``."""
    excluded = tuple(Path(p) for p in exclude)
    fingerprint = listing_fingerprint(input_dir, excluded)
    manifest = write_manifest(discover_time_steps(input_dir, exclude=excluded), manifest_dir, fingerprint)
    # what discovery skipped or left out, discovery itself warned of (one line each, through the domain's logger)
    get_run_logger().info("found %d time steps (%d files) in %s", manifest.n_time_steps, manifest.n_files, input_dir)
    return manifest
