"""The five tasks of many time steps, run with bounded work in flight.

Each task of a time step is submitted once the task before it has finished, with that
task's result (never a future that is still running, which costs Prefect an API call per
input and a blocked thread); the commits (``append``) run one at a time in time order;
at most ``steps_in_flight`` time steps are open at once, and a time step is let go as
soon as its outcome is known. Memory and threads do not grow with the number of time
steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass

from prefect.futures import PrefectConcurrentFuture
from prefect.states import State

from flows.summary import StepOutcome
from ovro_ingest.handle import Store
from ovro_ingest.models import AppendReceipt, Notice, StagedTimeStep, TimeStepFiles, TimeStepPlan
from tasks.append_to_zarr import append_to_zarr, write_to_staging
from tasks.combine_frequencies import combine_frequencies
from tasks.fix_headers import fix_headers
from tasks.load_subbands import load_subbands


@dataclass
class StepRun:
    """One time step on its way through the five tasks."""

    step: TimeStepFiles
    running: PrefectConcurrentFuture | None = None
    """The task of this time step that runs now, if any."""
    plan: TimeStepPlan | None = None
    staged: StagedTimeStep | None = None
    """Set once written to staging: the time step waits for its turn to commit."""
    outcome: StepOutcome | None = None
    """Set once the time step is done (committed, already stored, or failed)."""
    done: int = 0
    """How many of its five tasks (fix, load, combine, write, append) have completed."""


def run_time_steps(
    steps: Sequence[TimeStepFiles],
    store: Store,
    fixed_dir: str,
    replace: bool = False,
    keep_bad_beams: bool = False,
    keep_bad_checksums: bool = False,
    steps_in_flight: int = 4,
) -> Iterator[StepOutcome]:
    """Fix, load, combine, write and append every time step of ``steps``; yield their outcomes in time order.

    Runs inside a flow run (the tasks go to its task runner). ``steps`` are in time
    order; at most ``steps_in_flight`` of them are open at once.
    """
    upcoming = iter(steps)
    open_runs: deque[StepRun] = deque()
    running: dict[object, StepRun] = {}

    def submit(run: StepRun, future: PrefectConcurrentFuture) -> None:
        run.running = future
        running[future.wrapped_future] = run

    def open_more() -> None:
        while len(open_runs) < steps_in_flight:
            step = next(upcoming, None)
            if step is None:
                return
            run = StepRun(step)
            open_runs.append(run)
            submit(run, fix_headers.submit(step, fixed_dir, keep_bad_checksums))

    def next_task(run: StepRun, finished: PrefectConcurrentFuture) -> None:
        """Submit the task after ``finished`` for ``run`` with its result, or settle the time step's outcome."""
        finished.wait()
        state: State = finished.state
        run.running = None
        if not state.is_completed():
            run.outcome = failed_outcome(run.step, state)
            return
        result = finished.result()
        run.done += 1
        if run.done == 1:  # fixed
            submit(run, load_subbands.submit(result))
        elif run.done == 2:  # loaded
            submit(run, combine_frequencies.submit(result, keep_bad_beams))
        elif run.done == 3:  # planned
            run.plan = result
            submit(run, write_to_staging.submit(result, store, replace))
        elif run.done == 4:  # staged: its commit waits for every earlier time step to be done
            run.staged = result
        else:  # committed
            run.outcome = stored_outcome(run.step, result, run.plan, cached=state.name == "Cached")

    open_more()
    while open_runs:
        while open_runs and open_runs[0].outcome is not None:
            yield open_runs.popleft().outcome
            open_more()
        if not open_runs:
            return
        head = open_runs[0]
        if head.staged is not None and head.running is None:  # the earliest open time step commits next
            submit(head, append_to_zarr.submit(head.staged, store))
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for wrapped in done:
            run = running.pop(wrapped)
            next_task(run, run.running)


def failed_outcome(step: TimeStepFiles, state: State) -> StepOutcome:
    """A time step whose task ended in ``state`` (not completed): its error, as the task's exception says it."""
    error = state.result(raise_on_failure=False) if state.is_failed() or state.is_crashed() else None
    message = str(error) if isinstance(error, BaseException) else (state.message or state.name)
    return StepOutcome(key=step.key, n_files=len(step.files), status="failed", error=message)


def stored_outcome(step: TimeStepFiles, receipt: AppendReceipt, plan: TimeStepPlan | None, cached: bool) -> StepOutcome:
    """A committed time step; a cached receipt tells of work an earlier run did ("already stored")."""
    left_out = list(plan.excluded) if plan else []
    if cached:
        return StepOutcome(
            key=step.key,
            n_files=len(step.files),
            n_subbands=receipt.n_subbands,
            status="already stored",
            index=receipt.index,
            left_out=left_out,
        )
    return StepOutcome(
        key=step.key,
        n_files=len(step.files),
        n_subbands=receipt.n_subbands,
        status=receipt.status,
        index=receipt.index,
        bytes_written=receipt.bytes_written,
        seconds=receipt.seconds,
        left_out=left_out,
        notices=stored_notices(plan, receipt),
    )


def stored_notices(plan: TimeStepPlan | None, receipt: AppendReceipt) -> list[Notice]:
    """What a person should know of a committed time step: its files' and its own notices once stored, and the commit's."""
    stored = plan is not None and receipt.status != "already stored"
    return [*(plan.notices if plan is not None and stored else ()), *receipt.notices]
