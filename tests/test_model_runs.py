"""Run records (XCom ``modelops_run``) written by real DAG runs against the sandbox, and the "Model
runs" page's query and app (filters, paging, readable DAGs, authentication)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from dagrun import run_dag
from ducklake_helpers import script_project

pytestmark = pytest.mark.usefixtures("airflow_db")

START = datetime(2026, 1, 1)
STUDIO_OK = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001"
STUDIO_FAILS = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000002"
DEPLOYMENT = "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000001"


def dag_of(dag_id: str, build: Any) -> Any:
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        build()
    return dag


def records(dag_id: str) -> dict[str, dict[str, Any]]:
    """Every run record of a DAG's runs, by task id (raw from the XCom table, as the page reads it)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, key="modelops_run").all()
        return {row.task_id: row.value for row in rows}


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_training_and_deployment_check_records(modelops_sandbox, deferrable):
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator
    from modelops_provider.foundry.sensors import LiveDeploymentSensor

    def build() -> None:
        train = ModelStudioLaunchOperator(
            task_id="train", model_studio_rid=STUDIO_OK, poll_interval=0.2, deferrable=deferrable
        )
        verify = LiveDeploymentSensor(
            task_id="verify",
            live_deployment_rid=DEPLOYMENT,
            expected_model_version_rid=train.output,
            poke_interval=0.2,
            deferrable=deferrable,
        )
        train >> verify

    dag_id = f"rec_train_{deferrable}"
    result = run_dag(dag_of(dag_id, build))
    assert result.state == "success"
    run = result.task("train").xcom["return_value"]
    version = run["resolvedOutputs"]["model"]["modelVersionRid"]
    recs = records(dag_id)

    train = recs["train"]
    assert train["service"] == "Foundry" and train["kind"] == "training run"
    assert train["remote_id"] == run["runId"] and train["url"].endswith(f"/runs/{run['runId']}")
    assert (train["outcome"], train["status"], train["model_version"]) == ("succeeded", "SUCCEEDED", version)
    assert train["started_at"] <= train["ended_at"]
    # The produced version's metrics (its experiment's series, last values), for the task's tab.
    assert train["metrics"] == pytest.approx({"accuracy": 0.93, "loss": 0.21})
    # The timeline starts at the launch and ends with the verdict; the deferrable path carried the
    # first half's events over the deferral.
    assert train["events"][0][1] == "STARTED" and train["events"][-1][1:] == ["SUCCEEDED", "succeeded"]

    verify = recs["verify"]
    assert (verify["kind"], verify["remote_id"], verify["model_version"]) == ("deployment check", DEPLOYMENT, version)
    assert verify["passed"] is True and verify["verdict"].startswith("serves the expected version: ACTIVE")


def test_failed_training_and_timeout_records(modelops_sandbox):
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    modelops_sandbox.control.foundry_studio(STUDIO_FAILS, outcome="FAILED", duration_s=0.5)
    slow = "ri.models.main.model-studio.00000000-0000-4000-8000-0000000000aa"
    modelops_sandbox.control.foundry_studio(slow, outcome="SUCCEEDED", duration_s=30)

    def build() -> None:
        ModelStudioLaunchOperator(task_id="fails", model_studio_rid=STUDIO_FAILS, poll_interval=0.2)
        ModelStudioLaunchOperator(task_id="slow", model_studio_rid=slow, poll_interval=0.2, timeout=1, deferrable=True)

    result = run_dag(dag_of("rec_failures", build))
    assert result.task("fails").state == "failed" and result.task("slow").state == "failed"
    recs = records("rec_failures")
    assert (recs["fails"]["outcome"], recs["fails"]["status"]) == ("failed", "FAILED")
    assert "ended FAILED" in recs["fails"]["message"]
    assert recs["slow"]["outcome"] == "timed out" and recs["slow"]["ended_at"] is not None


