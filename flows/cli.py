"""The ``ovro-ingest`` command: generate synthetic data, run the ingest flow, try the demo.

Prefect is imported only inside the commands that run the flow, after the
environment (Prefect home, API URL) is settled, since Prefect reads its settings
when it is first imported.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Prompt
from rich.table import Table

from flows.clihelp import PlainHelpGroup
from ovro_ingest import __version__

app = typer.Typer(
    help="Ingest OVRO-LWA FITS images into one Zarr store.",
    no_args_is_help=True,
    add_completion=False,
    cls=PlainHelpGroup,  # help names values by metavar, never by Python type (<path>, <bool>)
)
console = Console()
errors = Console(stderr=True)


class Naming(StrEnum):
    """File name convention of generated data."""

    legacy = "legacy"
    current = "current"


def show_version(value: bool) -> None:
    """Print the version and exit."""
    if value:
        console.print(f"ovro-ingest {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=show_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Ingest OVRO-LWA FITS images into one Zarr store."""


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Folder to write the FITS files into.")],
    time_steps: Annotated[int, typer.Option(min=1, metavar="N", help="Number of time steps (10 s apart).")] = 3,
    subbands: Annotated[
        int, typer.Option(min=1, max=16, metavar="N", help="Subbands per time step (real data: 10-16).")
    ] = 10,
    size: Annotated[
        int, typer.Option(min=16, metavar="PIXELS", help="Image side in pixels (real data: 2048 or 4096).")
    ] = 256,
    naming: Annotated[Naming, typer.Option(metavar="legacy|current", help="File name convention.")] = Naming.legacy,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the sky and noise.")] = 0,
    start: Annotated[
        str | None,
        typer.Option(
            metavar="DATE[THH:MM:SS]",
            help="UTC DATE-OBS of the first time step, ISO 8601, e.g. 2024-05-25T05:00:09 for a later night "
            "(default: 2024-05-24T05:00:09.3).",
        ),
    ] = None,
) -> None:
    """Write a synthetic OVRO-LWA-like data set (realistic headers, all-sky images)."""
    from ovro_ingest.synth import DEFAULT_START, generate

    first = DEFAULT_START if start is None else utc_datetime(start)
    files = generate(
        out_dir, time_steps=time_steps, n_subbands=subbands, size=size, naming=naming.value, seed=seed, start=first
    )
    console.print(
        f"wrote {len(files)} files ({time_steps} time steps x {subbands} subbands, {size}x{size}, "
        f"from {first.isoformat(sep='T', timespec='milliseconds').removesuffix('+00:00')} UTC) to {out_dir}",
        soft_wrap=True,
    )


def utc_datetime(text: str) -> datetime:
    """``text`` (ISO 8601 date or date and time; UTC unless it names an offset) as an aware UTC datetime.

    Raises
    ------
    typer.BadParameter
        ``text`` is not ISO 8601 (exit code 2, naming ``--start``).
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 date or time, e.g. 2024-05-25 or 2024-05-25T05:00:09", param_hint="--start"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


KEY_WIDTH = len("YYYYMMDD_HHMMSS")


def keyed_table(title: str, key_header: str, headers: tuple[str, ...]) -> Table:
    """A table whose first column holds time-step keys: never wrapped or cut (people and scripts copy them).

    The other columns wrap (and fold a long word) when the terminal is narrow,
    rather than end in an ellipsis. :func:`print_table` prints the title as one line
    above the table (rich would centre and wrap it, breaking the paths in it).
    """
    table = Table(title=title)
    table.add_column(key_header, no_wrap=True, min_width=KEY_WIDTH)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def print_table(table: Table) -> None:
    """Print ``table`` whole: within the terminal's width (or ``$COLUMNS``), else at its natural width.

    Keys never wrap (see :func:`keyed_table`), other cells do. Piped or redirected
    without ``$COLUMNS``, rich would assume 80 columns and wrap cells for a reader that
    has no width at all (a file, ``grep``, a script): there each row stays one line.
    """
    title, table.title = table.title, None
    if title:
        console.print(str(title), soft_wrap=True, highlight=False, markup=False)
    if console.is_terminal or os.environ.get("COLUMNS"):
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    Console(file=console.file, width=max(console.width, natural)).print(table)


def print_json(payload: dict) -> None:
    """Write ``payload`` to stdout as JSON (no colours, no wrapping: for scripts)."""
    sys.stdout.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def configure_logging(verbose: bool, quiet: bool) -> None:
    """Set Prefect's log level from -v/-q, and where results go (before Prefect is imported)."""
    from flows.server import keep_results_apart

    keep_results_apart()
    level = "DEBUG" if verbose else "WARNING" if quiet else "INFO"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    os.environ.setdefault("OVRO_INGEST_LOG_LEVEL", level)  # the domain's loggers, in every process (tasks/__init__)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # the client's half of the same choice (no usage-data notice)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "ovro_ingest")  # domain warnings reach the Prefect UI
    os.environ.setdefault("OVRO_INGEST_CONSOLE_TRACEBACKS", "1" if verbose else "0")  # tasks/console.py
    logging.getLogger("distributed").setLevel(logging.WARNING)


