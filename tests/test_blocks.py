"""The IngestSettings block: saved and loaded through a real Prefect server, validated, and filling in run parameters."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from blocks import IngestSettings
from flows.request import resolve_request
from ovro_ingest.handle import Store

pytestmark = pytest.mark.orchestration


def settings(tmp_path, **changes) -> IngestSettings:
    values = {"input_root": str(tmp_path / "nights"), "store": str(tmp_path / "archive.zarr"), **changes}
    return IngestSettings(**values)


@pytest.mark.usefixtures("prefect_server")
def test_the_block_is_saved_by_name_and_loaded_back(tmp_path):
    settings(tmp_path, chunk_lm=512, codec="zstd").save("test-nightly", overwrite=True)
    loaded = IngestSettings.load("test-nightly")
    assert loaded.store == str(tmp_path / "archive.zarr") and loaded.chunk_lm == 512 and loaded.codec == "zstd"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"store": "archive.zarr"}, "is not an absolute path"),
        ({"chunk_lm": 8}, "greater than or equal to 16"),
        ({"codec": "gzip"}, "'lz4', 'zstd' or 'none'"),
        ({"zarr_format": 4}, "2 or 3"),
        ({"dask_address": "my-cluster"}, "is not a Dask scheduler address"),
        ({"night_format": "%Y/%m/%d"}, "one folder name per day"),
        ({"workers": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(tmp_path, changes, message):
    with pytest.raises(ValidationError, match=message):
        settings(tmp_path, **changes)


def test_the_nightly_folder_is_yesterdays_unless_a_night_is_given(tmp_path):
    block = settings(tmp_path, night_format="%Y%m%d")
    assert block.night_dir(today=date(2026, 11, 26)) == str(tmp_path / "nights" / "20261125")
    assert block.night_dir("2024-05-24") == str(tmp_path / "nights" / "20240524")


@pytest.mark.usefixtures("prefect_server")
def test_run_parameters_win_over_the_block_and_the_block_over_defaults(tmp_path):
    settings(tmp_path, chunk_lm=256, workers=3).save("test-request", overwrite=True)
    request = resolve_request(None, None, "test-request", night="2024-05-24", codec="zstd")
    assert request.input_dir == str(tmp_path / "nights" / "2024-05-24")
    assert request.store == Store.at(tmp_path / "archive.zarr")
    assert (request.settings.chunk_lm, request.settings.codec, request.workers) == (256, "zstd", 3)
    assert request.fixed_dir == str(tmp_path / "archive.zarr.work" / "fixed")
    with pytest.raises(ValueError, match="give input_dir and store"):
        resolve_request(None, None)