def test_ducklake_records_tally_tests_and_keep_steps_apart(modelops_sandbox):
    from modelops_provider.ducklake.operators import DuckLakeModelRunOperator

    control = modelops_sandbox.control
    script_project(
        control,
        "recshop",
        {"name": "stg", "rows_affected": 10, "tests": [{"name": "t1"}, {"name": "t2"}]},
        {"name": "fct", "rows_affected": 5, "tests": [{"name": "t3", "status": "FAIL", "rows_returned": 2}]},
    )

    def build() -> None:
        DuckLakeModelRunOperator(task_id="transform", project_name="recshop", poll_interval=0.1, deferrable=True)

    result = run_dag(dag_of("rec_ducklake", build))
    assert result.task("transform").state == "failed"  # the test gate
    rec = records("rec_ducklake")["transform"]
    assert (rec["service"], rec["outcome"], rec["status"], rec["project"]) == (
        "DuckLake",
        "failed",
        "SUCCESS",
        "recshop",
    )
    assert rec["passed"] is False and rec["verdict"] == "1 of 3 tests did not pass; 2 of 2 models built"
    assert "steps" not in rec  # the list page reads small values
    detail = result.task("transform").xcom["modelops_run_detail"]
    assert [(s["model_name"], s["rows_affected"]) for s in detail["steps"]] == [("stg", 10), ("fct", 5)]
    assert [(t["test_name"], t["status"]) for t in detail["tests"]] == [("t1", "PASS"), ("t2", "PASS"), ("t3", "FAIL")]


def _tab(dag_id: str, run_id: str, task_id: str) -> str:
    """The task's "Remote run" tab as the app renders it."""
    from airflow.utils.session import create_session

    from modelops_provider.ui import pages
    from modelops_provider.ui.query import task_record

    with create_session() as session:
        row, detail, result = task_record(session, dag_id, run_id, task_id, -1)
    assert row is not None
    return pages.task_page(row, detail, result, pages.Links("", "/modelops"))


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_failed_ducklake_run_records_its_steps_and_tests(modelops_sandbox, deferrable):
    from modelops_provider.ducklake.operators import DuckLakeModelRunOperator

    script_project(
        modelops_sandbox.control,
        "recfail",
        {"name": "stg", "rows_affected": 7, "tests": [{"name": "not_null_id"}]},
        {"name": "fct", "outcome": "FAILED", "error_message": "Binder Error: column total does not exist"},
        {"name": "rpt"},
    )

    def build() -> None:
        DuckLakeModelRunOperator(task_id="transform", project_name="recfail", poll_interval=0.1, deferrable=deferrable)

    dag_id = f"rec_ducklake_failed_{deferrable}"
    result = run_dag(dag_of(dag_id, build))
    assert result.task("transform").state == "failed"
    rec = records(dag_id)["transform"]
    assert (rec["outcome"], rec["status"], rec["passed"]) == ("failed", "FAILED", False)
    assert rec["verdict"] == "1 test passed; 1 of 3 models built"
    assert "failed models: fct (Binder Error" in rec["message"]
    detail = result.task("transform").xcom["modelops_run_detail"]
    assert [(s["model_name"], s["status"]) for s in detail["steps"]] == [
        ("stg", "SUCCESS"),
        ("fct", "FAILED"),
        ("rpt", "SKIPPED"),
    ]
    assert detail["steps"][1]["error_message"] == "Binder Error: column total does not exist"
    assert [(t["model_name"], t["test_name"], t["status"]) for t in detail["tests"]] == [("stg", "not_null_id", "PASS")]
    tab = _tab(dag_id, result.run_id, "transform")
    assert '<table id="steps">' in tab and "Binder Error: column total does not exist" in tab
    assert '<table id="tests">' in tab and "not_null_id" in tab


