"""The example DAGs import cleanly and run end to end against the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagrun import run_dag

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"


@pytest.fixture(scope="module")
def example_bag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(EXAMPLES))


def test_examples_import_without_errors(example_bag):
    assert example_bag.import_errors == {}
    assert {
        "modelops_train_model",
        "modelops_train_and_verify",
        "modelops_verify_new_model_version",
        "modelops_train_verify_promote",
    } <= set(example_bag.dag_ids)


@pytest.mark.parametrize("dag_id", ["modelops_train_model", "modelops_train_and_verify"])
def test_example_runs(example_bag, modelops_sandbox, dag_id):
    modelops_sandbox.control.foundry_studio(
        "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001", duration_s=0.5
    )
    modelops_sandbox.control.post(
        "/_sandbox/foundry/live-deployments",
        {
            "rid": "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000001",
            "studio_rid": "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001",
            "rollout_s": 0.3,
            "ready_after_s": 0.2,
        },
    )
    result = run_dag(example_bag.get_dag(dag_id))
    assert result.state == "success", result.tasks


def test_train_verify_promote_passes_then_its_gate_fails_on_a_regression(example_bag, modelops_sandbox):
    from modelops_provider.sandbox import foundry as sf

    control = modelops_sandbox.control
    control.foundry_studio(sf.SUCCEEDING_STUDIO, duration_s=0.5, metrics={"accuracy": 0.93, "loss": 0.21})
    control.foundry_studio(sf.REGRESSING_STUDIO, duration_s=0.5, metrics={"accuracy": 0.905, "loss": 0.27})
    control.post(
        "/_sandbox/foundry/live-deployments",
        {
            "rid": sf.PROD_LIVE_DEPLOYMENT,
            "model_rid": sf.SUCCEEDING_MODEL,
            "branch": sf.PROD_BRANCH,
            "model_version_rid": sf.PROD_VERSION,
            "rollout_s": 0.3,
            "ready_after_s": 0.2,
        },
    )
    dag = example_bag.get_dag("modelops_train_verify_promote")
    passed = run_dag(dag)
    assert passed.state == "success", passed.tasks
    promoted = passed.task("promote").xcom["return_value"]
    assert passed.task("inference_check").xcom["return_value"]["modelVersionRid"] == promoted
    failed = run_dag(dag, run_conf={"model_studio_rid": sf.REGRESSING_STUDIO})
    assert failed.state == "failed"
    assert failed.task("metrics_gate").state == "failed" and failed.task("promote").state == "upstream_failed"
    runs = {r["status"]: r for r in control.pluto_runs()}
    assert set(runs) == {"COMPLETED", "FAILED"}
    assert runs["COMPLETED"]["config"]["promoted_model_version"] == promoted
    assert [v["verdict"] for v in runs["FAILED"]["config"]["verdicts"]] == ["FAIL", "PASS"]
    assert runs["COMPLETED"]["metrics"]["candidate/accuracy"][0]["value"] == 0.93
    # Production now serves the promoted version, measured through its promotion: 0.93.
    assert runs["FAILED"]["config"]["production"]["metrics"]["accuracy"] == 0.93
