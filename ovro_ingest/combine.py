"""Step 4, combine frequencies: the subbands of one time step as one dataset, frequency ascending.

:func:`combine_frequencies` checks that the subbands belong together (one file per
frequency, one pixel grid, one set of polarizations) and fixes their order;
:func:`open_time_step` opens the result as one lazy ``xarray.Dataset`` with dims
(time, frequency, polarization, l, m).
"""

from __future__ import annotations

import itertools

import xarray as xr

from ovro_ingest.errors import TimeStepRejected
from ovro_ingest.load import open_subband
from ovro_ingest.models import LoadedTimeStep, TimeStepPlan

SAME_CHANNEL_TOLERANCE_HZ = 1_000_000.0
"""Two header frequencies closer than this are the same channel.

OVRO-LWA subbands are 4.59 MHz apart (2.7 MHz with 16 subbands) while header
jitter is a few kHz; 1 MHz separates the two cases with a wide margin both ways.
"""


def combine_frequencies(step: LoadedTimeStep) -> TimeStepPlan:
    """Order the subbands of a time step by frequency and check they belong together.

    Parameters
    ----------
    step : LoadedTimeStep
        The loaded subbands of one time step.

    Returns
    -------
    TimeStepPlan
        Subbands in ascending frequency; the time is the earliest DATE-OBS.

    Raises
    ------
    TimeStepRejected
        Two files for one frequency (or one subband label), different pixel grids
        or different polarizations within the time step.
    """
    if not step.subbands:
        raise TimeStepRejected(f"time step {step.key}: no subband images")
    subbands = sorted(step.subbands, key=lambda s: (s.frequency_hz, s.file.source.path))
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
    reference = subbands[0]
    for subband in subbands[1:]:
        if subband.grid != reference.grid:
            raise TimeStepRejected(
                f"time step {step.key}: {subband.file.source.path} has pixel grid {subband.grid.describe()} but "
                f"{reference.file.source.path} has {reference.grid.describe()}; images of one time step must share a grid"
            )
        if subband.polarizations != reference.polarizations:
            raise TimeStepRejected(
                f"time step {step.key}: {subband.file.source.path} has polarizations {subband.polarizations} but "
                f"{reference.file.source.path} has {reference.polarizations}"
            )
    return TimeStepPlan(key=step.key, time_mjd=min(s.time_mjd for s in subbands), subbands=tuple(subbands))


def open_time_step(plan: TimeStepPlan) -> xr.Dataset:
    """Open a planned time step as one lazy dataset (pixels are read when computed).

    The ``time`` coordinate is the plan's time (DATE-OBS), the same for all subbands.
    """
    parts = [open_subband(s.file.path).assign_coords(time=[plan.time_mjd]) for s in plan.subbands]
    return xr.concat(parts, dim="frequency", data_vars="all", coords="minimal", compat="override", join="override")
