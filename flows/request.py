"""What a run was asked to do: flow parameters, completed from a saved ``IngestSettings`` block.

A parameter given to the run wins; otherwise the block's value is used; otherwise the
built-in default. ``input_dir`` defaults to the block's folder for ``night`` (yesterday,
UTC, when no night is given).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from ovro_ingest.errors import RequestRefused
from ovro_ingest.handle import Store
from ovro_ingest.store import StoreSettings


class IngestRequest(BaseModel):
    """Everything one run of the ``ingest`` flow needs, resolved."""

    input_dir: str
    store: Store
    """The store; its runs' working folder is ``store.work_dir``."""
    fixed_dir: str
    settings: StoreSettings
    dask_address: str | None
    workers: int | None
    retention_days: float | None = None
    """Prune what runs leave behind older than this after the run (None: keep everything)."""


def resolve_request(
    input_dir: str | None,
    store: str | None,
    settings_block: str | None = None,
    night: str | None = None,
    fixed_dir: str | None = None,
    chunk_lm: int | None = None,
    codec: str | None = None,
    zarr_format: int | None = None,
    dask_address: str | None = None,
    workers: int | None = None,
    retention_days: float | None = None,
) -> IngestRequest:
    """Complete the parameters of a run from the block ``settings_block`` (if any) and the defaults.

    Raises
    ------
    RequestRefused
        Neither the parameters nor the block say which input folder or store to use.
    """
    block = None
    if settings_block:
        from blocks import IngestSettings

        block = IngestSettings.load(settings_block)
        input_dir = input_dir or block.night_dir(night)
    elif night:
        raise RequestRefused("night needs a settings block that says where the nights are (settings_block=...)")

    def pick(given, field: str, default):
        """The parameter if given, else the block's field, else ``default``."""
        if given is not None:
            return given
        value = getattr(block, field, None) if block else None
        return value if value is not None else default

    store = pick(store, "store", None)
    if not input_dir or not store:
        raise RequestRefused(
            "say what to ingest: give input_dir and store, or the name of a saved IngestSettings block"
        )
    store = Store.at(Path(store).resolve())
    fixed_dir = pick(fixed_dir, "fixed_dir", None)
    return IngestRequest(
        input_dir=str(Path(input_dir).resolve()),
        store=store,
        fixed_dir=str(Path(fixed_dir).resolve()) if fixed_dir else str(store.work_dir / "fixed"),
        settings=StoreSettings(
            chunk_lm=pick(chunk_lm, "chunk_lm", 1024),
            codec=pick(codec, "codec", "lz4"),
            zarr_format=pick(zarr_format, "zarr_format", 3),
        ),
        dask_address=pick(dask_address, "dask_address", None),
        workers=pick(workers, "workers", None),
        retention_days=pick(retention_days, "retention_days", None),
    )
