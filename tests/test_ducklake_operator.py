"""DuckLakeModelRunOperator and DuckLakeModelRunSensor in real DAG runs (``dag.test()``) against the sandbox."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from dagrun import run_dag
from ducklake_helpers import add_connection, script_project, service_requests, wait_for
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.sandbox import ducklake as sd

pytestmark = pytest.mark.usefixtures("airflow_db")

START = datetime(2026, 1, 1)
PASSING = [
    {
        "name": "stg_orders",
        "rows_affected": 1500,
        "tests": [{"name": "not_null_order_id"}, {"name": "unique_order_id"}],
    },
    {"name": "fct_orders", "rows_affected": 700, "tests": [{"name": "positive_total"}]},
]


def operator(**kwargs: Any) -> Any:
    from modelops_provider.ducklake.operators import DuckLakeModelRunOperator

    return DuckLakeModelRunOperator(**{"task_id": "transform", "project_name": "shop", "poll_interval": 0.1, **kwargs})


def dag_of(dag_id: str, *factories: Any) -> Any:
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        for factory in factories:
            factory()
    return dag


def asset_events(run_id: str) -> dict[str, dict[str, Any]]:
    """Asset events of one DuckLake run, by asset URI."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).all()
        return {e.asset.uri: dict(e.extra) for e in events if (e.extra or {}).get("run_id") == run_id}


def output(capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


def run_statuses(url: str) -> list[tuple[str, str | None]]:
    headers = {"X-API-Key": sd.API_KEY}
    return [
        (r["status"], r.get("error_message")) for r in httpx.get(f"{url}/v1/model-runs", headers=headers).json()["data"]
    ]


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_all_tests_pass(modelops_sandbox, capfd, deferrable):
    control = modelops_sandbox.control
    script_project(control, "shop", *PASSING)
    result = run_dag(dag_of(f"dl_pass_{deferrable}", lambda: operator(deferrable=deferrable)))
    assert result.state == "success"
    task = result.task("transform")
    summary = task.xcom["return_value"]
    run_id = summary["run"]["id"]

    assert summary["run"]["status"] == "SUCCESS" and "compile_manifest" not in summary["run"]
    assert [(s["model_name"], s["status"], s["rows_affected"]) for s in summary["steps"]] == [
        ("stg_orders", "SUCCESS", 1500),
        ("fct_orders", "SUCCESS", 700),
    ]
    assert [(t["model_name"], t["test_name"], t["status"]) for t in summary["tests"]] == [
        ("stg_orders", "not_null_order_id", "PASS"),
        ("stg_orders", "unique_order_id", "PASS"),
        ("fct_orders", "positive_total", "PASS"),
    ]
    assert task.xcom["run_id"] == run_id and task.xcom["project_name"] == "shop"
    assert task.xcom["_link_DuckLakeModelRunLink"] == f"{modelops_sandbox.url}/ui/ducklake/model-runs/{run_id}"
    assert httpx.get(task.xcom["_link_DuckLakeModelRunLink"]).status_code == 200

    # One asset event per built model, rows affected in the extra.
    events = asset_events(run_id)
    assert {uri: e["rows_affected"] for uri, e in events.items()} == {
        "ducklake://127.0.0.1/shop/stg_orders": 1500,
        "ducklake://127.0.0.1/shop/fct_orders": 700,
    }
    assert len(service_requests(control, "POST")) == 1
    log = output(capfd)
    assert re.search(r"model +status +rows affected +duration\n", log)
    assert re.search(r"stg_orders +SUCCESS +1500 +0\.3s\n +test not_null_order_id +PASS +0 rows returned\n", log)


@pytest.mark.parametrize("status", ["FAIL", "ERROR"])
def test_failing_test_fails_the_task_naming_tests_and_models(modelops_sandbox, capfd, status):
    control = modelops_sandbox.control
    script_project(
        control,
        "shop",
        PASSING[0],
        {
            "name": "fct_orders",
            "tests": [{"name": "positive_total", "status": status, "rows_returned": 4}, {"name": "ok"}],
        },
    )
    result = run_dag(dag_of(f"dl_gate_{status}", operator))
    assert result.state == "failed"
    log = output(capfd)
    assert f"1 test(s) did not pass on model(s) fct_orders: positive_total on model fct_orders ({status}" in log
    assert run_statuses(modelops_sandbox.url) == [("SUCCESS", None)]
    assert asset_events(result.task("transform").xcom["run_id"]) == {}


def test_test_failures_only_warn_when_told(modelops_sandbox, capfd):
    control = modelops_sandbox.control
    script_project(
        control,
        "shop",
        {"name": "fct_orders", "tests": [{"name": "positive_total", "status": "FAIL", "rows_returned": 4}]},
    )
    result = run_dag(dag_of("dl_gate_off", lambda: operator(fail_on_test_failure=False)))
    assert result.state == "success"
    assert result.task("transform").xcom["return_value"]["tests"][0]["status"] == "FAIL"
    assert "fail_on_test_failure=False: not failing the task" in output(capfd)


def test_retry_after_a_failing_test_triggers_a_new_run(modelops_sandbox):
    """The gate's verdict is final: the retry does not re-read the run the first try gated, it
    triggers a new one."""
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "fct_orders", "tests": [{"name": "positive_total", "status": "FAIL"}]})
    dag = dag_of("dl_gate_retry", lambda: operator(retries=1, retry_delay=timedelta(seconds=0)))
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.task("transform").try_number == 2
    assert [r["path"] for r in service_requests(control, "POST")] == ["/v1/model-runs", "/v1/model-runs"]
    assert run_statuses(modelops_sandbox.url) == [("SUCCESS", None), ("SUCCESS", None)]