def test_cancelled_ducklake_run_watched_by_a_sensor_records_its_steps(modelops_sandbox):
    from modelops_provider.ducklake.sensors import DuckLakeModelRunSensor

    control = modelops_sandbox.control
    script_project(control, "reccancel", {"name": "quick", "duration_s": 0.1}, {"name": "slow", "duration_s": 30})
    run = control.post("/_sandbox/ducklake/runs", {"project": "reccancel"})

    def build() -> None:
        DuckLakeModelRunSensor(task_id="wait", run_id=run["id"], poke_interval=0.1)

    import threading

    import httpx

    from ducklake_helpers import wait_for
    from modelops_provider.sandbox import ducklake as sd

    runs = f"{modelops_sandbox.url}/v1/model-runs/{run['id']}"
    headers = {"X-API-Key": sd.API_KEY}

    def cancel_once_quick_is_built() -> None:
        wait_for(
            lambda: any(s["status"] == "SUCCESS" for s in httpx.get(f"{runs}/steps", headers=headers).json()["data"]),
            timeout=20,
        )
        httpx.post(f"{runs}/cancel", headers=headers).raise_for_status()

    canceller = threading.Thread(target=cancel_once_quick_is_built)
    canceller.start()
    result = run_dag(dag_of("rec_ducklake_cancelled", build))
    canceller.join()
    assert result.task("wait").state == "failed"
    rec = records("rec_ducklake_cancelled")["wait"]
    assert (rec["outcome"], rec["status"]) == ("cancelled", "CANCELLED")
    assert rec["verdict"] == "no tests; 1 of 2 models built"
    detail = result.task("wait").xcom["modelops_run_detail"]
    assert [(s["model_name"], s["status"]) for s in detail["steps"]] == [("quick", "SUCCESS"), ("slow", "CANCELLED")]
    assert "slow" in _tab("rec_ducklake_cancelled", result.run_id, "wait")


def test_pluto_finish_closes_the_record_the_start_opened(modelops_sandbox, capfd):
    from modelops_provider.pluto.operators import PlutoFinishRunOperator, PlutoStartRunOperator

    def build() -> None:
        start = PlutoStartRunOperator(task_id="start", project_name="recs")
        finish = PlutoFinishRunOperator(task_id="finish", metrics={"loss": 0.25})
        start >> finish.as_teardown(setups=start)

    result = run_dag(dag_of("rec_pluto", build))
    assert result.state == "success"
    recs = records("rec_pluto")
    assert (recs["start"]["outcome"], recs["start"].get("closes")) == ("running", None)
    finish = recs["finish"]
    assert finish["closes"] == "start" and finish["remote_id"] == recs["start"]["remote_id"]
    assert result.task("finish").xcom["modelops_run_closes"] == {"task_id": "start"}
    assert (finish["outcome"], finish["status"], finish["metrics"]) == ("succeeded", "COMPLETED", {"loss": 0.25})
    assert finish["started_at"] == recs["start"]["started_at"]  # one run, from its opening
    assert [e[1] for e in finish["events"]] == ["RUNNING", "COMPLETED"]
    (summary,) = _log_lines(capfd, f"Pluto tracking run {finish['remote_id']}: ")
    assert summary.startswith(f"Pluto tracking run {finish['remote_id']}: succeeded (COMPLETED) after ")
    assert f"; all tasks succeeded; {finish['url']}" in summary


# --- the page's query ----------------------------------------------------------------------------
GATE_STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000003"
INFER_LIVE = "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000003"