def print_summary(summary) -> None:
    """A table of the run's time steps."""
    table = keyed_table(
        f"ingest into {summary.store}", "time step", ("files", "status", "index", "MB written", "seconds")
    )
    for o in summary.outcomes:
        style = {"failed": "red", "written": "green"}.get(o.status, "")
        row = [
            o.key,
            str(o.n_files),
            f"[{style}]{o.status}[/]" if style else o.status,
            "" if o.index is None else str(o.index),
            f"{o.bytes_written / 1e6:.1f}",
            f"{o.seconds:.2f}",
        ]
        table.add_row(*row)
    print_table(table)
    for o in summary.failed:  # one unwrapped line each: the file and the fix
        console.print(f"[red]failed[/] {o.key}: {o.error}", soft_wrap=True)
    console.print(summary.one_line())
    if summary.quicklook:
        console.print(f"quick look: {summary.quicklook}", soft_wrap=True)


def report_outcome(summary, as_json: bool) -> None:
    """The run's outcome: the table and summary lines, or one JSON document for scripts."""
    if as_json:
        print_json(summary.as_dict())
    else:
        print_summary(summary)


class ProgressHandler(logging.Handler):
    """Drives a rich progress bar from the flow's progress records (see ``flows.ingest.report_progress``)."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(level=logging.INFO)
        self.progress = progress
        self.task = progress.add_task("time steps", total=None)

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "total"):
            self.progress.update(self.task, total=record.total)
        elif hasattr(record, "outcome"):
            outcome = record.outcome
            self.progress.update(self.task, advance=1, description=f"{outcome.key} {outcome.status}")


@contextmanager
def progress_bar(verbose: bool = False) -> Iterator[None]:
    """A progress bar over the run's time steps, on a terminal only (logs and pipes get the summary table).

    While it shows, Prefect's console log lines print above it, through its console
    (else they break into the bar's line), and only warnings and errors unless ``verbose``:
    the bar says how far the run is, the Prefect UI keeps every line.
    """
    if not console.is_terminal:
        with warnings_only(verbose):  # a log or a pipe gets the summary table, not Prefect's lines
            yield
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        handler = ProgressHandler(progress)
        logger = logging.getLogger("ovro_ingest.progress")
        logger.disabled, logger.propagate = False, False  # the bar replaces the progress log lines
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        consoles = prefect_console_handlers()
        saved = [(h, h.console) for h in consoles]
        for console_handler in consoles:
            console_handler.console = progress.console
        try:
            with warnings_only(verbose):
                yield
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
            for console_handler, own_console in saved:
                console_handler.console = own_console


@contextmanager
def warnings_only(verbose: bool) -> Iterator[None]:
    """Prefect's console log lines: only warnings and errors unless ``verbose`` (the Prefect UI keeps every line)."""
    consoles = [] if verbose else prefect_console_handlers()
    saved = [(h, h.level) for h in consoles]
    for console_handler in consoles:
        console_handler.setLevel(max(console_handler.level, logging.WARNING))
    try:
        yield
    finally:
        for console_handler, level in saved:
            console_handler.setLevel(level)


def prefect_console_handlers() -> list[logging.Handler]:
    """Prefect's console log handlers (on its loggers and the extra loggers it was given), each once."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    found = {
        id(handler): handler
        for each in loggers
        if isinstance(each, logging.Logger)
        for handler in each.handlers
        if isinstance(handler, PrefectConsoleHandler)
    }
    return list(found.values())


def exit_without_prefects_handlers(code: int) -> NoReturn:
    """End the process now, skipping Prefect's exit handlers (what must be kept is on disk by now).

    After a run, its logs and events are delivered first (:func:`deliver_logs_and_events`).
    With the server gone, those handlers would try each queued event against it, about
    7 s apiece (measured: two minutes for a 3-time-step run), and deliver none of them.
    The store's lock is released by the kernel; staging left behind is cleared by the next run.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def deliver_logs_and_events(timeout_s: float = 30) -> None:
    """Wait until the run's queued log lines and events are with the Prefect server (or ``timeout_s``)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
    EventsWorker.drain_all(timeout=timeout_s)


@contextmanager
def prefect_api_or_exit() -> Iterator[str]:
    """:func:`flows.server.prefect_api`; when the configured server does not answer, one line and exit code 2."""
    from flows.server import PrefectServerUnreachable, prefect_api

    try:
        with prefect_api() as api_url:  # raises PrefectServerUnreachable before it yields, never after
            yield api_url
    except PrefectServerUnreachable as error:
        errors.print(f"[red]could not start:[/] {error}", soft_wrap=True)
        raise typer.Exit(2) from None


def run_flow(verbose: bool, as_json: bool = False, **parameters) -> int:
    """Run the ingest flow with ``parameters``; print the outcome; return the exit code."""
    server_lost = False
    with prefect_api_or_exit() as api_url:
        import httpx

        from flows.ingest import ingest
        from flows.summary import IngestIncomplete, IngestSummary
        from tasks.console import apply_from_environment

        apply_from_environment()  # on Prefect's console handlers, which exist by now
        try:
            with progress_bar(verbose):  # after Prefect's logging set-up, which would disable an earlier logger
                state = ingest(**parameters, return_state=True)
            result = state.result(raise_on_failure=False)
        except httpx.HTTPError as error:  # the run cannot report to its Prefect server any more
            errors.print(
                f"[red]ingest stopped:[/] lost the Prefect server at {api_url} ({error}); what was committed is "
                "kept and the store stays valid: start the server and run the ingest again",
                soft_wrap=True,
            )
            if verbose:
                errors.print_exception()
            server_lost = True
        if not server_lost:
            deliver_logs_and_events()  # while the server (perhaps a temporary one) still listens
    if server_lost:
        exit_without_prefects_handlers(2)
    if isinstance(result, IngestSummary):
        report_outcome(result, as_json)
        return 0
    if isinstance(result, IngestIncomplete):
        report_outcome(result.summary, as_json)
        return 1
    message = str(result) if isinstance(result, BaseException) else state.message
    errors.print(f"[red]ingest failed:[/] {message}", soft_wrap=True)
    if verbose and isinstance(result, BaseException):
        errors.print_exception()
    return 2


@app.command()
def run(
    input_dir: Annotated[
        Path, typer.Argument(metavar="INPUT_DIR", help="Folder of FITS images (searched recursively).")
    ],
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The Zarr store (created on first use).")],
    fixed_dir: Annotated[
        Path | None, typer.Option(metavar="FOLDER", help="Folder for fixed copies (default: STORE.work/fixed).")
    ] = None,
    chunk_lm: Annotated[
        int, typer.Option(min=16, metavar="PIXELS", help="Chunk length along l and m of a new store.")
    ] = 1024,
    rebuild: Annotated[bool, typer.Option(help="Delete the store first and ingest everything again.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Threads of the local Dask cluster (default: one per core)."),
    ] = None,
    dask_address: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Address of an existing Dask scheduler (tcp://host:8786).")
    ] = None,
    codec: Annotated[
        str, typer.Option(metavar="lz4|zstd|none", help="Compression of a new store: lz4, zstd or none.")
    ] = "lz4",
    zarr_format: Annotated[int, typer.Option(min=2, max=3, metavar="2|3", help="Zarr format of a new store.")] = 3,
    replace: Annotated[
        bool, typer.Option(help="Store again the time steps whose source files changed since they were stored.")
    ] = False,
    wait_for_lock: Annotated[
        float,
        typer.Option(
            min=0, metavar="SECONDS", help="Seconds to wait when another ingest writes the store (default: fail)."
        ),
    ] = 0.0,
    keep_bad_beams: Annotated[
        bool, typer.Option(help="Store files with a missing or invalid beam (NaN beam) instead of leaving them out.")
    ] = False,
    keep_bad_checksums: Annotated[
        bool, typer.Option(help="Store files whose CHECKSUM/DATASUM fails (recorded) instead of refusing them.")
    ] = False,
    time_steps: Annotated[
        list[str] | None,
        typer.Option("--time-steps", metavar="KEY", help="Only this time step (YYYYMMDD_HHMMSS); repeatable."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print what the run would do, and write nothing.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (every time step whole) instead of the table.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; resume a store an interrupted run left unfinished.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More detail, and tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and the summary.")] = False,
) -> None:
    """Ingest INPUT_DIR into STORE (an ad-hoc run of the `ingest` flow).

    Exits 0 only when every time step is stored, 1 when some failed, 2 when the run could not start.
    """
    if dry_run:
        raise typer.Exit(print_plan(input_dir, store, time_steps, as_json, keep_bad_checksums))
    rebuild = rebuild or ask_resume_or_rebuild(store, yes)
    if not (rebuild or replace):
        done = answer_without_a_run(input_dir, store, time_steps, fixed_dir)
        if done is not None:  # the store holds everything asked for: no server, no cluster, no flow run
            report_outcome(done, as_json)
            raise typer.Exit(0)
    configure_logging(verbose, quiet or as_json)
    if not (store / "zarr.json").exists() and not (store / ".zmetadata").exists():
        warm_up_store_creation()
    code = run_flow(
        verbose,
        as_json,
        input_dir=str(input_dir),
        store=str(store),
        fixed_dir=str(fixed_dir) if fixed_dir else None,
        chunk_lm=chunk_lm,
        rebuild=rebuild,
        dask_address=dask_address,
        workers=workers,
        codec=codec,
        zarr_format=zarr_format,
        replace=replace,
        wait_for_lock=wait_for_lock,
        keep_bad_beams=keep_bad_beams,
        keep_bad_checksums=keep_bad_checksums,
        time_steps=time_steps or None,
    )
    if verbose and code in (0, 1):
        from ovro_ingest.health import validate_store

        # this run's time steps and the store's structure: a year's ledger checked whole would take minutes
        report = validate_store(store, time_steps or input_keys(input_dir, store, fixed_dir))
        print_health(report, "valid" if report.ok else "invalid")
    # everything is on disk and with the server by now: Python's own exit (Prefect's handlers, unloading some
    # thousand modules) would add about 0.7 s to every run
    exit_without_prefects_handlers(code)


def warm_up_store_creation() -> None:
    """Import xradio, which creating a new store needs, in a background thread while Prefect starts.

    About 2 s of imports run on the other core instead of delaying the first write. astropy
    is imported here, in the main thread, first: the run needs it anyway, and astropy must not
    be imported by two threads at once (see ``import_xradio_in_background``).
    """
    from ovro_ingest.load import import_xradio_in_background

    import_xradio_in_background()


def answer_without_a_run(input_dir: Path, store: Path, keys: list[str] | None, fixed_dir: Path | None):
    """The summary of a run with nothing to do, from the store's ledger alone; None when a run is needed.

    Nothing to do: the store holds every asked-for time step from these very files and
    no interrupted run left anything unfinished. Reads the input listing and the ledger
    (zarr only): no Prefect, no server, no Dask cluster, so such a run answers in a second
    or two. Anything unusual (no store, an unknown key, an unreadable store) is left to
    the flow, which reports it.
    """
    from flows.summary import IngestSummary, StepOutcome
    from ovro_ingest.errors import IngestError
    from ovro_ingest.handle import Store
    from ovro_ingest.store import stored_unchanged, uncommitted_state

    if not Store.at(store).exists() or uncommitted_state(store):
        return None
    try:
        steps = input_steps(input_dir, store, fixed_dir)
        if keys:
            steps = [step for step in steps if step.key in set(keys)]
            if len(steps) != len(set(keys)):
                return None
        stored = stored_unchanged(store, steps)
    except (FileNotFoundError, IngestError):
        return None
    if not steps or len(stored) != len(steps):
        return None
    outcomes = [
        StepOutcome(key=s.key, n_files=len(s.files), status="already stored", index=stored[s.key]) for s in steps
    ]
    return IngestSummary(store=str(Path(store).resolve()), outcomes=outcomes)


def input_steps(input_dir: Path, store: Path, fixed_dir: Path | None) -> list:
    """The time steps under ``input_dir`` as a run finds them (the store's work folder and fixed copies left out)."""
    from ovro_ingest.discover import discover_time_steps
    from ovro_ingest.handle import Store

    work = Store.at(store).work_dir
    exclude = (work, Path(fixed_dir).resolve() if fixed_dir else work / "fixed")
    return discover_time_steps(input_dir, exclude=exclude).time_steps


def input_keys(input_dir: Path, store: Path, fixed_dir: Path | None) -> set[str]:
    """The keys of :func:`input_steps`; empty when the folder cannot be listed."""
    from ovro_ingest.errors import IngestError

    try:
        return {step.key for step in input_steps(input_dir, store, fixed_dir)}
    except (FileNotFoundError, IngestError):
        return set()


@app.command(name="timeseries")
def timeseries_command(
    archive: Annotated[Path, typer.Argument(metavar="ARCHIVE", help="The archive store (`ovro-ingest run` makes it).")],
    timeseries: Annotated[
        Path, typer.Argument(metavar="TIMESERIES", help="The time-series store (created on first use).")
    ],
    wait_for_lock: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Seconds to wait when another update holds TIMESERIES (default: fail).",
        ),
    ] = 0.0,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="Threads that copy pixels.")] = 2,
    max_memory_mb: Annotated[
        int, typer.Option(min=16, metavar="MIB", help="Pixels in flight while copying, all threads together.")
    ] = 512,
    dry_run: Annotated[bool, typer.Option(help="Print what the update would copy, and write nothing.")] = False,
    rebuild: Annotated[
        bool, typer.Option(help="Delete TIMESERIES first and make it again from ARCHIVE (after a rebuilt archive).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More detail, and tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and the summary.")] = False,
) -> None:
    """Bring TIMESERIES (SKY laid out for dynamic spectra and light curves) up to date with ARCHIVE.

    Copies the time steps the archive has and the time-series store lacks (a backfill or
    a replacement in the archive is carried over); a re-run does nothing. Exits 0 when
    the store is up to date, 1 when the update failed (what was committed stays valid),
    2 when it could not start (a missing or bad store, another writer).
    """
    from ovro_ingest.errors import IngestError
    from ovro_ingest.timeseries import require_archive

    if dry_run:
        raise typer.Exit(print_timeseries_plan(archive, timeseries))
    try:
        require_archive(archive)  # a refusal it can tell before a run: said once, and no flow run
    except IngestError as error:
        errors.print(f"[red]timeseries failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(2) from None
    nothing_to_do = None if rebuild else timeseries_without_a_run(archive, timeseries)
    if nothing_to_do:
        console.print(nothing_to_do.one_line(), soft_wrap=True)
        raise typer.Exit(0)
    configure_logging(verbose, quiet)

    with prefect_api_or_exit():
        from flows.timeseries import timeseries as timeseries_flow
        from tasks.console import apply_from_environment

        apply_from_environment()
        with warnings_only(verbose):  # the receipt's one line says what was done
            state = timeseries_flow(
                archive=str(archive),
                timeseries=str(timeseries),
                wait_for_lock=wait_for_lock,
                workers=workers,
                max_memory_mb=max_memory_mb,
                rebuild=rebuild,
                return_state=True,
            )
        result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        errors.print(f"[red]timeseries failed:[/] {result}", soft_wrap=True)
        if verbose:
            errors.print_exception()
        raise typer.Exit(2 if isinstance(result, IngestError | ValueError) else 1)
    console.print(result.one_line(), soft_wrap=True)
    raise typer.Exit(0)


def timeseries_without_a_run(archive: Path, timeseries: Path):
    """The receipt of an update with nothing to do, from the two stores' ledgers alone; None when a run is needed.

    Like :func:`answer_without_a_run`: no Prefect, no server; anything unusual (no
    time-series store yet, an interrupted update or commit, a refusal) is left to the flow.
    """
    from ovro_ingest.errors import IngestError
    from ovro_ingest.handle import Store
    from ovro_ingest.store import uncommitted_state
    from ovro_ingest.timeseries import plan_update, up_to_date

    if not Store.at(timeseries).exists() or uncommitted_state(timeseries) or uncommitted_state(archive):
        return None
    try:
        plan = plan_update(archive, timeseries, create=False)
    except IngestError:
        return None
    return up_to_date(plan) if plan.up_to_date else None


def print_timeseries_plan(archive: Path, timeseries: Path) -> int:
    """Print what ``ovro-ingest timeseries`` would copy (nothing is written); return the exit code."""
    from ovro_ingest.errors import IngestError
    from ovro_ingest.timeseries import plan_update

    try:
        plan = plan_update(archive, timeseries, create=False)
    except IngestError as error:
        errors.print(f"[red]dry run failed:[/] {error}", soft_wrap=True)
        return 2
    if plan.up_to_date:
        console.print(f"{timeseries}: up to date with {archive} ({plan.n_archive} time steps); nothing to copy")
    else:
        console.print(
            f"would copy time steps {plan.start}..{plan.n_archive - 1} of {archive} into {timeseries} "
            f"(it holds {plan.n_before}; the first that differs is {plan.first_difference})",
            soft_wrap=True,
        )
    return 0


def ask_resume_or_rebuild(store: Path, yes: bool) -> bool:
    """When an interrupted run left the store unfinished and a person is at the terminal, ask; True = rebuild.

    Without a terminal, or with --yes, the run resumes: it finishes or rolls back what
    was left, which is always safe.
    """
    from ovro_ingest.store import uncommitted_state

    left = uncommitted_state(store)
    if not left or yes or not sys.stdin.isatty():
        return False
    console.print(f"{store} was left unfinished by an interrupted run: {'; '.join(left)}.", soft_wrap=True)
    answer = Prompt.ask(
        "Resume (finish it and go on) or rebuild (delete the store and ingest everything)?",
        choices=["resume", "rebuild"],
        default="resume",
        console=console,
    )
    return answer == "rebuild"


def print_plan(
    input_dir: Path, store: Path, keys: list[str] | None, as_json: bool = False, keep_bad_checksums: bool = False
) -> int:
    """Print what a run would do per time step (nothing is written); return the exit code run would give.

    With ``as_json``, stdout gets one JSON document (:func:`ovro_ingest.audit.plan_as_dict`) instead of the table.
    """
    from ovro_ingest.audit import plan_as_dict, plan_run

    try:
        planned = plan_run(input_dir, store, keys, keep_bad_checksums)
    except FileNotFoundError as error:
        errors.print(f"[red]dry run failed:[/] {error}", soft_wrap=True)
        return 2
    if as_json:
        print_json(plan_as_dict(input_dir, store, planned))
        return 1 if any(step.action == "would fail" for step in planned) else 0
    table = keyed_table(
        f"dry run: {input_dir} -> {store} (nothing is written)",
        "time step",
        ("subbands", "missing", "gap before (s)", "would"),
    )
    for step in planned:
        style = {"would fail": "red", "append": "green", "backfill": "yellow"}.get(step.action, "")
        table.add_row(
            step.audit.key,
            str(len(step.audit.files)),
            ", ".join(step.audit.missing_subbands),
            "" if step.gap_s is None else f"{step.gap_s:.0f}",
            f"[{style}]{step.action}[/]" if style else step.action,
        )
    print_table(table)
    for step in planned:
        for problem in step.audit.problems:
            console.print(f"[red]would fail[/] {step.audit.key}: {problem}", soft_wrap=True)
    counts = {a: sum(s.action == a for s in planned) for a in ("append", "backfill", "already stored", "would fail")}
    console.print(f"{len(planned)} time steps: " + ", ".join(f"{n} {a}" for a, n in counts.items()))
    return 1 if counts["would fail"] else 0


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", metavar="FOLDER", help="Folder for the demo's data, store and Prefect home.")
    ] = Path("ovro-demo"),
    time_steps: Annotated[int, typer.Option(min=1, metavar="N", help="Number of time steps.")] = 4,
    subbands: Annotated[int, typer.Option(min=1, max=16, metavar="N", help="Subbands per time step.")] = 10,
    size: Annotated[int, typer.Option(min=16, metavar="PIXELS", help="Image side in pixels.")] = 256,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and the summary.")] = False,
) -> None:
    """Generate a small synthetic data set, ingest it, and show how to open the store."""
    directory = directory.resolve()
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str(directory / ".prefect"))  # keep the demo self-contained
    configure_logging(False, quiet)
    from ovro_ingest.synth import generate

    input_dir, store = directory / "input", directory / "store.zarr"
    if input_dir.is_dir() and any(input_dir.iterdir()):
        console.print(f"reusing the FITS files in {input_dir} (a second demo run shows the cache at work)")
    else:
        files = generate(input_dir, time_steps=time_steps, n_subbands=subbands, size=size)
        console.print(f"generated {len(files)} FITS files in {input_dir}")
    code = run_flow(False, input_dir=str(input_dir), store=str(store), chunk_lm=min(1024, size))
    if code == 0:
        python = Path(sys.executable)  # the environment ovro-ingest runs in, which has xarray: works as typed
        console.print(f"\nThe store is at [bold]{store}[/]. Open it with:\n", soft_wrap=True)
        console.print(f"    {python} -c \"import xarray as xr; print(xr.open_zarr('{store}'))\"\n", soft_wrap=True)
        console.print(f"or validate it with:\n\n    {python.parent / 'ovro-ingest'} validate {store}\n", soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def audit(
    input_dir: Annotated[
        Path, typer.Argument(metavar="INPUT_DIR", help="Folder of FITS images (searched recursively).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (every time step, file and problem) instead.")
    ] = False,
    store: Annotated[
        Path | None,
        typer.Option(metavar="STORE", help="Also say what STORE already holds: what a run into it would do."),
    ] = None,
) -> None:
    """Report what an ingest of INPUT_DIR would meet, reading headers only (nothing is written).

    With --store, per time step what a run into STORE would do (append, backfill, already
    stored, would fail). Exits 0 when every time step would be stored, 1 when some would
    fail, 2 when the folder cannot be read.
    """
    from ovro_ingest.audit import audit_directory, report_as_dict
    from ovro_ingest.handle import Store

    if Store.at(input_dir).exists():  # a store given where the images were meant
        errors.print(
            f"[red]audit failed:[/] {input_dir} is a store, not a folder of images: "
            f"ovro-ingest audit INPUT_DIR --store {input_dir} says what it holds of INPUT_DIR",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    if store is not None:
        raise typer.Exit(print_plan(input_dir, store, None, as_json))
    try:
        report = audit_directory(input_dir)
    except FileNotFoundError as error:
        errors.print(f"[red]audit failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        print_json(report_as_dict(report))
    else:
        print_audit(report)
    raise typer.Exit(0 if report.ok else 1)


def print_audit(report) -> None:
    """The audit as a table (one row per time step), its notes and problems, and a summary line."""
    from ovro_ingest.discover import examples_with_reasons

    table = keyed_table(
        f"audit of {report.input_dir}",
        "time step",
        ("files", "missing subbands", "DATE-OBS spread s", "DATE-OBS - name s", "verdict"),
    )
    for step in report.time_steps:
        offset = "" if step.name_offset_s is None else f"{step.name_offset_s:+.1f}"
        verdict = "[green]ok[/]" if step.ok else "[red]would fail[/]"
        table.add_row(
            step.key,
            str(len(step.files)),
            ", ".join(step.missing_subbands),
            f"{step.date_obs_spread_s:.1f}",
            offset,
            verdict,
        )
    print_table(table)
    for step in report.time_steps:
        for note in step.notes:
            console.print(f"note {step.key}: {note}", soft_wrap=True)
        for problem in step.problems:
            console.print(f"[red]would fail[/] {step.key}: {problem}", soft_wrap=True)
    if report.skipped:
        console.print(f"{len(report.skipped)} file(s) follow neither naming convention and would be skipped")
    if report.left_out:
        console.print(
            f"{len(report.left_out)} entr{'y' if len(report.left_out) == 1 else 'ies'} named like subband images "
            f"cannot be opened and would be left out: {examples_with_reasons(report.left_out)}",
            soft_wrap=True,
        )
    channels = ", ".join(f"{c / 1e6:.3f}" for c in report.channels_hz)
    console.print(
        f"channels (MHz): {channels}; largest frequency jitter: {report.max_jitter_hz:.0f} Hz", soft_wrap=True
    )
    failing = sum(not step.ok for step in report.time_steps)
    console.print(
        f"{len(report.time_steps)} time steps: {len(report.time_steps) - failing} would be stored, {failing} would fail"
    )


def print_health(report, verb: str) -> None:
    """Print a validate/repair report: problems in red, notes plain."""
    for note in report.notes:
        console.print(f"  {note}", soft_wrap=True)
    for problem in report.problems:
        errors.print(f"[red]problem:[/] {problem}", soft_wrap=True)
    if report.ok:
        console.print(
            f"[green]{verb}:[/] {report.store} holds {report.n_time} committed time steps and is consistent",
            soft_wrap=True,
        )
    else:
        errors.print(f"[red]{verb}: {report.store} has {len(report.problems)} problem(s)[/]", soft_wrap=True)


@app.command()
def validate(store: Annotated[Path, typer.Argument(metavar="STORE", help="The Zarr store to check.")]) -> None:
    """Check STORE: shapes, ledger against content, consolidated metadata current. Exits 1 on any problem."""
    from ovro_ingest.health import validate_store

    report = validate_store(store)
    print_health(report, "valid" if report.ok else "invalid")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def repair(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The Zarr store to repair.")],
    wait_for_lock: Annotated[
        float,
        typer.Option(min=0, metavar="SECONDS", help="Seconds to wait when an ingest writes the store (default: fail)."),
    ] = 0.0,
) -> None:
    """Roll STORE back to its last committed state (or finish an interrupted commit), then validate it."""
    from ovro_ingest.errors import IngestError
    from ovro_ingest.health import repair_store

    try:
        report = repair_store(store, wait_seconds=wait_for_lock)
    except IngestError as error:
        errors.print(f"[red]repair failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(2) from None
    if report.ok:
        print_health(report, "repaired" if report.actions else "nothing to repair")
    else:
        print_health(report, "still invalid")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def prune(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The Zarr store whose STORE.work to prune.")],
    older_than: Annotated[
        float, typer.Option(min=1, metavar="DAYS", help="Remove files last modified more than DAYS ago.")
    ] = 30,
    results: Annotated[
        bool,
        typer.Option(
            help="Also prune ovro-ingest's Prefect result files (PREFECT_HOME/ovro-ingest-results, "
            "or PREFECT_RESULTS_LOCAL_STORAGE_PATH when set); other projects' results are left alone."
        ),
    ] = False,
    wait_for_lock: Annotated[
        float, typer.Option(min=0, metavar="SECONDS", help="Seconds to wait when an ingest writes the store.")
    ] = 0.0,
) -> None:
    """Remove the manifests and fixed copies in STORE.work (and with --results Prefect's result files) older than DAYS.

    They only speed up re-runs and retries: the store's ledger says what is stored, and a run
    that needs one again makes it again. The quick-look pictures (one per night) are kept.
    """
    from flows.server import keep_results_apart
    from ovro_ingest.errors import IngestError
    from ovro_ingest.handle import Store
    from ovro_ingest.housekeeping import prune_files, prune_work
    from ovro_ingest.timeseries import is_timeseries_store, read_timeseries_state

    keep_results_apart()
    if is_timeseries_store(store):
        archive = read_timeseries_state(store).archive_path
        errors.print(
            f"[red]prune failed:[/] {store} is a time-series store, which keeps no manifests or fixed copies; "
            f"prune its archive: ovro-ingest prune {archive}",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    try:
        with Store.at(store).lock(who="ovro-ingest prune", wait_seconds=wait_for_lock):  # not under a running ingest
            pruned = prune_work(store, older_than)
            if results:
                from tasks.housekeeping import result_storage

                pruned.add(prune_files(result_storage(), older_than))
    except IngestError as error:
        errors.print(f"[red]prune failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(2) from None
    folders = f": {', '.join(pruned.folders)}" if pruned.folders else " (no such folders yet)"
    console.print(f"{pruned.one_line()}, older than {older_than:g} days{folders}", soft_wrap=True)


server = typer.Typer(
    help="A local Prefect server kept running for this Prefect home, so that runs do not start one each time.",
    no_args_is_help=True,
    cls=PlainHelpGroup,
)
app.add_typer(server, name="server")


@server.command("start")
def server_start(
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, metavar="PORT", help="Port (default: a free one).")
    ] = None,
) -> None:
    """Start a local Prefect server (127.0.0.1, SQLite in the Prefect home) that later runs use by themselves."""
    from flows.server import start_kept_server

    try:
        running = start_kept_server(port)
    except RuntimeError as error:
        errors.print(f"[red]server start failed:[/] {error}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"Prefect server running (pid {running['pid']}): UI {running['ui_url']}", soft_wrap=True)
    console.print(f"ovro-ingest runs without PREFECT_API_URL now report to {running['api_url']}", soft_wrap=True)


@server.command("stop")
def server_stop() -> None:
    """Stop the kept local Prefect server of this Prefect home."""
    from flows.server import stop_kept_server

    stopped = stop_kept_server()
    console.print(f"stopped the Prefect server (pid {stopped['pid']})" if stopped else "no kept Prefect server runs")


@server.command("status")
def server_status() -> None:
    """Say whether a kept local Prefect server runs (exit 0) or not (exit 1), and where."""
    from flows.server import kept_server, prefect_home

    running = kept_server()
    if running:
        console.print(
            f"running (pid {running['pid']}): UI {running['ui_url']}, API {running['api_url']}", soft_wrap=True
        )
        raise typer.Exit(0)
    console.print(
        f"no kept Prefect server for {prefect_home()}; start one with `ovro-ingest server start`", soft_wrap=True
    )
    raise typer.Exit(1)


if __name__ == "__main__":
    sys.exit(app())
