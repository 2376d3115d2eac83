"""Step 1, discover: find the FITS images of an input directory and group them into time steps.

Two OVRO-LWA file name conventions are recognised::

    legacy:  20240524_050009_41MHz_averaged_20000_iterations-I-image.fits
    current: 73MHz-I-Deep-Taper-Robust-0-image-20241221_102109_b.fits

The time stamp in the name only groups files into time steps; the time stored for
a time step is read later from the header. The subbands of one integration are
imaged separately, and their names can straddle a second (``..._050009_41MHz``,
``..._050010_73MHz``): names one second apart whose subbands complement each other
are one time step (:func:`merge_straddling`); combine then checks their DATE-OBS.
Discovery reads names only, never a header.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ovro_ingest.models import Manifest, SourceFile, TimeStepFiles

logger = logging.getLogger(__name__)

LEGACY_NAME = re.compile(r"^(?P<date>\d{8})_(?P<time>\d{6})_(?P<subband>\d{2,3})MHz_averaged_.*-I-image\.fits$")
CURRENT_NAME = re.compile(
    r"^(?P<subband>\d{2,3})MHz-I-.*-image-(?P<date>\d{8})_(?P<time>\d{6})(?:_[A-Za-z0-9]+)?\.fits$"
)
NAMING_CONVENTIONS = {"legacy": LEGACY_NAME, "current": CURRENT_NAME}


@dataclass(frozen=True)
class ParsedName:
    """What a file name tells: its time stamp key and its subband label."""

    key: str
    subband: str


def parse_file_name(name: str) -> ParsedName | None:
    """Parse an OVRO-LWA image file name.

    Parameters
    ----------
    name : str
        A file name (no directory).

    Returns
    -------
    ParsedName or None
        The time stamp key ``YYYYMMDD_HHMMSS`` and subband label (``"41MHz"``), or
        None when the name follows neither convention.
    """
    for pattern in NAMING_CONVENTIONS.values():
        match = pattern.match(name)
        if match:
            return ParsedName(key=f"{match['date']}_{match['time']}", subband=f"{int(match['subband'])}MHz")
    return None


@dataclass
class Discovery:
    """The result of scanning an input directory."""

    time_steps: list[TimeStepFiles]
    skipped: list[str] = field(default_factory=list)
    """FITS files whose names follow neither convention (paths)."""


COMPRESSED_FITS = (".fits.gz", ".fits.fz", ".fits.bz2", ".fits.xz")
"""Compressed FITS files: not read (pixels could not be memory-mapped), named in a warning."""


def iter_fits_files(input_dir: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """List the ``*.fits`` files under ``input_dir`` (recursively, hidden folders skipped).

    Compressed FITS files are not listed; a warning names them and the fix.
    """
    excluded = {p.resolve() for p in exclude}
    found: list[Path] = []
    compressed: list[Path] = []
    for root, dirs, files in os.walk(input_dir):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (root_path / d).resolve() not in excluded)
        found.extend(root_path / f for f in sorted(files) if f.endswith(".fits"))
        compressed.extend(root_path / f for f in sorted(files) if f.endswith(COMPRESSED_FITS))
    if compressed:
        logger.warning(
            "skipped %d compressed FITS file(s), e.g. %s: decompress them (gunzip, funpack) to ingest them",
            len(compressed),
            examples(compressed),
        )
    return found


def examples(paths: list[Path] | list[str], limit: int = 5) -> str:
    """Up to ``limit`` file names of ``paths``, and how many more there are."""
    names = ", ".join(Path(p).name for p in paths[:limit])
    return names + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def discover_time_steps(input_dir: str | os.PathLike[str], exclude: tuple[Path, ...] = ()) -> Discovery:
    """Group the FITS images under ``input_dir`` into time steps.

    Parameters
    ----------
    input_dir : path
        Directory to scan (recursively; per-subband sub-folders are fine).
    exclude : tuple of Path
        Folders not to scan, e.g. the folder of fixed copies when it lies inside.

    Returns
    -------
    Discovery
        Time steps in ascending key order, each with its files in ascending
        subband order, and the list of skipped files.

    Raises
    ------
    FileNotFoundError
        When ``input_dir`` does not exist or is not a directory.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"input directory {str(root)!r} does not exist or is not a directory: check the path")
    groups: dict[str, list[SourceFile]] = defaultdict(list)
    skipped: list[str] = []
    for path in iter_fits_files(root, exclude):
        parsed = parse_file_name(path.name)
        if parsed is None:
            skipped.append(str(path))
            continue
        groups[parsed.key].append(SourceFile.from_path(path, parsed.subband))
    if skipped:
        logger.warning(
            "skipped %d FITS file(s) whose names follow neither OVRO-LWA convention: %s",
            len(skipped),
            examples(skipped),
        )
    time_steps = [
        TimeStepFiles(key=key, files=tuple(sorted(files, key=lambda f: (f.subband_mhz, f.path))))
        for key, files in sorted(merge_straddling(groups).items())
    ]
    return Discovery(time_steps=time_steps, skipped=skipped)


