"""Step 5, append to Zarr: write a time step into the store, which is also the ledger.

Store layout (dims ``time, frequency, polarization, l, m``)::

    SKY                  (time, frequency, polarization, l, m) float32, NaN where no image
    BEAM_FIT_PARAMS_SKY  (time, frequency, polarization, beam_params_label) float64, radians
    time                 (time) float64, MJD UTC from DATE-OBS
    time_key             (time) str, the file-name time stamp that grouped the files
    source_files         (time) str, JSON: each file with its fingerprint and corrections
    software_version     (time) str, the ovro-ingest version that wrote the time step
    wcs_header           (time) str, the celestial FITS WCS of the time step

Every array with a ``time`` dimension has a time chunk of 1; the other arrays are
written once, when the store is created, and never again.

Time steps are kept in ascending time; one that is earlier than the last is
inserted in order (the later time steps' chunks are renamed one index up).

Commit protocol: the store's consolidated metadata says how many time steps the
store holds. An append first grows the arrays and writes the new time step's chunks
(readers of the consolidated metadata do not see them yet), then rewrites the
consolidated metadata in one atomic file replacement. Readers that open the store
with consolidated metadata (the default of ``xarray.open_zarr`` and xradio) see
only complete time steps.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from pydantic import BaseModel, ConfigDict, Field

from ovro_ingest import __version__
from ovro_ingest.combine import SAME_CHANNEL_TOLERANCE_HZ, open_time_step
from ovro_ingest.errors import StoreError, StoreMismatch
from ovro_ingest.models import AppendReceipt, SpatialGrid, TimeStepPlan

logger = logging.getLogger(__name__)

STORE_ID_ATTR = "ovro_ingest_store_id"
GRID_ATTR = "ovro_ingest_grid"
SETTINGS_ATTR = "ovro_ingest_settings"
LEDGER_VARIABLES = ("time_key", "source_files", "software_version", "wcs_header")
TIME_VARIABLES = ("SKY", "BEAM_FIT_PARAMS_SKY", "time", *LEDGER_VARIABLES)
# attributes xradio copies from one file's header that are not true of every time step
PER_FILE_SKY_ATTRS = ("obsdate", "pointing_center", "user", "description")

warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
warnings.filterwarnings("ignore", message="The data type .* does not have a Zarr V3 specification")


class StoreSettings(BaseModel):
    """How the store is laid out and compressed (fixed when it is created)."""

    model_config = ConfigDict(frozen=True)

    chunk_lm: int = Field(1024, ge=16, description="Chunk length along l and m, in pixels.")
    codec: Literal["lz4", "zstd", "none"] = "lz4"
    codec_level: int = Field(5, ge=0, le=9)
    zarr_format: Literal[2, 3] = 3

    def compressors(self) -> list:
        """The compressor list for xarray's zarr encoding (Blosc with byte shuffle)."""
        if self.codec == "none":
            return []
        if self.zarr_format == 3:
            from zarr.codecs import BloscCodec

            return [BloscCodec(cname=self.codec, clevel=self.codec_level, shuffle="shuffle")]
        import numcodecs

        return [numcodecs.Blosc(cname=self.codec, clevel=self.codec_level, shuffle=numcodecs.Blosc.SHUFFLE)]


@dataclass(frozen=True)
class StoreState:
    """What the store holds, as its consolidated metadata says (the committed state)."""

    store_id: str
    times: np.ndarray
    time_keys: list[str]
    source_files: list[str]
    frequencies_hz: np.ndarray
    polarizations: list[str]
    grid: SpatialGrid

    @property
    def n_time(self) -> int:
        """Number of committed time steps."""
        return len(self.times)


