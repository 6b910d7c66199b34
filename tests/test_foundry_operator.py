"""ModelStudioLaunchOperator and ModelStudioRunSensor, run by dag.test() against the sandbox."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dagrun import run_dag
from modelops_provider.sandbox import foundry as sf

pytestmark = pytest.mark.usefixtures("airflow_db")

STUDIO = "ri.models.main.model-studio.55555555-5555-4555-8555-555555555555"
LAUNCH_PATH = f"/api/v2/models/modelStudios/{STUDIO}/launch"
RUNS_PATH = f"/api/v2/models/modelStudios/{STUDIO}/runs"


def _dag(dag_id: str, **task_kwargs):
    from airflow.sdk import DAG

    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioLaunchOperator(task_id="train", **{"model_studio_rid": STUDIO, "poll_interval": 0.2, **task_kwargs})
    return dag


def _launches(sandbox) -> int:
    return len(sandbox.control.requests(path_prefix=LAUNCH_PATH))


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_launch_and_wait_succeeds(modelops_sandbox, modelops_sandbox_clock, deferrable, capfd):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.6)
    # The build ends once the wait has seen it RUNNING (the worker reads the runs, a trigger the builds).
    with modelops_sandbox_clock.advancing(0.6, path_prefix=(RUNS_PATH, "/api/v2/orchestration/builds")):
        result = run_dag(_dag(f"t_success_{deferrable}", deferrable=deferrable))
    assert result.state == "success"
    ti = result.task("train")
    run = ti.xcom["return_value"]
    assert run["buildStatus"] == "SUCCEEDED"
    assert run["resolvedOutputs"]["model"]["modelVersionRid"].startswith("ri.models.main.model-version.")
    assert ti.xcom["run_id"] == run["runId"] and ti.xcom["build_rid"] == run["buildRid"]
    assert ti.xcom["model_studio_rid"] == STUDIO
    assert ti.xcom["_link_ModelStudioRunLink"] == (
        f"{modelops_sandbox.url}/workspace/model-studio/{STUDIO}/runs/{run['runId']}"
    )
    assert _launches(modelops_sandbox) == 1
    logs = capfd.readouterr()
    assert sf.STATIC_TOKEN not in logs.out + logs.err
    if not deferrable:
        assert "build RUNNING" in logs.out + logs.err and "build SUCCEEDED" in logs.out + logs.err


def test_run_page_is_served_for_the_link(modelops_sandbox):
    import httpx

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2)
    result = run_dag(_dag("t_link", wait_for_completion=False))
    page = httpx.get(result.task("train").xcom["_link_ModelStudioRunLink"])
    assert page.status_code == 200 and "Model Studio run" in page.text


def test_no_wait_returns_identifiers(modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    result = run_dag(_dag("t_nowait", wait_for_completion=False))
    assert result.state == "success"
    job = result.task("train").xcom["return_value"]
    assert set(job) == {"model_studio_rid", "run_id", "build_rid", "config_version", "started_at"}
    assert modelops_sandbox.control.requests(path_prefix=RUNS_PATH) == []


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_failed_run_fails_the_task_with_ids_and_link(modelops_sandbox, deferrable, capfd):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.4, outcome="FAILED")
    result = run_dag(_dag(f"t_failed_{deferrable}", deferrable=deferrable))
    assert result.state == "failed"
    out = capfd.readouterr()
    text = out.out + out.err
    run_id = result.task("train").xcom["run_id"]
    build_rid = result.task("train").xcom["build_rid"]
    assert f"Model Studio run {run_id} (build {build_rid}) ended FAILED. See {modelops_sandbox.url}/workspace" in text


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_timeout_cancels_the_build(modelops_sandbox, deferrable, capfd):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=60)
    result = run_dag(_dag(f"t_timeout_{deferrable}", deferrable=deferrable, timeout=1.0))
    assert result.state == "failed"
    build_rid = result.task("train").xcom["build_rid"]
    cancels = modelops_sandbox.control.requests(path_prefix=f"/api/v2/orchestration/builds/{build_rid}/cancel")
    assert [c["status"] for c in cancels] == [204]
    from modelops_provider.foundry.hooks import FoundryHook

    assert FoundryHook().get_build(build_rid).status == "CANCELED"
    text = "".join(capfd.readouterr())
    # The failure names the timeout, and the log says whether the cancel was accepted.
    assert "(timeout 1s from the launch)" in text
    assert f"Cancel of Model Studio run {result.task('train').xcom['run_id']} (build {build_rid}) accepted" in text


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_retry_reattaches_instead_of_launching_again(modelops_sandbox, deferrable):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=1.5)
    # The first look at the run after the launch is refused: the first try fails while the run goes on.
    modelops_sandbox.control.fault(
        [{"status": 403, "body": {"errorCode": "PERMISSION_DENIED", "errorName": "Flaky"}}], path_prefix=RUNS_PATH
    )
    dag = _dag(f"t_retry_{deferrable}", deferrable=deferrable, retries=1, retry_delay=timedelta(seconds=0))
    result = run_dag(dag)
    assert result.state == "success"
    assert result.task("train").try_number == 2
    assert _launches(modelops_sandbox) == 1
    assert result.task("train").xcom["return_value"]["buildStatus"] == "SUCCEEDED"


def test_retry_after_failed_run_launches_a_new_one(modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2, outcome="FAILED")
    result = run_dag(_dag("t_retry_failed", retries=1, retry_delay=timedelta(seconds=0)))
    assert result.state == "failed"
    assert _launches(modelops_sandbox) == 2


def test_error_event_message_reaches_the_task(modelops_sandbox, capfd):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=5)
    modelops_sandbox.control.fault(
        [{"status": 403, "body": {"errorCode": "PERMISSION_DENIED", "errorName": "ApiUsageDenied"}}],
        path_prefix=RUNS_PATH,
    )
    result = run_dag(_dag("t_error_event", deferrable=True))
    assert result.state == "failed"
    text = "".join(capfd.readouterr())
    # The same typed error as in sync mode, rebuilt from the trigger event.
    expected = f"PermissionDeniedError: Foundry: GET {RUNS_PATH} -> HTTP 403: ApiUsageDenied (code=PERMISSION_DENIED"
    assert expected in text
    # That was the last try: nobody would wait for the build any more, so it was cancelled.
    build_rid = result.task("train").xcom["build_rid"]
    assert modelops_sandbox.control.requests(path_prefix=f"/api/v2/orchestration/builds/{build_rid}/cancel")


def test_bad_rid_fails_before_any_request(modelops_sandbox, capfd):
    result = run_dag(_dag("t_bad_rid", model_studio_rid="ri.models.main.model-studio"))
    assert result.state == "failed"
    assert "model_studio_rid must be a Foundry RID" in "".join(capfd.readouterr())
    assert modelops_sandbox.control.requests() == []


def test_bad_arguments_are_rejected_at_parse_time():
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    with pytest.raises(ValueError, match=r"poll_interval must be a number of seconds >= 0.*'soon'"):
        ModelStudioLaunchOperator(task_id="x", model_studio_rid=STUDIO, poll_interval="soon")
    with pytest.raises(ValueError, match=r"timeout must be .*-5"):
        ModelStudioLaunchOperator(task_id="y", model_studio_rid=STUDIO, timeout=-5)


def test_templated_rid(modelops_sandbox):
    from airflow.sdk import DAG

    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2)
    with DAG("t_template", schedule=None, start_date=datetime(2026, 1, 1), params={"studio": STUDIO}) as dag:
        ModelStudioLaunchOperator(task_id="train", model_studio_rid="{{ params.studio }}", poll_interval=0.1)
    assert run_dag(dag).state == "success"


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_modes(modelops_sandbox, mode):
    from airflow.sdk import DAG

    from modelops_provider.foundry.hooks import FoundryHook
    from modelops_provider.foundry.sensors import ModelStudioRunSensor

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.8)
    run = FoundryHook().launch_model_studio(STUDIO)
    kwargs = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
    with DAG(f"t_sensor_{mode}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioRunSensor(
            task_id="wait", model_studio_rid=STUDIO, run_id=run.run_id, poke_interval=0.2, timeout=30, **kwargs
        )
    result = run_dag(dag)
    assert result.state == "success"
    assert result.task("wait").xcom["return_value"]["buildStatus"] == "SUCCEEDED"
    assert result.task("wait").xcom["_link_ModelStudioRunLink"].endswith(run.run_id)


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_sensor_fails_on_failed_run_and_never_cancels(modelops_sandbox, deferrable, capfd):
    from airflow.sdk import DAG

    from modelops_provider.foundry.hooks import FoundryHook
    from modelops_provider.foundry.sensors import ModelStudioRunSensor

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.3, outcome="FAILED")
    run = FoundryHook().launch_model_studio(STUDIO)
    with DAG(f"t_sensor_failed_{deferrable}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioRunSensor(
            task_id="wait", model_studio_rid=STUDIO, run_id=run.run_id, poke_interval=0.1, deferrable=deferrable
        )
    assert run_dag(dag).state == "failed"
    assert f"build {run.build_rid} is FAILED" in "".join(capfd.readouterr())
    assert modelops_sandbox.control.requests(path_prefix="/api/v2/orchestration/builds/ri") == [] or all(
        not r["path"].endswith("/cancel") for r in modelops_sandbox.control.requests()
    )


def test_deferred_sensor_timeout_is_a_sensor_timeout(modelops_sandbox, capfd):
    from airflow.sdk import DAG

    from modelops_provider.foundry.hooks import FoundryHook
    from modelops_provider.foundry.sensors import ModelStudioRunSensor

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=60)
    run = FoundryHook().launch_model_studio(STUDIO)
    with DAG("t_sensor_timeout", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioRunSensor(
            task_id="wait", model_studio_rid=STUDIO, run_id=run.run_id, poke_interval=0.2, timeout=1, deferrable=True
        )
    assert run_dag(dag).state == "failed"
    assert "AirflowSensorTimeout" in "".join(capfd.readouterr())
    assert not any(r["path"].endswith("/cancel") for r in modelops_sandbox.control.requests())


def test_retry_launches_anew_when_the_earlier_run_is_gone(modelops_sandbox, capfd):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.5)
    # First try: the first look fails (403). Retry: the stored run is no longer found (404).
    modelops_sandbox.control.fault(
        [
            {"status": 403, "body": {"errorCode": "PERMISSION_DENIED", "errorName": "Flaky"}},
            {"status": 404, "body": {"errorCode": "NOT_FOUND", "errorName": "ModelStudioNotFound"}},
        ],
        path_prefix=RUNS_PATH,
    )
    result = run_dag(_dag("t_retry_gone", retries=1, retry_delay=timedelta(seconds=0)))
    assert result.state == "success"
    assert _launches(modelops_sandbox) == 2
    assert "no longer exists; starting a new one" in "".join(capfd.readouterr())


def _stored_jobs(dag_id: str) -> list:
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return [row.key for row in session.query(TaskStateStoreModel).filter_by(dag_id=dag_id)]


def test_a_finished_job_is_forgotten_so_clearing_the_task_runs_it_again(modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2)
    assert run_dag(_dag("t_forget_success")).state == "success"
    assert _stored_jobs("t_forget_success") == []
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2, outcome="FAILED")
    assert run_dag(_dag("t_forget_failed")).state == "failed"
    assert _stored_jobs("t_forget_failed") == []
    # (While waiting broke down, the job is kept: see test_retry_reattaches_instead_of_launching_again.)


def test_last_try_that_cannot_reattach_cancels_the_build(modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    denied = {"status": 403, "body": {"errorCode": "PERMISSION_DENIED", "errorName": "Flaky"}}
    modelops_sandbox.control.fault([denied, denied], path_prefix=RUNS_PATH)
    result = run_dag(_dag("t_reattach_fails", retries=1, retry_delay=timedelta(seconds=0)))
    assert result.state == "failed"
    cancels = [r for r in modelops_sandbox.control.requests() if r["path"].endswith("/cancel")]
    assert len(cancels) == 1 and _launches(modelops_sandbox) == 1


def test_sensor_pokes_again_after_a_transient_failure(modelops_sandbox):
    from airflow.sdk import DAG

    from modelops_provider.foundry.hooks import FoundryHook
    from modelops_provider.foundry.sensors import ModelStudioRunSensor

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.3)
    run = FoundryHook().launch_model_studio(STUDIO)
    # More 503s than one request's retry budget (6 attempts): the poke fails, the next one succeeds.
    modelops_sandbox.control.fault([{"status": 503, "headers": {"Retry-After": "0"}}] * 6, path_prefix=RUNS_PATH)
    with DAG("t_sensor_transient", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioRunSensor(task_id="wait", model_studio_rid=STUDIO, run_id=run.run_id, poke_interval=0.1, timeout=30)
    assert run_dag(dag).state == "success"
