"""Extra links as the Airflow UI reads them: from the serialized DAG, through the API server's code."""

from __future__ import annotations

from datetime import datetime

import pytest

from dagrun import run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

STUDIO = "ri.models.main.model-studio.cccccccc-cccc-4ccc-8ccc-cccccccccccc"


def test_model_studio_run_link_reaches_the_api_server(modelops_sandbox):
    from airflow.models import TaskInstance
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2)
    with DAG("t_links_api", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO, deferrable=True, poll_interval=0.1)
    result = run_dag(dag)
    assert result.state == "success"
    with create_session() as session:
        serialized = SerializedDagModel.get_dag("t_links_api", session=session)
        task = serialized.get_task("train")
        assert "Model Studio run" in task.extra_links
        ti = session.query(TaskInstance).filter_by(dag_id="t_links_api", run_id=result.run_id, task_id="train").one()
        url = task.get_extra_links(ti, "Model Studio run")
    run_id = result.task("train").xcom["run_id"]
    assert url == f"{modelops_sandbox.url}/workspace/model-studio/{STUDIO}/runs/{run_id}"
