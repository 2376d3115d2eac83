"""What a run stored that a person should know of, said once per run and kind, naming the first few.

A night of 4,320 time steps must not print 4,320 lines for one cause: each condition is
recorded where it is found (a :class:`~ovro_ingest.models.Notice` on the file or the time
step, logged there at INFO) and the run warns once per kind (:func:`notice_lines`), with
a count, the first few files or time steps, and what to do. Files left out of their
time steps are said the same way (:func:`ovro_ingest.discover.left_out_notes`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from ovro_ingest.models import Notice

KINDS = {
    "lossy": (
        "file(s) were stored from a lossy compression (quantized pixels)",
        "the store holds their pixels as astropy decodes them, not as they were imaged (each ledger entry says so)",
    ),
    "float64": (
        "file(s) with float64 pixels (BITPIX = -64) were stored as float32",
        "rounded to 24 significant bits, about 7 decimal digits (each ledger entry says so)",
    ),
    "checksum": (
        "file(s) were stored although their CHECKSUM/DATASUM do not match (--keep-bad-checksums)",
        "re-copy them from their source, then run again with --replace",
    ),
    "spread": (
        "time step(s) have subbands whose DATE-OBS spread over more than 1 s",
        "the stored time is the earliest DATE-OBS; check the imaging nodes' clocks",
    ),
    "changed": (
        "time step(s) are stored, but their source files changed since",
        "the stored versions are kept: pass --replace to store the new files instead",
    ),
    "offset": (
        "time step(s) have a DATE-OBS more than 60 s from their file-name time stamp",
        "the stored time is DATE-OBS; check the file names or the headers",
    ),
}
"""Each kind of notice: how the run's warning describes what it counts, and what to do."""


def notice_lines(notices: Iterable[Notice], limit: int = 3) -> list[str]:
    """One warning line per kind: how many, the first ``limit`` subjects (with their detail), what to do."""
    by_kind: dict[str, list[Notice]] = defaultdict(list)
    for notice in notices:
        by_kind[notice.kind].append(notice)
    lines = []
    for kind, found in by_kind.items():
        what, fix = KINDS[kind]
        named = ", ".join(named_subject(n) for n in found[:limit])
        more = f" and {len(found) - limit} more" if len(found) > limit else ""
        lines.append(f"{len(found)} {what}, e.g. {named}{more}: {fix}")
    return lines


def named_subject(notice: Notice) -> str:
    """A file by its name, a time step by its key; with the detail in brackets."""
    name = notice.subject.rsplit("/", 1)[-1]
    return f"{name} ({notice.detail})" if notice.detail else name
