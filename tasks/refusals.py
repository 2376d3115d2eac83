"""Expected refusals end a run Failed with their one line, not as a crash with a traceback.

The domain raises :class:`~ovro_ingest.errors.IngestError` (a truncated file, a store of
another grid, a busy store ...) for input it refuses, with a message that names the file
and the fix. A task or flow wrapped here returns that refusal as a ``Failed`` state
instead (Prefect's way: a run may return its final state), so its logs, the worker's log
and the CLI show the line once (Prefect's ``Finished in state Failed('...')``), and the
state's message is that line. The error travels as the state's data, so that callers
read it back with ``state.result(raise_on_failure=False)``. With ``-v`` (debug logging)
the traceback is logged too. Any other exception is a bug and keeps Prefect's full
traceback.

A flow run of a deployment ends in Prefect's engine asking for its result, which raises
the refusal its Failed state holds; the engine then logs ``Engine execution exited with
unexpected exception`` with the traceback, to the worker's log and the run's. For a
refusal, that record is dropped (:class:`RefusalIsNoCrash`): the state's message and
``Finished in state Failed('...')`` have said it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task
from prefect.states import Failed, State

from ovro_ingest.errors import IngestError

logger = logging.getLogger("ovro_ingest.refusals")
Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")


class RefusalIsNoCrash(logging.Filter):
    """Drops the record of Prefect's engine that calls a refusal an unexpected exception (its state says it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, IngestError)


def quiet_refusals_in_prefects_engine_log() -> None:
    """Install :class:`RefusalIsNoCrash` on Prefect's flow-run logger, once per process."""
    engine_logger = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, RefusalIsNoCrash) for f in engine_logger.filters):
        engine_logger.addFilter(RefusalIsNoCrash())


quiet_refusals_in_prefects_engine_log()  # the flows import this module before Prefect's engine runs them


def refused(error: Exception) -> State:
    """The ``Failed`` state of a run that refused its input with ``error`` (its message, the error as data)."""
    logger.debug("refused: %s", error, exc_info=error)  # the domain's logger: -v shows it, with its traceback
    return Failed(message=str(error), data=error)


def called(task: Task[Parameters, Result], *args: Any, **kwargs: Any) -> Result:
    """Call ``task`` in the flow (not submitted) and return its value; a refusal (its Failed state) is raised again.

    A task called directly returns what its function returned, a refusal's ``Failed``
    state included; raised here, the calling flow ends Failed with the same line.
    """
    state = task(*args, return_state=True, **kwargs)
    value: Result = state.result()  # raises the refusal a Failed state holds
    return value


def refusals_as_failed_states(function: Callable[Parameters, Result]) -> Callable[Parameters, Result | State]:
    """Wrap a task or flow function (below ``@task``/``@flow``) so that an ``IngestError`` ends it Failed, quietly."""

    @functools.wraps(function)
    def wrapper(*args: Parameters.args, **kwargs: Parameters.kwargs) -> Result | State:
        try:
            return function(*args, **kwargs)
        except IngestError as error:
            return refused(error)

    # Prefect validates a flow's parameters from its signature; resolved here, in the function's own module
    wrapper.__signature__ = inspect.signature(function, eval_str=True)  # type: ignore[attr-defined]
    return wrapper
