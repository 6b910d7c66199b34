"""Pluto start/finish operators in real DAG runs (``dag.test()``) against the sandbox over loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from dagrun import run_dag
from modelops_provider.sandbox import pluto as sp

pytestmark = pytest.mark.usefixtures("airflow_db")

PLUTO_PATHS = ("/api/", "/ingest/", "/o/")


def pluto_requests(control) -> list[dict]:
    return [r for r in control.requests() if r["path"].startswith(PLUTO_PATHS)]


def only_run(control) -> dict:
    runs = control.pluto_runs()
    assert len(runs) == 1, runs
    return runs[0]


def tracked_dag(dag_id: str, *, fail: str | None = None, start_kwargs=None, finish_kwargs=None, **dag_kwargs):
    """pluto_start (setup) >> train >> evaluate >> pluto_finish (teardown); ``fail`` names a task that
    raises (or "param" to fail ``train`` when the run's ``fail`` param is true)."""
    from airflow.sdk import DAG, Param, task

    from modelops_provider.pluto.operators import PlutoFinishRunOperator, PlutoStartRunOperator

    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"lr": Param(0.01, type="number"), "fail": Param(False, type="boolean")},
        **dag_kwargs,
    ) as dag:
        start = PlutoStartRunOperator(task_id="pluto_start", project_name="airflow-tests", **(start_kwargs or {}))

        @task
        def train(params=None) -> str:
            if fail == "train" or (fail == "param" and params["fail"]):
                raise RuntimeError("training diverged")
            return "ri.models.main.model-version.0001"

        @task
        def evaluate(version: str) -> dict:
            return {"passed": 12, "failed": 0, "summary": "all green", "latency": {"p50": 0.02}}

        finish = PlutoFinishRunOperator(task_id="pluto_finish", **(finish_kwargs or {}))
        version = train()
        start.as_setup() >> version
        evaluate(version) >> finish.as_teardown(setups=start)
    return dag


def test_success_creates_one_run_with_params_as_config_and_closes_it_completed(modelops_sandbox):
    dag = tracked_dag(
        "t_pluto_ok",
        start_kwargs={"tags": ["airflow", "{{ dag.dag_id }}"]},
        finish_kwargs={
            "metrics": {"epochs": "{{ 2 + 1 }}"},
            "metrics_from_xcom": {"tests": "evaluate"},
            "config_from_xcom": {"modelVersionRid": "train"},
        },
    )
    result = run_dag(dag, run_conf={"lr": 0.05})
    assert result.state == "success"
    start = result.task("pluto_start").xcom
    run = only_run(modelops_sandbox.control)
    assert start["runId"] == run["runId"] and start["displayId"] == run["displayId"] == "AIR-1"
    assert start["url"] == run["url"] == start["_link_PlutoRunLink"]
    assert start["return_value"]["resumed"] is False
    assert run["externalId"] == f"airflow:t_pluto_ok:{result.run_id}"
    assert run["name"] == f"t_pluto_ok/{result.run_id}"
    assert run["tags"] == ["airflow", "t_pluto_ok"]
    assert run["systemMetadata"]["airflow"]["dagRunId"] == result.run_id
    # params with the run's conf on top, then what the teardown merged in
    assert run["config"] == {
        "lr": 0.05,
        "fail": False,
        "modelVersionRid": "ri.models.main.model-version.0001",
    }
    assert run["status"] == "COMPLETED"
    assert run["statusMetadata"] == {
        "dagId": "t_pluto_ok",
        "dagRunId": result.run_id,
        "failedTasks": [],
        "upstreamFailedTasks": [],
        "unfinishedTasks": [],
    }
    values = {name: [p["value"] for p in points] for name, points in run["metrics"].items()}
    # numeric leaves of the XCom dict, flattened; "summary" (text) is skipped
    assert values == {"epochs": [3], "tests/passed": [12], "tests/failed": [0], "tests/latency/p50": [0.02]}
    finish = result.task("pluto_finish").xcom
    assert finish["_link_PlutoRunLink"] == run["url"]
    assert finish["return_value"]["status"] == "COMPLETED"
    # the link opens the run page
    import httpx

    page = httpx.get(run["url"])
    assert page.status_code == 200 and "COMPLETED" in page.text and "AIR-1" in page.text


