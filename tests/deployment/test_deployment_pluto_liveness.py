"""Pluto runs stay alive in a real deployment: the keep-alive pings from the triggerer while the
training waits there too, so a run whose training outlasts Pluto's stale and heartbeat windows is
never reaped, and ends with the DAG run's outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from airflow_deployment import AirflowDeployment


@pytest.fixture
def short_pluto_windows(deployment: AirflowDeployment) -> Iterator[None]:
    # The sandbox is shared by the tier's tests: restore the real timings afterwards.
    deployment.control.pluto_settings(
        heartbeat_grace_s=8, stale_grace_s=60, monitor_interval_s=0.5, heartbeat_coalesce_s=0
    )
    yield
    deployment.control.pluto_settings(
        heartbeat_grace_s=150, stale_grace_s=1800, monitor_interval_s=60, heartbeat_coalesce_s=30
    )


@pytest.mark.usefixtures("short_pluto_windows")
def test_a_long_training_keeps_its_pluto_run_alive_and_it_ends_as_the_dag_run(
    deployment: AirflowDeployment, studio: str
) -> None:
    dag = "deploy_pluto_liveness"
    deployment.control.foundry_studio(studio, outcome="SUCCEEDED", duration_s=80)  # outlasts both windows
    run = deployment.trigger(dag, {"studio": studio})
    assert deployment.wait_run(dag, run) == "success"
    start = deployment.xcom(dag, run, "pluto_start")
    [pluto] = [r for r in deployment.control.pluto_runs() if r["runId"] == start["runId"]]
    assert pluto["status"] == "COMPLETED"
    # Never reaped: the only status change is the finish task's.
    assert [(e["toStatus"], e["source"]) for e in pluto["statusHistory"]] == [("COMPLETED", "api")]
    assert "closedByServer" not in (pluto["statusMetadata"] or {})
    assert pluto["heartbeats"] >= 40
    keep_alive = deployment.xcom(dag, run, "pluto_keep_alive")
    assert keep_alive["status"] == "COMPLETED" and keep_alive["stoppedBecause"] == "closed"
    assert deployment.ti(dag, run, "pluto_keep_alive")["state"] == "success"
