"""Step 2, fix headers: make every input file readable by the loader, copying only when needed.

Real OVRO-LWA files open unchanged with ``xradio.image.open_image``; those are
passed through untouched. A file gets a fixed copy in ``fixed_dir`` only when the
loader cannot read it as it is:

- its pixels are scaled integers (BSCALE/BZERO, which xradio refuses to memory-map),
- its image sits in an extension behind an empty primary HDU,
- a CTYPE value carries leading or trailing blanks,
- it lacks the STOKES axis (3-D) or the FREQ and STOKES axes (2-D; only when the
  frequency is known from RESTFRQ/RESTFREQ).

Keywords present in the file are never overwritten. Each correction is returned
in words, so that the store can record what was changed.

A fixed copy carries the fingerprint of its source (keyword ``SRCFPRT``) and is
reused only while the source is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from ovro_ingest.errors import BadInputFile
from ovro_ingest.models import ReadableFile, SourceFile

FINGERPRINT_KEYWORD = "SRCFPRT"
REGENERATE = "re-copy or regenerate the file, then run the ingest again"


def open_fits(path: str) -> fits.HDUList:
    """Open a FITS file for reading, turning unreadable files into one-line errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fits.open(path, memmap=True, lazy_load_hdus=False)
    except PermissionError as error:
        raise BadInputFile(path, "permission denied", "make the file readable by the ingest user") from error
    except FileNotFoundError as error:
        raise BadInputFile(path, "file disappeared", "check that nothing removes input files during the run") from error
    except (OSError, ValueError, TypeError) as error:
        problem = "empty file" if Path(path).stat().st_size == 0 else f"not a readable FITS file ({error})"
        raise BadInputFile(path, problem, REGENERATE) from error


def image_hdu_index(hdulist: fits.HDUList, path: str) -> int:
    """Index of the HDU holding the image: the primary, or the first image extension."""
    for index, hdu in enumerate(hdulist):
        if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2:
            return index
    raise BadInputFile(path, "no image HDU with at least two axes", REGENERATE)


def check_complete(hdulist: fits.HDUList, index: int, path: str) -> None:
    """Raise when the file is shorter than its header says (a truncated copy)."""
    header = hdulist[index].header
    n_pixels = int(np.prod([header[f"NAXIS{i}"] for i in range(1, header["NAXIS"] + 1)]))
    needed = hdulist.fileinfo(index)["datLoc"] + n_pixels * abs(header["BITPIX"]) // 8
    actual = Path(path).stat().st_size
    if actual < needed:
        raise BadInputFile(path, f"truncated FITS file ({actual} of {needed} bytes)", REGENERATE)


def frequency_from_header(header: fits.Header, source: SourceFile) -> tuple[float, str]:
    """The frequency of a 2-D image, from RESTFRQ/RESTFREQ.

    The file name's label is not used: it names the subband's lower edge (``41MHz``),
    about 2 MHz below the channel centre the other files' headers give (43.246 MHz),
    so a guess from it would add a wrong channel to the store.
    """
    for keyword in ("RESTFRQ", "RESTFREQ"):
        value = header.get(keyword)
        if value:
            return float(value), keyword
    raise BadInputFile(
        source.path,
        "2-D image with no frequency (no FREQ axis, RESTFRQ or RESTFREQ)",
        "add a FREQ axis (CTYPE3/CRVAL3) or RESTFRQ in Hz to its header",
    )


def needed_corrections(header: fits.Header, in_extension: bool, source: SourceFile) -> list[str]:
    """What must change for the loader to read an image with this header (empty: nothing)."""
    corrections = []
    if in_extension:
        corrections.append("moved the image from an extension HDU to the primary HDU")
    scaled = header.get("BSCALE", 1.0) != 1.0 or header.get("BZERO", 0.0) != 0.0
    if header["BITPIX"] > 0 or scaled:
        corrections.append(
            f"applied BSCALE={header.get('BSCALE', 1.0)} BZERO={header.get('BZERO', 0.0)} "
            f"to BITPIX={header['BITPIX']} pixels, stored as float32"
        )
    for axis in range(1, header["NAXIS"] + 1):
        ctype = header.get(f"CTYPE{axis}")
        if isinstance(ctype, str) and ctype != ctype.strip():
            corrections.append(f"stripped blanks from CTYPE{axis}={ctype!r}")
    if header["NAXIS"] == 2:
        frequency, origin = frequency_from_header(header, source)
        corrections.append(f"added a FREQ axis at {frequency:.1f} Hz (from {origin})")
    if header["NAXIS"] in (2, 3):
        corrections.append("added a STOKES axis (I)")
    corrections += [f"added {keyword}={value} (the FITS default)" for keyword, value in missing_wcs_defaults(header)]
    return corrections


WCS_DEFAULTS = (("CRPIX", 0.0), ("CDELT", 1.0), ("CRVAL", 0.0))
"""Keywords the FITS standard gives a default value when absent (WCS Paper I), and the loader requires."""