def test_upstream_failure_closes_the_run_failed_with_the_task_ids(modelops_sandbox):
    dag = tracked_dag("t_pluto_fail", fail="train", finish_kwargs={"metrics_from_xcom": {"tests": "evaluate"}})
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.task("train").state == "failed"
    assert result.task("evaluate").state == "upstream_failed"
    assert result.task("pluto_finish").state == "success"  # the teardown ran and reported
    run = only_run(modelops_sandbox.control)
    assert run["status"] == "FAILED"
    assert run["statusMetadata"]["failedTasks"] == ["train"]
    assert run["statusMetadata"]["upstreamFailedTasks"] == ["evaluate"]
    assert run["metrics"] == {}  # evaluate never ran: nothing to log, no error


def test_decide_status_completes_only_when_every_task_succeeded_or_skipped():
    from modelops_provider.pluto.operators import decide_status

    assert decide_status({"a": "success", "b": "skipped"}) == (
        "COMPLETED",
        {"failedTasks": [], "upstreamFailedTasks": [], "unfinishedTasks": []},
    )
    assert decide_status({}) == ("COMPLETED", {"failedTasks": [], "upstreamFailedTasks": [], "unfinishedTasks": []})
    unfinished = ["running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "deferred", "restarting", None]
    for state in unfinished:
        assert decide_status({"a": "success", "b": state}) == (
            "FAILED",
            {"failedTasks": [], "upstreamFailedTasks": [], "unfinishedTasks": ["b"]},
        ), state
    states = {"a": "failed", "b": "upstream_failed", "c": None, "d": "success", "e": "deferred", "f": "weird_new_state"}
    assert decide_status(states) == (
        "FAILED",
        {"failedTasks": ["a"], "upstreamFailedTasks": ["b"], "unfinishedTasks": ["c", "e", "f"]},
    )


def test_mapped_instances_fold_into_their_task_keeping_the_worst_state():
    from modelops_provider.pluto.operators import fold_mapped

    tasks = {"train", "work", "work_2", "evaluate"}
    raw = {
        "train": "success",
        "work_0": "success",
        "work_1": "running",
        "work_3": "success",
        "work_2": "success",  # a task of its own, not an instance of "work"
        "evaluate_0": "upstream_failed",
        "evaluate_1": "failed",
        "evaluate_2": "success",
        "evaluate_7": "removed",  # no longer part of the DAG run
        "gone_0": "failed",  # not a task of this DAG (any more): kept under its own key
    }
    assert fold_mapped(raw, tasks) == {
        "train": "success",
        "work": "running",
        "work_2": "success",
        "evaluate": "failed",
        "gone_0": "failed",
    }
    assert fold_mapped({"work_0": "skipped", "work_1": "success"}, tasks) == {"work": "skipped"}
    assert fold_mapped({"work_0": "removed"}, tasks) == {}


def test_a_failed_mapped_instance_fails_the_run_under_its_task_id(modelops_sandbox):
    from airflow.sdk import DAG, task

    from modelops_provider.pluto.operators import PlutoFinishRunOperator, PlutoStartRunOperator

    with DAG("t_pluto_mapped", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        start = PlutoStartRunOperator(task_id="pluto_start", project_name="airflow-tests")
        finish = PlutoFinishRunOperator(task_id="pluto_finish")

        @task
        def shard(n: int) -> int:
            if n == 2:
                raise RuntimeError("shard 2 diverged")
            return n

        start.as_setup() >> shard.expand(n=[1, 2, 3]) >> finish.as_teardown(setups=start)
    result = run_dag(dag)
    assert result.state == "failed"
    run = only_run(modelops_sandbox.control)
    assert run["status"] == "FAILED"
    assert run["statusMetadata"]["failedTasks"] == ["shard"]
    assert run["statusMetadata"]["upstreamFailedTasks"] == []
    assert run["statusMetadata"]["unfinishedTasks"] == []


def test_a_task_not_finished_when_the_teardown_reports_fails_the_run(modelops_sandbox):
    """A skipped task is fine; a task that has not finished (here: one placed after the teardown, so
    it has not even started) means the DAG run's outcome is not known to be good."""
    from airflow.sdk import DAG, task

    from modelops_provider.pluto.operators import PlutoFinishRunOperator, PlutoStartRunOperator

    with DAG("t_pluto_unfinished", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        start = PlutoStartRunOperator(task_id="pluto_start", project_name="airflow-tests")
        finish = PlutoFinishRunOperator(task_id="pluto_finish")

        @task
        def train() -> int:
            return 1

        @task
        def optional() -> None:
            from airflow.providers.common.compat.sdk import AirflowSkipException

            raise AirflowSkipException("nothing to do")

        @task
        def publish() -> int:
            return 2

        start.as_setup() >> [train(), optional()] >> finish.as_teardown(setups=start)
        finish >> publish()
    result = run_dag(dag)
    assert result.task("optional").state == "skipped" and result.task("publish").state == "success"
    run = only_run(modelops_sandbox.control)
    assert run["status"] == "FAILED"
    assert run["statusMetadata"]["failedTasks"] == [] and run["statusMetadata"]["upstreamFailedTasks"] == []
    assert run["statusMetadata"]["unfinishedTasks"] == ["publish"]


def test_retried_start_task_resumes_the_same_run(modelops_sandbox, monkeypatch):
    # One attempt per request: the create is processed by Pluto but its answer is lost, so the task
    # fails and Airflow retries it; the retry's create finds the run by its externalId.
    url = modelops_sandbox.url
    conn = {
        "conn_type": "pluto",
        "password": sp.SANDBOX_KEY,
        "extra": {"api_url": url, "ingest_url": url, "app_url": url, "retry_max_attempts": 1},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PLUTO_DEFAULT", json.dumps(conn))
    modelops_sandbox.control.fault([{"kind": "drop"}], path_prefix="/api/runs/create")
    dag = tracked_dag("t_pluto_retry", default_args={"retries": 1, "retry_delay": timedelta(0)})
    result = run_dag(dag)
    assert result.state == "success"
    start = result.task("pluto_start")
    assert start.try_number == 2
    assert start.xcom["return_value"]["resumed"] is True
    run = only_run(modelops_sandbox.control)
    assert run["opened"] == 2 and run["status"] == "COMPLETED"
    assert start.xcom["runId"] == run["runId"]
    assert len(modelops_sandbox.control.requests(path_prefix="/api/runs/create")) == 2


def test_cleared_dag_run_resumes_the_same_run_and_reports_the_new_outcome(modelops_sandbox):
    dag = tracked_dag("t_pluto_clear", fail="param", start_kwargs={"tags": ["first"]})
    when = datetime(2026, 2, 1, tzinfo=UTC)
    first = run_dag(dag, logical_date=when, run_after=when, run_conf={"fail": True})
    assert first.state == "failed"
    run = only_run(modelops_sandbox.control)
    assert run["status"] == "FAILED" and run["statusMetadata"]["failedTasks"] == ["train"]

    # dag.test() on the same logical date and run_after clears the task instances and runs the same
    # DAG run id again: to the operators (and Pluto) that is a cleared and re-run DAG run.
    dag = tracked_dag("t_pluto_clear", fail="param", start_kwargs={"tags": ["second"]})
    second = run_dag(dag, logical_date=when, run_after=when, run_conf={"fail": False})
    assert second.state == "success" and second.run_id == first.run_id
    assert second.task("pluto_start").xcom["return_value"]["resumed"] is True
    run = only_run(modelops_sandbox.control)
    assert run["opened"] == 2
    assert run["status"] == "COMPLETED" and run["statusMetadata"]["failedTasks"] == []
    assert run["config"]["fail"] is False  # the new conf, deep-merged
    assert run["tags"] == ["second"]  # a resumed run's tags are replaced with the task's


def test_bad_config_json_fails_before_any_request(modelops_sandbox):
    dag = tracked_dag("t_pluto_bad_config", start_kwargs={"config": '{"lr": 0.1'})
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.task("pluto_start").state == "failed"
    assert result.task("pluto_finish").state != "success"
    assert pluto_requests(modelops_sandbox.control) == []
    assert modelops_sandbox.control.pluto_runs() == []


def test_bad_key_fails_before_any_request_and_no_key_reaches_logs_or_xcom(modelops_sandbox, monkeypatch, capfd, caplog):
    secret = "sk-live-9f8e7d6c5b4a3210"
    url = modelops_sandbox.url
    conn = {
        "conn_type": "pluto",
        "password": secret,
        "extra": {"api_url": url, "ingest_url": url, "app_url": url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PLUTO_DEFAULT", json.dumps(conn))
    result = run_dag(tracked_dag("t_pluto_bad_key"))
    assert result.task("pluto_start").state == "failed"
    assert pluto_requests(modelops_sandbox.control) == []
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert "must start with 'mlps_' or 'mlpi_'" in logs
    assert secret not in logs


def test_no_api_key_in_logs_or_xcom_of_a_tracked_run(modelops_sandbox, capfd, caplog, airflow_db):
    result = run_dag(tracked_dag("t_pluto_secret", finish_kwargs={"metrics_from_xcom": {"tests": "evaluate"}}))
    assert result.state == "success"
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert "Pluto run: http://127.0.0.1" in logs  # the task logs were captured
    assert "COMPLETED" in logs
    files = (
        "".join(p.read_text(errors="replace") for p in (airflow_db / "logs").rglob("*") if p.is_file())
        if (airflow_db / "logs").exists()
        else ""
    )
    assert sp.SANDBOX_KEY not in logs + files
    assert sp.SANDBOX_KEY not in json.dumps({t: r.xcom for t, r in result.tasks.items()}, default=str)


def test_finish_needs_a_start_task(modelops_sandbox):
    from airflow.sdk import DAG

    from modelops_provider.pluto.operators import PlutoFinishRunOperator

    with DAG("t_pluto_no_start", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        PlutoFinishRunOperator(task_id="pluto_finish")
    result = run_dag(dag)
    assert result.task("pluto_finish").state == "failed"
    assert pluto_requests(modelops_sandbox.control) == []
    with pytest.raises(ValueError, match=r"metrics_from_xcom\['x'\] must be a task id"):
        PlutoFinishRunOperator(task_id="f", metrics_from_xcom={"x": ["a", "b", "c"]})
    for step in (-1, True, "1"):
        with pytest.raises(ValueError, match=f"step must be an integer >= 0, got {step!r}"):
            PlutoFinishRunOperator(task_id="f", step=step)


def test_example_train_and_track_is_one_completed_run_with_model_and_checks(modelops_sandbox):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "example_dags" / "train_and_track.py"
    spec = importlib.util.spec_from_file_location("example_train_and_track", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    modelops_sandbox.control.foundry_studio(module.SANDBOX_STUDIO, duration_s=0.3)
    modelops_sandbox.control.post(
        "/_sandbox/foundry/live-deployments",
        {"rid": module.SANDBOX_DEPLOYMENT, "studio_rid": module.SANDBOX_STUDIO, "rollout_s": 0.3, "ready_after_s": 0.2},
    )
    result = run_dag(module.start.dag)
    assert result.state == "success"
    assert result.task("pluto_keep_alive").state == "skipped"  # dag.test(): one task at a time
    served = result.task("verify_deployment").xcom["return_value"]["modelVersion"]["modelVersionRid"]
    run = only_run(modelops_sandbox.control)
    assert run["status"] == "COMPLETED" and run["projectName"] == "modelops-examples"
    version = result.task("report_model_version").xcom["return_value"]["modelVersionRid"]
    assert run["config"]["model"]["modelVersionRid"] == version == served
    assert run["config"]["model_studio_rid"] == module.SANDBOX_STUDIO  # the params
    values = {name: points[-1]["value"] for name, points in run["metrics"].items()}
    assert values == {"model/configVersion": 1, "tests/passed": 3, "tests/failed": 0}
