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

Names end as users write them (:data:`FITS_SUFFIX`: ``.fits``, ``.FITS``, ``.fit``,
``.fts``), compressed names too (``.fits.gz``, ``.fits.fz``, ``.fits.bz2``, ``.fits.xz``,
``.fits.zip``: astropy reads them, see :mod:`ovro_ingest.compressed`). An entry named like a subband image that cannot be
opened (a link to an unmounted disk, no read permission) is left out of its time step
like a missing subband, recorded there (``TimeStepFiles.left_out``, then the ledger),
and named in one warning per run: it never stops the night.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import stat
import warnings
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from astropy.time import Time
from erfa import ErfaWarning

from ovro_ingest.errors import InputMissing
from ovro_ingest.models import ExcludedFile, Manifest, SourceFile, TimeStepFiles

logger = logging.getLogger(__name__)

FITS_SUFFIX = r"\.(?i:fits|fit|fts)(?:\.(?i:gz|fz|bz2|xz|zip))?"
"""A FITS file's name ending as users write it: ``.fits``, ``.fit`` or ``.fts`` in any case, then maybe a compression's."""
_FITS_NAME = re.compile(f"{FITS_SUFFIX}$")
LEGACY_NAME = re.compile(
    rf"^(?P<date>\d{{8}})_(?P<time>\d{{6}})_(?P<subband>\d{{2,3}})MHz_averaged_.*-I-image{FITS_SUFFIX}$"
)
CURRENT_NAME = re.compile(
    rf"^(?P<subband>\d{{2,3}})MHz-I-.*-image-(?P<date>\d{{8}})_(?P<time>\d{{6}})(?:_[A-Za-z0-9]+)?{FITS_SUFFIX}$"
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
        if match and stamp_time(key := f"{match['date']}_{match['time']}") is not None:
            return ParsedName(key=key, subband=f"{int(match['subband'])}MHz")
    return None


@functools.lru_cache(maxsize=8192)  # a night's keys: 4,320 of them, each named by every subband's file
def stamp_time(key: str) -> Time | None:
    """The UTC instant a file-name stamp ``YYYYMMDD_HHMMSS`` names, or None when it names none (``20240532_...``).

    A leap second's ``..._235960`` is an instant (astropy's ``Time.strftime`` writes such
    stamps); second 60 of a day without a leap second is not.
    """
    try:
        moment = datetime.strptime(key, "%Y%m%d_%H%M%S")
    except ValueError:
        if not key.endswith("60"):
            return None
        iso = f"{key[:4]}-{key[4:6]}-{key[6:8]}T{key[9:11]}:{key[11:13]}:60"
        with warnings.catch_warnings():
            warnings.simplefilter("error", ErfaWarning)  # "time is after end of day": no leap second that day
            try:
                return Time(iso, format="isot", scale="utc")
            except (ValueError, ErfaWarning):
                return None
    return Time(moment, scale="utc")


def stamp_seconds(key: str, later: str) -> float:
    """UTC seconds from stamp ``key`` to stamp ``later`` (a leap second counts as one)."""
    start, end = stamp_time(key), stamp_time(later)
    if start is None or end is None:
        raise ValueError(f"not a file-name time stamp: {key if start is None else later}")
    seconds: float = (end - start).to_value("s")  # astropy publishes no types
    return seconds


@dataclass
class Discovery:
    """The result of scanning an input directory."""

    time_steps: list[TimeStepFiles]
    skipped: list[str] = field(default_factory=list)
    """FITS files whose names follow neither convention (paths)."""
    left_out: list[ExcludedFile] = field(default_factory=list)
    """Entries named like subband images that cannot be opened (each also in its time step's ``left_out``)."""


def is_fits_name(name: str) -> bool:
    """True for a file name with a FITS ending (:data:`FITS_SUFFIX`)."""
    return _FITS_NAME.search(name) is not None


def iter_fits_files(input_dir: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """List the entries under ``input_dir`` named like FITS files (recursively, hidden folders skipped).

    Entries, not files: a symbolic link whose target is gone is listed too, so that
    discovery can account for it (see :func:`entry_problem`).
    """
    excluded = {p.resolve() for p in exclude}
    found: list[Path] = []
    for root, dirs, files in os.walk(input_dir):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (root_path / d).resolve() not in excluded)
        found.extend(root_path / f for f in sorted(files) if is_fits_name(f))
    return found


LEFT_OUT = {
    "entry": (
        "named like subband images that cannot be opened",
        "restore or remove the entry (a dangling link: remount its disk or re-copy the file), then run again",
    ),
    "beam": ("with an invalid beam", "fix BMAJ/BMIN/BPA, or pass --keep-bad-beams to keep them with a NaN beam"),
    "wcs": (
        "whose celestial WCS places pixels elsewhere than the other subbands'",
        "fix its WCS, then run again with --replace",
    ),
}
"""Each kind of left-out file (``ExcludedFile.kind``): how a warning describes the files, and the fix."""


def left_out_notes(excluded: Iterable[ExcludedFile]) -> list[str]:
    """One warning line per kind of problem for files left out of their time steps: how many, the first few, the fix."""
    by_kind: dict[str, list[ExcludedFile]] = defaultdict(list)
    for entry in excluded:
        by_kind[entry.kind].append(entry)
    return [
        f"left out {len(entries)} file(s) {LEFT_OUT[kind][0]} (recorded in their time steps): "
        f"{examples_with_reasons(entries)}; {LEFT_OUT[kind][1]}"
        for kind, entries in by_kind.items()
    ]


def entry_problem(path: Path) -> str | None:
    """Why a folder entry named like an image cannot be opened (a dangling or looping link, no file, no read permission), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if path.is_symlink():
            target = os.readlink(path)
            why = "a loop" if error.errno == errno.ELOOP else "which does not exist (an unmounted disk?)"
            return f"a symbolic link to {target}, {why}"
        return f"cannot be read ({error.strerror})"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable by this user (permission denied)"
    return None


def entry_record(path: Path, subband: str) -> SourceFile:
    """The record of a folder entry that cannot be opened: its own path, size and mtime (a link's, not its target's)."""
    entry = path.lstat()
    return SourceFile(path=str(path.absolute()), subband=subband, size=entry.st_size, mtime_ns=entry.st_mtime_ns)


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
        subband order and its entries left out, the skipped files, and every left-out entry.

    Raises
    ------
    FileNotFoundError
        When ``input_dir`` does not exist or is not a directory.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise InputMissing(f"input directory {str(root)!r} does not exist or is not a directory: check the path")
    groups: dict[str, list[SourceFile]] = defaultdict(list)
    skipped: list[str] = []
    problems: dict[str, str] = {}  # path of a left-out entry -> why
    for path in iter_fits_files(root, exclude):
        parsed = parse_file_name(path.name)
        if parsed is None:
            skipped.append(str(path))
        elif problem := entry_problem(path):
            source = entry_record(path, parsed.subband)
            problems[source.path] = problem
            groups[parsed.key].append(source)
        else:
            groups[parsed.key].append(SourceFile.from_path(path, parsed.subband))
    if skipped:
        logger.warning(
            "skipped %d FITS file(s) whose names follow neither OVRO-LWA convention: %s",
            len(skipped),
            examples(skipped),
        )
    time_steps = []
    for key, files in sorted(merge_straddling(groups).items()):
        ordered = sorted(files, key=lambda f: (f.subband_mhz, f.path))
        time_steps.append(
            TimeStepFiles(
                key=key,
                files=tuple(f for f in ordered if f.path not in problems),
                left_out=tuple(ExcludedFile(source=f, reason=problems[f.path]) for f in ordered if f.path in problems),
            )
        )
    left_out = [entry for step in time_steps for entry in step.left_out]
    for note in left_out_notes(left_out):
        logger.warning(note)
    return Discovery(time_steps=time_steps, skipped=skipped, left_out=left_out)


def examples_with_reasons(entries: list[ExcludedFile], limit: int = 3) -> str:
    """Up to ``limit`` left-out entries as ``name (reason)``, and how many more there are."""
    named = ", ".join(f"{e.source.name} ({e.reason})" for e in entries[:limit])
    return named + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


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
    one_second = abs(stamp_seconds(key, later) - STRADDLE_S) < 1e-6
    return one_second and not {f.subband for f in files} & {f.subband for f in later_files}


def listing_fingerprint(input_dir: str | os.PathLike[str], exclude: tuple[Path, ...] = ()) -> str:
    """A fingerprint of the FITS files under ``input_dir``: names, sizes and mtimes.

    It changes whenever a file is added, removed or rewritten, so it keys the cache
    of the discovery step.
    """
    import hashlib

    digest = hashlib.sha256(str(Path(input_dir).resolve()).encode())
    if Path(input_dir).is_dir():
        for path in iter_fits_files(Path(input_dir), exclude):
            try:
                found = path.stat()
            except OSError:  # a dangling link: its own stat; its target's once it is back
                found = path.lstat()
            digest.update(f"{path}\0{found.st_size}\0{found.st_mtime_ns}\n".encode())
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
