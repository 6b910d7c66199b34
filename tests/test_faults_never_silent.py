"""Never silent: the Pluto teardown, idempotent retries on 500, the deferred error, the timeout's
snapshot, a trigger's unexpected exception, the missed-poll rule in every mode, bounded cancels and a
capped Retry-After."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import datetime

import pytest

from dagrun import run_dag
from modelops_provider.core import errors
from modelops_provider.core.operators import unpack_event
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.triggers import ModelStudioRunTrigger

STUDIO = "ri.models.main.model-studio.88888888-8888-4888-8888-888888888888"
RUNS_PATH = f"/api/v2/models/modelStudios/{STUDIO}/runs"
STATUS_PATH = "/api/runs/status/update"


def with_extra(monkeypatch, service: str, conn_id: str, **extra) -> str:
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{service.upper()}_DEFAULT"])
    conn["extra"] = {**(conn.get("extra") or {}), **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


# --- Pluto teardown ------------------------------------------------------------------------------
def _tracked(dag_id: str):
    from airflow.sdk import DAG, task

    from modelops_provider.pluto.operators import PlutoFinishRunOperator, PlutoStartRunOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        start = PlutoStartRunOperator(task_id="pluto_start", project_name="teardown")

        @task
        def work() -> int:
            return 1

        finish = PlutoFinishRunOperator(task_id="pluto_finish")
        start.as_setup() >> work() >> finish.as_teardown(setups=start)
    return dag


@pytest.mark.usefixtures("airflow_db")
def test_status_update_is_retried_on_500(modelops_sandbox):
    control = modelops_sandbox.control
    control.fault([{"status": 500, "body": {"error": "Internal"}}] * 2, path_prefix=STATUS_PATH)
    result = run_dag(_tracked("pluto_status_500"))
    assert result.state == "success" and result.task("pluto_finish").state == "success"
    (run,) = control.pluto_runs()
    assert run["status"] == "COMPLETED"
    assert [r["status"] for r in control.requests(path_prefix=STATUS_PATH)] == [500, 500, 200]


@pytest.mark.usefixtures("airflow_db")
def test_a_status_that_cannot_be_set_fails_the_finish_task_naming_run_and_status(modelops_sandbox, capfd):
    control = modelops_sandbox.control
    control.fault([{"status": 500, "body": {"error": "Internal"}}] * 50, path_prefix=STATUS_PATH)
    os.environ["AIRFLOW_CONN_PLUTO_DEFAULT"] = json.dumps(
        {
            **json.loads(os.environ["AIRFLOW_CONN_PLUTO_DEFAULT"]),
            "extra": {
                **json.loads(os.environ["AIRFLOW_CONN_PLUTO_DEFAULT"])["extra"],
                "retry_max_attempts": 2,
                "retry_base_delay": 0.01,
            },
        }
    )
    result = run_dag(_tracked("pluto_status_down"))
    assert result.task("pluto_finish").state == "failed"
    (run,) = control.pluto_runs()
    assert run["status"] == "RUNNING"
    text = "".join(capfd.readouterr())
    assert f"could not set Pluto run {run['displayId']} (runId {run['runId']}) to COMPLETED" in text
    assert len(control.requests(path_prefix=STATUS_PATH)) == 2


def test_idempotent_posts_and_gets_are_retried_on_500_but_metric_ingest_is_not(modelops_sandbox):
    from modelops_provider.pluto.hooks import PlutoHook

    control = modelops_sandbox.control
    hook = PlutoHook()
    run = hook.create_run("p", "r", external_id="x")
    control.fault([{"status": 500, "body": {"error": "Internal"}}], path_prefix="/api/runs/tags/update")
    hook.update_tags(run.run_id, ["a"])
    control.fault([{"status": 500, "body": {"code": "INTERNAL", "message": "boom"}}], path_prefix="/ingest/metrics")
    with pytest.raises(errors.ServerError):
        hook.log_metrics(run.run_id, "p", {"loss": 1.0})
    # A single 500 on a DuckLake read (e.g. the steps right after SUCCESS) is ridden out.
    ducklake = DuckLakeHook()
    dl_run = ducklake.trigger_model_run("analytics")
    control.fault(
        [{"status": 500, "body": {"code": 500, "message": "database is locked"}}],
        path_prefix=f"/v1/model-runs/{dl_run.id}/steps",
    )
    ducklake.list_model_run_steps(dl_run.id)
    # A cancel is idempotent too.
    control.fault(
        [{"status": 500, "body": {"code": 500, "message": "busy"}}], path_prefix=f"/v1/model-runs/{dl_run.id}/cancel"
    )
    ducklake.cancel_model_run(dl_run.id)
    assert ducklake.get_model_run(dl_run.id).status == "CANCELLED"


# --- deferral keeps the error --------------------------------------------------------------------
def _trigger(run, **kwargs) -> ModelStudioRunTrigger:
    return ModelStudioRunTrigger(
        model_studio_rid=STUDIO,
        run_id=run.run_id,
        build_rid=run.build_rid,
        **{"conn_id": "foundry_default", "poll_interval": 0.1, **kwargs},
    )


async def _events(trigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


@pytest.mark.parametrize("shared", [True, False], ids=["shared-poller", "own-loop"])
def test_a_deferred_api_error_is_raised_as_the_same_class_with_the_same_fields(modelops_sandbox, monkeypatch, shared):
    # The trigger's own loop reads the run; the shared poller reads the build through getBatch.
    monkeypatch.setenv("AIRFLOW__MODELOPS__SHARED_POLLING", str(shared))
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    hook = FoundryHook()
    run = hook.launch_model_studio(STUDIO)
    denied = {
        "errorCode": "PERMISSION_DENIED",
        "errorName": "ApiUsageDenied",
        "errorInstanceId": "e-1",
        "parameters": {"studioRid": STUDIO},
    }
    path = "/api/v2/orchestration/builds/getBatch" if shared else RUNS_PATH
    modelops_sandbox.control.fault([{"status": 403, "body": denied}] * 2, path_prefix=path)
    with pytest.raises(errors.PermissionDeniedError) as sync:
        if shared:
            hook.call(hook.api.get_builds([run.build_rid]))
        else:
            hook.get_model_studio_run(STUDIO, run.run_id)
    (event,) = asyncio.run(_events(_trigger(run)))
    # The event is JSON (it is stored in Airflow's database) and round-trips the error.
    event = json.loads(json.dumps(event))
    with pytest.raises(errors.PermissionDeniedError) as deferred:
        unpack_event(event)
    assert deferred.value.to_dict() == sync.value.to_dict()
    assert str(deferred.value) == str(sync.value)
    assert (deferred.value.status, deferred.value.error_name, deferred.value.parameters) == (
        403,
        "ApiUsageDenied",
        {"studioRid": STUDIO},
    )


def test_a_deferred_timeout_states_the_timeout_and_keeps_the_last_snapshot(modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    run = FoundryHook().launch_model_studio(STUDIO)
    (event,) = asyncio.run(_events(_trigger(run, deadline=time.time() + 0.3)))
    with pytest.raises(errors.JobTimeoutError) as info:
        unpack_event(json.loads(json.dumps(event)))
    assert "when the timeout expired (deadline " in str(info.value)
    assert info.value.snapshot is not None and info.value.snapshot.status == "RUNNING"


def test_an_unexpected_exception_in_a_trigger_is_logged_with_its_traceback(modelops_sandbox, monkeypatch, capfd):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    run = FoundryHook().launch_model_studio(STUDIO)

    def broken(self, hook):
        raise KeyError("no such field: buildStatus")

    monkeypatch.setattr(ModelStudioRunTrigger, "check", broken)
    # The trigger's own loop (the shared poller reaches the same except clause of run()).
    monkeypatch.setenv("AIRFLOW__MODELOPS__SHARED_POLLING", "False")
    (event,) = asyncio.run(_events(_trigger(run)))
    assert event["status"] == "error" and "KeyError" in event["message"]
    # The trigger logs through Airflow's structured logger: the traceback is in its output.
    text = "".join(capfd.readouterr())
    assert "the wait broke down" in text and "Traceback" in text and "in broken" in text


# --- the missed-poll rule: trigger counts, sensor in every mode ----------------------------------
@pytest.mark.parametrize("shared", [True, False], ids=["shared-poller", "own-loop"])
def test_the_trigger_misses_exactly_four_polls_and_gives_up_at_the_fifth(modelops_sandbox, monkeypatch, capfd, shared):
    # The trigger's own loop reads the run; the shared poller reads the build through getBatch.
    monkeypatch.setenv("AIRFLOW__MODELOPS__SHARED_POLLING", str(shared))
    path = "/api/v2/orchestration/builds/getBatch" if shared else RUNS_PATH
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.8)
    run = FoundryHook().launch_model_studio(STUDIO)
    conn_id = with_extra(monkeypatch, "foundry", "foundry_one_try", retry_max_attempts=1)
    modelops_sandbox.control.fault([{"status": 503}] * 4, path_prefix=path)
    events = asyncio.run(_events(_trigger(run, conn_id=conn_id)))
    assert events[0]["status"] == "done"
    missed = [line for line in "".join(capfd.readouterr()).splitlines() if "poll failed" in line]
    assert len(missed) == 4 and "0 more failed poll(s) allowed" in missed[-1]
    modelops_sandbox.control.reset()
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    run = FoundryHook().launch_model_studio(STUDIO)
    modelops_sandbox.control.fault([{"status": 503}] * 5, path_prefix=path)
    events = asyncio.run(_events(_trigger(run, conn_id=conn_id)))
    assert events[0]["status"] == "error" and events[0]["error"]["status"] == 503
    assert len(modelops_sandbox.control.requests(path_prefix=path)) == 5


def _sensor_dag(dag_id: str, run_id: str, mode: str):
    from airflow.sdk import DAG

    from modelops_provider.foundry.sensors import ModelStudioRunSensor

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioRunSensor(
            task_id="wait", model_studio_rid=STUDIO, run_id=run_id, poke_interval=0.1, timeout=60, mode=mode
        )
    return dag


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_the_sensor_gives_up_after_five_missed_pokes_in_a_row(modelops_sandbox, monkeypatch, mode):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=60)
    run = FoundryHook().launch_model_studio(STUDIO)
    with_extra(monkeypatch, "foundry", "foundry_default", retry_max_attempts=1)
    modelops_sandbox.control.fault([{"status": 503}] * 50, path_prefix=RUNS_PATH)
    result = run_dag(_sensor_dag(f"missed_{mode}", run.run_id, mode))
    assert result.task("wait").state == "failed"
    assert len(modelops_sandbox.control.requests(path_prefix=RUNS_PATH)) == 5


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_the_sensor_rides_out_four_missed_pokes(modelops_sandbox, monkeypatch, mode):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=1.5)
    run = FoundryHook().launch_model_studio(STUDIO)
    with_extra(monkeypatch, "foundry", "foundry_default", retry_max_attempts=1)
    modelops_sandbox.control.fault([{"status": 503}] * 4, path_prefix=RUNS_PATH)
    result = run_dag(_sensor_dag(f"rides_{mode}", run.run_id, mode))
    assert result.task("wait").state == "success"


# --- bounded cancels, capped Retry-After ---------------------------------------------------------
def test_the_workers_cancel_has_a_bounded_budget(modelops_sandbox, monkeypatch):
    import modelops_provider.core.operators as core_operators
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=60)
    monkeypatch.setattr(core_operators, "CANCEL_BUDGET_S", 1.0)
    run = FoundryHook().launch_model_studio(STUDIO)
    modelops_sandbox.control.fault(
        [{"status": 503, "headers": {"Retry-After": "30"}}] * 10, path_prefix="/api/v2/orchestration"
    )
    op = ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO)
    op._job = {"model_studio_rid": STUDIO, "run_id": run.run_id, "build_rid": run.build_rid}
    started = time.monotonic()
    op.on_kill()
    assert time.monotonic() - started < 3


def test_a_capped_retry_after_logs_what_was_asked_and_the_cap(modelops_sandbox, monkeypatch, caplog):
    conn_id = with_extra(monkeypatch, "foundry", "foundry_cap", retry_after_cap=0.2)
    modelops_sandbox.control.fault([{"status": 429, "headers": {"Retry-After": "100000"}}], path_prefix="/api/v2/admin")
    with caplog.at_level(logging.WARNING):
        FoundryHook(conn_id).call(FoundryHook(conn_id).api.get_current_user())
    (line,) = [r.getMessage() for r in caplog.records if "retry 1/" in r.getMessage()]
    assert "in 0.20s (Retry-After 100000s asked, capped at 0.2s)" in line


# --- state that must outlive a poke in reschedule mode (each poke is a new process) --------------
class FakeStore:
    """The task state store's interface (get/set/delete), kept in memory across sensor instances."""

    def __init__(self) -> None:
        self.values: dict = {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value, *args, **kwargs):
        self.values[key] = value

    def delete(self, key):
        self.values.pop(key, None)


