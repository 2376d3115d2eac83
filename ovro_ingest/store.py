"""The Zarr store, which is also the ledger: its layout, creation and committed state.

Layout (dims ``time, frequency, polarization, l, m``)::

    SKY                  (time, frequency, polarization, l, m) float32, NaN where no image
    BEAM_FIT_PARAMS_SKY  (time, frequency, polarization, beam_params_label) float64, radians
    time                 (time) float64, MJD UTC from DATE-OBS
    time_key             (time) str, the file-name time stamp that grouped the files
    source_files         (time) str, JSON: each file with its fingerprint and corrections
    software_version     (time) str, the ovro-ingest version that wrote the time step
    wcs_header           (time) str, the celestial FITS WCS of the time step

``SKY``, ``source_files`` and ``wcs_header`` have a time chunk of 1, so that each time
step owns its chunks and can be written on its own (in parallel, into a staging area;
see :mod:`ovro_ingest.commit`). The tiny per-time-step arrays (``time``, ``time_key``,
``software_version``, beams) have a time chunk of :data:`SMALL_TIME_CHUNK`, so that a
reader opens a store of a year of data in a few reads, and a commit rewrites at most
one such chunk per array. Arrays without a time
dimension are written once, when the store is created, and never again.

The consolidated metadata is the commit record: it says how many time steps the
store holds, and readers that open the store with it (the default of
``xarray.open_zarr`` and of xradio) see only committed time steps.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt
import zarr
from pydantic import BaseModel, ConfigDict, Field
from zarr.codecs import TransposeCodec

from ovro_ingest import __version__
from ovro_ingest.errors import StoreError, StoreMismatch, file_boundary
from ovro_ingest.failpoints import failpoint
from ovro_ingest.handle import Store
from ovro_ingest.models import SpatialGrid, TimeStepFiles, TimeStepPlan

if TYPE_CHECKING:
    import xarray as xr

# xarray, dask, astropy and xradio are imported where a store is created, not here: reading a store's state and
# ledger (what `ovro-ingest run` does before anything else, to answer a run with nothing to do in a second or two)
# needs only zarr

logger = logging.getLogger(__name__)

SAME_CHANNEL_TOLERANCE_HZ = 1_000_000.0
"""Two header frequencies closer than this are the same channel of the store.

OVRO-LWA subbands are 4.59 MHz apart (2.7 MHz with 16 subbands) while header
jitter is a few kHz; 1 MHz separates the two cases with a wide margin both ways.
"""

STORE_ID_ATTR = "ovro_ingest_store_id"
GRID_ATTR = "ovro_ingest_grid"
SETTINGS_ATTR = "ovro_ingest_settings"
SPECTRAL_FRAME_ATTR = "ovro_ingest_spectral_frame"
"""SPECSYS of every frequency in the store (empty: the headers state none)."""
RUNS_ATTR = "ovro_ingest_runs"
TIMESERIES_ATTR = "ovro_ingest_timeseries"
"""Set on a time-series store (:mod:`ovro_ingest.timeseries`): the archive it was made from, and its layout."""
REWRITES_ATTR = "ovro_ingest_rewrites"
"""The commits that moved or replaced stored time steps (backfills, replacements): ``{"count": n, "last": id}``,
a new random ``last`` for each; absent means none.

