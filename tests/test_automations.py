"""Zombie detection against a real Prefect server: a run whose process dies is marked Crashed, a live one is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import httpx
import pytest

from flows.automations import crash_silent_runs, watch_for_silent_runs
from tests.conftest import untraced_environment
from tests.test_ingest_flow import flow_run_events

pytestmark = pytest.mark.orchestration

FLOW = """
import sys, time
from prefect import flow
from prefect.context import FlowRunContext

@flow(name=sys.argv[1])
def watched(seconds: float) -> None:
    print(FlowRunContext.get().flow_run.id, flush=True)
    time.sleep(seconds)

watched(float(sys.argv[2]))
"""
HEARTBEAT_S = 30
"""Prefect's shortest heartbeat period."""
SILENT_FOR = timedelta(seconds=HEARTBEAT_S + 30)
"""A heartbeat late by up to 30 s (a busy machine) is no crash."""


def start_run(flow_name: str, seconds: float) -> tuple[subprocess.Popen, str]:
    """A process running a flow named ``flow_name`` for ``seconds``, heartbeats every 30 s; and its flow run id."""
    env = {**untraced_environment(), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}  # no project code
    process = subprocess.Popen(
        [sys.executable, "-c", FLOW, flow_name, str(seconds)], env=env, stdout=subprocess.PIPE, text=True
    )
    return process, process.stdout.readline().strip()


def state_of(api: str, run_id: str) -> dict:
    return httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]


@pytest.mark.slow(90)
@pytest.mark.usefixtures("prefect_server")
def test_a_run_whose_process_dies_is_marked_crashed_and_a_live_run_is_not(prefect_server):
    flow_name = f"watched-{uuid.uuid4().hex[:8]}"  # only this test's runs are watched
    automation = watch_for_silent_runs((flow_name,), SILENT_FOR, name=f"test {flow_name}")
    dying, dying_id = start_run(flow_name, 600)
    living, living_id = start_run(flow_name, 80)  # heartbeats at 0, 30 and 60 s, then it completes
    try:
        assert flow_run_events(f"prefect.flow-run.{dying_id}", "prefect.flow-run.heartbeat"), "no first heartbeat"
        os.kill(dying.pid, signal.SIGKILL)
        dying.wait()
        assert state_of(prefect_server, dying_id)["type"] == "RUNNING", "nothing else ends a killed run"
        deadline = time.monotonic() + SILENT_FOR.total_seconds() + 90
        while state_of(prefect_server, dying_id)["type"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(2)
        crashed = state_of(prefect_server, dying_id)
        assert crashed["type"] == "CRASHED" and "no heartbeat" in crashed["message"], crashed
        assert living.wait(timeout=180) == 0
        assert state_of(prefect_server, living_id)["type"] == "COMPLETED", "a run that sends heartbeats lives on"
    finally:
        automation.delete()
        for process in (dying, living):
            process.kill()
            process.wait()


def test_the_stand_ups_automation_watches_every_ingest_and_timeseries_run_for_three_heartbeats():
    trigger = crash_silent_runs().trigger
    watched = {"prefect.resource.role": "flow", "prefect.resource.name": ["ingest", "ingest-hour", "timeseries"]}
    assert trigger.match_related.model_dump() == watched
    assert trigger.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.Completed" in trigger.expect
    assert trigger.within == timedelta(seconds=3 * 180), "three periods of Prefect's default heartbeat"


def test_a_short_heartbeat_period_still_waits_out_the_dead_runs_write_slot():
    from prefect.settings import temporary_settings

    from flows.ingest import WRITE_SLOT_LEASE_S

    with temporary_settings(updates={"flows.heartbeat_frequency": 30}):
        window = crash_silent_runs().trigger.within
    assert window == timedelta(seconds=WRITE_SLOT_LEASE_S + 30), "a retry right after the crash finds the slot free"