def subband_files(steps: list[TimeStepFiles], per_subband: int = 3) -> dict[str, list[SourceFile]]:
    """The first ``per_subband`` files of every subband label, in time order (from names only).

    A few headers of each subband tell a night's channels (see
    :func:`ovro_ingest.audit.subband_channels`) without reading every file.
    """
    found: dict[str, list[SourceFile]] = defaultdict(list)
    for step in steps:
        for source in step.files:
            if len(found[source.subband]) < per_subband:
                found[source.subband].append(source)
    return dict(sorted(found.items(), key=lambda item: int(item[0].removesuffix("MHz"))))


STRADDLE_S = 1
"""Names this many seconds apart may be one integration (the cadence is 10 s, so two never are)."""


def merge_straddling(groups: dict[str, list[SourceFile]]) -> dict[str, list[SourceFile]]:
    """Group files named one second apart into one time step when their subbands do not overlap.

    The earlier key names the time step. A key is merged at most once, so a time step
    spans one second at most; names 10 s apart (two integrations) are never merged, nor
    are names one second apart that share a subband (combine refuses such a merge when
    the DATE-OBS of its files differ, see ``combine.integration_problem``).
    """
    merged: dict[str, list[SourceFile]] = {}
    keys = sorted(groups)
    consumed: set[str] = set()
    for index, key in enumerate(keys):
        if key in consumed:
            continue
        files = list(groups[key])
        later = keys[index + 1] if index + 1 < len(keys) else None
        if later is not None and straddles(key, later, files, groups[later]):
            logger.info(
                "one time step %s from files named %s and %s (their subbands complement each other): %s",
                key,
                key,
                later,
                examples([f.path for f in files + groups[later]]),
            )
            files += groups[later]
            consumed.add(later)
        merged[key] = files
    return merged


def straddles(key: str, later: str, files: list[SourceFile], later_files: list[SourceFile]) -> bool:
    """True when ``later`` is one second after ``key`` and the two groups share no subband."""
    step = datetime.strptime(later, "%Y%m%d_%H%M%S") - datetime.strptime(key, "%Y%m%d_%H%M%S")
    return step.total_seconds() == STRADDLE_S and not {f.subband for f in files} & {f.subband for f in later_files}


def listing_fingerprint(input_dir: str | os.PathLike[str], exclude: tuple[Path, ...] = ()) -> str:
    """A fingerprint of the FITS files under ``input_dir``: names, sizes and mtimes.

    It changes whenever a file is added, removed or rewritten, so it keys the cache
    of the discovery step.
    """
    import hashlib

    digest = hashlib.sha256(str(Path(input_dir).resolve()).encode())
    if Path(input_dir).is_dir():
        for path in iter_fits_files(Path(input_dir), exclude):
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


MANIFEST_EXAMPLES = 10


def manifest_path(manifest_dir: str | os.PathLike[str], fingerprint: str) -> Path:
    """The manifest file of an input listing: named after the listing's fingerprint."""
    return Path(manifest_dir) / f"time-steps-{fingerprint}.json"


def write_manifest(found: Discovery, manifest_dir: str | os.PathLike[str], fingerprint: str) -> Manifest:
    """Write the time steps of ``found`` to a manifest file (atomically) and return its small record."""
    path = manifest_path(manifest_dir, fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps([step.model_dump(mode="json") for step in found.time_steps])
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    partial.write_text(payload)
    os.replace(partial, path)
    return Manifest(
        path=str(path),
        listing_fingerprint=fingerprint,
        n_time_steps=len(found.time_steps),
        n_files=sum(len(step.files) for step in found.time_steps),
        n_skipped=len(found.skipped),
        skipped_examples=tuple(Path(p).name for p in found.skipped[:MANIFEST_EXAMPLES]),
    )


def read_manifest(manifest: Manifest, keys: Collection[str] | None = None) -> list[TimeStepFiles]:
    """The time steps a manifest lists (only those of ``keys``, when given), in ascending key order."""
    try:
        payload = json.loads(Path(manifest.path).read_text())
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"{manifest.path}: the list of time steps is missing or unreadable ({error}); run the ingest again"
        ) from error
    wanted = None if keys is None else set(keys)
    return [TimeStepFiles.model_validate(step) for step in payload if wanted is None or step["key"] in wanted]
