"""A file astropy can open is never called truncated: compressed images are read as astropy decodes them.

Tile-compressed images (``CompImageHDU``, in any extension, lossy or lossless) and whole
files compressed with gzip, bzip2, xz or zip (recognised by content, whatever the name)
are read through a fixed copy, bit for bit as astropy decodes them; the ledger records
the compression, and a lossy one is said once in the run's summary (tests/test_bad_input.py
checks that line on the CLI). The completeness check judges what the file is: the
binary table of a tile-compressed image, the decompressed length of a compressed file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

from ovro_ingest.audit import audit_directory, audit_file
from ovro_ingest.combine import combine_frequencies, open_time_step
from ovro_ingest.discover import discover_time_steps
from ovro_ingest.errors import BadInputFile
from ovro_ingest.headers import make_readable
from ovro_ingest.load import load_subband
from ovro_ingest.models import LoadedTimeStep, SourceFile
from ovro_ingest.pipeline import ingest_directory
from ovro_ingest.store import StoreSettings, read_state
from tests.fits_cases import compress_whole_file, edit, tile_compressed

SETTINGS = StoreSettings(chunk_lm=32)
LOSSY = {"compression_type": "RICE_1"}
"""fpack's default: floating-point pixels quantized (NOISEBIT 16), then Rice-coded."""


def one_image(make_data, size=32):
    """One synthetic image (the 41MHz subband), ``size``² pixels."""
    return next(make_data(time_steps=1, n_subbands=1, size=size).glob("*.fits"))


def stored_pixels(path, tmp_path):
    """The image as the ingest stores it (one subband, one time step), and the file as the ingest read it."""
    readable = make_readable(SourceFile.from_path(path, "41MHz"), tmp_path / "fixed")
    plan = combine_frequencies(LoadedTimeStep(key="20240524_050009", subbands=(load_subband(readable),)))
    return open_time_step(plan)["SKY"].values[0, 0, 0], readable


def decoded(path, extension):
    """The image's pixels as astropy decodes them, in the store's (l, m) order."""
    with fits.open(path) as hdulist:
        return np.asarray(hdulist[extension].data[0, 0]).T


@pytest.mark.parametrize(
    ("compression", "extension", "lossy"),
    [
        (LOSSY, 1, True),
        ({"compression_type": "GZIP_2"}, 1, True),
        ({"compression_type": "RICE_1", "quantize_method": 2}, 1, True),  # SUBTRACTIVE_DITHER_2
        ({"compression_type": "GZIP_2", "quantize_level": 0}, 1, False),  # lossless: bigger than the raw file
        ({"compression_type": "HCOMPRESS_1", "tile_shape": (1, 1, 32, 32), "hcomp_scale": 2.5}, 2, True),
    ],
)
def test_a_tile_compressed_image_in_any_extension_is_stored_as_astropy_decodes_it(
    make_data, tmp_path, compression, extension, lossy
):
    path = edit(one_image(make_data), tile_compressed(extension, **compression))
    pixels, readable = stored_pixels(path, tmp_path)
    np.testing.assert_array_equal(pixels, decoded(path, extension))
    assert readable.compression is not None and readable.compression.tiles == compression["compression_type"]
    assert bool(readable.compression.lossy) is lossy
    assert readable.corrections[0].startswith(f"decompressed its {compression['compression_type']} image tiles")
    assert audit_file(SourceFile.from_path(path, "41MHz")).error is None


@pytest.mark.parametrize("method", ["gzip", "bzip2", "xz", "zip"])
@pytest.mark.parametrize("suffix", [".fits", ".fits.{ending}"])
def test_a_whole_file_compression_is_recognised_by_content_whatever_the_file_is_named(
    make_data, tmp_path, method, suffix
):
    source = one_image(make_data)
    raw = decoded(source, 0)
    ending = {"gzip": "gz", "bzip2": "bz2", "xz": "xz", "zip": "zip"}[method]
    path = compress_whole_file(source, method, source.name.removesuffix(".fits") + suffix.format(ending=ending))
    assert [f.path for step in discover_time_steps(path.parent).time_steps for f in step.files] == [str(path)]
    pixels, readable = stored_pixels(path, tmp_path)
    np.testing.assert_array_equal(pixels, raw)
    assert readable.compression is not None and readable.compression.whole_file == method
    assert not readable.compression.lossy and readable.corrections[0] == f"decompressed the file ({method})"


