"""Builders of unusual FITS files for the tests (made on the fly; no binary files in the repository)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from ovro_ingest.models import SourceFile
from ovro_ingest.synth import DEFAULT_START, Subband, header_for, subbands


def synthetic_header(size: int = 32, band: Subband | None = None) -> fits.Header:
    """A realistic OVRO-LWA-like header."""
    return header_for(size, band or subbands(10)[0], DEFAULT_START)


def write_fits(path: Path, data: np.ndarray, header: fits.Header) -> SourceFile:
    """Write ``data`` with ``header`` (axis keywords follow the data) and return its record."""
    hdu = fits.PrimaryHDU(data=data)
    for card in header.cards:
        if card.keyword not in hdu.header or card.keyword.startswith(("C", "B")):
            hdu.header[card.keyword] = (card.value, card.comment)
    hdu.writeto(path, overwrite=True)
    return SourceFile.from_path(path, "41MHz")


def scaled_integer_image(path: Path, size: int = 32) -> tuple[SourceFile, np.ndarray]:
    """An int16 image with BSCALE/BZERO; returns its record and the physical values."""
    rng = np.random.default_rng(1)
    raw = rng.integers(-3000, 3000, (1, 1, size, size), dtype=np.int16)
    header = synthetic_header(size)
    header["BSCALE"], header["BZERO"] = 0.25, 10.0
    hdu = fits.PrimaryHDU(data=raw)
    for card in header.cards:
        if card.keyword not in ("BSCALE", "BZERO", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "NAXIS4"):
            hdu.header[card.keyword] = card.value
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.25, 10.0
    hdu.writeto(path, overwrite=True, output_verify="silentfix")
    return SourceFile.from_path(path, "41MHz"), raw.astype(np.float64) * 0.25 + 10.0


def edit(path: Path, change) -> Path:
    """Rewrite a FITS file in place as ``change(hdulist)`` returns it, or as it changed it (astropy writes it)."""
    with fits.open(path) as hdulist:
        hdulist = fits.HDUList([hdu.copy() for hdu in hdulist])
    hdulist = change(hdulist) or hdulist
    hdulist.writeto(path, overwrite=True, output_verify="silentfix")
    return path


def set_cards(**cards):
    """A change for :func:`edit`: set (or, with None, remove) primary header cards; ``DATE_OBS`` means ``DATE-OBS``."""

    def change(hdulist):
        header = hdulist[0].header
        for name, value in cards.items():
            keyword = (
                name.replace("_", "-") if name in ("DATE_OBS", "TIME_OBS", "MJD_OBS", "DATE_BEG", "MJD_BEG") else name
            )
            if value is None:
                header.remove(keyword, ignore_missing=True)
            else:
                header[keyword] = value

    return change


def raw_card(path: Path, keyword: str, card: str) -> None:
    """Replace the 80-byte card of ``keyword`` by ``card`` as it is: a value astropy would never write (``nan``)."""
    raw = bytearray(path.read_bytes())
    start = raw.index(keyword.ljust(8).encode() + b"=")
    raw[start : start + 80] = card.ljust(80).encode()
    path.write_bytes(bytes(raw))


def casa_beams(bmaj: float, bmin: float, bpa: float, size_unit: str | None = "arcsec") -> fits.BinTableHDU:
    """A CASA ``BEAMS`` table of one channel and one polarization (CASA writes sizes in arcsec, BPA in deg)."""
    columns = [
        fits.Column(name="BMAJ", format="E", unit=size_unit, array=[bmaj]),
        fits.Column(name="BMIN", format="E", unit=size_unit, array=[bmin]),
        fits.Column(name="BPA", format="E", unit="deg", array=[bpa]),
        fits.Column(name="CHAN", format="J", array=[0]),
        fits.Column(name="POL", format="J", array=[0]),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="BEAMS")
    table.header["NCHAN"], table.header["NPOL"] = 1, 1
    return table


def first_cutout(hdulist: fits.HDUList) -> fits.HDUList:
    """The image as a VLA FIRST cutout has it (a change for :func:`edit`).

    2-D pixels with four WCS axes declared (``CTYPE3 = 'FREQ'`` at 1.3649 GHz,
    ``CTYPE4 = 'STOKES'``), CROTAn cards, the deprecated EPOCH for EQUINOX, no WCSAXES.
    """
    source = hdulist[0].header
    flat = fits.PrimaryHDU(data=hdulist[0].data[0, 0])
    for axis in (1, 2, 3, 4):
        for key in ("CTYPE", "CRVAL", "CDELT", "CRPIX"):
            flat.header[f"{key}{axis}"] = source[f"{key}{axis}"]
        flat.header[f"CROTA{axis}"] = 0.0
    flat.header["CRVAL3"], flat.header["CDELT3"] = 1.3649e9, 2.1875e7
    for key in ("BMAJ", "BMIN", "BPA", "BUNIT", "DATE-OBS", "TELESCOP"):
        flat.header[key] = source[key]
    flat.header["EPOCH"] = 2000.0
    return fits.HDUList([flat])


def tile_compressed(extension: int = 1, **compression):
    """A change for :func:`edit`: the image as a ``CompImageHDU`` in ``extension`` (astropy's defaults quantize floats)."""

    def change(hdulist: fits.HDUList) -> fits.HDUList:
        image = fits.CompImageHDU(data=hdulist[0].data, header=hdulist[0].header, **compression)
        others = [fits.BinTableHDU.from_columns([fits.Column("X", "E", array=np.zeros(2))])] * (extension - 1)
        return fits.HDUList([fits.PrimaryHDU(), *others, image, *hdulist[1:]])

    return change


def compress_whole_file(path: Path, method: str, name: str | None = None) -> Path:
    """Compress ``path`` whole with ``method`` (gzip, bzip2, xz, zip) into ``name`` (default: the same name)."""
    raw = path.read_bytes()
    path.unlink()
    target = path.with_name(name or path.name)
    if method == "zip":
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(path.name, raw)
    else:
        target.write_bytes({"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[method](raw))
    return target
