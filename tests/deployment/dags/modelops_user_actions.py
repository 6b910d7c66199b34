"""DAGs for the deployment tier's user-action tests: one launch task and one task reading its result,
per system (Foundry Model Studio, DuckLake), waiting mode (deferred, sync) and retries (0, 2).

``deploy_<system>_<mode>_r<retries>``; the studio or project comes from the run's conf, so each test
scripts its own in the sandbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from modelops_provider.ducklake.operators import DuckLakeModelRunOperator
from modelops_provider.foundry.operators import ModelStudioLaunchOperator

STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001"


def _launch(system: str, deferrable: bool, retries: int) -> Any:
    common: dict[str, Any] = {
        "task_id": "launch",
        "deferrable": deferrable,
        "poll_interval": 1,
        "timeout": timedelta(seconds=600),
        "retries": retries,
        "retry_delay": timedelta(seconds=2),
    }
    if system == "foundry":
        return ModelStudioLaunchOperator(model_studio_rid="{{ params.studio }}", **common)
    return DuckLakeModelRunOperator(project_name="{{ params.project }}", **common)


for _system in ("foundry", "ducklake"):
    for _mode in ("deferred", "sync"):
        for _retries in (0, 2):
            with DAG(
                dag_id=f"deploy_{_system}_{_mode}_r{_retries}",
                schedule=None,
                start_date=datetime(2026, 1, 1),
                catchup=False,
                params={"studio": Param(STUDIO, type="string"), "project": Param("analytics", type="string")},
                tags=["modelops", "deployment-tests"],
            ):
                launched = _launch(_system, _mode == "deferred", _retries)

                @task
                def use_result(result: dict) -> str:
                    # Reads the launch task's return value as the examples do.
                    return str(result.get("runId") or result["run"]["id"])

                use_result(launched.output)
