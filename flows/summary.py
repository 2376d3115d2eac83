"""What an ingest run did, per time step: the flow's return value and the CLI's report."""

from __future__ import annotations

from pydantic import BaseModel

from ovro_ingest.discover import left_out_notes
from ovro_ingest.errors import IngestError
from ovro_ingest.models import ExcludedFile, Notice
from ovro_ingest.notices import notice_lines

STATUSES = ("written", "replaced", "already stored", "failed")
"""What can become of a time step in a run."""


class StepOutcome(BaseModel):
    """The outcome of one time step."""

    key: str
    n_files: int
    n_subbands: int = 0
    status: str
    """One of :data:`STATUSES`: ``written``, ``replaced`` (stored again from changed files, ``--replace``),
    ``already stored`` or ``failed``."""
    index: int | None = None
    bytes_written: int = 0
    seconds: float = 0.0
    error: str | None = None
    left_out: list[ExcludedFile] = []
    """Files left out of the time step and why, e.g. for an invalid beam."""
    notices: list[Notice] = []
    """What a person should know of the stored files and time step (a lossy compression, float64 pixels, ...)."""


class IngestSummary(BaseModel):
    """The outcomes of one ingest run, in time order."""

    store: str
    outcomes: list[StepOutcome]
    quicklook: str | None = None
    """The quick-look picture the run drew of the newest night it stored time steps of (a path on the run's machine)."""

    @property
    def changed(self) -> bool:
        """True when the run wrote or replaced at least one time step."""
        return any(o.status in ("written", "replaced") for o in self.outcomes)

    @property
    def failed(self) -> list[StepOutcome]:
        """The time steps that failed."""
        return [o for o in self.outcomes if o.status == "failed"]

    def as_dict(self) -> dict:
        """The summary for scripts (``ovro-ingest run --json``): counts by status and every time step whole."""
        return {
            "store": self.store,
            "ok": not self.failed,
            "counts": {status: sum(o.status == status for o in self.outcomes) for status in STATUSES},
            "time_steps": [
                {
                    "key": o.key,
                    "status": o.status,
                    "files": o.n_files,
                    "index": o.index,
                    "bytes_written": o.bytes_written,
                    "seconds": round(o.seconds, 3),
                    "error": o.error,
                    "left_out": [f"{e.source.path}: {e.reason}" for e in o.left_out],
                    "notices": [notice.model_dump() for notice in o.notices],
                }
                for o in self.outcomes
            ],
            "quicklook": self.quicklook,
        }

    def one_line(self) -> str:
        """E.g. ``3 time steps: 2 written, 0 already stored, 1 failed`` (``replaced`` too, when a run replaced any).

        The counts add up to the time steps of the run.
        """
        counts = {s: sum(o.status == s for o in self.outcomes) for s in STATUSES}
        shown = {s: n for s, n in counts.items() if n or s != "replaced"}
        return f"{len(self.outcomes)} time steps: " + ", ".join(f"{n} {s}" for s, n in shown.items())

    def warnings(self) -> list[str]:
        """One line per kind of problem in what the run stored: files left out (entries discovery named aside), notices."""
        stored = [o for o in self.outcomes if o.status in ("written", "replaced")]
        left_out = left_out_notes(e for o in stored for e in o.left_out if e.kind != "entry")
        return left_out + notice_lines(n for o in self.outcomes for n in o.notices)  # each its run's own


MESSAGE_FAILURES = 5
"""Failures a run's message names (the state message is kept in the server's database); the summary lists all."""


class IngestIncomplete(IngestError):
    """Raised by the flow when some time steps failed; the others are stored (the run ends Failed with its line)."""

    def __init__(self, summary: IngestSummary) -> None:
        self.summary = summary
        failed = summary.failed
        failures = "; ".join(f"{o.key}: {o.error}" for o in failed[:MESSAGE_FAILURES])
        more = f"; and {len(failed) - MESSAGE_FAILURES} more" if len(failed) > MESSAGE_FAILURES else ""
        super().__init__(f"{len(failed)} of {len(summary.outcomes)} time steps failed: {failures}{more}")

    def __reduce__(self):
        # rebuilt from the summary when Prefect persists and reloads it
        return type(self), (self.summary,)
