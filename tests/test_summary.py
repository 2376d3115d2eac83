"""The run summary's one line and its counts: they add up to the run's time steps."""

import pytest

from flows.summary import STATUSES, IngestSummary, StepOutcome

pytestmark = pytest.mark.orchestration


def summary_of(*statuses: str) -> IngestSummary:
    outcomes = [StepOutcome(key=f"20240524_0500{i:02d}", n_files=2, status=s) for i, s in enumerate(statuses)]
    return IngestSummary(store="night.zarr", outcomes=outcomes)


def test_the_one_line_counts_replaced_time_steps_so_that_the_counts_add_up():
    summary = summary_of("replaced", "already stored", "already stored", "written", "failed")
    assert summary.one_line() == "5 time steps: 1 written, 1 replaced, 2 already stored, 1 failed"
    assert summary.as_dict()["counts"] == {"written": 1, "replaced": 1, "already stored": 2, "failed": 1}


def test_the_one_line_leaves_replaced_out_when_a_run_replaced_nothing():
    assert summary_of("written", "already stored").one_line() == "2 time steps: 1 written, 1 already stored, 0 failed"


def test_every_status_a_time_step_can_end_in_is_counted():
    summary = summary_of(*STATUSES)
    assert sum(summary.as_dict()["counts"].values()) == len(STATUSES) and summary.changed


def test_files_stored_from_a_lossy_compression_are_named_in_one_line_per_run():
    assert summary_of("written").lossy_note() is None
    lossy = [[f"/night/{i}-{band}-I-image.fits" for band in ("41MHz", "46MHz")] for i in range(4)]
    outcomes = [StepOutcome(key=f"k{i}", n_files=2, status="written", lossy=paths) for i, paths in enumerate(lossy)]
    note = IngestSummary(store="night.zarr", outcomes=outcomes).lossy_note()
    assert note is not None and "\n" not in note
    assert note.startswith("8 file(s) were stored from a lossy compression") and "and 3 more" in note
    assert "0-41MHz-I-image.fits" in note