def succeeded_run_with_test_results(control: Any, results: list[dict[str, Any]]) -> str:
    """A SUCCESS run of project ``shop`` (one model, ``fct_orders``) whose test results the platform
    answers with ``results`` (statuses the 2026-03-01 API does not have, say)."""
    script_project(control, "shop", {"name": "fct_orders", "duration_s": 0, "tests": [{"name": "positive_total"}]})
    run_id = control.post("/_sandbox/ducklake/runs", {"project": "shop"})["id"]
    hook = DuckLakeHook()
    wait_for(lambda: hook.get_model_run(run_id).status == "SUCCESS")
    step_id = hook.list_model_run_steps(run_id)[0].id
    body = {"data": [{**r, "run_step_id": step_id} for r in results]}
    control.fault([{"status": 200, "body": body}], path_prefix=f"/v1/model-runs/{run_id}/steps/{step_id}/test-results")
    return run_id


@pytest.mark.parametrize(
    ("result", "words"),
    [
        ({"status": "SKIPPED"}, "status 'SKIPPED' is not PASS"),
        ({}, "status None is not PASS"),
    ],
    ids=["unknown", "missing"],
)
def test_a_test_status_other_than_pass_fails_the_gate(modelops_sandbox, capfd, result, words):
    from modelops_provider.ducklake.sensors import DuckLakeModelRunSensor

    control = modelops_sandbox.control
    results = [{"test_name": "not_null_id", "status": "PASS"}, {"test_name": "positive_total", **result}]
    run_id = succeeded_run_with_test_results(control, results)
    dag = dag_of(
        f"dl_gate_status_{len(result)}",
        lambda: DuckLakeModelRunSensor(task_id="wait", run_id=run_id, poke_interval=0.1),
    )
    assert run_dag(dag).state == "failed"
    assert f"1 test(s) did not pass on model(s) fct_orders: positive_total on model fct_orders ({words})" in output(
        capfd
    )


