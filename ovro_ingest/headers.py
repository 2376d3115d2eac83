"""Step 2, fix headers: make every input file readable by the loader, copying only when needed.

Real OVRO-LWA files open unchanged with ``xradio.image.open_image``; those are
passed through untouched. A file gets a fixed copy in ``fixed_dir`` only when the
loader cannot read it as it is:

- it is compressed, tile by tile or as a whole file (:mod:`ovro_ingest.compressed`): the copy
  holds the pixels as astropy decodes them,
- its pixels are integers or scaled (BSCALE/BZERO, which xradio refuses to memory-map),
- its image sits in an extension behind an empty primary HDU,
- a CTYPE value carries leading or trailing blanks,
- it has fewer than four data axes: axes its WCS declares beyond NAXIS become data
  axes one pixel long; a missing spectral axis is added from RESTFRQ/RESTFREQ, a
  missing STOKES axis as I,
- its pixel scale is a CD matrix (xradio reads CDELT and PC only): rewritten as the
  same WCS in CDELT + PC,
- it lacks CRPIX/CDELT/CRVAL that the FITS standard gives a default.

In a fixed copy, a card that is not valid FITS is written as astropy's
``output_verify="fix"`` writes it (``date-obs=`` upper-cased, ``CRDER1 = nan`` quoted);
only a card astropy cannot fix is dropped. Both are recorded. Keywords present in the file are otherwise never
overwritten. Each correction is returned in words, so that the store can record what
was changed; so are conversions that need no copy (float64 pixels stored as float32,
a checksum failure kept on request).

A file whose header carries CHECKSUM or DATASUM is verified (one pass over its
pixels, only for such files) and refused as corrupted when they do not match.

A fixed copy carries the fingerprint of its source (keyword ``SRCFPRT``) and is
reused only while the source is unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError, VerifyWarning

from ovro_ingest.compressed import (
    COMPRESSED_SUFFIXES,
    compression_of,
    decompressed_length,
    needed_bytes,
    stored_bytes,
    whole_file_compression,
)
from ovro_ingest.errors import BadInputFile, file_boundary, one_line
from ovro_ingest.facts import STOKES_NAMES, header_wcs, wcs_axis_count
from ovro_ingest.models import Compression, Notice, ReadableFile, ReadableTimeStep, SourceFile, TimeStepFiles

logger = logging.getLogger(__name__)

FINGERPRINT_KEYWORD = "SRCFPRT"
REGENERATE = "re-copy or regenerate the file, then run the ingest again"


def open_fits(path: str) -> fits.HDUList:
    """Open a FITS file for reading (compressed too, by content), turning unreadable files into one-line errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fits.open(path, memmap=True, lazy_load_hdus=False)
    except PermissionError as error:
        raise BadInputFile(path, "permission denied", "make the file readable by the ingest user") from error
    except FileNotFoundError as error:
        raise BadInputFile(path, "file disappeared", "check that nothing removes input files during the run") from error
    except (OSError, ValueError, TypeError, EOFError) as error:
        raise BadInputFile(path, unreadable(path, error), REGENERATE) from error


def unreadable(path: str, error: BaseException) -> str:
    """Why astropy cannot open ``path``: empty, a compressed stream cut short, or what astropy says."""
    if Path(path).stat().st_size == 0:
        return "empty file"
    whole = whole_file_compression(path)
    if whole and decompressed_length(path, whole) is None:
        return f"truncated {whole}-compressed file (its compressed stream ends early)"
    return f"not a readable FITS file ({one_line(error)})"


def image_hdu_index(hdulist: fits.HDUList, path: str) -> int:
    """Index of the HDU holding the image: the primary, or the first image extension (tile-compressed too)."""
    for index, hdu in enumerate(hdulist):
        if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2:
            return index
    raise BadInputFile(path, "no image HDU with at least two axes", REGENERATE)


