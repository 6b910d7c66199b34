"""The train-and-verify example, tracked in Pluto.

pluto_start (setup) >> train (deferred) >> verify_deployment (deferred: production serves the new
version, ACTIVE and ready) >> check_model_version >> pluto_finish (teardown). Every DAG run is one
Pluto run: its params are the run's config, the new model version is added to the config and its
checks are logged as metrics, and the run is closed COMPLETED or FAILED (with the failed task ids)
however the DAG run ended. A retried task or a cleared DAG run
resumes the same Pluto run. pluto_keep_alive sends heartbeats from the triggerer while the DAG run
works, so that Pluto does not close a long training run as stalled (under ``dag.test()``, which runs
one task at a time, it is skipped).

Against the embedded sandbox (``modelops-sandbox serve``) the defaults just work; against the real
services, set the ``foundry_default`` and ``pluto_default`` connections and pass your studio's RID
as the ``model_studio_rid`` param.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, get_current_context, task

from modelops_provider.foundry.operators import ModelStudioLaunchOperator
from modelops_provider.foundry.sensors import LiveDeploymentSensor
from modelops_provider.pluto.operators import (
    PlutoFinishRunOperator,
    PlutoKeepAliveOperator,
    PlutoStartRunOperator,
)

SANDBOX_STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001"
SANDBOX_DEPLOYMENT = "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000001"

with DAG(
    dag_id="modelops_train_and_track",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "model_studio_rid": Param(os.environ.get("MODELOPS_STUDIO_RID", SANDBOX_STUDIO), type="string"),
        "live_deployment_rid": Param(os.environ.get("MODELOPS_DEPLOYMENT_RID", SANDBOX_DEPLOYMENT), type="string"),
        "pluto_project": Param("modelops-examples", type="string"),
    },
    tags=["modelops", "foundry", "pluto", "example"],
):
    start = PlutoStartRunOperator(
        task_id="pluto_start",
        project_name="{{ params.pluto_project }}",
        tags=["airflow", "foundry"],
        retries=2,
        retry_delay=timedelta(seconds=5),
    )

    train = ModelStudioLaunchOperator(
        task_id="train",
        model_studio_rid="{{ params.model_studio_rid }}",
        deferrable=True,
        poll_interval=1,
        timeout=timedelta(hours=2),
        retries=2,
        retry_delay=timedelta(seconds=5),
    )

    verify = LiveDeploymentSensor(
        task_id="verify_deployment",
        live_deployment_rid="{{ params.live_deployment_rid }}",
        expected_model_version_rid=train.output,
        deferrable=True,
        poke_interval=1,
        timeout=60 * 30,
    )

    @task
    def report_model_version(run: dict) -> dict:
        output = run["resolvedOutputs"]["model"]
        print(f"Run {run['runId']} produced model version {output['modelVersionRid']} of {output['modelRid']}")
        return {
            "modelRid": output["modelRid"],
            "modelVersionRid": output["modelVersionRid"],
            "studioRunId": run["runId"],
            "configVersion": run.get("configVersion"),
        }

    @task
    def check_model_version(model: dict) -> None:
        checks = {
            "is a model version": ".model-version." in model["modelVersionRid"],
            "has a model": model["modelRid"].startswith("ri.models."),
            "from a known studio config": isinstance(model["configVersion"], int),
        }
        failed = [name for name, ok in checks.items() if not ok]
        # Pushed before failing, so the teardown logs the counts either way.
        counts = {"passed": len(checks) - len(failed), "failed": len(failed)}
        get_current_context()["ti"].xcom_push(key="tests", value=counts)
        if failed:
            raise ValueError(f"model version checks failed: {failed}")

    finish = PlutoFinishRunOperator(
        task_id="pluto_finish",
        # The model (RIDs) goes into the run's config; numbers become metrics:
        # model/configVersion, tests/passed, tests/failed.
        config_from_xcom={"model": "report_model_version"},
        metrics_from_xcom={"model": "report_model_version", "tests": ["check_model_version", "tests"]},
    )

    model = report_model_version(train.output)
    start.as_setup() >> train >> verify
    verify >> check_model_version(model) >> finish.as_teardown(setups=start)
    start >> PlutoKeepAliveOperator(task_id="pluto_keep_alive")
