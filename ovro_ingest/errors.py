"""Errors the pipeline raises for bad input or a bad store: one line, naming the file and the fix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self


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

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str]]:
        # rebuilt from its parts when it crosses a process boundary (Dask, Prefect results)
        return type(self), (self.path, self.problem, self.fix)


class RequestRefused(IngestError, ValueError):
    """A run's parameters cannot be followed: no input folder or store named, a time step the folder lacks."""


class InputMissing(IngestError, FileNotFoundError):
    """The input folder (or a manifest a run was given) does not exist."""


class TimeStepRejected(IngestError):
    """A time step cannot be combined (e.g. two files for one frequency)."""


class StoreMismatch(IngestError):
    """A time step does not fit the store (grid, frequency or polarization mismatch)."""


class StoreError(IngestError):
    """The store cannot be created, opened or written."""


class StoreBusy(StoreError):
    """Another writer holds the store's writer lock."""


LIBRARY_ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError, IndexError, OSError, RuntimeError)
"""What wcslib (``WcsError``, a ``ValueError``), xradio (``RuntimeError``, ``KeyError``), numpy and the
file system raise about a file; astropy's ``VerifyError`` (an ``Exception``) is added by :func:`file_boundary`."""

# lines of library text that say where, not what
_NOISE = re.compile(
    r"^(ERROR \d+ in \w+\(\) at line \d+ of file .*|Verification reported errors|HDU \d+|Card \d+"
    r"|Note: astropy\.io\.fits uses zero-based indexing\.)$"
)
ONE_LINE_LIMIT = 240
"""Characters of library text kept in a one-line message."""


def one_line(error: BaseException) -> str:
    """The gist of a library error on one line: where-lines dropped, the rest joined with " / ".

    wcslib says ``ERROR 3 in wcsset() at line 2868 of file .../wcs.c:\\nLinear transformation
    matrix is singular.``; astropy's verification opens with ``Verification reported errors:``
    and an ``HDU 0:`` line. Only what the library found wrong is kept, shortened to
    :data:`ONE_LINE_LIMIT` characters.
    """
    lines = [line.strip().rstrip(":") for line in str(error).splitlines()]
    kept = [line for line in lines if line and not _NOISE.match(line)]
    unique = list(dict.fromkeys(kept))
    text = " / ".join(unique) or type(error).__name__
    if isinstance(error, KeyError):
        text = f"missing {text}"
    return text if len(text) <= ONE_LINE_LIMIT else text[: ONE_LINE_LIMIT - 3] + "..."


@contextmanager
def file_boundary(path: str, doing: str, fix: str) -> Iterator[None]:
    """Turn a library error raised while ``doing`` something with the file ``path`` into a :class:`BadInputFile`.

    Errors of the pipeline itself (:class:`IngestError`) pass through unchanged; a
    library's multi-line text becomes one line (:func:`one_line`), the original stays
    chained for ``-v``.

    Parameters
    ----------
    path : str
        The source file to name (not a fixed copy).
    doing : str
        What was being done, e.g. ``"reading its header"``.
    fix : str
        What the operator can do.
    """
    from astropy.io.fits.verify import VerifyError

    try:
        yield
    except IngestError:
        raise
    except (*LIBRARY_ERRORS, VerifyError) as error:
        raise BadInputFile(path, f"{doing} failed: {one_line(error)}", fix) from error