Appends never touch stored chunks, so a reader that copies a stored range (the
time-series update) needs no lock: the range is exact when this mark did not change
while it read and no such commit was under way (:func:`ovro_ingest.commit.rewrite_under_way`).
A random id rather than the count alone, so that a store restored from a backup and
rewritten again never shows a mark seen before.
"""
STAGED_VARIABLES = ("SKY", "source_files", "wcs_header")
"""Arrays with a time chunk of 1, written in parallel via the staging area and moved into place by the commit."""
SMALL_TIME_VARIABLES = (
    "time",
    "BEAM_FIT_PARAMS_SKY",
    "time_key",
    "software_version",
    "frequency_header",
    "date_obs_spread",
)
"""Arrays with a time dimension that the commit writes (a few bytes per time step, large time chunks)."""
TIME_VARIABLES = (*STAGED_VARIABLES, *SMALL_TIME_VARIABLES)
FITS_ORDER = (0, 1, 2, 4, 3)
"""How a format 3 store keeps each ``SKY`` chunk's bytes (Zarr's transpose codec): rows of ``m``, each along
``l``, as a FITS image keeps them. The array is ``(time, frequency, polarization, l, m)`` to every reader; the
writer hands zarr each FITS block as it is (a transposed view) and no pixel is transposed on the way in."""
SMALL_TIME_CHUNK = 512
TIME_ATTRS = {"type": "time", "units": "d", "scale": "utc", "format": "mjd"}
"""xradio's time measure: MJD days, UTC (its schema check requires these)."""
# attributes xradio copies from one file's header that are not true of every time step
PER_FILE_SKY_ATTRS = ("obsdate", "pointing_center", "user", "description")

warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
# the staging area and the commit journal live in the store's folder, beside the arrays
warnings.filterwarnings("ignore", message="Object at .* is not recognized as a component of a Zarr hierarchy")
warnings.filterwarnings("ignore", message="The data type .* does not have a Zarr V3 specification")
# fixed-width strings (labels, polarization) are what xradio's schema asks for; zarr calls the v3 form unstable
warnings.filterwarnings("ignore", message=r"The data type \(FixedLengthUTF32")


class StoreSettings(BaseModel):
    """How the store is laid out and compressed (fixed when it is created)."""

    model_config = ConfigDict(frozen=True)

    chunk_lm: int = Field(1024, ge=16, description="Chunk length along l and m, in pixels.")
    codec: Literal["lz4", "zstd", "none"] = "lz4"
    codec_level: int = Field(
        3, ge=0, le=9, description="Blosc level; 3 measured best for lz4 (benchmarks/codec_choice.py)."
    )
    zarr_format: Literal[2, 3] = 3

    def compressors(self) -> list[Any] | None:
        """The compressor list for xarray's zarr encoding (Blosc with byte shuffle); None: uncompressed.

        None, not an empty list: zarr refuses a list for a format 2 array.
        """
        if self.codec == "none":
            return None
        if self.zarr_format == 3:
            from zarr.codecs import BloscCodec

            return [BloscCodec(cname=self.codec, clevel=self.codec_level, shuffle="shuffle")]
        import numcodecs

        return [numcodecs.Blosc(cname=self.codec, clevel=self.codec_level, shuffle=numcodecs.Blosc.SHUFFLE)]


