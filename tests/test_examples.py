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
    assert {"modelops_train_model", "modelops_train_and_verify", "modelops_verify_new_model_version"} <= set(
        example_bag.dag_ids
    )


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