@pytest.mark.parametrize(("accuracy", "passed"), [(0.93, True), (0.905, False)], ids=["passes", "fails"])
def test_metrics_gate_records_its_verdict(modelops_sandbox, capfd, accuracy, passed):
    from modelops_provider.foundry.operators import ModelMetricsCheckOperator, ModelStudioLaunchOperator
    from modelops_provider.sandbox import foundry as sf

    modelops_sandbox.control.foundry_studio(GATE_STUDIO, duration_s=0.3, metrics={"accuracy": accuracy, "loss": 0.2})
    bars = [
        {"metric": "accuracy", "comparison": ">=", "value": 0.90, "tolerance": 0.005},
        {"metric": "loss", "comparison": "<=", "value": 0.30},
    ]

    def build() -> None:
        train = ModelStudioLaunchOperator(task_id="train", model_studio_rid=GATE_STUDIO, poll_interval=0.1)
        gate = ModelMetricsCheckOperator(
            task_id="gate", model_version=train.output, thresholds=bars, no_worse_than=sf.PROD_LIVE_DEPLOYMENT
        )
        train >> gate

    dag_id = f"rec_gate_{passed}"
    result = run_dag(dag_of(dag_id, build))
    assert result.task("gate").state == ("success" if passed else "failed")
    version = result.task("train").xcom["return_value"]["resolvedOutputs"]["model"]["modelVersionRid"]
    gate = records(dag_id)["gate"]
    assert (gate["service"], gate["kind"], gate["remote_id"], gate["model_version"]) == (
        "Foundry",
        "metrics gate",
        version,
        version,
    )
    assert gate["passed"] is passed and gate["metrics"] == {"accuracy": accuracy, "loss": 0.2}
    assert (gate["outcome"], gate["status"]) == (("succeeded", "PASSED") if passed else ("failed", "FAILED"))
    assert gate["started_at"] <= gate["ended_at"]
    if passed:
        assert gate["verdict"] == "2 of 2 threshold(s) met"
    else:
        assert gate["verdict"].startswith("1 of 2 threshold(s) met: accuracy = 0.9050 is 0.0150 worse than")
        assert "failed the metrics gate" in gate["message"]
    # The task's last word, linking the model (its versions and their experiments).
    model = result.task("train").xcom["return_value"]["resolvedOutputs"]["model"]["modelRid"]
    assert gate["url"].endswith(f"/workspace/models/{model}")
    (summary,) = _log_lines(capfd, f"Foundry metrics gate {version}: ")
    outcome = "succeeded (PASSED)" if passed else "failed"
    assert summary.startswith(f"Foundry metrics gate {version}: {outcome} after ") and gate["url"] in summary


@pytest.mark.parametrize("slope", [2.0, 2.5], ids=["right", "wrong"])
def test_inference_check_records_its_verdict(modelops_sandbox, capfd, slope):
    from modelops_provider.foundry.operators import LiveDeploymentInferenceOperator
    from modelops_provider.sandbox import foundry as sf

    modelops_sandbox.control.post(
        "/_sandbox/foundry/live-deployments",
        {
            "rid": INFER_LIVE,
            "model_rid": sf.SUCCEEDING_MODEL,
            "branch": "prod",
            "model_version_rid": sf.PROD_VERSION,
            "transform": {"slope": slope, "intercept": 1.0},
        },
    )
    cases = [
        {"input": {"df_in": [{"x": 1.0}]}, "expected": {"df_out": [{"prediction": 3.0}]}},
        {"input": {"df_in": [{"x": 0.0}]}, "expected": {"df_out": [{"prediction": 1.0}]}},
    ]

    def build() -> None:
        LiveDeploymentInferenceOperator(task_id="infer", live_deployment_rid=INFER_LIVE, cases=cases, timeout=10)

    dag_id = f"rec_infer_{slope}"
    result = run_dag(dag_of(dag_id, build))
    right = slope == 2.0
    assert result.task("infer").state == ("success" if right else "failed")
    infer = records(dag_id)["infer"]
    assert (infer["kind"], infer["remote_id"], infer["model_version"]) == (
        "inference check",
        INFER_LIVE,
        sf.PROD_VERSION,
    )
    assert infer["url"].endswith(INFER_LIVE)
    assert infer["passed"] is right
    assert infer["verdict"].startswith(f"{2 if right else 1} of 2 case(s) answered as expected; max ")
    assert set(infer["metrics"]) == {"latency_ms_max", "latency_ms_case_1", "latency_ms_case_2"}
    assert [e[1:] for e in infer["events"]] == [
        ["STARTED", "running"],
        ["PASSED", "succeeded"] if right else ["FAILED", "failed"],
    ]
    (summary,) = _log_lines(capfd, f"Foundry inference check {INFER_LIVE}: ")
    outcome = "succeeded (PASSED)" if right else "failed"
    assert summary.startswith(f"Foundry inference check {INFER_LIVE}: {outcome} after ") and infer["url"] in summary