def test_a_test_status_other_than_pass_only_warns_when_told(modelops_sandbox, capfd):
    from modelops_provider.ducklake.sensors import DuckLakeModelRunSensor

    control = modelops_sandbox.control
    run_id = succeeded_run_with_test_results(control, [{"test_name": "positive_total", "status": "SKIPPED"}])
    dag = dag_of(
        "dl_gate_status_warn",
        lambda: DuckLakeModelRunSensor(task_id="wait", run_id=run_id, poke_interval=0.1, fail_on_test_failure=False),
    )
    result = run_dag(dag)
    assert result.state == "success"
    assert result.task("wait").xcom["return_value"]["tests"][0]["status"] == "SKIPPED"
    log = output(capfd)
    assert "positive_total on model fct_orders (status 'SKIPPED' is not PASS)" in log
    assert "fail_on_test_failure=False: not failing the task" in log


def test_failed_run_reports_error_message_and_failing_models(modelops_sandbox, capfd):
    control = modelops_sandbox.control
    script_project(
        control,
        "shop",
        {"name": "stg_orders"},
        {"name": "fct_orders", "outcome": "FAILED", "error_message": "Binder Error: column total does not exist"},
        {"name": "rpt_revenue"},
    )
    result = run_dag(dag_of("dl_failed", operator))
    assert result.state == "failed"
    log = output(capfd)
    assert (
        "ended FAILED: one or more models failed. failed models: fct_orders (Binder Error: column total does not exist)"
        in log
    )
    assert "not built: rpt_revenue (SKIPPED)" in log
    assert asset_events(result.task("transform").xcom["run_id"]) == {}


def test_run_cancelled_elsewhere_fails_the_task(modelops_sandbox, capfd):
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "slow", "duration_s": 3})

    def cancel_when_started() -> None:
        run = wait_for(
            lambda: next(
                iter(
                    httpx.get(f"{modelops_sandbox.url}/v1/model-runs", headers={"X-API-Key": sd.API_KEY}).json()["data"]
                ),
                None,
            )
        )
        httpx.post(f"{modelops_sandbox.url}/v1/model-runs/{run['id']}/cancel", headers={"X-API-Key": sd.API_KEY})

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    result = run_dag(dag_of("dl_cancelled", lambda: operator(deferrable=True)))
    canceller.join()
    assert result.state == "failed"
    assert f"ended CANCELLED: cancelled by {sd.API_KEY_PRINCIPAL}. not built: slow (CANCELLED)" in output(capfd)


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_timeout_cancels_the_run(modelops_sandbox, deferrable):
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "slow", "duration_s": 5})
    result = run_dag(dag_of(f"dl_timeout_{deferrable}", lambda: operator(deferrable=deferrable, timeout=0.6)))
    assert result.state == "failed"
    assert run_statuses(modelops_sandbox.url) == [("CANCELLED", f"cancelled by {sd.JWT_SUBJECT}")]
    assert [r["path"].rsplit("/", 1)[1] for r in service_requests(control, "POST")][1:] == ["cancel"]


@pytest.mark.parametrize(
    ("cancel_route", "deferrable"), [(None, False), ("cancellations", True)], ids=["learnt-sync", "pinned-deferrable"]
)
def test_timeout_cancels_through_cancellations_on_a_newer_server(
    modelops_sandbox, monkeypatch, cancel_route, deferrable
):
    control = modelops_sandbox.control
    control.post("/_sandbox/ducklake/settings", {"cancel_routes": ["cancellations"]})
    script_project(control, "shop", {"name": "slow", "duration_s": 5})
    extra = {} if cancel_route is None else {"cancel_route": cancel_route}
    conn_id = add_connection(monkeypatch, f"ducklake_newer_{cancel_route or 'learnt'}", **extra)
    dag = dag_of(
        f"dl_timeout_newer_{deferrable}",
        lambda: operator(deferrable=deferrable, timeout=0.6, ducklake_conn_id=conn_id),
    )
    assert run_dag(dag).state == "failed"
    assert run_statuses(modelops_sandbox.url) == [("CANCELLED", f"cancelled by {sd.JWT_SUBJECT}")]
    cancels = [(r["path"].rsplit("/", 1)[1], r["status"]) for r in service_requests(control, "POST")][1:]
    if cancel_route is None:
        assert cancels == [("cancel", 404), ("cancellations", 200)]
    else:
        assert cancels == [("cancellations", 200)]