def store_exists(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds an ovro-ingest store."""
    root = Path(path)
    return (root / "zarr.json").is_file() or (root / ".zmetadata").is_file()


def read_state(path: str | os.PathLike[str]) -> StoreState:
    """Read the committed state of a store (from its consolidated metadata)."""
    try:
        dataset = xr.open_zarr(path, consolidated=True, decode_times=False)
    except Exception as error:
        raise StoreError(
            f"{path}: cannot open the store ({error}); run `ovro-ingest run --rebuild` to recreate it"
        ) from error
    with dataset:
        attrs = dataset.attrs
        if STORE_ID_ATTR not in attrs:
            raise StoreError(
                f"{path}: not an ovro-ingest store (no {STORE_ID_ATTR} attribute); choose another store path"
            )
        return StoreState(
            store_id=attrs[STORE_ID_ATTR],
            times=dataset["time"].values,
            time_keys=[str(k) for k in dataset["time_key"].values],
            source_files=[str(s) for s in dataset["source_files"].values],
            frequencies_hz=dataset["frequency"].values,
            polarizations=[str(p) for p in dataset["polarization"].values],
            grid=SpatialGrid.model_validate(attrs[GRID_ATTR]),
        )


def store_id(path: str | os.PathLike[str]) -> str | None:
    """The store's identity (a UUID written at creation), or None when there is no store."""
    if not store_exists(path):
        return None
    group = zarr.open_group(str(path), mode="r", use_consolidated=True)
    return group.attrs.get(STORE_ID_ATTR)


def source_ledger(plan: TimeStepPlan) -> str:
    """The ledger entry of a time step: its files, fingerprints and corrections, as JSON."""
    entries = [
        {
            "path": s.file.source.path,
            "subband": s.file.source.subband,
            "size": s.file.source.size,
            "mtime_ns": s.file.source.mtime_ns,
            "frequency_hz": s.frequency_hz,
            "date_obs": s.date_obs,
            "read_from": s.file.path,
            "corrections": list(s.file.corrections),
        }
        for s in plan.subbands
    ]
    return json.dumps(entries, sort_keys=True)


def ledger_fingerprints(entry: str) -> set[tuple[str, int, int]]:
    """The (file name, size, mtime) triples of a ledger entry."""
    return {(Path(e["path"]).name, e["size"], e["mtime_ns"]) for e in json.loads(entry)}


def template_dataset(plan: TimeStepPlan) -> xr.Dataset:
    """A one-time-step dataset with the store's variables, coordinates and attributes (lazy)."""
    sample = open_time_step(plan)
    n_freq, n_pol = sample.sizes["frequency"], sample.sizes["polarization"]
    sky_attrs = {k: v for k, v in sample["SKY"].attrs.items() if k not in PER_FILE_SKY_ATTRS}
    sky_attrs["beam_fit_params"] = "BEAM_FIT_PARAMS_SKY"
    n_l, n_m = sample.sizes["l"], sample.sizes["m"]
    text = np.array([""], dtype=object)
    dataset = xr.Dataset(
        data_vars={
            "SKY": (
                ("time", "frequency", "polarization", "l", "m"),
                da.zeros((1, n_freq, n_pol, n_l, n_m), np.float32),
                sky_attrs,
            ),
            "BEAM_FIT_PARAMS_SKY": (
                ("time", "frequency", "polarization", "beam_params_label"),
                np.full((1, n_freq, n_pol, 3), np.nan),
                {"units": "rad", "type": "beam_fit_params_sky"},
            ),
            "time_key": (
                "time",
                text,
                {"description": "file-name time stamp (YYYYMMDD_HHMMSS) that grouped the files"},
            ),
            "source_files": (
                "time",
                text,
                {"description": "JSON list of the source files, fingerprints and corrections"},
            ),
            "software_version": ("time", text, {"description": "ovro-ingest version that wrote the time step"}),
            "wcs_header": ("time", text, {"description": "celestial FITS WCS header of the time step"}),
        },
        coords={
            "time": ("time", [plan.time_mjd], sample["time"].attrs),
            "frequency": ("frequency", np.array(plan.frequencies_hz), sample["frequency"].attrs),
            "polarization": ("polarization", np.array(sample["polarization"].values, dtype=object)),
            "l": sample["l"].variable,
            "m": sample["m"].variable,
            "beam_params_label": ("beam_params_label", np.array(["major", "minor", "pa"], dtype=object)),
        },
        attrs=dict(sample.attrs),
    )
    return dataset


def encoding_for(dataset: xr.Dataset, settings: StoreSettings) -> dict:
    """Chunking and compression of every variable with a time dimension."""
    chunk = settings.chunk_lm
    encoding: dict[str, dict] = {name: {"chunks": (1,)} for name in ("time", *LEDGER_VARIABLES)}
    encoding["SKY"] = {
        "chunks": (1, 1, 1, min(chunk, dataset.sizes["l"]), min(chunk, dataset.sizes["m"])),
        "dtype": "float32",
        "compressors": settings.compressors(),
    }
    encoding["BEAM_FIT_PARAMS_SKY"] = {"chunks": (1, *dataset["BEAM_FIT_PARAMS_SKY"].shape[1:])}
    return encoding


def create_store(path: str | os.PathLike[str], plan: TimeStepPlan, settings: StoreSettings) -> str:
    """Create an empty store shaped after ``plan`` (its frequencies, grid and polarizations).

    The store is built beside ``path`` and renamed into place, so that it appears
    complete or not at all. Returns the new store's identity.
    """
    target = Path(path)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise StoreError(f"{target}: exists and is not an ovro-ingest store; choose another store path or remove it")
    identity = str(uuid.uuid4())
    dataset = template_dataset(plan)
    dataset.attrs.update(
        {
            STORE_ID_ATTR: identity,
            GRID_ATTR: plan.grid.model_dump(mode="json"),
            SETTINGS_ATTR: settings.model_dump(mode="json"),
            "ovro_ingest_created_with": __version__,
        }
    )
    building = target.with_name(f".{target.name}.creating-{identity[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        dataset.to_zarr(
            building,
            mode="w-",
            zarr_format=settings.zarr_format,
            consolidated=True,
            encoding=encoding_for(dataset, settings),
            compute=False,
        )
        group = zarr.open_group(str(building), mode="r+", use_consolidated=False)
        for name in TIME_VARIABLES:
            group[name].resize((0, *group[name].shape[1:]))
        zarr.consolidate_metadata(str(building))
        if target.exists():
            target.rmdir()
        os.rename(building, target)
    except PermissionError as error:
        raise StoreError(f"{target}: cannot create the store ({error.strerror}); choose a writable location") from error
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return identity


def remove_store(path: str | os.PathLike[str]) -> None:
    """Delete a store so that no half-deleted store is ever visible: rename it away, then delete."""
    target = Path(path)
    if not target.exists():
        return
    if not store_exists(target):
        raise StoreError(f"{target}: is not an ovro-ingest store; refusing to delete it")
    doomed = target.with_name(f".{target.name}.deleting-{uuid.uuid4().hex[:8]}")
    os.rename(target, doomed)
    shutil.rmtree(doomed)


def channel_indices(state: StoreState, plan: TimeStepPlan) -> list[int]:
    """The store channel of each subband of ``plan`` (header jitter within tolerance allowed)."""
    indices = []
    for subband in plan.subbands:
        offsets = np.abs(state.frequencies_hz - subband.frequency_hz)
        nearest = int(np.argmin(offsets))
        if offsets[nearest] > SAME_CHANNEL_TOLERANCE_HZ:
            grid = ", ".join(f"{f / 1e6:.3f}" for f in state.frequencies_hz)
            raise StoreMismatch(
                f"{subband.file.source.path}: frequency {subband.frequency_hz / 1e6:.3f} MHz is not on the store's "
                f"frequency grid ({grid} MHz); ingest it into a new store"
            )
        indices.append(nearest)
    return indices


def check_fits_store(state: StoreState, plan: TimeStepPlan) -> None:
    """Raise when the plan's pixel grid or polarizations differ from the store's."""
    first = plan.subbands[0].file.source.path
    if plan.grid != state.grid:
        raise StoreMismatch(
            f"{first}: pixel grid {plan.grid.describe()} differs from the store's {state.grid.describe()}; "
            "ingest it into a new store"
        )
    if list(plan.subbands[0].polarizations) != state.polarizations:
        raise StoreMismatch(
            f"{first}: polarizations {list(plan.subbands[0].polarizations)} differ from the store's {state.polarizations}"
        )


def already_stored(state: StoreState, plan: TimeStepPlan) -> int | None:
    """The index of ``plan``'s time step in the store, or None. Warns when its sources changed."""
    if plan.key not in state.time_keys:
        return None
    index = state.time_keys.index(plan.key)
    stored = ledger_fingerprints(state.source_files[index])
    current = {(Path(f.path).name, f.size, f.mtime_ns) for f in plan.source_files}
    if stored != current:
        logger.warning(
            "time step %s is already stored, but its source files changed since; kept the stored version "
            "(rebuild the store to ingest the new files)",
            plan.key,
        )
    return index


def insertion_index(state: StoreState, plan: TimeStepPlan) -> int:
    """Where ``plan`` goes on the time axis to keep it strictly increasing."""
    index = int(np.searchsorted(state.times, plan.time_mjd))
    if index < state.n_time and state.times[index] == plan.time_mjd:
        raise StoreError(
            f"time step {plan.key} has the same DATE-OBS as the stored time step {state.time_keys[index]} "
            f"(MJD {plan.time_mjd:.8f}); check the file names and DATE-OBS of both"
        )
    if index < state.n_time:
        logger.warning("time step %s is earlier than the store's last one: inserted at position %d", plan.key, index)
    return index


def time_chunk_paths(array_dir: Path, zarr_format: int, index: int) -> list[Path]:
    """The files or folders that hold time index ``index`` of an array (time is the first dimension).

    Format 3 stores chunk ``(t, ...)`` under ``c/t/...``; format 2 under ``t.…`` (dot separator).
    """
    if zarr_format == 3:
        path = array_dir / "c" / str(index)
        return [path] if path.exists() else []
    return sorted(p for p in array_dir.glob(f"{index}*") if p.name == str(index) or p.name.startswith(f"{index}."))


def remove_time_chunks(array_dir: Path, zarr_format: int, index: int) -> None:
    """Delete every chunk at time index ``index`` of an array."""
    for path in time_chunk_paths(array_dir, zarr_format, index):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def shift_time_chunks(array_dir: Path, zarr_format: int, start: int, stop: int) -> None:
    """Move the chunks of time indices ``start..stop-1`` one index up (renames, no rewrite).

    Indices are moved from the top down, so every rename goes to a free name.
    """
    for index in range(stop - 1, start - 1, -1):
        for path in time_chunk_paths(array_dir, zarr_format, index):
            if zarr_format == 3:
                path.rename(path.with_name(str(index + 1)))
            else:
                rest = path.name[len(str(index)) :]
                path.rename(path.with_name(f"{index + 1}{rest}"))


def write_time_step(group: zarr.Group, index: int, plan: TimeStepPlan, channels: list[int]) -> int:
    """Write the pixels, beams, time and ledger of ``plan`` at ``index``; return pixel bytes written."""
    sky = group["SKY"]
    n_freq = sky.shape[1]
    dataset = open_time_step(plan)
    written = 0
    missing = sorted(set(range(n_freq)) - set(channels))
    for position, channel in enumerate(channels):
        pixels = dataset["SKY"].data[0, position].compute(scheduler="synchronous")
        sky[index, channel] = pixels
        written += pixels.nbytes
    for channel in missing:  # NaN is the fill value: this clears chunks left by an interrupted attempt
        sky[index, channel] = np.full(sky.shape[2:], np.nan, dtype=np.float32)
    beams = np.full(group["BEAM_FIT_PARAMS_SKY"].shape[1:], np.nan)
    for subband, channel in zip(plan.subbands, channels, strict=True):
        if subband.beam_rad is not None:
            beams[channel, :, :] = subband.beam_rad
    group["BEAM_FIT_PARAMS_SKY"][index] = beams
    group["time"][index] = plan.time_mjd
    group["time_key"][index] = plan.key
    group["source_files"][index] = source_ledger(plan)
    group["software_version"][index] = __version__
    group["wcs_header"][index] = plan.subbands[0].celestial_wcs
    return written


def append_time_step(
    path: str | os.PathLike[str], plan: TimeStepPlan, settings: StoreSettings | None = None
) -> AppendReceipt:
    """Append one time step to the store, creating the store on first use.

    Parameters
    ----------
    path : path
        The Zarr store (a directory).
    plan : TimeStepPlan
        The time step, as ``combine_frequencies`` made it.
    settings : StoreSettings, optional
        Layout of a store to be created; an existing store keeps its own.

    Returns
    -------
    AppendReceipt
        Where the time step went, or that the store already held it.

    Raises
    ------
    StoreMismatch
        The time step does not fit the store (grid, polarizations, frequencies).
    StoreError
        The store cannot be written, or another stored time step has the same time.

    Notes
    -----
    A time step earlier than the store's last one is inserted in time order: the
    chunks of the later time steps are renamed one index up (no pixel is rewritten).
    """
    started = time.perf_counter()
    if not store_exists(path):
        create_store(path, plan, settings or StoreSettings())
    state = read_state(path)
    index = already_stored(state, plan)
    if index is not None:
        return AppendReceipt(
            key=plan.key,
            time_mjd=plan.time_mjd,
            store_id=state.store_id,
            index=index,
            status="already stored",
            n_subbands=len(plan.subbands),
            bytes_written=0,
            seconds=time.perf_counter() - started,
        )
    check_fits_store(state, plan)
    channels = channel_indices(state, plan)
    index = insertion_index(state, plan)
    missing = sorted(set(range(len(state.frequencies_hz))) - set(channels))
    if missing:
        logger.warning(
            "time step %s lacks %d subband(s) (%s MHz); they are stored as NaN",
            plan.key,
            len(missing),
            ", ".join(f"{state.frequencies_hz[c] / 1e6:.3f}" for c in missing),
        )
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    settings = StoreSettings.model_validate(group.attrs[SETTINGS_ATTR])
    for name in TIME_VARIABLES:
        group[name].resize((state.n_time + 1, *group[name].shape[1:]))
        remove_time_chunks(Path(path) / name, settings.zarr_format, state.n_time)  # debris of an interrupted append
        if index < state.n_time:
            shift_time_chunks(Path(path) / name, settings.zarr_format, index, state.n_time)
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)  # re-read the grown shapes
    written = write_time_step(group, index, plan, channels)
    zarr.consolidate_metadata(str(path))  # the commit: one atomic file replacement
    return AppendReceipt(
        key=plan.key,
        time_mjd=plan.time_mjd,
        store_id=state.store_id,
        index=index,
        status="written",
        n_subbands=len(plan.subbands),
        bytes_written=written,
        seconds=time.perf_counter() - started,
    )
