"""A tracked DAG run whose loss trips a Pluto threshold trigger: Pluto cancels the run while the
training (a deferred Foundry launch, the studio from the run's conf) still works; the keep-alive in
the triggerer reports the CANCELLED, and the finish task says so and ends the run as the DAG run."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from modelops_provider.foundry.operators import ModelStudioLaunchOperator
from modelops_provider.pluto.operators import (
    PlutoFinishRunOperator,
    PlutoKeepAliveOperator,
    PlutoStartRunOperator,
)

with DAG(
    "deploy_pluto_thresholds",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"studio": Param("", type="string")},
    tags=["modelops-deployment-tests"],
) as dag:
    start = PlutoStartRunOperator(
        task_id="pluto_start",
        project_name="deployment-thresholds",
        logger_settings={"trigger": {"loss": {"operator": ">", "threshold": 10}}},
    )

    @task
    def warm_up(ti=None) -> None:
        """The first epochs' losses, as a pluto client in the training code would log them: they diverge."""
        from modelops_provider.pluto.hooks import PlutoHook

        run_id = ti.xcom_pull(task_ids="pluto_start", key="runId")
        PlutoHook().log_metrics(run_id, "deployment-thresholds", [{"loss": 3.0}, {"loss": 42.0}], step=0)

    train = ModelStudioLaunchOperator(
        task_id="train", model_studio_rid="{{ params.studio }}", deferrable=True, poll_interval=1
    )
    finish = PlutoFinishRunOperator(task_id="pluto_finish")
    start.as_setup() >> warm_up() >> train >> finish.as_teardown(setups=start)
    start >> PlutoKeepAliveOperator(task_id="pluto_keep_alive", heartbeat_interval=1)