def _promote_dag(dag_id: str, source: str) -> Any:
    from modelops_provider.foundry.operators import PromoteModelVersionOperator
    from modelops_provider.sandbox import foundry as sf

    def build() -> None:
        PromoteModelVersionOperator(
            task_id="promote", model_rid=sf.SUCCEEDING_MODEL, model_version=source, branch=sf.PROD_BRANCH
        )

    return dag_of(dag_id, build)


def _log_lines(capfd: pytest.CaptureFixture[str], start: str) -> list[str]:
    """The task log lines (as printed) whose message starts with ``start``."""
    text = "".join(capfd.readouterr())
    return [line[line.index(start) :] for line in text.splitlines() if start in line]


def test_promotion_records_the_version_it_produced_and_logs_a_summary(modelops_sandbox, capfd):
    from modelops_provider.foundry.hooks import FoundryHook
    from modelops_provider.sandbox import foundry as sf

    first = modelops_sandbox.control.foundry_studio(sf.SUCCEEDING_STUDIO)["initialModelVersionRid"]
    # A version prod does not serve yet (prod's is a copy of the first one): promoting it copies it.
    source = FoundryHook().promote_model_version(sf.SUCCEEDING_MODEL, first, "staging").rid
    result = run_dag(_promote_dag("rec_promote", source))
    assert result.task("promote").state == "success"
    new = result.task("promote").xcom["return_value"]
    rec = records("rec_promote")["promote"]
    assert (rec["kind"], rec["remote_id"], rec["model_version"], rec["outcome"], rec["status"]) == (
        "promotion",
        source,
        new,
        "succeeded",
        "PROMOTED",
    )
    assert rec["passed"] is True and rec["verdict"] == "promoted to branch prod"
    assert rec["url"].endswith(f"/workspace/models/{sf.SUCCEEDING_MODEL}")
    assert [e[1:] for e in rec["events"]] == [["STARTED", "running"], ["PROMOTED", "succeeded"]]
    assert rec["started_at"] <= rec["ended_at"]
    summary = _log_lines(capfd, f"Foundry promotion {source}: ")
    assert len(summary) == 1, summary
    assert summary[0].startswith(f"Foundry promotion {source}: succeeded (PROMOTED) after ")
    assert f"; model version {new}; promoted to branch prod; {rec['url']} " in summary[0]
    import httpx

    assert httpx.get(rec["url"]).status_code == 200  # the sandbox serves the model's page


def test_failed_promotion_records_the_version_it_tried_and_the_error(modelops_sandbox, capfd):
    from modelops_provider.sandbox import foundry as sf

    modelops_sandbox.control.foundry_studio(sf.SUCCEEDING_STUDIO)
    missing = "ri.models.main.model-version.0000dead-0000-4000-8000-000000000000"
    result = run_dag(_promote_dag("rec_promote_fails", missing))
    assert result.task("promote").state == "failed"
    rec = records("rec_promote_fails")["promote"]
    assert (rec["kind"], rec["remote_id"], rec["model_version"], rec["outcome"], rec["status"]) == (
        "promotion",
        missing,
        None,
        "failed",
        "ModelVersionNotFound",
    )
    assert rec["passed"] is False and rec["verdict"] == "not promoted to branch prod"
    assert "ModelVersionNotFound" in rec["message"] and "promoteVersion" in rec["message"]
    assert rec["ended_at"] is not None and rec["events"][-1][1:] == ["ModelVersionNotFound", "failed"]
    summary = _log_lines(capfd, f"Foundry promotion {missing}: ")
    assert len(summary) == 1 and summary[0].startswith(
        f"Foundry promotion {missing}: failed (ModelVersionNotFound) after "
    ), summary
    assert "; not promoted to branch prod; http" in summary[0]


