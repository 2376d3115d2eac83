"""The ``IngestSettings`` block: where the nights are, where the store is, how to write it, where to compute."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, field_validator

DASK_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[\w.\-\[\]:]+(:\d+)?$")


class IngestSettings(Block):
    """Ingest settings shared by the deployments: input root, store, fixed-file folder, layout, Dask cluster.

    The nightly run reads ``{input_root}/{night:night_format}`` (yesterday, UTC, unless a
    night is given) into ``store``.
    """

    _block_type_name = "OVRO-LWA Ingest Settings"
    _block_type_slug = "ovro-lwa-ingest-settings"
    _description = "Where the OVRO-LWA nights are, the Zarr store they go into, and how it is written."

    input_root: str = Field(description="Absolute folder holding one sub-folder of FITS images per night.")
    store: str = Field(description="Absolute path of the Zarr store.")
    timeseries_store: str | None = Field(
        None,
        description="Absolute path of the time-series store kept up to date after every night "
        "(default: <store without .zarr>.timeseries.zarr beside the store).",
    )
    fixed_dir: str | None = Field(None, description="Folder for fixed copies (default: <store>.work/fixed).")
    night_format: str = Field("%Y-%m-%d", description="strftime pattern of the nightly sub-folder names.")
    chunk_lm: int = Field(1024, ge=16, le=16384, description="Chunk length along l and m of a new store.")
    codec: Literal["lz4", "zstd", "none"] = Field("lz4", description="Compression of a new store.")
    zarr_format: Literal[2, 3] = Field(3, description="Zarr format of a new store.")
    dask_address: str | None = Field(None, description="Address of an existing Dask scheduler (default: local).")
    workers: int | None = Field(None, ge=1, description="Threads of the local Dask cluster (default: one per core).")
    retention_days: float | None = Field(
        30,
        ge=1,
        description="After each run, remove manifests, fixed copies and Prefect result files older than this "
        "(days); empty: keep everything. The server's own retention is set where it starts (deployments/stand-up).",
    )

    @field_validator("input_root", "store", "fixed_dir", "timeseries_store")
    @classmethod
    def absolute_path(cls, value: str | None) -> str | None:
        """Paths must be absolute: a deployment runs in whatever folder its worker chose."""
        if value is not None and not Path(value).is_absolute():
            raise ValueError(f"{value!r} is not an absolute path; give the full path, e.g. /data/{value}")
        return value

    @field_validator("dask_address")
    @classmethod
    def scheduler_address(cls, value: str | None) -> str | None:
        """A Dask scheduler address, e.g. tcp://10.0.0.5:8786."""
        if value and not DASK_ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a Dask scheduler address such as tcp://10.0.0.5:8786")
        return value or None

    @field_validator("night_format")
    @classmethod
    def date_pattern(cls, value: str) -> str:
        """The pattern must name a folder per day (contain %d or %j) and no path separator."""
        if "/" in value or not any(code in value for code in ("%d", "%j")):
            raise ValueError(f"{value!r} must be a strftime pattern of one folder name per day, e.g. %Y-%m-%d")
        return value

    def night_dir(self, night: date | str | None = None, today: date | None = None) -> str:
        """The input folder of ``night`` (an ISO date; default: yesterday, UTC)."""
        if night is None:
            night = default_night(today)
        elif isinstance(night, str):
            night = date.fromisoformat(night)
        return str(Path(self.input_root) / night.strftime(self.night_format))


def default_night(today: date | None = None) -> date:
    """The night a nightly run ingests when none is given: yesterday, UTC."""
    return (today or datetime.now(UTC).date()) - timedelta(days=1)
