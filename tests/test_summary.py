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


def test_what_a_person_should_know_is_said_in_one_line_per_kind_per_run():
    from ovro_ingest.models import Notice

    assert summary_of("written").warnings() == []
    lossy = [Notice(kind="lossy", subject=f"/night/{i}-{band}-I-image.fits") for i in range(4) for band in ("41", "46")]
    late = [Notice(kind="spread", subject=f"k{i}", detail="5.0 s") for i in range(2)]
    outcomes = [
        StepOutcome(key=f"k{i}", n_files=2, status="written", notices=lossy[2 * i : 2 * i + 2]) for i in range(4)
    ]
    outcomes[0] = outcomes[0].model_copy(update={"notices": [*outcomes[0].notices, *late]})
    lines = IngestSummary(store="night.zarr", outcomes=outcomes).warnings()
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith("8 file(s) were stored from a lossy compression") and "and 5 more" in lines[0]
    assert "0-41-I-image.fits" in lines[0] and lines[1].startswith("2 time step(s)") and "k0 (5.0 s)" in lines[1]


def test_a_time_step_already_stored_tells_only_what_its_commit_found_not_its_files_notices():
    from flows.time_steps import stored_notices
    from ovro_ingest.models import AppendReceipt, Notice, TimeStepPlan

    plan = TimeStepPlan(key="k", time_mjd=60454.2, subbands=(), notices=(Notice(kind="lossy", subject="/a.fits"),))
    changed = Notice(kind="changed", subject="k", detail="a.fits: content differs (pixels)")
    receipt = AppendReceipt(
        key="k", time_mjd=60454.2, store_id="s", index=0, status="already stored", n_subbands=1, bytes_written=0,
        seconds=0.1, notices=(changed,),
    )  # fmt: skip
    assert stored_notices(plan, receipt) == [changed], "the stored version's files were not this run's"
    written = receipt.model_copy(update={"status": "written", "notices": ()})
    assert stored_notices(plan, written) == list(plan.notices)