def test_on_kill_cancels_the_run_it_waits_for(modelops_sandbox):
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "slow", "duration_s": 5})
    op = operator()
    job = op.submit_job({})  # what execute() does first
    op._job = job
    op.on_kill()
    assert DuckLakeHook().get_model_run(job["run_id"]).status == "CANCELLED"
    assert [r["path"].rsplit("/", 1)[1] for r in service_requests(control, "POST")] == ["model-runs", "cancel"]


@pytest.mark.parametrize("when", ["running", "succeeded"])
def test_retry_reattaches_to_the_run_of_the_failed_try(modelops_sandbox, when):
    """Try 1 triggers, then fails; try 2 re-attaches to the same run, whether it is still running
    (deferred wait) or already succeeded (read its steps and finish)."""
    control = modelops_sandbox.control
    if when == "running":
        script_project(control, "shop", *({**m, "duration_s": 1.5} for m in PASSING))
        # The trigger's first look at the run is refused (a failed poll that is not transient).
        faults = [{"status": 403, "body": {"code": 403, "message": "access denied"}}]
    else:
        script_project(control, "shop", *({**m, "duration_s": 0} for m in PASSING))
        control.post("/_sandbox/ducklake/settings", {"pending_s": 0})
        # The first look passes (SUCCESS at once); reading the steps is refused (not transient).
        faults = [{}, {"status": 403, "body": {"code": 403, "message": "access denied"}}]
    control.fault(faults, method="GET", path_prefix="/v1/model-runs/")
    dag = dag_of(
        f"dl_retry_{when}",
        lambda: operator(deferrable=when == "running", retries=1, retry_delay=timedelta(seconds=0)),
    )
    result = run_dag(dag)
    assert result.state == "success"
    task = result.task("transform")
    assert task.try_number == 2
    assert len(service_requests(control, "POST")) == 1  # triggered once
    run_id = task.xcom["return_value"]["run"]["id"]
    assert task.xcom["run_id"] == run_id
    assert task.xcom["_link_DuckLakeModelRunLink"].endswith(run_id)
    assert set(asset_events(run_id)) == {"ducklake://127.0.0.1/shop/stg_orders", "ducklake://127.0.0.1/shop/fct_orders"}


def test_bad_arguments_fail_before_any_request(modelops_sandbox, capfd):
    from modelops_provider.ducklake.sensors import DuckLakeModelRunSensor

    dag = dag_of(
        "dl_bad_args",
        lambda: operator(task_id="bad_project", project_name="my project"),
        lambda: operator(task_id="bad_models", model_names="stg_orders"),
        lambda: operator(task_id="bad_refresh", full_refresh="sometimes"),
        lambda: DuckLakeModelRunSensor(task_id="bad_run_id", run_id="run-42", poke_interval=0.1),
    )
    result = run_dag(dag)
    assert {t: r.state for t, r in result.tasks.items()} == dict.fromkeys(
        ["bad_project", "bad_models", "bad_refresh", "bad_run_id"], "failed"
    )
    assert service_requests(modelops_sandbox.control) == []
    log = output(capfd)
    for message in [
        "project_name must be a non-empty name without whitespace (at most 255 characters), got 'my project'",
        "model_names must be a list of model names or selectors (or None for every model), got 'stg_orders'",
        "full_refresh must be a boolean, got 'sometimes'",
        "run_id must be a UUID like '123e4567-e89b-12d3-a456-426614174000', got 'run-42'",
    ]:
        assert message in log


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_waits_for_a_run_started_elsewhere(modelops_sandbox, mode):
    from modelops_provider.ducklake.sensors import DuckLakeModelRunSensor

    control = modelops_sandbox.control
    script_project(control, "shop", *PASSING)
    run = control.post("/_sandbox/ducklake/runs", {"project": "shop"})  # as a schedule would
    kwargs: dict[str, Any] = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
    dag = dag_of(
        f"dl_sensor_{mode}",
        lambda: DuckLakeModelRunSensor(task_id="wait", run_id=run["id"], poke_interval=0.2, timeout=30, **kwargs),
    )
    result = run_dag(dag)
    assert result.state == "success"
    task = result.task("wait")
    summary = task.xcom["return_value"]
    assert summary["run"]["trigger_type"] == "SCHEDULED" and summary["run"]["status"] == "SUCCESS"
    assert len(summary["tests"]) == 3
    assert task.xcom["_link_DuckLakeModelRunLink"].endswith(f"/ui/ducklake/model-runs/{run['id']}")
    assert service_requests(control, "POST") == []  # the sensor never triggers nor cancels


