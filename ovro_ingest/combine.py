"""Step 4, combine frequencies: the subbands of one time step as one dataset, frequency ascending.

:func:`combine_frequencies` checks that the subbands belong together (one file per
frequency, one pixel grid, one set of polarizations) and fixes their order;
:func:`open_time_step` opens the result as one lazy ``xarray.Dataset`` with dims
(time, frequency, polarization, l, m).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import xarray as xr
from astropy.time import Time

from ovro_ingest.discover import parse_file_name
from ovro_ingest.errors import TimeStepRejected, file_boundary
from ovro_ingest.load import name_time_offset_s, open_subband
from ovro_ingest.models import ExcludedFile, LoadedTimeStep, Notice, SubbandImage, TimeStepPlan
from ovro_ingest.sky import shared_wcs
from ovro_ingest.store import SAME_CHANNEL_TOLERANCE_HZ

logger = logging.getLogger(__name__)

DATE_OBS_SPREAD_TOLERANCE_S = 1.0
"""Subbands of one time step are imaged from the same 10 s of data; more spread is worth a warning.

In a time step whose file names straddle a second (see ``discover.merge_straddling``)
more spread means two integrations, and the time step is refused.
"""
NAME_TIME_TOLERANCE_S = 60.0
"""A file-name time stamp further than this from DATE-OBS is worth a warning (real data: up to ~30 min)."""


def combine_frequencies(step: LoadedTimeStep, keep_bad_beams: bool = False) -> TimeStepPlan:
    """Order the subbands of a time step by frequency and check they belong together.

    Parameters
    ----------
    step : LoadedTimeStep
        The loaded subbands of one time step.
    keep_bad_beams : bool
        Keep files whose beam is missing or invalid (their beam is stored as NaN)
        instead of leaving them out of the time step.

    Returns
    -------
    TimeStepPlan
        Subbands in ascending frequency; the time is the earliest DATE-OBS; left out:
        what discovery left out, then the files with a bad beam.

    Raises
    ------
    TimeStepRejected
        Two files for one frequency (or one subband label), different pixel grids
        or different polarizations within the time step.
    """
    if not step.subbands:
        left_out = "".join(f"; left out {e.source.path}: {e.reason}" for e in step.left_out)
        raise TimeStepRejected(f"time step {step.key}: no subband images{left_out}")
    subbands, bad_beams = split_bad_beams(step, keep_bad_beams)
    excluded = (*step.left_out, *bad_beams)
    subbands = sorted(subbands, key=lambda s: (s.frequency_hz, s.file.source.path))
    for lower, upper in itertools.pairwise(subbands):
        if upper.frequency_hz - lower.frequency_hz < SAME_CHANNEL_TOLERANCE_HZ:
            raise TimeStepRejected(
                f"time step {step.key}: two files for one frequency "
                f"({lower.frequency_hz / 1e6:.4f} and {upper.frequency_hz / 1e6:.4f} MHz): "
                f"{lower.file.source.path} and {upper.file.source.path}; remove one of them"
            )
    labels = [s.file.source.subband for s in subbands]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        files = [s.file.source.path for s in subbands if s.file.source.subband in duplicated]
        raise TimeStepRejected(
            f"time step {step.key}: two files for subband {', '.join(duplicated)}: {', '.join(files)}; remove one of them"
        )
    check_alike(step.key, subbands)
    subbands, misplaced = split_misplaced(step.key, subbands)
    excluded = (*excluded, *misplaced)
    times = [s.time_mjd for s in subbands]
    spread_s = (max(times) - min(times)) * 86400.0
    problem = integration_problem(step.key, [(s.file.source.path, s.time_mjd) for s in subbands])
    if problem:
        raise TimeStepRejected(problem)
    return TimeStepPlan(
        key=step.key,
        time_mjd=min(times),
        subbands=tuple(subbands),
        excluded=excluded,
        date_obs_spread_s=spread_s,
        notices=(*(n for s in subbands for n in s.file.notices), *time_notices(step.key, min(times), spread_s)),
    )


def check_alike(key: str, subbands: list[SubbandImage]) -> None:
    """Refuse subbands of one time step that differ in image shape, celestial or spectral frame, or polarizations.

    Where each subband places its pixels on the sky is :func:`split_misplaced`'s to judge.
    """
    reference = subbands[0]
    ref_path = reference.file.source.path
    for subband in subbands[1:]:
        path = subband.file.source.path
        if (subband.grid.shape_lm, subband.grid.frame) != (reference.grid.shape_lm, reference.grid.frame):
            raise TimeStepRejected(
                f"time step {key}: {path} has pixel grid {subband.grid.describe()} but "
                f"{ref_path} has {reference.grid.describe()}; images of one time step must share a grid"
            )
        if subband.spectral_frame != reference.spectral_frame:
            raise TimeStepRejected(
                f"time step {key}: {path} has SPECSYS {subband.spectral_frame!r} but {ref_path} has "
                f"{reference.spectral_frame!r}; the frequencies of a store share one frame"
            )
        if subband.polarizations != reference.polarizations:
            raise TimeStepRejected(
                f"time step {key}: {path} has polarizations {subband.polarizations} but "
                f"{ref_path} has {reference.polarizations}"
            )


def split_misplaced(key: str, subbands: list[SubbandImage]) -> tuple[list[SubbandImage], tuple[ExcludedFile, ...]]:
    """The subbands whose celestial WCS places every pixel where the time step's does, and those left out.

    The time step's WCS is the one most of its subbands share (a tie: the lowest
    frequency's), compared by where it places pixels (:func:`ovro_ingest.sky.shared_wcs`),
    so that the one celestial WCS the store keeps per time step is every stored pixel's.
    """
    _, reasons = shared_wcs([s.celestial_wcs for s in subbands], subbands[0].grid.shape_lm)
    if not reasons:
        return subbands, ()
    excluded = tuple(
        ExcludedFile(source=subbands[i].file.source, reason=reason, kind="wcs") for i, reason in reasons.items()
    )
    logger.info(  # the run warns once for all its time steps (discover.left_out_notes)
        "time step %s: left out %d file(s) whose celestial WCS places pixels elsewhere than the others' "
        "(fix its WCS, then run again with --replace): %s",
        key,
        len(excluded),
        "; ".join(f"{e.source.path}: {e.reason}" for e in excluded),
    )
    return [s for i, s in enumerate(subbands) if i not in reasons], excluded


def integration_problem(key: str, files: list[tuple[str, float]]) -> str | None:
    """Why files grouped from names a second apart are not one integration (their DATE-OBS differ), or None.

    Parameters
    ----------
    key : str
        The time step's key (the earlier name time stamp).
    files : list of (path, time MJD)
        The time step's files and their header times.
    """
    named = {path: (parsed.key if (parsed := parse_file_name(Path(path).name)) else key) for path, _ in files}
    if len(set(named.values())) < 2:
        return None
    spread_s = (max(t for _, t in files) - min(t for _, t in files)) * 86400.0
    if spread_s < DATE_OBS_SPREAD_TOLERANCE_S:
        return None
    listing = ", ".join(Path(path).name for path, _ in files)
    return (
        f"time step {key}: its files are named {' and '.join(sorted(set(named.values())))} (one integration whose "
        f"names straddle a second) but their DATE-OBS spread over {spread_s:.1f} s: {listing}; "
        "check the DATE-OBS of these files (two integrations need names 10 s apart)"
    )


def split_bad_beams(step: LoadedTimeStep, keep_bad_beams: bool) -> tuple[list[SubbandImage], tuple[ExcludedFile, ...]]:
    """The subbands to store, and those left out for a missing or invalid beam."""
    bad = [s for s in step.subbands if s.beam_problem]
    if not bad or keep_bad_beams:
        return list(step.subbands), ()
    excluded = tuple(ExcludedFile(source=s.file.source, reason=s.beam_problem, kind="beam") for s in bad)
    good = [s for s in step.subbands if not s.beam_problem]
    listing = "; ".join(f"{e.source.path}: {e.reason}" for e in excluded)
    if not good:
        raise TimeStepRejected(
            f"time step {step.key}: no file has a valid beam ({listing}); fix BMAJ/BMIN, "
            "or pass --keep-bad-beams to store them with NaN beams"
        )
    logger.info(  # the run warns once for all its time steps (discover.left_out_notes)
        "time step %s: left out %d file(s) with an invalid beam (pass --keep-bad-beams to keep them): %s",
        step.key,
        len(excluded),
        listing,
    )
    return good, excluded


def time_notices(key: str, time_mjd: float, spread_s: float) -> list[Notice]:
    """Notices when the subbands' DATE-OBS spread, or when the name's time stamp is far from DATE-OBS (logged at INFO).

    The run warns once for all its time steps (:mod:`ovro_ingest.notices`).
    """
    notices = []
    if spread_s > DATE_OBS_SPREAD_TOLERANCE_S:
        logger.info("time step %s: the DATE-OBS of its subbands spread over %.1f s", key, spread_s)
        notices.append(Notice(kind="spread", subject=key, detail=f"{spread_s:.1f} s"))
    offset = name_time_offset_s(key, time_mjd)
    if abs(offset) > NAME_TIME_TOLERANCE_S:
        moment = Time(time_mjd, format="mjd", scale="utc").isot
        logger.info("time step %s: DATE-OBS %s is %+.0f s from the file-name time stamp", key, moment, offset)
        notices.append(Notice(kind="offset", subject=key, detail=f"{offset:+.0f} s"))
    return notices


def open_time_step(plan: TimeStepPlan) -> xr.Dataset:
    """Open a planned time step as one lazy dataset (pixels are read when computed).

    The ``time`` coordinate is the plan's time (DATE-OBS), the same for all subbands.
    """
    parts = []
    for subband in plan.subbands:
        with file_boundary(subband.file.source.path, "reading it with xradio", "check the file, or report it"):
            parts.append(open_subband(subband.file.path).assign_coords(time=[plan.time_mjd]))
    return xr.concat(parts, dim="frequency", data_vars="all", coords="minimal", compat="override", join="override")
