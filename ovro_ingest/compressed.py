"""What a compressed FITS file is: whole-file compression, tile compression, and whether it lost precision.

astropy opens compressed FITS by content, whatever the file is named: a whole file
compressed with gzip, bzip2, xz or zip (recognised by its first bytes), and
tile-compressed images (``CompImageHDU``, the FITS tiled image convention that fpack
writes, in any extension). The ingest reads both as astropy decodes them, always
through a fixed copy (the loader memory-maps uncompressed files only).

Tile compression of floating-point pixels is usually *lossy*: the pixels are quantized
to integers per tile (``ZSCALE``/``ZZERO``, ``ZQUANTIZ``) before compression, so what
astropy decodes is not what the imager wrote. That is recorded, not refused: the
decoded pixels are all there is.

The completeness check (:func:`stored_bytes`, :func:`needed_bytes`) compares what the
header needs with what the file holds: for a tile-compressed image the binary table
its data really is, for a whole-file compressed file its decompressed length.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import warnings
import zipfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from ovro_ingest.models import Compression

WHOLE_FILE_MAGIC: dict[bytes, str] = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}
"""The first bytes of each whole-file compression astropy opens, and its name."""
COMPRESSED_SUFFIXES = (".gz", ".fz", ".bz2", ".xz", ".zip")
"""The endings of compressed FITS files' names (``.fits.gz``, fpack's ``.fits.fz``, ...), in lower case."""
_LOSSLESS_QUANTIZE = "NONE"
FLOAT_BITPIX = (-32, -64)


def whole_file_compression(path: str) -> str | None:
    """The whole-file compression of ``path`` (``"gzip"``, ``"bzip2"``, ``"xz"``, ``"zip"``) by its first bytes, or None."""
    with open(path, "rb") as stream:
        start = stream.read(6)
    return next((name for magic, name in WHOLE_FILE_MAGIC.items() if start.startswith(magic)), None)


def compression_of(hdulist: fits.HDUList, index: int, path: str) -> Compression | None:
    """How the image of HDU ``index`` is compressed, or None when it is not.

    Parameters
    ----------
    hdulist : astropy.io.fits.HDUList
        The file, opened by astropy (which decompresses on reading).
    index : int
        The image HDU.
    path : str
        The file, to read its first bytes and, for a tile-compressed image, the
        compression cards astropy hides (``ZCMPTYPE``, ``ZQUANTIZ``, ``ZSCALE``).

    Returns
    -------
    Compression or None
        The whole-file compression (from the first bytes), the tile compression
        (``ZCMPTYPE``) and, when the pixels were quantized, why it is lossy.
    """
    whole = whole_file_compression(path)
    if not isinstance(hdulist[index], fits.CompImageHDU):
        return Compression(whole_file=whole) if whole else None
    table = raw_header(path, index)
    return Compression(whole_file=whole, tiles=str(table.get("ZCMPTYPE", "unknown")), lossy=tile_loss(table))


def raw_header(path: str, index: int) -> fits.Header:
    """The header of HDU ``index`` as written: for a tile-compressed image, its binary table's (``Z*`` cards, columns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a truncated file warns; the completeness check says it in one line
        with fits.open(path, disable_image_compression=True, lazy_load_hdus=True) as hdulist:
            return hdulist[index].header.copy()


def tile_loss(table: fits.Header) -> str | None:
    """Why a tile-compressed image's decoded pixels differ from the written ones, or None for a lossless compression.

    Floating-point pixels are quantized when the table has a ``ZSCALE`` column or keyword,
    unless ``ZQUANTIZ = 'NONE'`` (FITS tiled image convention, §4); HCOMPRESS with a
    ``SCALE`` above 0 loses precision of any pixels.
    """
    columns = {table.get(f"TTYPE{i}") for i in range(1, table.get("TFIELDS", 0) + 1)}
    quantized = table.get("ZQUANTIZ", "NO_DITHER") != _LOSSLESS_QUANTIZE and ("ZSCALE" in columns or "ZSCALE" in table)
    if table.get("ZBITPIX") in FLOAT_BITPIX and quantized:
        return f"floating-point pixels quantized ({table.get('ZQUANTIZ', 'NO_DITHER')}) before {table.get('ZCMPTYPE')}"
    parameters = {table.get(f"ZNAME{i}"): table.get(f"ZVAL{i}") for i in range(1, 10) if f"ZNAME{i}" in table}
    if table.get("ZCMPTYPE") == "HCOMPRESS_1" and (parameters.get("SCALE") or 0) > 0:
        return f"HCOMPRESS_1 with SCALE = {parameters['SCALE']} (lossy)"
    return None


DECOMPRESSORS: dict[str, type[gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile]] = {
    "gzip": gzip.GzipFile,
    "bzip2": bz2.BZ2File,
    "xz": lzma.LZMAFile,
}
"""A reader of each whole-file compression but zip's."""


def decompressed_length(path: str, method: str) -> int | None:
    """The length of ``path`` decompressed, in bytes, or None when its compressed stream ends early (a truncated copy)."""
    length = 0
    try:
        if method == "zip":  # astropy reads a zip's first member; its directory is at the end, so a cut zip has none
            with zipfile.ZipFile(path) as archive:
                return archive.infolist()[0].file_size
        with DECOMPRESSORS[method](path) as stream:
            while block := stream.read(1 << 22):
                length += len(block)
    except (EOFError, OSError, lzma.LZMAError, zipfile.BadZipFile):
        return None
    return length


def needed_bytes(hdulist: fits.HDUList, index: int, path: str) -> int:
    """How long the file must be (decompressed, when whole-file compressed) to hold HDU ``index``'s data, in bytes.

    The data of an HDU take ``|BITPIX|/8 · GCOUNT · (PCOUNT + NAXIS1 · … · NAXISn)`` bytes
    (FITS 4.0 §4.4.1.1) from where they start; for a tile-compressed image these are the
    binary table's cards (its heap is PCOUNT).
    """
    header = raw_header(path, index) if isinstance(hdulist[index], fits.CompImageHDU) else hdulist[index].header
    axes = [int(header[f"NAXIS{axis}"]) for axis in range(1, int(header["NAXIS"]) + 1)]
    size = (
        abs(int(header["BITPIX"]))
        // 8
        * int(header.get("GCOUNT", 1))
        * (int(header.get("PCOUNT", 0)) + int(np.prod(axes)))
    )
    start: int = hdulist.fileinfo(index)["datLoc"]
    return start + size


def stored_bytes(path: str, compression: Compression | None) -> int | None:
    """The bytes the file holds: its size on disk, or decompressed; None when its compressed stream is cut short."""
    if compression is None or compression.whole_file is None:
        return Path(path).stat().st_size
    return decompressed_length(path, compression.whole_file)