@dataclass(frozen=True)
class StoreState:
    """The committed state of a store, as its consolidated metadata says."""

    path: Path
    store_id: str
    n_time: int
    frequencies_hz: npt.NDArray[np.float64]
    polarizations: list[str]
    grid: SpatialGrid
    settings: StoreSettings
    spectral_frame: str | None = None
    """SPECSYS of the store's frequencies; None for a store written before it was recorded (not checked)."""
    rewrite_mark: str = ""
    """Id of the last commit that moved or replaced stored time steps (:data:`REWRITES_ATTR`); empty: none."""

    def group(self) -> zarr.Group:
        """The store opened read-only through its consolidated metadata (committed shapes)."""
        return Store.at(self.path).open_group()

    def last(self) -> tuple[str, float] | None:
        """Key and time of the last time step (one chunk read each), or None when empty."""
        if self.n_time == 0:
            return None
        group = self.group()
        return (
            str(read_array(group, "time_key", self.n_time - 1)),
            float(read_array(group, "time", self.n_time - 1)),
        )

    def value(self, name: str, index: int) -> Any:
        """One value of a small per-time-step array (one chunk read)."""
        return _plain(read_array(self.group(), name, index))

    def values(self, name: str, indices: Sequence[int]) -> list[Any]:
        """Values at ``indices`` of a per-time-step array, read in one call (zarr fetches the chunks concurrently)."""
        if not indices:
            return []
        selected = array_of(self.group(), name).get_orthogonal_selection(np.asarray(indices))
        return [_plain(v) for v in np.asarray(selected)]

    def indices_of(self, keys: Iterable[str]) -> dict[str, int]:
        """The time index of each of ``keys`` that the store holds (keys it does not hold are left out).

        The ``time_key`` column is in order (:func:`placement` keeps it so), so only its
        span from the smallest to the largest of ``keys`` is read, found by bisection: a
        night's keys in a year's store read a night's chunks and about 40 more, where the
        whole column is 1.6 million strings (about 1.5 s and 180 MB).
        """
        wanted = set(keys)
        if not wanted or self.n_time == 0:
            return {}
        stored = self.sorted_column("time_key")
        first, last = bisect.bisect_left(stored, min(wanted)), bisect.bisect_right(stored, max(wanted))
        return {key: first + i for i, key in enumerate(self.column("time_key", first, last)) if key in wanted}

    def sorted_column(self, name: str) -> SortedColumn:
        """A per-time-step array in time order (``time``, ``time_key``), read a chunk at a time: for :mod:`bisect`."""
        return SortedColumn(array_of(self.group(), name), self.n_time)

    def column(self, name: str, start: int = 0, stop: int | None = None) -> list[Any]:
        """Values ``start..stop`` (default: to the end) of a per-time-step array (one read of the chunks they span)."""
        stop = self.n_time if stop is None else min(stop, self.n_time)
        if stop <= start:
            return []
        values = read_array(self.group(), name, slice(start, stop))
        return [v.tolist() if isinstance(v, np.ndarray) else _plain(v) for v in values]


class SortedColumn(Sequence[Any]):
    """The first ``n`` values of a sorted per-time-step array, read a chunk at a time when asked (for :mod:`bisect`)."""

    def __init__(self, array: zarr.Array[Any], n: int) -> None:
        self.array, self.n, self.chunk = array, n, array.chunks[0]
        self.read: dict[int, list[Any]] = {}

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):  # Sequence's signature has it; bisect never asks
            raise TypeError("a sorted column is read one index at a time, not sliced")
        if not 0 <= index < self.n:
            raise IndexError(index)
        start = index - index % self.chunk
        if start not in self.read:
            self.read[start] = [_plain(v) for v in np.asarray(self.array[start : min(start + self.chunk, self.n)])]
        return self.read[start][index - start]


def array_of(group: zarr.Group, name: str) -> zarr.Array[Any]:
    """The array ``name`` of ``group`` (zarr types ``group[name]`` as an array or a group).

    Raises
    ------
    KeyError
        ``group`` has no member ``name``.
    StoreError
        ``name`` is a group, where the store's layout has an array.
    """
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise StoreError(
            f"{group.store_path}/{name}: is a Zarr group where an array belongs; the store is damaged, "
            "check it with `ovro-ingest validate`"
        )
    return node


def read_array(group: zarr.Group, name: str, selection: int | slice | tuple[int | slice, ...]) -> npt.NDArray[Any]:
    """``group[name][selection]``, the NumPy array zarr reads (0-d for one element; zarr types it as any array-like)."""
    return np.asarray(array_of(group, name)[selection])


def attributes(node: zarr.Group | zarr.Array[Any]) -> dict[str, Any]:
    """The attributes of ``node`` as a plain dict of JSON values (zarr types each as its recursive ``JSON`` union)."""
    return dict(node.attrs)


