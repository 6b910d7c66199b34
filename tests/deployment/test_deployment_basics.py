"""The deployment itself: examples run through the REST API, and a deferred task's trigger log is
readable (served over loopback) while it still waits."""

from __future__ import annotations

from airflow_deployment import AirflowDeployment
from remote import RemoteRuns


def test_components_are_healthy_and_bound_to_loopback(deployment: AirflowDeployment) -> None:
    health = deployment.health()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health
    assert deployment.base_url.startswith("http://127.0.0.1:")
    for name in ("api-server", "scheduler", "triggerer", "dag-processor", "log-server"):
        assert deployment.procs[name].poll() is None, deployment.tail(name)


def test_train_model_example_runs_deferred_in_the_triggerer(deployment: AirflowDeployment, studio: str) -> None:
    dag = "modelops_train_model"
    run = deployment.trigger(dag, {"model_studio_rid": studio})
    assert deployment.wait_run(dag, run) == "success"
    [attempt] = deployment.tries(dag, run, "train")
    assert attempt["state"] == "success"
    assert len(RemoteRuns(deployment, "foundry", studio).runs()) == 1
    version = deployment.xcom(dag, run, "report_model_version")
    assert version.startswith("ri.models.main.model-version.")


def test_transform_and_test_example_runs_deferred(deployment: AirflowDeployment, project: str) -> None:
    dag = "modelops_transform_and_test"
    run = deployment.trigger(dag, {"project_name": project})
    assert deployment.wait_run(dag, run) == "success"
    assert list(deployment.xcom(dag, run, "report")) == ["orders"]
    assert [r.status for r in RemoteRuns(deployment, "ducklake", project).runs()] == ["SUCCESS"]


def test_trigger_log_is_readable_while_the_task_is_deferred(deployment: AirflowDeployment, studio: str) -> None:
    dag = "deploy_foundry_deferred_r0"
    deployment.control.foundry_studio(studio, outcome="SUCCEEDED", duration_s=60)
    run = deployment.trigger(dag, {"studio": studio})
    deployment.wait_ti(dag, run, "launch", {"deferred"})

    def trigger_lines() -> str | None:
        text = deployment.log(dag, run, "launch", 1)
        return text if "Model Studio run" in text and "elapsed)" in text else None

    text = deployment.wait_until("the trigger's poll lines in the task log", trigger_lines, timeout=120, interval=1)
    assert deployment.ti(dag, run, "launch")["state"] == "deferred"
    assert "Could not read served logs" not in text
    assert "Started Model Studio run" in text  # the worker's part of the same try
    deployment.mark(dag, run, "launch", "failed")
    deployment.wait_run(dag, run)
