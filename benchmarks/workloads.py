"""The workloads ``ingest_speed.py`` measures, each run in its own process.

    python benchmarks/workloads.py floor STORE CHUNK THREADS FILE...
    python benchmarks/workloads.py flow INPUT STORE WORKERS CHUNK [KEY...]
    python benchmarks/workloads.py plain INPUT STORE WORKERS CHUNK
    python benchmarks/workloads.py reference INPUT OUT_DIR CHUNK     (in ovro-lwa-portal's environment)

Each prints one JSON line last: ``{"seconds": ...}``, timed inside the process around
the work itself (imports excluded); the caller times the whole process too.
Imports are inside the functions: the reference workload runs in another virtual
environment, without this project's dependencies.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def floor(store: str, chunk: int, threads: int, files: list[str]) -> dict:
    """The floor: each plane read (memmap) and written into one Zarr array, same codec and chunks, no pipeline."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import zarr
    from astropy.io import fits

    from ovro_ingest.store import StoreSettings

    with fits.open(files[0], memmap=True) as first:
        plane_shape = first[0].data.shape[-2:]
    array = zarr.create_array(
        store,
        shape=(len(files), *plane_shape),
        chunks=(1, chunk, chunk),
        dtype="float32",
        compressors=StoreSettings().compressors(),
        fill_value=np.nan,
    )

    def write(index: int) -> None:
        with fits.open(files[index], memmap=True) as hdulist:
            array[index] = hdulist[0].data[0, 0]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, range(len(files))))
    return {"seconds": time.perf_counter() - started}


def flow(input_dir: str, store: str, workers: int, chunk: int, keys: list[str]) -> dict:
    """The ``ingest`` flow called directly (against the server in ``PREFECT_API_URL``)."""
    from flows.ingest import ingest

    started_at, started = time.time(), time.perf_counter()
    state = ingest(
        input_dir=input_dir, store=store, workers=workers, chunk_lm=chunk, time_steps=keys or None, return_state=True
    )
    seconds = time.perf_counter() - started
    summary = state.result()
    return {
        "seconds": seconds,
        "started_at": started_at,
        "flow_run_id": str(state.state_details.flow_run_id),
        "statuses": sorted({o.status for o in summary.outcomes}),
        "time_steps": len(summary.outcomes),
    }


def plain(input_dir: str, store: str, workers: int, chunk: int) -> dict:
    """The same five steps as plain function calls (threads, no Prefect, no Dask)."""
    from ovro_ingest.pipeline import ingest_directory
    from ovro_ingest.store import StoreSettings

    started = time.perf_counter()
    receipts = ingest_directory(input_dir, store, settings=StoreSettings(chunk_lm=chunk), workers=workers)
    return {"seconds": time.perf_counter() - started, "statuses": sorted({r.status for r in receipts})}


def reference(input_dir: str, out_dir: str, chunk: int) -> dict:
    """ovro-lwa-portal 0.1.0's ``convert_fits_dir_to_zarr``, as its users run it."""
    from ovro_lwa_portal.fits_to_zarr_xradio import convert_fits_dir_to_zarr

    started = time.perf_counter()
    convert_fits_dir_to_zarr(
        input_dir, out_dir, zarr_name="reference.zarr", fixed_dir=str(Path(out_dir) / "fixed"), chunk_lm=chunk
    )
    return {"seconds": time.perf_counter() - started}


def main(argv: list[str]) -> None:
    name, args = argv[0], argv[1:]
    if name == "floor":
        result = floor(args[0], int(args[1]), int(args[2]), args[3:])
    elif name == "flow":
        result = flow(args[0], args[1], int(args[2]), int(args[3]), args[4:])
    elif name == "plain":
        result = plain(args[0], args[1], int(args[2]), int(args[3]))
    elif name == "reference":
        result = reference(args[0], args[1], int(args[2]))
    else:
        raise SystemExit(f"unknown workload {name!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(sys.argv[1:])