def _plain(value: object) -> Any:
    """A numpy scalar as a plain Python value (for JSON)."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def uncommitted_state(path: str | os.PathLike[str]) -> list[str]:
    """What an interrupted run left in or beside the store (cheap checks only; empty when nothing)."""
    store = Store.at(path)
    found = [f"an interrupted commit ({store.journal.name})"] if store.journal.exists() else []
    staging = store.staging_root
    if staging.exists() and any(staging.iterdir()):
        found.append(f"{sum(1 for _ in staging.iterdir())} staged time step(s) not committed")
    found += [f"{leftover.name} beside the store" for leftover in leftovers_beside(path)]
    return found


def read_state(path: str | os.PathLike[str]) -> StoreState:
    """Read the committed state of a store: shapes and identity, no per-time-step values."""
    try:
        group = Store.at(path).open_group()
        attrs = attributes(group)
        if STORE_ID_ATTR not in attrs:
            raise StoreError(
                f"{path}: not an ovro-ingest store (no {STORE_ID_ATTR} attribute); choose another store path"
            )
        if TIMESERIES_ATTR in attrs:  # its SKY is laid out for time series: never ingest into it
            raise StoreError(
                f"{path}: is a time-series store made from {attrs[TIMESERIES_ATTR].get('archive')}; give the "
                "archive instead (`ovro-ingest timeseries` keeps this one up to date)"
            )
        return StoreState(
            path=Path(path),
            store_id=attrs[STORE_ID_ATTR],
            n_time=array_of(group, "time").shape[0],
            frequencies_hz=read_array(group, "frequency", slice(None)),
            polarizations=[str(p) for p in read_array(group, "polarization", slice(None))],
            grid=SpatialGrid.model_validate(attrs[GRID_ATTR]),
            settings=StoreSettings.model_validate(attrs[SETTINGS_ATTR]),
            spectral_frame=attrs.get(SPECTRAL_FRAME_ATTR),
            rewrite_mark=str((attrs.get(REWRITES_ATTR) or {}).get("last", "")),
        )
    except StoreError:
        raise
    except Exception as error:
        if not is_ovro_ingest_group(path):
            raise StoreError(
                f"{path}: not an ovro-ingest store (no {STORE_ID_ATTR} attribute); choose another store path"
            ) from error
        raise StoreError(
            f"{path}: cannot open the store ({error}); run `ovro-ingest repair {path}`, or rebuild it with --rebuild"
        ) from error


def is_ovro_ingest_group(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` opens as a Zarr group carrying an ovro-ingest store identity."""
    try:
        return STORE_ID_ATTR in Store.at(path).open_group(consolidated=False).attrs
    except Exception:
        return False


def store_id(path: str | os.PathLike[str]) -> str | None:
    """The store's identity (a UUID written at creation), or None when there is no store."""
    store = Store.at(path)
    identity: str | None = attributes(store.open_group()).get(STORE_ID_ATTR) if store.exists() else None
    return identity


def frequency_grid(plans: Sequence[TimeStepPlan]) -> list[tuple[float, str]]:
    """The channels of a new store, ascending: (frequency in Hz, subband label) for every frequency of ``plans``.

    Frequencies closer than the channel tolerance are one channel, at the value (and
    with the file-name label) of the first time step that has it.
    """
    ordered = sorted(plans, key=lambda p: p.key)
    return merge_channels([(s.frequency_hz, s.file.source.subband) for plan in ordered for s in plan.subbands])


def merge_channels(frequencies: Sequence[tuple[float, str]]) -> list[tuple[float, str]]:
    """Channels, ascending, from (frequency in Hz, subband label) pairs in order of precedence.

    A frequency within the channel tolerance of an earlier one is that channel (header
    jitter); the first pair of each channel gives its value and label.
    """
    channels: list[tuple[float, str]] = []
    for frequency, label in frequencies:
        if all(abs(frequency - c) > SAME_CHANNEL_TOLERANCE_HZ for c, _ in channels):
            channels.append((frequency, label))
    return sorted(channels)