LIVE = "ri.foundry-ml-live.main.live-deployment.99999999-9999-4999-8999-999999999999"


def test_degraded_clock_outlives_each_reschedule_poke(modelops_sandbox):
    from modelops_provider.foundry.sensors import LiveDeploymentSensor

    modelops_sandbox.control.post(
        "/_sandbox/foundry/live-deployments", {"rid": LIVE, "state": "DEGRADED", "is_ready": False}
    )
    store = FakeStore()

    def poke_in_a_new_process():
        sensor = LiveDeploymentSensor(
            task_id="verify", live_deployment_rid=LIVE, degraded_grace=0.5, mode="reschedule", poke_interval=0.1
        )
        return sensor.poke({"task_state_store": store})

    assert poke_in_a_new_process() is False  # DEGRADED: the grace starts
    assert store.values  # ...and its start is kept
    time.sleep(0.7)
    with pytest.raises(errors.JobFailedError, match="has been DEGRADED for"):
        poke_in_a_new_process()
    assert not store.values  # settled: a retry starts afresh


def test_missed_pokes_are_counted_across_reschedule_pokes(modelops_sandbox, monkeypatch):
    from modelops_provider.foundry.sensors import ModelStudioRunSensor

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=60)
    run = FoundryHook().launch_model_studio(STUDIO)
    conn_id = with_extra(monkeypatch, "foundry", "foundry_one", retry_max_attempts=1)
    modelops_sandbox.control.fault([{"status": 503}] * 5, path_prefix=RUNS_PATH)
    store = FakeStore()

    def poke_in_a_new_process():
        sensor = ModelStudioRunSensor(
            task_id="wait",
            model_studio_rid=STUDIO,
            run_id=run.run_id,
            foundry_conn_id=conn_id,
            mode="reschedule",
            poke_interval=0.1,
        )
        return sensor.poke({"task_state_store": store})

    assert [poke_in_a_new_process() for _ in range(4)] == [False] * 4
    with pytest.raises(errors.ServerError):
        poke_in_a_new_process()
    assert not store.values


def test_async_calls_reuse_one_connection_per_loop(modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    run = FoundryHook().launch_model_studio(STUDIO)

    async def main():
        for _ in range(20):  # twenty triggers' hooks, one after the other, on one event loop
            hook = FoundryHook()
            await hook.aget_conn()
            await hook.acall(hook.api.get_build(run.build_rid))

    asyncio.run(main())
    polls = modelops_sandbox.control.requests(path_prefix=f"/api/v2/orchestration/builds/{run.build_rid}")
    assert len(polls) == 20
    assert len({r["client_port"] for r in polls}) == 1, "one kept-alive connection, not one per hook"
