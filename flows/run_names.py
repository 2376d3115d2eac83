"""How the ingest's flow runs read in the Prefect UI: a night reads as a night.

The parent run is named after what it ingests: ``nightly 2024-05-25`` for a night of a
settings block (the deployment's name, then the night), the input folder otherwise. Its
child runs are named after their hour (``2024-05-25 06:00 UTC``). When a retry of the
parent completes an hour that an earlier attempt failed, the earlier child run is set to
a terminal state of its own, ``Superseded`` (a Completed type: not red in the runs
list), whose message names the run that replaced it; its task runs keep their states.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Completed, State

from blocks.ingest_settings import default_night

SUPERSEDED = "Superseded"
"""The state name of a child run whose hour a later attempt of the same parent run completed."""


def ingest_run_name() -> str:
    """The name of an ``ingest`` flow run, from its parameters (Prefect calls it when the run starts)."""
    from prefect.runtime import deployment, flow_run

    parameters = flow_run.parameters
    if parameters.get("input_dir"):
        return str(parameters["input_dir"])
    night = parameters.get("night") or default_night().isoformat()
    return f"{deployment.name or parameters.get('settings_block') or 'ingest'} {night}"


def supersede_failed_attempts(parent_id: str, hour: str, replacement: State) -> int:
    """Mark the Failed or Crashed child runs named ``hour`` of run ``parent_id`` superseded by ``replacement``'s run.

    Returns how many were marked. Called once ``replacement`` (the hour's run of a retry) completed.
    """
    replaced_by = replacement.state_details.flow_run_id
    failed = FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
    runs = FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]),
        name=FlowRunFilterName(any_=[hour]),
        state=FlowRunFilterState(type=failed),
    )
    with get_client(sync_client=True) as client:
        earlier = [run for run in client.read_flow_runs(flow_run_filter=runs) if run.id != replaced_by]
        for run in earlier:
            state = Completed(
                name=SUPERSEDED, message=f"superseded: a retry stored this hour in flow run {replaced_by}"
            )
            client.set_flow_run_state(run.id, state, force=True)
    return len(earlier)
