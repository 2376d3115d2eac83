"""Errors the pipeline raises for bad input or a bad store: one line, naming the file and the fix."""

from __future__ import annotations


class IngestError(Exception):
    """Base class: an error whose message is meant to be shown to an operator as is."""


class BadInputFile(IngestError):
    """An input FITS file cannot be ingested as it is.

    Parameters
    ----------
    path : str
        The offending file.
    problem : str
        What is wrong with it.
    fix : str
        What the operator can do about it.
    """

    def __init__(self, path: str, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}; {fix}")

    def __reduce__(self):
        # rebuilt from its parts when it crosses a process boundary (Dask, Prefect results)
        return type(self), (self.path, self.problem, self.fix)


class TimeStepRejected(IngestError):
    """A time step cannot be combined (e.g. two files for one frequency)."""


class StoreMismatch(IngestError):
    """A time step does not fit the store (grid, frequency or polarization mismatch)."""


class StoreError(IngestError):
    """The store cannot be created, opened or written."""


class StoreBusy(StoreError):
    """Another writer holds the store's writer lock."""
