"""What an ingest run did, per time step: the flow's return value and the CLI's report."""

from __future__ import annotations

from collections.abc import Sequence

from prefect.futures import PrefectFuture
from pydantic import BaseModel

from ovro_ingest.models import AppendReceipt, TimeStepFiles


class StepOutcome(BaseModel):
    """The outcome of one time step."""

    key: str
    n_files: int
    n_subbands: int = 0
    status: str
    """``written``, ``already stored`` or ``failed``."""
    index: int | None = None
    bytes_written: int = 0
    seconds: float = 0.0
    error: str | None = None


class IngestSummary(BaseModel):
    """The outcomes of one ingest run, in time order."""

    store: str
    outcomes: list[StepOutcome]

    @property
    def failed(self) -> list[StepOutcome]:
        """The time steps that failed."""
        return [o for o in self.outcomes if o.status == "failed"]

    def one_line(self) -> str:
        """E.g. ``3 time steps: 2 written, 0 already stored, 1 failed``."""
        counts = {s: sum(o.status == s for o in self.outcomes) for s in ("written", "already stored", "failed")}
        return f"{len(self.outcomes)} time steps: " + ", ".join(f"{n} {s}" for s, n in counts.items())


class IngestIncomplete(Exception):
    """Raised by the flow when some time steps failed; the others are stored."""

    def __init__(self, summary: IngestSummary) -> None:
        self.summary = summary
        failures = "; ".join(f"{o.key}: {o.error}" for o in summary.failed)
        super().__init__(f"{len(summary.failed)} of {len(summary.outcomes)} time steps failed: {failures}")

    def __reduce__(self):
        # rebuilt from the summary when Prefect persists and reloads it
        return type(self), (self.summary,)


def outcome_of(step: TimeStepFiles, chain: Sequence[PrefectFuture | None]) -> StepOutcome:
    """The outcome of a time step from the futures of its tasks (fix, load, combine, append).

    The first failed task of the chain says why the time step failed.
    """
    for future in chain:
        if future is None:  # not submitted: an earlier task of the chain failed
            break
        future.wait()
        state = future.state
        if state.is_failed() or state.is_crashed():
            error = state.result(raise_on_failure=False)
            message = str(error) if isinstance(error, BaseException) else (state.message or "failed")
            return StepOutcome(key=step.key, n_files=len(step.files), status="failed", error=message)
    if chain[-1] is None:
        return StepOutcome(key=step.key, n_files=len(step.files), status="failed", error="not appended")
    receipt: AppendReceipt = chain[-1].result()
    # a cached receipt tells of work an earlier run did
    if chain[-1].state.name == "Cached":
        return StepOutcome(
            key=step.key,
            n_files=len(step.files),
            n_subbands=receipt.n_subbands,
            status="already stored",
            index=receipt.index,
        )
    return StepOutcome(
        key=step.key,
        n_files=len(step.files),
        n_subbands=receipt.n_subbands,
        status=receipt.status,
        index=receipt.index,
        bytes_written=receipt.bytes_written,
        seconds=receipt.seconds,
    )
