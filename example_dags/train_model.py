"""Train a model in Foundry Model Studio, wait for it (deferred), and hand the new version on.

Against the embedded sandbox (``modelops-sandbox serve``) the defaults just work; against a real
Foundry, set the ``foundry_default`` connection and pass your studio's RID as the
``model_studio_rid`` param.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from modelops_provider.foundry.operators import ModelStudioLaunchOperator

SANDBOX_STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001"

with DAG(
    dag_id="modelops_train_model",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"model_studio_rid": Param(os.environ.get("MODELOPS_STUDIO_RID", SANDBOX_STUDIO), type="string")},
    tags=["modelops", "foundry", "example"],
):
    train = ModelStudioLaunchOperator(
        task_id="train",
        model_studio_rid="{{ params.model_studio_rid }}",
        deferrable=True,
        poll_interval=1,
        timeout=timedelta(hours=2),
        retries=2,
        retry_delay=timedelta(seconds=5),
    )

    @task
    def report_model_version(run: dict) -> str:
        output = run["resolvedOutputs"]["model"]
        print(f"Run {run['runId']} produced model version {output['modelVersionRid']} of {output['modelRid']}")
        return output["modelVersionRid"]

    # Read the run through ``train.output``: if a user marked "train" success while it waited (which
    # cancels the run), this task fails with "Task 'train' left no return value ... Clear 'train' to
    # run it again." rather than a TypeError on None.
    report_model_version(train.output)
