from __future__ import annotations

from datetime import datetime

import pytest

from dagrun import run_dag
from modelops_provider.sandbox import foundry as sf

pytestmark = pytest.mark.usefixtures("airflow_db")


def test_sync_launch_and_wait(modelops_sandbox):
    from airflow.sdk import DAG

    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    modelops_sandbox.control.foundry_studio(sf.SUCCEEDING_STUDIO, duration_s=0.6)
    with DAG("t_sync", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioLaunchOperator(task_id="train", model_studio_rid=sf.SUCCEEDING_STUDIO, poll_interval=0.2)
    result = run_dag(dag)
    assert result.state == "success"
    ti = result.task("train")
    run = ti.xcom["return_value"]
    assert run["buildStatus"] == "SUCCEEDED"
    assert run["resolvedOutputs"]["model"]["modelVersionRid"].startswith("ri.models.main.model-version.")
    assert ti.xcom["run_id"] == run["runId"]
    assert ti.xcom["_link_ModelStudioRunLink"].endswith(f"/runs/{run['runId']}")
