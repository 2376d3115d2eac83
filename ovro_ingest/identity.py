"""Is a stored time step's source still what these files hold? Name, size and mtime first; content only when in doubt.

The store's ledger knows each file by its name, size and modification time, never
by its folder: a night that moved is the same night. A copy (``cp -r``, ``rsync``
without ``-t``, identical data generated again) keeps name and size but gets a new
mtime. Only in that case is the content compared with what the store holds from it:
``SKY`` holds the pixels bit for bit, and the ledger and the per-time-step arrays
hold every header fact the store uses (DATE-OBS, frequency, corrections, beam,
celestial WCS, pixel grid). When all of them are equal, storing the files again
would write the very same time step: it is "already stored", without a warning.
Otherwise the warning names each file and what differs.

Why not a checksum of every file in the ledger: it is a full extra pass over every
pixel of every night, on top of the staging pass, for the sake of a rare event.
Measured per 4096² float32 file (64 MB, page cache warm, 2 shared cores, 2026-11-30,
``scripts/measure_identity_and_quicklook.py``): staging 83-119 ms; astropy's DATASUM
13 ms (11-16%), zlib.crc32 13-17 ms (14-15%), sha256 37 ms (31-45%), all well above
the 3% the normal ingest may spend. The comparison here costs 88-95 ms per file,
about one staging, and only for the files whose mtime changed while their size did
not; files whose name, size and mtime match are never read. A hash of the header
block plus the size (0.1 ms) would be cheap but blind to pixels rewritten in place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ovro_ingest.load import sky_block, sky_planes
from ovro_ingest.models import SubbandImage, TimeStepPlan
from ovro_ingest.store import StoreState, array_of, channel_indices, read_array

MAX_NAMED = 5
"""Differences named in one message; the rest are counted."""


def source_differences(state: StoreState, index: int, plan: TimeStepPlan) -> list[str]:
    """How ``plan``'s files differ from those the store holds time step ``index`` from (empty: the same).

    Parameters
    ----------
    state : StoreState
        The store's committed state.
    index : int
        The stored time step with ``plan``'s key.
    plan : TimeStepPlan
        The time step as this run found it.

    Returns
    -------
    list of str
        One phrase per difference, naming the file: ``"<name>: size 123 → 456 bytes"``,
        ``"<name>: content differs (pixels)"``, ``"<name>: DATE-OBS a → b"``,
        ``"<name>: new file"``, ``"<name>: no longer in the input"``, ...; pixels are
        read only for files whose name and size match the ledger and whose mtime does not.
    """
    entries = json.loads(state.value("source_files", index))
    stored = {Path(e["path"]).name: e for e in entries if "excluded" not in e}
    stored_out = {Path(e["path"]).name for e in entries if "excluded" in e}
    found = {s.file.source.name: s for s in plan.subbands}
    found_out = {e.source.name for e in plan.excluded}
    known, present = set(stored) | stored_out, set(found) | found_out
    differences = [f"{name}: new file" for name in sorted(present - known)]
    differences += [f"{name}: no longer in the input" for name in sorted(known - present)]
    differences += [f"{name}: now left out of the time step" for name in sorted(found_out & set(stored))]
    differences += [f"{name}: was left out, now included" for name in sorted(stored_out & set(found))]
    if differences:
        return differences
    touched = []
    for name, subband in sorted(found.items()):
        entry, source = stored[name], subband.file.source
        if entry["size"] != source.size:
            differences.append(f"{name}: size {entry['size']} → {source.size} bytes")
        elif entry["mtime_ns"] != source.mtime_ns:
            touched.append(subband)
    if differences or not touched:
        return differences
    return header_differences(state, index, plan, stored, touched) or pixel_differences(state, index, plan, touched)


def header_differences(
    state: StoreState, index: int, plan: TimeStepPlan, stored: dict[str, dict[str, Any]], touched: list[SubbandImage]
) -> list[str]:
    """What the store took from the headers of ``touched`` files and that differs now."""
    if plan.grid != state.grid:
        return [f"{touched[0].file.source.name}: pixel grid {state.grid.describe()} → {plan.grid.describe()}"]
    differences = []
    for subband in touched:
        name, entry = subband.file.source.name, stored[subband.file.source.name]
        if entry["date_obs"] != subband.date_obs:
            differences.append(f"{name}: DATE-OBS {entry['date_obs']} → {subband.date_obs}")
        if entry["frequency_hz"] != subband.frequency_hz:
            differences.append(f"{name}: frequency {entry['frequency_hz']} → {subband.frequency_hz} Hz")
        if list(entry["corrections"]) != list(subband.file.corrections):
            differences.append(f"{name}: header corrections {entry['corrections']} → {list(subband.file.corrections)}")
    if differences:  # the channels below are only known for the stored frequencies
        return differences
    channels = dict(zip((s.file.source.name for s in plan.subbands), channel_indices(state, plan), strict=True))
    beams = read_array(state.group(), "BEAM_FIT_PARAMS_SKY", index)
    for subband in touched:
        name = subband.file.source.name
        beam = np.full(3, np.nan) if subband.beam_rad is None else np.asarray(subband.beam_rad)
        if not np.array_equal(beams[channels[name], 0], beam, equal_nan=True):
            differences.append(f"{name}: beam (BMAJ, BMIN, BPA) differs")
    if plan.subbands[0] in touched and state.value("wcs_header", index) != plan.subbands[0].celestial_wcs:
        differences.append(f"{plan.subbands[0].file.source.name}: celestial WCS differs")
    return differences


def pixel_differences(state: StoreState, index: int, plan: TimeStepPlan, touched: list[SubbandImage]) -> list[str]:
    """``"<name>: content differs (pixels)"`` for each of ``touched`` whose pixels are not the stored ones, bit for bit."""
    channels = dict(zip((s.file.source.name for s in plan.subbands), channel_indices(state, plan), strict=True))
    sky = array_of(state.group(), "SKY")
    return [
        f"{s.file.source.name}: content differs (pixels)"
        for s in touched
        if not same_pixels(sky, index, channels[s.file.source.name], s.file.path)
    ]


def same_pixels(sky: zarr.Array[Any], index: int, channel: int, path: str) -> bool:
    """True when ``SKY[index, channel]`` holds the pixels of the readable file ``path`` bit for bit.

    Chunk by chunk, each cut from the memory-mapped file exactly as staging cuts it
    (:func:`ovro_ingest.load.sky_block`), and compared as integers, so that NaN
    payloads and signed zeros count; stops at the first difference.
    """
    _, _, n_pol, n_l, n_m = sky.shape
    _, _, _, chunk_l, chunk_m = sky.chunks
    with sky_planes(path) as planes:
        if planes.shape != (n_pol, n_m, n_l):
            return False
        for p in range(n_pol):
            for l0 in range(0, n_l, chunk_l):
                for m0 in range(0, n_m, chunk_m):
                    l_range, m_range = slice(l0, l0 + chunk_l), slice(m0, m0 + chunk_m)
                    block = sky_block(planes[p], l_range, m_range)
                    stored = np.asarray(sky[index, channel, p, l_range, m_range], dtype=np.float32)
                    if not np.array_equal(block.view(np.uint32), stored.view(np.uint32)):
                        return False
    return True


def describe(differences: list[str]) -> str:
    """The differences as one phrase for a log line (at most :data:`MAX_NAMED` named)."""
    named = "; ".join(differences[:MAX_NAMED])
    rest = len(differences) - MAX_NAMED
    return f"{named}; and {rest} more" if rest > 0 else named
