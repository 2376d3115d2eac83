"""Builders of unusual FITS files for the tests (made on the fly; no binary files in the repository)."""

from __future__ import annotations

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
