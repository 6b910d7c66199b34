"""A tracked DAG run whose training outlasts Pluto's (test-sized) stale and heartbeat windows: the
deployment tier's Pluto liveness test. Training is a deferred Foundry launch (the studio comes from
the run's conf), so the keep-alive's heartbeats and the training wait share the triggerer."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from modelops_provider.foundry.operators import ModelStudioLaunchOperator
from modelops_provider.pluto.operators import (
    PlutoFinishRunOperator,
    PlutoKeepAliveOperator,
    PlutoStartRunOperator,
)

with DAG(
    "deploy_pluto_liveness",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"studio": Param("", type="string")},
    tags=["modelops-deployment-tests"],
) as dag:
    start = PlutoStartRunOperator(task_id="pluto_start", project_name="deployment-liveness")
    train = ModelStudioLaunchOperator(
        task_id="train", model_studio_rid="{{ params.studio }}", deferrable=True, poll_interval=1
    )
    finish = PlutoFinishRunOperator(task_id="pluto_finish")
    start.as_setup() >> train >> finish.as_teardown(setups=start)
    start >> PlutoKeepAliveOperator(task_id="pluto_keep_alive", heartbeat_interval=1)
