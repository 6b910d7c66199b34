"""Verify the deployment of every new version of a model, whoever trained it.

Scheduled on the model's asset: ``ModelStudioLaunchOperator`` (e.g. in ``modelops_train_model``)
emits an event on ``foundry://<host>/models/<modelRid>`` for each version it produces, carrying the
``modelVersionRid``. This DAG reads the newest event and waits until production serves that version.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, task

from modelops_provider.foundry.assets import model_asset
from modelops_provider.foundry.sensors import LiveDeploymentSensor

FOUNDRY_HOST = os.environ.get("MODELOPS_FOUNDRY_HOST", "127.0.0.1")
MODEL_RID = os.environ.get("MODELOPS_MODEL_RID", "ri.models.main.model.00000000-0000-4000-8000-000000000001")
DEPLOYMENT_RID = os.environ.get(
    "MODELOPS_DEPLOYMENT_RID", "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000001"
)
MODEL = model_asset(FOUNDRY_HOST, MODEL_RID)

with DAG(
    dag_id="modelops_verify_new_model_version",
    schedule=[MODEL],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["modelops", "foundry", "example"],
):

    @task(inlets=[MODEL])
    def new_version(*, inlet_events=None) -> str:
        events = inlet_events[MODEL]
        if not events:
            raise ValueError(f"no model version was published on {MODEL.uri} yet: train one first")
        event = events[-1]  # the newest event (the one that triggered a scheduled run)
        print(f"New version {event.extra['modelVersionRid']} from run {event.extra['runId']}")
        return event.extra["modelVersionRid"]

    LiveDeploymentSensor(
        task_id="verify_deployment",
        live_deployment_rid=DEPLOYMENT_RID,
        expected_model_version_rid=new_version(),
        deferrable=True,
        poke_interval=1,
        timeout=60 * 30,
    )