def _fake_records(dag_id: str, rows: list[dict[str, Any]]) -> None:
    """Store records as the operators do (XCom of real task instances of a real DAG run)."""
    from airflow.sdk import DAG
    from airflow.sdk import task as task_decorator

    def build() -> None:
        for i, rec in enumerate(rows):

            @task_decorator(task_id=f"t{i}")
            def push(rec: dict[str, Any] = rec, **context: Any) -> None:
                context["ti"].xcom_push(key="modelops_run", value=rec)
                if rec.get("closes"):
                    context["ti"].xcom_push(key="modelops_run_closes", value={"task_id": rec["closes"]})

            push()

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        build()
    assert run_dag(dag).state == "success"


def _rec(remote_id: str, service: str, outcome: str, started_at: float, **extra: Any) -> dict[str, Any]:
    return {
        "service": service,
        "kind": "k",
        "remote_id": remote_id,
        "outcome": outcome,
        "started_at": started_at,
        **extra,
    }


@pytest.fixture(scope="module")
def stored(airflow_db):
    _fake_records(
        "page_a",
        [
            _rec("a1", "Foundry", "succeeded", 100.0),
            _rec("a2", "DuckLake", "failed", 300.0),
            _rec("p1", "Pluto", "running", 50.0),
            _rec("p1", "Pluto", "succeeded", 50.0, closes="t2"),
        ],
    )
    _fake_records("page_b", [_rec(f"b{i}", "DuckLake", "succeeded", 200.0 + i) for i in range(5)])


def _list(readable: set[str], **kwargs: Any) -> Any:
    from airflow.api_fastapi.core_api.security import PermittedXComFilter
    from airflow.utils.session import create_session

    from modelops_provider.ui.query import list_runs

    with create_session() as session:
        page = list_runs(session, PermittedXComFilter(readable), **kwargs)
        return page, [r.record["remote_id"] for r in page.rows]


def test_list_is_newest_first_and_hides_closed_openings(stored):
    page, ids = _list({"page_a", "page_b"})
    assert ids == ["a2", "b4", "b3", "b2", "b1", "b0", "a1", "p1"]
    assert page.total == 8 and page.dag_ids == ["page_a", "page_b"]
    assert page.rows[-1].record.get("closes") == "t2"  # the Pluto run as it ended, listed once
    assert all(r.task_state == "success" for r in page.rows)


def test_list_filters_and_pages(stored):
    assert _list({"page_a", "page_b"}, service="DuckLake")[1] == ["a2", "b4", "b3", "b2", "b1", "b0"]
    assert _list({"page_a", "page_b"}, outcome="failed")[1] == ["a2"]
    assert _list({"page_a", "page_b"}, dag_id="page_a")[1] == ["a2", "a1", "p1"]
    page, ids = _list({"page_a", "page_b"}, page=2, per_page=3)
    assert ids == ["b2", "b1", "b0"] and (page.page, page.pages, page.total) == (2, 3, 8)
    page, ids = _list({"page_a", "page_b"}, page=99, per_page=3)  # past the end: the last page
    assert ids == ["a1", "p1"] and page.page == 3


def test_list_shows_only_readable_dags(stored):
    page, ids = _list({"page_b"})
    assert ids == ["b4", "b3", "b2", "b1", "b0"] and page.dag_ids == ["page_b"]
    assert _list({"page_b"}, dag_id="page_a")[1] == []  # asking for another DAG does not help
    assert _list(set())[1] == []


def test_page_escapes_record_values_and_links_only_http_urls():
    from modelops_provider.ui import pages
    from modelops_provider.ui.query import RunPage, RunRow

    row = RunRow(
        "d",
        "r+1",
        "t",
        -1,
        _rec("<script>x</script>", "Foundry", "succeeded", 1.0, url="javascript:alert(1)", verdict="<b>"),
    )
    html = pages.runs_page(
        RunPage([row], 1, 1, 50, ["d"]), pages.Links("", "/modelops"), dag_id=None, service=None, outcome=None
    )
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "javascript:alert" not in html and "&lt;b&gt;" in html
    assert 'href="/dags/d/runs/r%2B1/tasks/t"' in html