def check_complete(hdulist: fits.HDUList, index: int, path: str, compression: Compression | None) -> None:
    """Raise when the file holds less than its header says (a truncated copy), judged on what the file is.

    A plain file is compared by its size; a tile-compressed image by the binary table its
    data are; a whole-file compressed file by its decompressed length (a compressed
    stream that ends early is truncated too).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # fileinfo serializes the header: astropy "fixes" bad cards
        needed = needed_bytes(hdulist, index, path)
    actual, what = stored_bytes(path, compression), compression_words(compression)
    if actual is None:
        raise BadInputFile(path, f"truncated {what} (its compressed stream ends early)", REGENERATE)
    if actual < needed:
        decompressed = " decompressed" if compression and compression.whole_file else ""
        # the file's own size first (what ls -l shows; decompressed, for a compressed file), then what its header needs
        raise BadInputFile(
            path, f"truncated {what} ({actual} bytes{decompressed}, its header needs {needed})", REGENERATE
        )


def compression_words(compression: Compression | None) -> str:
    """E.g. ``gzip-compressed file``, ``RICE_1 tile-compressed FITS file``."""
    if compression is None:
        return "FITS file"
    return (
        f"{compression.whole_file}-compressed file"
        if compression.whole_file
        else f"{compression.tiles} tile-compressed FITS file"
    )


KEEP_BAD_CHECKSUMS_FIX = "re-copy the file from its source, or pass --keep-bad-checksums to store it as it is"


def check_checksums(hdulist: fits.HDUList, index: int, path: str, keep_bad_checksums: bool = False) -> list[str]:
    """Verify CHECKSUM/DATASUM of the image HDU, when its header has them (else nothing is read).

    CHECKSUM covers header and pixels, so one pass over the pixels settles a good file;
    only a failure costs a second pass (DATASUM), to say whether the pixels changed.

    Returns
    -------
    list of str
        Empty, or the kept failure in words when ``keep_bad_checksums``.

    Raises
    ------
    BadInputFile
        The checksums do not match (the file is corrupted or was changed after they
        were written), unless ``keep_bad_checksums``.
    """
    hdu = hdulist[index]
    if "CHECKSUM" not in hdu.header and "DATASUM" not in hdu.header:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header_and_data = hdu.verify_checksum()  # 1 match, 0 mismatch, 2 no CHECKSUM
        if header_and_data == 1:
            return []
        data = hdu.verify_datasum()
    if data == 0:
        problem = "its pixels do not match its DATASUM (changed after it was written)"
    elif header_and_data == 0:
        pixels = " (its pixels match DATASUM)" if data == 1 else ""
        problem = f"its header does not match its CHECKSUM (changed after it was written){pixels}"
    else:
        return []
    if not keep_bad_checksums:
        raise BadInputFile(path, f"corrupted: {problem}", KEEP_BAD_CHECKSUMS_FIX)
    logger.info("%s: %s; stored as it is (keep_bad_checksums)", path, problem)  # the run warns once for all
    return [f"kept although {problem} (keep_bad_checksums)"]


@dataclass
class FixPlan:
    """What the loader will read for one file: the header of the file itself, or of its fixed copy."""

    header: fits.Header
    """The source's header when no copy is needed, else the fixed copy's (structure included)."""
    corrections: list[str] = field(default_factory=list)
    """What the fixed copy changes, in words; empty when the file is read as it is."""
    notes: list[str] = field(default_factory=list)
    """Conversions recorded in the ledger that need no copy (float64 pixels stored as float32)."""
    compression: Compression | None = None
    """How the file is compressed (a compressed file is always read through a fixed copy)."""

    @property
    def needs_copy(self) -> bool:
        """True when the loader cannot read the file as it is."""
        return bool(self.corrections)


STRUCTURAL = frozenset(
    {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "GROUPS", "EXTNAME", "EXTVER"}
    | {"BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM", FINGERPRINT_KEYWORD}
)
"""Keywords a fixed copy does not take from its source: astropy writes them for the new data, or they describe the source."""
_NAXIS_N = re.compile(r"NAXIS\d+")
_CD = re.compile(r"CD(\d+)_(\d+)")
_PC = re.compile(r"PC0*(\d+)_0*(\d+)")
_PC_OLD = re.compile(r"PC(\d{3})(\d{3})")
_CROTA = re.compile(r"CROTA(\d+)")
WCS_DEFAULTS = (("CRPIX", 0.0), ("CDELT", 1.0), ("CRVAL", 0.0))
"""Keywords the FITS standard gives a default value when absent (WCS Paper I), and the loader requires."""


def plan_fix(hdulist: fits.HDUList, index: int, source: SourceFile) -> FixPlan:
    """What a file needs for the loader to read it, and the header the loader will then read.

    Reads headers only; :func:`write_fixed_copy` applies the plan to the pixels, and the
    audit reads the planned header, so both see the same thing. Call it before anything
    serializes the header (``HDUList.fileinfo``, checksums): that makes astropy rewrite
    invalid cards in place (``nan`` into ``'nan'``), and they could no longer be found.

    Raises
    ------
    BadInputFile
        A needed fix cannot be made (a 2-D image with no known frequency, a singular CD matrix),
        or a keyword is repeated with another value.
    """
    header = hdulist[index].header
    check_repeated_keywords(header, source.path)
    notes = precision_notes(header)
    compression = compression_of(hdulist, index, source.path)
    if not needs_copy(header, index > 0) and compression is None:
        return FixPlan(header=header, notes=notes)
    invalid = invalid_cards(header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # copying "fixes" invalid cards, with a multi-line warning
        fixed = header.copy()
    corrections = [
        *([compression.describe()] if compression else []),
        *inherited(fixed, hdulist[0].header if index > 0 else None, source.path),
        *to_primary(fixed, index > 0),
        *unscaled(fixed),
        *stripped_ctypes(fixed),
        *completed_axes(fixed, source),
        *pc_from_cd(fixed, source.path),
        *wcs_defaults(fixed),
        *repaired(fixed, invalid),
    ]
    for keyword in ("CHECKSUM", "DATASUM"):  # they describe the source, not the copy
        fixed.remove(keyword, ignore_missing=True)
    return FixPlan(header=fixed, corrections=corrections, notes=notes, compression=compression)


COMMENTARY = frozenset({"COMMENT", "HISTORY", ""})


def check_repeated_keywords(header: fits.Header, path: str) -> None:
    """Refuse a header that gives one keyword twice with different values (FITS allows a keyword once).

    Which card is right cannot be known (a header patched by appending a corrected card, say),
    so neither is taken. Commentary cards (COMMENT, HISTORY, blank) repeat by design; a
    keyword repeated with the same value says one thing and is read.
    """
    counts = Counter(header.keys())
    repeated = {keyword for keyword, n in counts.items() if n > 1 and keyword not in COMMENTARY}
    first: dict[str, str] = {}
    for card in header.cards:
        if card.keyword not in repeated:  # a card's text is not touched otherwise: reading it "fixes" invalid cards
            continue
        value = card_value_text(card)
        seen = first.setdefault(card.keyword, value)
        if seen != value:
            raise BadInputFile(
                path,
                f"{card.keyword} appears twice with different values ({seen}, then {value})",
                f"remove the wrong {card.keyword} card (FITS allows each keyword once)",
            )


def card_value_text(card: fits.Card) -> str:
    """A card's value as written (its text between ``=`` and the comment), for comparing repeated cards."""
    image: str = card.image
    value = image[10:] if image[8:10] == "= " else image[8:]
    return value.split(" /", 1)[0].strip()


