"""Zombie detection: a run of the ingest or time-series flow that stops sending heartbeats is marked Crashed.

A flow run sends a heartbeat event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds (180 by default) while it runs. When its process dies without a word (the
machine or the worker killed, out of memory), nothing else ever ends the run: the UI
would show it Running forever, and the operator could not retry it. This automation,
Prefect's documented recipe for such "zombie" runs, marks a run Crashed when neither a
heartbeat nor a final state follows its last heartbeat within three heartbeat
periods; the operator can then retry it from the UI (a retry stores only what the
store does not hold yet).

Only the runs of the flows named in :data:`WATCHED_FLOWS` are watched: ``ingest``, its
hours' child runs (``ingest-hour``, which send heartbeats of their own, so that none is
left Running when their process died) and ``timeseries``. Task runs of a crashed run keep
the state they had (Prefect ends runs, not their tasks); a retry runs them again.
``deployments/stand-up`` creates the automation (:func:`watch_for_silent_runs`).
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.settings import get_current_settings

AUTOMATION_NAME = "ovro-ingest: crash silent runs"
WATCHED_FLOWS = ("ingest", "ingest-hour", "timeseries")
HEARTBEATS_MISSED = 3
"""Heartbeat periods without a heartbeat before a run is called crashed: one late heartbeat is no crash."""
FINAL_EVENTS = ("prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled")


def silence_limit() -> timedelta:
    """How long a watched run may stay silent: :data:`HEARTBEATS_MISSED` heartbeat periods (this client's setting),
    and at least one period more than the lease of the concurrency slot a dead ingest held (else its retry would
    find the slot still taken)."""
    from flows.ingest import WRITE_SLOT_LEASE_S

    period = get_current_settings().flows.heartbeat_frequency or 180
    return timedelta(seconds=max(HEARTBEATS_MISSED * period, WRITE_SLOT_LEASE_S + period))


def crash_silent_runs(
    flows: tuple[str, ...] = WATCHED_FLOWS, silent_for: timedelta | None = None, name: str = AUTOMATION_NAME
) -> Automation:
    """The automation (not yet created): a run of ``flows`` silent for ``silent_for`` after a heartbeat is Crashed.

    Parameters
    ----------
    flows : tuple of str
        Names of the flows whose runs are watched.
    silent_for : timedelta, optional
        Default :func:`silence_limit`. Must exceed the heartbeat period of every client
        that runs these flows, or a healthy run would be called crashed.
    name : str
        The automation's name (one automation of that name is kept).
    """
    return Automation(
        name=name,
        description=f"Marks a run of {', '.join(flows)} Crashed when its heartbeats stop (its process died).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Crashed", *FINAL_EVENTS},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(flows)},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=silent_for or silence_limit(),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message="no heartbeat from the run's process: it died (machine, worker or memory); retry it",
            )
        ],
    )


def watch_for_silent_runs(
    flows: tuple[str, ...] = WATCHED_FLOWS, silent_for: timedelta | None = None, name: str = AUTOMATION_NAME
) -> Automation:
    """Create :func:`crash_silent_runs` on the Prefect server in ``PREFECT_API_URL``, replacing one of that name."""
    with suppress(ValueError):  # ValueError: none of that name yet
        Automation.read(name=name).delete()
    return crash_silent_runs(flows, silent_for, name).create()


if __name__ == "__main__":
    created = watch_for_silent_runs()
    print(f"automation {created.name!r}: runs of {', '.join(WATCHED_FLOWS)} silent for {silence_limit()} are Crashed")