@pytest.fixture
def auth_manager():
    """The auth manager, initialized as the api-server does at start: the plugin app resolves tokens
    through it. Serially an earlier test's app has done it; an xdist worker may have run none."""
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


@pytest.mark.usefixtures("auth_manager")
def test_plugin_app_refuses_an_unauthenticated_request():
    from fastapi.testclient import TestClient

    from modelops_provider.ui.app import create_app

    client = TestClient(create_app())
    for path in ("/runs", "/task?dag_id=d&run_id=r&task_id=t"):
        response = client.get(path)
        assert response.status_code == 401, (path, response.text)
    assert client.get("/runs", headers={"Authorization": "Bearer not-a-token"}).status_code in (401, 403)


@pytest.mark.usefixtures("auth_manager")
def test_the_plugin_app_itself_requires_a_login():
    """The app-level ``requires_authenticated()`` dependency, not each route's readable-DAG filter
    (which needs a login too), is what guards a route that reads no DAG: a route added later without
    that filter (here a probe) is refused without a login, and served with one."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from modelops_provider.ui.app import create_app

    app = create_app()

    @app.get("/probe")
    def probe() -> str:
        return "served"

    client = TestClient(app)
    assert client.get("/probe").status_code == 401
    assert client.get("/probe", headers={"Authorization": "Bearer not-a-token"}).status_code in (401, 403)
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))
    answer = client.get("/probe", headers={"Authorization": f"Bearer {token}"})
    assert (answer.status_code, answer.json()) == (200, "served")


@pytest.mark.usefixtures("auth_manager")
def test_the_plugin_app_shows_a_logged_in_user_only_the_dags_they_may_read(stored):
    """Through the app's routes, as the API server serves them: the list and the task tab take the
    auth manager's readable-DAGs filter (here narrowed to one DAG, as a role limited to it would)."""
    import typing

    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import PermittedXComFilter, ReadableXComFilterDep
    from fastapi.testclient import TestClient

    from modelops_provider.ui.app import create_app

    app = create_app()
    readable = typing.get_args(ReadableXComFilterDep)[1].dependency
    app.dependency_overrides[readable] = lambda: PermittedXComFilter({"page_b"})
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    listed = client.get("/runs")
    assert listed.status_code == 200 and "page_b" in listed.text and "page_a" not in listed.text
    assert "page_a" not in client.get("/runs", params={"dag_id": "page_a"}).text
    tab = client.get("/task", params={"dag_id": "page_a", "run_id": "r", "task_id": "t0"})
    assert tab.status_code == 403 and "page_a" not in tab.text


def test_plugin_is_registered_and_light():
    import subprocess
    import sys
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "modelops"]
    assert entry.value == "modelops_provider.ui.plugin:ModelOpsPlugin"
    code = (
        "import sys; import modelops_provider.ui.plugin as p; "
        "heavy = ('fastapi', 'modelops_provider.ui.app', 'modelops_provider.ui.query'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    views = {v["url_route"]: v for v in entry.load().external_views}
    assert views["model-runs"]["destination"] == "nav" and views["model-runs"]["category"] == "browse"
    assert views["remote-run"]["destination"] == "task_instance"


def test_connection_forms_have_no_null_options_and_suggest_every_text_field():
    from modelops_provider import get_provider_info

    for conn in get_provider_info()["connection-types"]:
        for name, field in conn["conn-fields"].items():
            schema = field["schema"]
            if "enum" in schema:
                assert None not in schema["enum"] and schema.get("default") in schema["enum"], (conn, name)
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if "string" in types and "enum" not in schema:
                assert schema.get("examples") or schema.get("default"), (conn["connection-type"], name)
            if {"number", "integer"} & set(types):
                assert schema.get("default") is not None, (conn["connection-type"], name)
        hidden = set(conn["ui-field-behaviour"]["hidden-fields"])
        visible = {"host", "port", "password", "login"} - hidden
        assert visible <= set(conn["ui-field-behaviour"]["placeholders"]), conn["connection-type"]