INHERITED_NOT = frozenset({"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "CHECKSUM", "DATASUM", "INHERIT"})
"""Primary-header keywords an extension never inherits: they describe the primary HDU itself."""


def inherited(header: fits.Header, primary: fits.Header | None, path: str) -> list[str]:
    """Give an extension's header the primary header's cards it lacks when it says ``INHERIT = T`` (the FITS convention).

    The extension's own cards win; structural and commentary cards are not inherited.
    The copy is a primary HDU of its own, so INHERIT itself goes.
    """
    if primary is None or header.get("INHERIT") is not True:
        return []
    check_repeated_keywords(primary, path)
    taken = [
        card
        for card in primary.cards
        if card.keyword not in header
        and card.keyword not in INHERITED_NOT
        and card.keyword not in COMMENTARY
        and not _NAXIS_N.fullmatch(card.keyword)
    ]
    header.remove("INHERIT")
    for card in taken:
        header.append(card)
    if not taken:
        return ["INHERIT = T, but the primary header has no card the extension lacks"]
    return [f"took {', '.join(card.keyword for card in taken)} from the primary header (INHERIT = T)"]


def needs_copy(header: fits.Header, in_extension: bool) -> bool:
    """True when xradio cannot read the image as it is (see the module docstring); reads nothing but ``header``."""
    return (
        in_extension
        or is_scaled(header)
        or bool(blank_ctypes(header))
        or header["NAXIS"] < 4
        or bool(cd_cards(header))
        or bool(missing_wcs_defaults(header))
    )


def precision_notes(header: fits.Header) -> list[str]:
    """The precision lost by storing the pixels as float32 (the store's ``SKY`` type), for BITPIX = -64."""
    if header["BITPIX"] != -64:
        return []
    return ["BITPIX=-64 pixels stored as float32 (rounded to 24 significant bits, about 7 decimal digits)"]


def is_scaled(header: fits.Header) -> bool:
    """True for integer pixels or pixels with BSCALE/BZERO (the store holds float32 physical values)."""
    return bool(header["BITPIX"] > 0 or header.get("BSCALE", 1.0) != 1.0 or header.get("BZERO", 0.0) != 0.0)


def to_primary(header: fits.Header, in_extension: bool) -> list[str]:
    """An image from an extension HDU goes into the primary HDU of the copy."""
    return ["moved the image from an extension HDU to the primary HDU"] if in_extension else []


def unscaled(header: fits.Header) -> list[str]:
    """Pixels stored as float32 physical values (astropy applies BSCALE/BZERO and BLANK when reading)."""
    if not is_scaled(header):
        return []
    correction = (
        f"applied BSCALE={header.get('BSCALE', 1.0)} BZERO={header.get('BZERO', 0.0)} "
        f"to BITPIX={header['BITPIX']} pixels, stored as float32"
    )
    header["BITPIX"] = -32
    return [correction]


def blank_ctypes(header: fits.Header) -> list[int]:
    """The axes whose CTYPE carries leading or trailing blanks."""
    return [
        axis
        for axis in range(1, wcs_axis_count(header) + 1)
        if isinstance(header.get(f"CTYPE{axis}"), str) and header[f"CTYPE{axis}"] != header[f"CTYPE{axis}"].strip()
    ]


def stripped_ctypes(header: fits.Header) -> list[str]:
    """CTYPE values without their blanks (wcslib reads ``' FREQ'`` as an unknown axis)."""
    corrections = []
    for axis in blank_ctypes(header):
        corrections.append(f"stripped blanks from CTYPE{axis}={header[f'CTYPE{axis}']!r}")
        header[f"CTYPE{axis}"] = header[f"CTYPE{axis}"].strip()
    return corrections


def frequency_from_header(header: fits.Header, path: str) -> tuple[float, str]:
    """The frequency of an image without a spectral axis, from RESTFRQ/RESTFREQ.

    The file name's label is not used: it names the subband's lower edge (``41MHz``),
    about 2 MHz below the channel centre the other files' headers give (43.246 MHz),
    so a guess from it would add a wrong channel to the store.
    """
    for keyword in ("RESTFRQ", "RESTFREQ"):
        value = header.get(keyword)
        if value:
            return float(value), keyword
    raise BadInputFile(
        path,
        "2-D image with no frequency (no FREQ axis, RESTFRQ or RESTFREQ)",
        "add a FREQ axis (CTYPE3/CRVAL3) or RESTFRQ in Hz to its header",
    )


def completed_axes(header: fits.Header, source: SourceFile) -> list[str]:
    """Give an image of fewer than four data axes its spectral and STOKES axes, one pixel each.

    Axes the WCS declares beyond NAXIS (WCSAXES, or CTYPE3 of a 2-D image, as VLA FIRST
    cutouts have) become data axes as they are; a missing spectral axis is added at the
    RESTFRQ frequency; a missing STOKES axis as I. Keywords present are kept.
    """
    naxis = header["NAXIS"]
    if naxis >= 4:
        return []
    corrections = []
    declared = max(naxis, wcs_axis_count(header))
    wcs = header_wcs(header)
    kinds = [axis_type // 1000 for axis_type in wcs.wcs.axis_types[:declared]]
    if declared > naxis:
        names = ", ".join(str(header.get(f"CTYPE{axis}", "")) for axis in range(naxis + 1, declared + 1))
        corrections.append(f"made its declared WCS axes {naxis + 1}-{declared} ({names}) data axes of one pixel")
    axes = declared
    if 3 not in kinds:  # no spectral axis
        frequency, origin = frequency_from_header(header, source.path)
        axes += 1
        header.update({f"CTYPE{axes}": "FREQ", f"CRPIX{axes}": 1.0, f"CRVAL{axes}": frequency})
        header.update({f"CDELT{axes}": 1.0, f"CUNIT{axes}": "Hz"})
        corrections.append(f"added a FREQ axis at {frequency:.1f} Hz (from {origin})")
    if 1 not in kinds:  # no STOKES axis
        axes += 1
        header.update({f"CTYPE{axes}": "STOKES", f"CRPIX{axes}": 1.0, f"CRVAL{axes}": 1.0, f"CDELT{axes}": 1.0})
        corrections.append(f"added a STOKES axis ({STOKES_NAMES[1]})")
    header["NAXIS"] = axes
    for axis in range(naxis + 1, axes + 1):
        header[f"NAXIS{axis}"] = 1
    if "WCSAXES" in header:
        header["WCSAXES"] = max(int(header["WCSAXES"]), axes)
    return corrections


def cd_cards(header: fits.Header) -> dict[tuple[int, int], float]:
    """The CDi_j matrix elements of the primary WCS, by (i, j)."""
    return {(int(m[1]), int(m[2])): float(header[key]) for key in header if (m := _CD.fullmatch(key))}


def pc_from_cd(header: fits.Header, path: str) -> list[str]:
    """Rewrite a CD matrix as the same WCS in CDELT + PC (xradio reads no CD matrix).

    ``CD_ij = CDELT_i * PC_ij`` (WCS Paper I). CDELT_i is the length of column i of CD
    with the sign of its diagonal element (CDELT itself for an unrotated grid, and the
    CDELT of the CROTA2 form for a rotated one), so PC is the identity, or the rotation,
    exactly when it should be. Axes without any CD card keep their CDELT. CDELT, PC and
    CROTA cards of the rewritten axes are ignored by the standard when CD is present,
    and replaced.
    """
    elements = cd_cards(header)
    if not elements:
        return []
    axes = sorted({i for i, _ in elements} | {j for _, j in elements})
    scales = {axis: column_scale(elements, axes, axis) for axis in axes}
    if any(scale == 0.0 for scale in scales.values()):
        zero = [axis for axis, scale in scales.items() if scale == 0.0]
        raise BadInputFile(path, f"its CD matrix has no element for pixel axis {zero[0]}", "give the CD matrix in full")
    for key in list(header.keys()):
        if _CD.fullmatch(key) or set(replaced_axes(key)) & set(axes):
            header.remove(key, ignore_missing=True, remove_all=True)
    for i in axes:
        header[f"CDELT{i}"] = scales[i]
        for j in axes:
            value = elements.get((i, j), 0.0) / scales[i]
            if value != float(i == j):
                header[f"PC{i}_{j}"] = value
    written = " ".join(f"CDELT{axis}={scales[axis]:.9g}" for axis in axes)
    return [f"rewrote the CD matrix as CDELT + PC, the same WCS ({written})"]


def replaced_axes(key: str) -> tuple[int, ...]:
    """The axes a PC or CROTA keyword belongs to (PCi_j, PC0i_0j, PCiiijjj; CROTAi), or () for other keywords."""
    for pattern in (_PC, _PC_OLD, _CROTA):
        match = pattern.fullmatch(key)
        if match:
            return tuple(int(group) for group in match.groups())
    return ()


def column_scale(elements: dict[tuple[int, int], float], axes: list[int], column: int) -> float:
    """Signed length of column ``column`` of a CD matrix: the sign of its diagonal element (+ when 0)."""
    diagonal = elements.get((column, column), 0.0)
    others = [elements.get((row, column), 0.0) for row in axes if row != column]
    if not any(others):
        return diagonal
    return math.copysign(math.hypot(diagonal, *others), diagonal if diagonal != 0.0 else 1.0)


def missing_wcs_defaults(header: fits.Header) -> list[tuple[str, float]]:
    """The (keyword, FITS default) pairs a header lacks on its data axes; never a CDELT where CD gives the scale."""
    with_cd = {axis for pair in cd_cards(header) for axis in pair}
    return [
        (f"{keyword}{axis}", value)
        for axis in range(1, header["NAXIS"] + 1)
        for keyword, value in WCS_DEFAULTS
        if f"{keyword}{axis}" not in header and not (keyword == "CDELT" and axis in with_cd)
    ]


def wcs_defaults(header: fits.Header) -> list[str]:
    """Add the missing keywords with their FITS defaults (the loader needs them written)."""
    missing = missing_wcs_defaults(header)
    header.update(dict(missing))
    return [f"added {keyword}={value} (the FITS default)" for keyword, value in missing]


def invalid_cards(header: fits.Header) -> dict[str, tuple[str, str]]:
    """The cards that are not valid FITS (``CRDER1 = nan``, ``date-obs=``), by keyword: astropy's reason on one line, and the card as written."""
    invalid = {}
    for card in header.cards:
        if card.keyword in STRUCTURAL:
            continue
        try:
            card.verify("exception")
        except VerifyError as error:
            invalid[card.keyword] = (one_line(error), card.image)
    return invalid


def astropy_fix(image: str) -> fits.Card | None:
    """The card as astropy's ``output_verify="fix"`` writes it (``date-obs=`` upper-cased, ``nan`` quoted), or None when astropy cannot fix it."""
    card = fits.Card.fromstring(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        try:
            card.verify("fix")
            fixed = fits.Card.fromstring(card.image)  # as written: a fixed card's text is made anew
            fixed.verify("exception")
        except (VerifyError, ValueError):
            return None
    return fixed


def repaired(header: fits.Header, invalid: dict[str, tuple[str, str]]) -> list[str]:
    """Give a fixed copy's header each invalid card as astropy fixes it; drop only the cards astropy cannot fix.

    A copy must be valid FITS. Each card's change is returned in words, for the ledger.
    """
    corrections = []
    for keyword, (reason, image) in invalid.items():
        fixed = astropy_fix(image)
        if fixed is None:
            header.remove(keyword, ignore_missing=True, remove_all=True)
            corrections.append(f"dropped the card {keyword}: {reason} (astropy cannot fix it)")
            continue
        index = header.index(keyword)
        del header[index]
        header.insert(index, fixed)  # the card itself: a new value alone would keep its text (``date-obs``)
        corrections.append(
            f"fixed the card {keyword} as astropy does: {image.strip()!r} -> {fixed.image.strip()!r} ({reason})"
        )
    return corrections


def fixed_copy_path(source: SourceFile, fixed_dir: Path) -> Path:
    """Where the fixed copy of ``source`` goes (unique per source path)."""
    tag = hashlib.sha256(source.path.encode()).hexdigest()[:8]
    name = Path(source.name)
    name = name.with_suffix("") if name.suffix.lower() in COMPRESSED_SUFFIXES else name
    return fixed_dir / f"{name.stem}-{tag}_fixed.fits"


FIX_VERSION = 2
"""Version of what a fixed copy holds; copies of an earlier version are made again (version 1 kept a CD
matrix next to an invented CDELT = 1, and had no BEAMS table)."""


def source_fingerprint(source: SourceFile) -> str:
    """The fingerprint recorded in a fixed copy: its source's size and mtime, and the fix version."""
    return f"{source.size}:{source.mtime_ns}:v{FIX_VERSION}"


def reusable_fixed_copy(path: Path, source: SourceFile) -> bool:
    """True when ``path`` is a complete fixed copy made from this very version of ``source``."""
    if not path.is_file():
        return False
    try:
        return bool(fits.getval(path, FINGERPRINT_KEYWORD) == source_fingerprint(source))
    except (OSError, KeyError):
        return False


def write_fixed_copy(source: SourceFile, index: int, dest: Path, plan: FixPlan) -> None:
    """Write the pixels of HDU ``index`` with the planned header to ``dest``, atomically.

    The pixels become float32 physical values (astropy applies BSCALE/BZERO and BLANK),
    shaped as the planned NAXISn say; a CASA BEAMS table goes along.
    """
    with fits.open(source.path, memmap=False) as hdulist:  # scaled data cannot be memory-mapped
        data = np.asarray(hdulist[index].data, dtype=np.float32)
        beams = [hdu.copy() for hdu in hdulist[1:] if hdu.header.get("EXTNAME") == "BEAMS"]
    header = plan.header
    data = data.reshape([int(header[f"NAXIS{axis}"]) for axis in range(header["NAXIS"], 0, -1)])
    hdu = fits.PrimaryHDU(data=data)
    for card in header.cards:
        if card.keyword not in STRUCTURAL and not _NAXIS_N.fullmatch(card.keyword):
            hdu.header.append(card)
    hdu.header[FINGERPRINT_KEYWORD] = (source_fingerprint(source), "source size:mtime_ns:fix version")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + f".partial-{os.getpid()}")
    fits.HDUList([hdu, *beams]).writeto(partial, overwrite=True)
    os.replace(partial, dest)


def planned_fixed_copy(source: SourceFile, fixed_dir: str | os.PathLike[str]) -> Path | None:
    """Where ``make_readable`` puts the fixed copy of ``source``, or None when it needs none.

    Reads the header only; a file that cannot be read needs no copy (it fails later, with its reason).
    """
    try:
        with open_fits(source.path) as hdulist:
            index = image_hdu_index(hdulist, source.path)
            if not plan_fix(hdulist, index, source).needs_copy:
                return None
    except Exception:
        return None
    return fixed_copy_path(source, Path(fixed_dir))


READING = "reading it"


def make_readable(
    source: SourceFile, fixed_dir: str | os.PathLike[str] | None, keep_bad_checksums: bool = False
) -> ReadableFile:
    """Return a file the loader can read: the source itself, or a (re)used fixed copy.

    Parameters
    ----------
    source : SourceFile
        The input file.
    fixed_dir : path or None
        Folder for fixed copies. None is allowed as long as no file needs fixing.
    keep_bad_checksums : bool
        Store a file whose CHECKSUM/DATASUM do not match (recorded in its corrections,
        with a warning) instead of refusing it.

    Returns
    -------
    ReadableFile
        The path to open and the corrections (and recorded conversions) that path carries.

    Raises
    ------
    BadInputFile
        When the file is unreadable, truncated, corrupted (checksums), or needs a fix
        that cannot be made; library errors become this one line too.
    """
    with file_boundary(source.path, READING, REGENERATE), open_fits(source.path) as hdulist:
        index = image_hdu_index(hdulist, source.path)
        plan = plan_fix(hdulist, index, source)  # first: serializing a header makes astropy "fix" invalid cards
        check_complete(hdulist, index, source.path, plan.compression)
        kept = check_checksums(hdulist, index, source.path, keep_bad_checksums)
        for note in plan.notes:
            logger.info("%s: %s", source.path, note)  # the run warns once for all its files (ovro_ingest.notices)
        notices = file_notices(source, plan, kept)
        if not plan.needs_copy:
            return ReadableFile(source=source, path=source.path, corrections=(*plan.notes, *kept), notices=notices)
        if fixed_dir is None:
            raise BadInputFile(
                source.path,
                f"needs a fixed copy ({'; '.join(plan.corrections)})",
                "pass a fixed-file directory (--fixed-dir)",
            )
        dest = fixed_copy_path(source, Path(fixed_dir))
        if not reusable_fixed_copy(dest, source):
            write_fixed_copy(source, index, dest, plan)
    corrections = (*plan.corrections, *plan.notes, *kept)
    return ReadableFile(
        source=source, path=str(dest), corrections=corrections, compression=plan.compression, notices=notices
    )


def file_notices(source: SourceFile, plan: FixPlan, kept: list[str]) -> tuple[Notice, ...]:
    """What a person should know of a file the store takes: a lossy compression, float64 pixels, a kept checksum failure."""
    lossy = plan.compression.lossy if plan.compression else None
    return (
        *([Notice(kind="lossy", subject=source.path, detail=lossy)] if lossy else []),
        *([Notice(kind="float64", subject=source.path)] if plan.notes else []),
        *([Notice(kind="checksum", subject=source.path)] if kept else []),
    )


def make_time_step_readable(
    step: TimeStepFiles, fixed_dir: str | os.PathLike[str] | None, keep_bad_checksums: bool = False
) -> ReadableTimeStep:
    """Make every file of a time step readable (:func:`make_readable`); what discovery left out stays left out."""
    files = tuple(make_readable(source, fixed_dir, keep_bad_checksums) for source in step.files)
    return ReadableTimeStep(key=step.key, files=files, left_out=step.left_out)