def test_trigger_without_waiting_then_sense_the_run(modelops_sandbox):
    """``wait_for_completion=False`` returns at once; a deferrable sensor waits on the templated run id."""
    from modelops_provider.ducklake.sensors import DuckLakeModelRunSensor

    control = modelops_sandbox.control
    script_project(control, "shop", *PASSING)

    def build() -> None:
        trigger = operator(wait_for_completion=False)
        wait = DuckLakeModelRunSensor(
            task_id="wait",
            run_id="{{ ti.xcom_pull(task_ids='transform', key='run_id') }}",
            poke_interval=0.1,
            deferrable=True,
        )
        trigger >> wait

    result = run_dag(dag_of("dl_trigger_then_sense", build))
    assert result.state == "success"
    started = result.task("transform").xcom
    assert started["return_value"]["run_id"] == started["run_id"]
    assert asset_events(started["run_id"]) == {}  # nothing built yet when the operator returned
    summary = result.task("wait").xcom["return_value"]
    assert summary["run"]["id"] == started["run_id"] and summary["run"]["status"] == "SUCCESS"
    assert len(service_requests(control, "POST")) == 1


def test_sensor_fails_on_a_failed_run(modelops_sandbox, capfd):
    from modelops_provider.ducklake.sensors import DuckLakeModelRunSensor

    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "stg_orders", "outcome": "FAILED"}, {"name": "fct_orders"})
    run = control.post("/_sandbox/ducklake/runs", {"project": "shop"})
    dag = dag_of(
        "dl_sensor_failed", lambda: DuckLakeModelRunSensor(task_id="wait", run_id=run["id"], poke_interval=0.1)
    )
    assert run_dag(dag).state == "failed"
    log = output(capfd)
    assert f"DuckLake model run {run['id']} ended FAILED: one or more models failed. failed models: stg_orders" in log
    # The same words as the operator's, link included.
    assert f"not built: fct_orders (SKIPPED). See {modelops_sandbox.url}/ui/ducklake/model-runs/{run['id']}" in log


def test_example_dag_runs_and_queues_the_dag_scheduled_on_the_model(modelops_sandbox):
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    control = modelops_sandbox.control
    control.post("/_sandbox/ducklake/settings", {"pending_s": 0.1})
    for name in ("stg_orders", "fct_orders"):  # the sandbox's default project, made fast
        control.ducklake_model(name, project="analytics", duration_s=0.2, tests=[{"name": f"not_null_{name}"}])
    example = Path(__file__).resolve().parent.parent / "example_dags" / "transform_and_test.py"
    bag = DagBag(dag_folder=str(example))
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)  # the consumer DAG too, so that the asset event queues it
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == "modelops_orders_report").update({"is_paused": False})
    result = run_dag(bag.get_dag("modelops_transform_and_test"))
    assert result.state == "success", result.tasks
    assert result.task("report").xcom["return_value"] == {"stg_orders": 1000, "fct_orders": 1000}
    with create_session() as session:
        queued = (
            session.query(AssetDagRunQueue)
            .join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
            .filter(AssetModel.uri == "ducklake://127.0.0.1/analytics/fct_orders")
            .all()
        )
        assert [q.target_dag_id for q in queued] == ["modelops_orders_report"]