def missing_wcs_defaults(header: fits.Header) -> list[tuple[str, float]]:
    """The (keyword, FITS default) pairs a header lacks on the axes it has."""
    return [
        (f"{keyword}{axis}", value)
        for axis in range(1, header["NAXIS"] + 1)
        for keyword, value in WCS_DEFAULTS
        if f"{keyword}{axis}" not in header
    ]


def fixed_copy_path(source: SourceFile, fixed_dir: Path) -> Path:
    """Where the fixed copy of ``source`` goes (unique per source path)."""
    tag = hashlib.sha256(source.path.encode()).hexdigest()[:8]
    return fixed_dir / f"{Path(source.name).stem}-{tag}_fixed.fits"


def source_fingerprint(source: SourceFile) -> str:
    """The fingerprint recorded in a fixed copy."""
    return f"{source.size}:{source.mtime_ns}"


def reusable_fixed_copy(path: Path, source: SourceFile) -> bool:
    """True when ``path`` is a complete fixed copy made from this very version of ``source``."""
    if not path.is_file():
        return False
    try:
        return fits.getval(path, FINGERPRINT_KEYWORD) == source_fingerprint(source)
    except (OSError, KeyError):
        return False


def write_fixed_copy(source: SourceFile, index: int, dest: Path) -> None:
    """Write a corrected copy of the image in HDU ``index`` to ``dest`` atomically (see ``needed_corrections``)."""
    with fits.open(source.path, memmap=False) as hdulist:  # scaled data cannot be memory-mapped
        header = hdulist[index].header.copy()
        data = np.asarray(hdulist[index].data, dtype=np.float32)  # astropy applies BSCALE/BZERO and BLANK
    for keyword in ("BSCALE", "BZERO", "BLANK"):
        header.remove(keyword, ignore_missing=True)
    header.update(dict(missing_wcs_defaults(header)))
    for axis in range(1, header["NAXIS"] + 1):
        if isinstance(header.get(f"CTYPE{axis}"), str):
            header[f"CTYPE{axis}"] = header[f"CTYPE{axis}"].strip()
    if header["NAXIS"] == 2:
        frequency, _ = frequency_from_header(header, source)
        data = data[np.newaxis, :, :]
        header.update({"CTYPE3": "FREQ", "CRPIX3": 1.0, "CRVAL3": frequency, "CDELT3": 1.0, "CUNIT3": "Hz"})
    if data.ndim == 3:
        data = data[np.newaxis]
        header.update({"CTYPE4": "STOKES", "CRPIX4": 1.0, "CRVAL4": 1.0, "CDELT4": 1.0})
    hdu = fits.PrimaryHDU(data=data)
    for card in header.cards:
        if card.keyword not in hdu.header and card.keyword not in ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME"):
            hdu.header.append(card)
    hdu.header[FINGERPRINT_KEYWORD] = (source_fingerprint(source), "size:mtime_ns of the source file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + f".partial-{os.getpid()}")
    hdu.writeto(partial, overwrite=True)
    os.replace(partial, dest)


def planned_fixed_copy(source: SourceFile, fixed_dir: str | os.PathLike[str]) -> Path | None:
    """Where ``make_readable`` puts the fixed copy of ``source``, or None when it needs none.

    Reads the header only; a file that cannot be read needs no copy (it fails later, with its reason).
    """
    try:
        with open_fits(source.path) as hdulist:
            index = image_hdu_index(hdulist, source.path)
            if not needed_corrections(hdulist[index].header, index > 0, source):
                return None
    except Exception:
        return None
    return fixed_copy_path(source, Path(fixed_dir))


def make_readable(source: SourceFile, fixed_dir: str | os.PathLike[str] | None) -> ReadableFile:
    """Return a file the loader can read: the source itself, or a (re)used fixed copy.

    Parameters
    ----------
    source : SourceFile
        The input file.
    fixed_dir : path or None
        Folder for fixed copies. None is allowed as long as no file needs fixing.

    Returns
    -------
    ReadableFile
        The path to open and the corrections that path carries.

    Raises
    ------
    BadInputFile
        When the file is unreadable, truncated, or needs a fix that cannot be made.
    """
    with open_fits(source.path) as hdulist:
        index = image_hdu_index(hdulist, source.path)
        check_complete(hdulist, index, source.path)
        corrections = needed_corrections(hdulist[index].header, index > 0, source)
        if not corrections:
            return ReadableFile(source=source, path=source.path)
        if fixed_dir is None:
            raise BadInputFile(
                source.path,
                f"needs a fixed copy ({'; '.join(corrections)})",
                "pass a fixed-file directory (--fixed-dir)",
            )
        dest = fixed_copy_path(source, Path(fixed_dir))
        if not reusable_fixed_copy(dest, source):
            write_fixed_copy(source, index, dest)
    return ReadableFile(source=source, path=str(dest), corrections=tuple(corrections))