def refusal(path, tmp_path) -> str:
    with pytest.raises(BadInputFile) as caught:
        stored_pixels(path, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "re-copy or regenerate" in message
    assert audit_file(SourceFile.from_path(path, "41MHz")).error == message, "the audit predicts the same refusal"
    return message


def test_the_completeness_check_judges_what_the_file_is_not_its_name_or_size(make_data, tmp_path):
    lossy = edit(one_image(make_data, size=128), tile_compressed(1, **LOSSY))
    with fits.open(lossy) as hdulist:
        uncompressed = hdulist.fileinfo(1)["datLoc"] + hdulist[1].data.nbytes
    assert lossy.stat().st_size < uncompressed, "shorter than its pixels uncompressed would need, and whole"
    assert stored_pixels(lossy, tmp_path)[1].compression is not None

    cut = edit(one_image(make_data), tile_compressed(1, **LOSSY))
    cut.write_bytes(cut.read_bytes()[:-2000])
    assert "truncated RICE_1 tile-compressed FITS file (" in refusal(cut, tmp_path)

    cut_stream = compress_whole_file(one_image(make_data), "gzip")
    cut_stream.write_bytes(cut_stream.read_bytes()[:-500])
    assert "truncated gzip-compressed file (its compressed stream ends early)" in refusal(cut_stream, tmp_path)

    plain = one_image(make_data)
    plain.write_bytes(plain.read_bytes()[:-3000])
    assert f"truncated FITS file ({plain.stat().st_size} bytes, its header needs " in refusal(plain, tmp_path), (
        "the size ls -l shows"
    )

    short_inside = one_image(make_data)
    short_inside.write_bytes(short_inside.read_bytes()[:-3000])  # past the padding, into the pixels
    whole = compress_whole_file(short_inside, "gzip")
    assert "bytes decompressed, its header needs" in refusal(whole, tmp_path), "a whole gzip stream of a cut FITS file"


def test_a_night_of_compressed_files_is_stored_bit_for_bit_with_each_compression_in_the_ledger(make_data, tmp_path):
    night = make_data(time_steps=2, n_subbands=2, size=32)
    first, second = (sorted(night.glob(f"*{band}*.fits")) for band in ("41MHz", "46MHz"))
    edit(first[0], tile_compressed(1, **LOSSY))  # named .fits
    gz = compress_whole_file(second[0], "gzip", second[0].name + ".gz")
    fz = [edit(path, tile_compressed(1, compression_type="GZIP_2", quantize_level=0)) for path in (first[1], second[1])]
    fz = [path.rename(path.with_name(path.name + ".fz")) for path in fz]  # fpack's names
    assert audit_directory(night).ok
    ingest_directory(night, tmp_path / "s.zarr", fixed_dir=str(tmp_path / "fixed"), settings=SETTINGS)

    ds = xr.open_zarr(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ds["SKY"].values[0, 0, 0], decoded(first[0], 1))
    np.testing.assert_array_equal(ds["SKY"].values[0, 1, 0], decoded(gz, 0))
    np.testing.assert_array_equal(ds["SKY"].values[1, 0, 0], decoded(fz[0], 1))
    ledgers = [json.loads(str(entry)) for entry in ds["source_files"].values]
    compressions = [[entry.get("compression") for entry in ledger] for ledger in ledgers]
    assert compressions[0][0]["tiles"] == "RICE_1" and compressions[0][0]["lossy"].startswith("floating-point pixels")
    assert compressions[0][1] == {"whole_file": "gzip", "tiles": None, "lossy": None}
    assert compressions[1] == [{"whole_file": None, "tiles": "GZIP_2", "lossy": None}] * 2
    assert read_state(tmp_path / "s.zarr").n_time == 2