def lm_coordinates(grid: SpatialGrid, sample: xr.Dataset) -> dict[str, xr.Variable]:
    """The store's ``l`` and ``m``: the pixel offset from CRPIX times the pixel scale, in radians.

    The scale is the grid's (``SpatialGrid.cdelt_deg``: the length of the pixel matrix's
    column), so a scale given as CD, in PC or with CROTA2 gives the same ``l``/``m`` as
    CDELT; computed as xradio computes them from CDELT (``0 + (i - crpix) * cdelt``), so
    that a CDELT-only file gives xradio's values bit for bit. xradio's attributes are kept.
    """
    import xarray as xr
    from astropy import units as u

    coordinates = {}
    for name, axis in (("l", 0), ("m", 1)):
        scale_rad = (grid.cdelt_deg[axis] * u.deg).to(u.rad).value
        values = 0.0 + (np.arange(grid.shape_lm[axis]) - (grid.crpix[axis] - 1.0)) * scale_rad
        coordinates[name] = xr.Variable(name, values, sample[name].attrs)
    return coordinates


def transformation_matrix(grid: SpatialGrid) -> list[list[float]]:
    """The PC matrix that goes with the store's ``l``/``m`` scale: ``PC_ij = M_ij / cdelt_i`` (identity unrotated)."""
    scales = grid.cdelt_deg
    return [
        [value / scales[i] if value != 0.0 else 0.0 for value in row] for i, row in enumerate(grid.pixel_matrix_deg)
    ]


def template_dataset(plan: TimeStepPlan, channels: Sequence[tuple[float, str]]) -> xr.Dataset:
    """A one-time-step dataset with the store's variables, coordinates and attributes (lazy)."""
    import dask.array as da
    import xarray as xr

    from ovro_ingest.load import open_subband

    first = plan.subbands[0]
    with file_boundary(first.file.source.path, "reading it with xradio", "check the file, or report it"):
        sample = open_subband(first.file.path)  # coordinates and attributes: one file is enough
    frame = dict(sample.attrs.get("coordinate_system_info", {}))
    if frame:  # xradio reads PC with the scale in CDELT; the store's l/m carry the grid's scale
        frame["pixel_coordinate_transformation_matrix"] = transformation_matrix(plan.grid)
    frequencies_hz = [frequency for frequency, _ in channels]
    n_freq, n_pol = len(frequencies_hz), sample.sizes["polarization"]
    sky_attrs = {k: v for k, v in sample["SKY"].attrs.items() if k not in PER_FILE_SKY_ATTRS}
    sky_attrs["beam_fit_params"] = "BEAM_FIT_PARAMS_SKY"
    n_l, n_m = sample.sizes["l"], sample.sizes["m"]
    text = np.array([""], dtype=object)
    return xr.Dataset(
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
            "frequency_header": (
                ("time", "frequency"),
                np.full((1, n_freq), np.nan),
                {"units": "Hz", "description": "frequency in each file's header (NaN: no image)"},
            ),
            "date_obs_spread": (
                "time",
                np.zeros(1),
                {"units": "s", "description": "largest difference between the DATE-OBS of the subbands"},
            ),
        },
        coords={
            "time": ("time", [plan.time_mjd], TIME_ATTRS),
            "frequency": ("frequency", np.array(frequencies_hz, dtype=float), sample["frequency"].attrs),
            "frequency_label": ("frequency", np.array([label for _, label in channels], dtype=str)),
            "polarization": ("polarization", np.array(sample["polarization"].values, dtype=str)),
            **lm_coordinates(plan.grid, sample),
            "beam_params_label": ("beam_params_label", np.array(["major", "minor", "pa"], dtype=str)),
        },
        attrs={
            **sample.attrs,
            **({"coordinate_system_info": frame} if frame else {}),
            "fits_wcs_header": plan.subbands[0].celestial_wcs,
        },
    )


