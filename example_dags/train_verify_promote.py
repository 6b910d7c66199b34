"""Verify before it ships: train, gate on metrics against production, promote, wait until production
serves the promoted version, and check real answers from it; every number goes into the Pluto run.

pluto_start (setup) >> train (deferred) >> metrics_gate (accuracy >= 0.90, loss <= 0.30, accuracy no
worse than what production serves by more than 0.005) >> promote (to the prod branch) >>
wait_for_production (deferred: the prod deployment serves the promoted version, ACTIVE and ready) >>
inference_check (three known rows through transformJson) >> pluto_finish (teardown: the metrics,
production's metrics, the verdicts, the promoted version and the inference latencies).

Any step that fails stops the chain and says which number failed and by how much; the Pluto run is
closed FAILED with the verdicts all the same. ``make demo`` runs it twice: with the default studio (it
passes) and with ``{"model_studio_rid": <the sandbox's regressing studio>}`` (the gate fails: its
accuracy clears 0.90 but is worse than production's by more than 0.005).

Against the embedded sandbox the defaults just work; against real Foundry, set the connections and
pass your studio, model, branch and deployment RIDs, and inference cases of your model's API.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from modelops_provider.foundry.operators import (
    LiveDeploymentInferenceOperator,
    ModelMetricsCheckOperator,
    ModelStudioLaunchOperator,
    PromoteModelVersionOperator,
)
from modelops_provider.foundry.sensors import LiveDeploymentSensor
from modelops_provider.pluto.operators import PlutoFinishRunOperator, PlutoStartRunOperator

# The sandbox's seeds (modelops_provider.sandbox.foundry): a studio of model ...0001, and the
# production deployment tracking that model's "prod" branch.
SANDBOX_STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001"
SANDBOX_MODEL = "ri.models.main.model.00000000-0000-4000-8000-000000000001"
SANDBOX_PROD = "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000002"

with DAG(
    dag_id="modelops_train_verify_promote",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "model_studio_rid": Param(os.environ.get("MODELOPS_STUDIO_RID", SANDBOX_STUDIO), type="string"),
        "model_rid": Param(os.environ.get("MODELOPS_MODEL_RID", SANDBOX_MODEL), type="string"),
        "prod_branch": Param("prod", type="string"),
        "prod_deployment_rid": Param(os.environ.get("MODELOPS_PROD_DEPLOYMENT_RID", SANDBOX_PROD), type="string"),
        "min_accuracy": Param(0.90, type="number"),
        "max_loss": Param(0.30, type="number"),
        "accuracy_tolerance": Param(0.005, type="number"),
        "pluto_project": Param("modelops-examples", type="string"),
    },
    tags=["modelops", "foundry", "pluto", "example"],
):
    start = PlutoStartRunOperator(
        task_id="pluto_start",
        project_name="{{ params.pluto_project }}",
        tags=["airflow", "foundry", "verify"],
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

    gate = ModelMetricsCheckOperator(
        task_id="metrics_gate",
        model_version=train.output,  # the run: version and experiment from resolvedOutputs["model"]
        thresholds=[
            {
                "metric": "accuracy",
                "comparison": ">=",
                "value": "{{ params.min_accuracy }}",
                "tolerance": "{{ params.accuracy_tolerance }}",  # vs production
            },
            {"metric": "loss", "comparison": "<=", "value": "{{ params.max_loss }}"},
        ],
        no_worse_than="{{ params.prod_deployment_rid }}",
    )

    promote = PromoteModelVersionOperator(
        task_id="promote",
        model_rid="{{ params.model_rid }}",
        model_version=train.output,
        branch="{{ params.prod_branch }}",
        retries=2,
        retry_delay=timedelta(seconds=5),
    )

    serving = LiveDeploymentSensor(
        task_id="wait_for_production",
        live_deployment_rid="{{ params.prod_deployment_rid }}",
        expected_model_version_rid=promote.output,  # the promoted copy's RID
        deferrable=True,
        poke_interval=1,
        timeout=60 * 30,
    )

    # The sandbox's model answers prediction = 2 * x + 1 for each row of its tabular input df_in.
    inference = LiveDeploymentInferenceOperator(
        task_id="inference_check",
        live_deployment_rid="{{ params.prod_deployment_rid }}",
        expected_model_version=promote.output,
        cases=[
            {"input": {"df_in": [{"x": 1.0}]}, "expected": {"df_out": [{"prediction": 3.0}]}},
            {"input": {"df_in": [{"x": 0.5}]}, "expected": {"df_out": [{"prediction": 2.0}]}},
            {"input": {"df_in": [{"x": -1.0}]}, "expected": {"df_out": [{"prediction": -1.0}]}},
        ],
        tolerance=1e-6,
        timeout=120,
        retry_interval=1,
    )

    finish = PlutoFinishRunOperator(
        task_id="pluto_finish",
        # Metrics: candidate/accuracy, candidate/loss, production/metrics/accuracy, inference_ms/case_1, ...
        metrics_from_xcom={
            "candidate": ["metrics_gate", "metrics"],
            "production": ["metrics_gate", "production"],
            "inference_ms": ["inference_check", "latency_ms"],
        },
        # Config: the verdicts (also when the gate failed), production's version, the promoted version.
        config_from_xcom={
            "verdicts": ["metrics_gate", "verdicts"],
            "production": ["metrics_gate", "production"],
            "promoted_model_version": "promote",
        },
    )

    start.as_setup() >> train >> gate >> promote >> serving >> inference >> finish.as_teardown(setups=start)
