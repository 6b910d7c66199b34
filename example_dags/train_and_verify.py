"""Train a model, then do not report success until production serves the version just trained.

launch (deferred wait) -> LiveDeploymentSensor on the produced version (deferred) -> report.
The deployment on branch ``master`` picks up the new version by itself; an ACTIVE deployment can
still be loading, or still serving the previous version, so the sensor checks version, state and
readiness together.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from modelops_provider.foundry.operators import ModelStudioLaunchOperator
from modelops_provider.foundry.sensors import LiveDeploymentSensor

SANDBOX_STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001"
SANDBOX_DEPLOYMENT = "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000001"

with DAG(
    dag_id="modelops_train_and_verify",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "model_studio_rid": Param(os.environ.get("MODELOPS_STUDIO_RID", SANDBOX_STUDIO), type="string"),
        "live_deployment_rid": Param(os.environ.get("MODELOPS_DEPLOYMENT_RID", SANDBOX_DEPLOYMENT), type="string"),
    },
    tags=["modelops", "foundry", "example"],
):
    train = ModelStudioLaunchOperator(
        task_id="train",
        model_studio_rid="{{ params.model_studio_rid }}",
        deferrable=True,
        poll_interval=1,
        timeout=timedelta(hours=2),
    )

    verify = LiveDeploymentSensor(
        task_id="verify_deployment",
        live_deployment_rid="{{ params.live_deployment_rid }}",
        expected_model_version_rid=train.output,  # the run; the version is read from resolvedOutputs["model"]
        output_alias="model",
        deferrable=True,
        poke_interval=1,
        timeout=60 * 30,
        degraded_grace=120,
    )

    @task
    def report(deployment: dict) -> None:
        version = deployment["modelVersion"]["modelVersionRid"]
        print(f"Production serves {version}: {deployment['status']['state']}, ready={deployment['status']['isReady']}")

    report(verify.output)