def software_versions() -> dict[str, str]:
    """Versions of the software that shapes what the store holds."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"ovro-ingest": __version__}
    for package in ("xradio", "zarr", "xarray", "astropy", "numpy", "numcodecs"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def record_run(path: str | os.PathLike[str], run: dict[str, Any]) -> None:
    """Append ``run`` (who, when, parameters) to the store's list of ingest runs (callers hold the writer lock).

    The group is opened through its consolidated metadata, so that the new attributes
    are written together with it: in format 3 both live in the root ``zarr.json``, and
    a group opened without them would rewrite that file with no consolidated metadata
    (a store no reader can open until the next consolidation).
    """
    group = Store.at(path).open_group(mode="r+")
    runs = list(attributes(group).get(RUNS_ATTR, []))
    group.attrs[RUNS_ATTR] = [*runs, {**run, "software": software_versions()}]
    failpoint("record:written")


def encoding_for(dataset: xr.Dataset, settings: StoreSettings) -> dict[str, dict[str, Any]]:
    """Chunking, compression and chunk-key layout of every variable with a time dimension.

    Format 3 keys chunks with ``/``, so that one time step of an array is one directory
    (``SKY/c/<t>``) that a commit moves with one rename; format 2 keeps the ``.``
    separator its readers expect (a commit moves the time step's chunk files).
    """
    key_encoding = (
        {"name": "default", "separator": "/"} if settings.zarr_format == 3 else {"name": "v2", "separator": "."}
    )
    encoding: dict[str, dict[str, Any]] = {
        name: {"chunks": (SMALL_TIME_CHUNK, *dataset[name].shape[1:]), "chunk_key_encoding": key_encoding}
        for name in SMALL_TIME_VARIABLES
    }
    for name in ("source_files", "wcs_header"):
        encoding[name] = {"chunks": (1,), "chunk_key_encoding": key_encoding}
    chunk = settings.chunk_lm
    encoding["SKY"] = {
        "chunks": (1, 1, 1, min(chunk, dataset.sizes["l"]), min(chunk, dataset.sizes["m"])),
        "dtype": "float32",
        "compressors": settings.compressors(),
        "chunk_key_encoding": key_encoding,
    }
    if settings.zarr_format == 3:
        encoding["SKY"]["filters"] = [TransposeCodec(order=FITS_ORDER)]
    return encoding


def create_store(
    path: str | os.PathLike[str],
    plans: Sequence[TimeStepPlan],
    settings: StoreSettings | None = None,
    channels: Sequence[tuple[float, str]] | None = None,
) -> str:
    """Create an empty store for ``plans``: their pixel grid and polarizations, and their channels.

    The store is built beside ``path`` and renamed into place, so that it appears
    complete or not at all. When a store already exists, it is kept. Returns the
    store's identity.

    Parameters
    ----------
    path : path
        Where the store goes.
    plans : sequence of TimeStepPlan
        At least one time step; the earliest gives the pixel grid, coordinates and attributes.
    settings : StoreSettings, optional
        Chunking, codec and format (default: :class:`StoreSettings`).
    channels : sequence of (float, str), optional
        The frequency axis, (Hz, subband label) ascending, e.g. from
        :func:`ovro_ingest.audit.subband_channels`; default: every frequency of ``plans``
        (:func:`frequency_grid`).
    """
    target = Path(path)
    if Store.at(target).exists():
        return read_state(target).store_id
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise StoreError(f"{target}: exists and is not an ovro-ingest store; choose another store path or remove it")
    settings = settings or StoreSettings()
    first = min(plans, key=lambda p: p.key)
    identity = str(uuid.uuid4())
    dataset = template_dataset(first, channels or frequency_grid(plans))
    dataset.attrs.update(
        {
            STORE_ID_ATTR: identity,
            GRID_ATTR: first.grid.model_dump(mode="json"),
            SPECTRAL_FRAME_ATTR: first.subbands[0].spectral_frame,
            SETTINGS_ATTR: settings.model_dump(mode="json"),
            "ovro_ingest_created_with": software_versions(),
            RUNS_ATTR: [],
        }
    )
    encoding = encoding_for(dataset, settings)
    # Nothing of SKY is written here (compute=False), but xarray checks that its dask
    # chunks line up with the store's chunks, so give it exactly those.
    dataset["SKY"] = dataset["SKY"].chunk(dict(zip(dataset["SKY"].dims, encoding["SKY"]["chunks"], strict=True)))
    building = target.with_name(f".{target.name}.creating-{identity[:8]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        dataset.to_zarr(
            building,
            mode="w-",
            zarr_format=settings.zarr_format,
            consolidated=True,
            encoding=encoding,
            compute=False,
        )
        group = zarr.open_group(str(building), mode="r+", use_consolidated=False)
        for name in TIME_VARIABLES:
            array = array_of(group, name)
            array.resize((0, *array.shape[1:]))
        zarr.consolidate_metadata(str(building))
        if target.exists():
            target.rmdir()
        os.rename(building, target)
    except OSError as error:
        raise StoreError(f"{target}: cannot create the store ({error.strerror}); choose a writable location") from error
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return identity


def remove_store(path: str | os.PathLike[str]) -> None:
    """Delete a store so that no half-deleted store is ever visible: rename it away, then delete."""
    target = Path(path)
    if not target.exists():
        return
    if not Store.at(target).exists():
        raise StoreError(f"{target}: is not an ovro-ingest store; refusing to delete it")
    doomed = target.with_name(f".{target.name}.deleting-{uuid.uuid4().hex[:8]}")
    os.rename(target, doomed)
    shutil.rmtree(doomed)


def leftovers_beside(path: str | os.PathLike[str]) -> list[Path]:
    """Half-created or half-deleted stores that an interrupted create or rebuild left beside ``path``."""
    target = Path(path)
    if not target.parent.exists():
        return []
    return sorted(
        p
        for pattern in (f".{target.name}.creating-*", f".{target.name}.deleting-*")
        for p in target.parent.glob(pattern)
    )


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


def check_fits_store(state: StoreState, plan: TimeStepPlan) -> list[int]:
    """Raise when ``plan`` does not fit the store (grid, polarizations, channels); else return its channels."""
    first = plan.subbands[0].file.source.path
    if not plan.grid.matches(state.grid):
        raise StoreMismatch(
            f"{first}: pixel grid {plan.grid.describe()} differs from the store's {state.grid.describe()}; "
            "ingest it into a new store"
        )
    specsys = plan.subbands[0].spectral_frame
    if state.spectral_frame is not None and specsys != state.spectral_frame:
        raise StoreMismatch(
            f"{first}: SPECSYS {specsys!r} differs from the store's {state.spectral_frame!r} "
            "(the store's frequency frame); ingest it into a new store"
        )
    if list(plan.subbands[0].polarizations) != state.polarizations:
        raise StoreMismatch(
            f"{first}: polarizations {list(plan.subbands[0].polarizations)} differ from the store's {state.polarizations}"
        )
    return channel_indices(state, plan)


def source_ledger(plan: TimeStepPlan) -> str:
    """The ledger entry of a time step: its files, fingerprints, corrections and compression (when compressed), as JSON."""
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
            **({"compression": s.file.compression.model_dump()} if s.file.compression else {}),
        }
        for s in plan.subbands
    ]
    entries += [{"path": e.source.path, "subband": e.source.subband, "excluded": e.reason} for e in plan.excluded]
    return json.dumps(entries, sort_keys=True)


def ledger_fingerprints(entry: str) -> set[tuple[str, int, int]]:
    """The (file name, size, mtime) triples of a ledger entry."""
    return {(Path(e["path"]).name, e["size"], e["mtime_ns"]) for e in json.loads(entry) if "excluded" not in e}


def stored_unchanged(path: str | os.PathLike[str], steps: Sequence[TimeStepFiles]) -> dict[str, int]:
    """The time steps of ``steps`` the store already holds from these very files: key -> index.

    "These very files": the ledger lists the same file names with the same size and
    modification time (a file left out of its time step, e.g. for its beam, by name);
    the folder does not matter, so a moved night is the same night. Finds the
    candidates' indices (:meth:`StoreState.indices_of`) and reads one ledger chunk per
    candidate, never a file's pixels. A
    time step whose files differ only in mtime (a copied night) is not listed: its
    staging task compares the files with what the store holds
    (:func:`ovro_ingest.identity.source_differences`) before writing anything.
    """
    if not Store.at(path).exists() or not steps:
        return {}
    state = read_state(path)
    index_of = state.indices_of(step.key for step in steps)
    candidates = [(step, index_of[step.key]) for step in steps if step.key in index_of]
    entries = state.values("source_files", [index for _, index in candidates])
    unchanged = {}
    for (step, index), entry in zip(candidates, entries, strict=True):
        left_out = {Path(e["path"]).name for e in json.loads(entry) if "excluded" in e}
        kept = {(Path(f.path).name, f.size, f.mtime_ns) for f in step.files if Path(f.path).name not in left_out}
        if kept == ledger_fingerprints(entry) and len(kept) + len(left_out) == len(step.files):
            unchanged[step.key] = index
    return unchanged


def time_step_values(plan: TimeStepPlan, state: StoreState, channels: list[int]) -> dict[str, Any]:
    """The values of every per-time-step array except ``SKY`` for ``plan`` (JSON-able)."""
    beams = np.full((len(state.frequencies_hz), len(state.polarizations), 3), np.nan)
    for subband, channel in zip(plan.subbands, channels, strict=True):
        if subband.beam_rad is not None:
            beams[channel, :, :] = subband.beam_rad
    header_frequencies = np.full(len(state.frequencies_hz), np.nan)
    for subband, channel in zip(plan.subbands, channels, strict=True):
        header_frequencies[channel] = subband.frequency_hz
    return {
        "time": plan.time_mjd,
        "BEAM_FIT_PARAMS_SKY": beams.tolist(),
        "time_key": plan.key,
        "source_files": source_ledger(plan),
        "software_version": __version__,
        "wcs_header": plan.subbands[0].celestial_wcs,
        "frequency_header": header_frequencies.tolist(),
        "date_obs_spread": plan.date_obs_spread_s,
    }


Placement = tuple[int, Literal["append", "insert", "stored"]]


def placement(state: StoreState, key: str, time_mjd: float) -> Placement:
    """Where the time step ``key`` observed at ``time_mjd`` goes on the time axis: appended, inserted at an index, or already stored there.

    The common case (later than the last time step) reads one chunk; only a time
    step at or before the last one reads the time and key columns.

    Raises
    ------
    StoreError
        The plan's time or key would break the order of the store, or another
        stored time step has the same DATE-OBS.
    """
    last = state.last()
    if last is None or (key > last[0] and time_mjd > last[1]):
        return state.n_time, "append"
    keys, times = state.column("time_key"), np.asarray(state.column("time"))
    if key in keys:
        index = keys.index(key)
        before = times[index - 1] if index > 0 else -np.inf
        after = times[index + 1] if index + 1 < state.n_time else np.inf
        if not before < time_mjd < after:  # stored again (--replace), it would break the order of the time axis
            raise StoreError(
                f"time step {key}: its DATE-OBS (MJD {time_mjd:.8f}) is not between those of the stored time steps "
                f"before and after it ({keys[max(index - 1, 0)]}, {keys[min(index + 1, state.n_time - 1)]}), "
                "though its file names place it there; check the DATE-OBS of its files"
            )
        return index, "stored"
    by_time, by_key = int(np.searchsorted(times, time_mjd)), int(np.searchsorted(keys, key))
    if by_time < state.n_time and times[by_time] == time_mjd:
        raise StoreError(
            f"time step {key} has the same DATE-OBS as the stored time step {keys[by_time]} "
            f"(MJD {time_mjd:.8f}); check the file names and DATE-OBS of both"
        )
    if by_time != by_key:
        raise StoreError(
            f"time step {key}: its DATE-OBS (MJD {time_mjd:.8f}) and its file-name time stamp disagree "
            "about its place among the stored time steps; check the DATE-OBS of its files"
        )
    return by_time, "insert"
