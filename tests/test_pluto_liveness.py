"""Pluto as it really behaves (CONTRACTS.md section F), against the sandbox over loopback: the
stale-run monitor and heartbeats, status precedence and history, NaN/Infinity metrics and the
ingest's 422 errors; and the provider living with it: the keep-alive trigger and task, and the
finish task that reads the status back and applies its policy."""

from __future__ import annotations

import asyncio
import math
import time
import types
from datetime import datetime

import httpx
import pytest

from dagrun import run_dag
from modelops_provider.core import errors
from modelops_provider.pluto.hooks import PlutoHook
from modelops_provider.sandbox import pluto as sp

AUTH = {"Authorization": f"Bearer {sp.SANDBOX_KEY}"}


def stored(control, run_id: int) -> dict:
    return next(r for r in control.pluto_runs() if r["runId"] == run_id)


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


# --- the sandbox's monitor, heartbeats, precedence and history ------------------------------------
def test_settings_default_to_the_real_timings_and_are_validated(modelops_sandbox):
    control = modelops_sandbox.control
    assert control.pluto_settings() == {
        "heartbeat_grace_s": 150,
        "stale_grace_s": 1800,
        "monitor_interval_s": 60,
        "heartbeat_coalesce_s": 30,
    }
    bad = httpx.post(f"{modelops_sandbox.url}/_sandbox/pluto/settings", json={"grace": 1})
    assert bad.status_code == 400 and "heartbeat_grace_s" in bad.text
    # With the real timings, a quiet run is not reaped before its 1800 s stale grace.
    run = PlutoHook().create_run("p", "r")
    control.advance(1790)
    assert stored(control, run.run_id)["status"] == "RUNNING"


def test_a_run_that_never_pings_is_reaped_stale_after_the_stale_grace(modelops_sandbox):
    control = modelops_sandbox.control
    control.pluto_settings(stale_grace_s=0.6, monitor_interval_s=0.1)
    hook = PlutoHook()
    run = hook.create_run("p", "r")
    quiet = hook.create_run("p", "kept busy")
    # Metrics are a liveness signal (their own time stamps): the second run stays alive.
    for _ in range(12):
        hook.log_metrics(quiet.run_id, "p", {"loss": 1.0})
        time.sleep(0.1)
    reaped = stored(control, run.run_id)
    assert reaped["status"] == "FAILED"
    meta = reaped["statusMetadata"]
    assert meta["reason"] == "stale" and meta["grace_seconds"] == 0.6 and meta["stale_for_seconds"] >= 0
    assert meta["last_update_time"].endswith("Z")
    assert [(e["fromStatus"], e["toStatus"], e["source"]) for e in reaped["statusHistory"]] == [
        ("RUNNING", "FAILED", "stale-monitor")
    ]
    assert stored(control, quiet.run_id)["status"] == "RUNNING"


def test_heartbeats_keep_a_run_alive_and_their_end_reaps_it_after_the_heartbeat_grace(
    modelops_sandbox, modelops_sandbox_clock
):
    control = modelops_sandbox.control
    # A stale grace far away: what reaps here is the heartbeat grace, which applies once a run pinged.
    control.pluto_settings(heartbeat_grace_s=0.5, stale_grace_s=3600, monitor_interval_s=0.1, heartbeat_coalesce_s=0)
    hook = PlutoHook()
    run = hook.create_run("p", "r")
    modelops_sandbox_clock.advance(0.5)  # the warm-up (one grace after the py service started) is over
    for _ in range(10):
        assert hook.heartbeat(run.run_id).status == "RUNNING"
        modelops_sandbox_clock.advance(0.1)
    assert stored(control, run.run_id)["status"] == "RUNNING"
    assert stored(control, run.run_id)["heartbeats"] == 10
    modelops_sandbox_clock.advance(0.8)
    reaped = stored(control, run.run_id)
    assert reaped["status"] == "FAILED"
    assert reaped["statusMetadata"]["reason"] == "heartbeat-timeout"
    assert reaped["statusMetadata"]["grace_seconds"] == 0.5
    # A ping never revives a closed run; it answers the status.
    assert hook.heartbeat(run.run_id).status == "FAILED"
    assert stored(control, run.run_id)["status"] == "FAILED"


def test_status_precedence_drops_silently_and_the_history_tells(modelops_sandbox):
    hook = PlutoHook()
    run = hook.create_run("p", "r", external_id="ext-1")
    hook.update_status(run.run_id, "FAILED", status_metadata={"why": "oom"})
    answer = httpx.post(
        f"{modelops_sandbox.url}/api/runs/status/update",
        json={"runId": run.run_id, "status": "COMPLETED", "statusMetadata": '{"why": "fine"}'},
        headers=AUTH,
    )
    assert answer.status_code == 200 and answer.json() == {"success": True}  # and yet:
    details = hook.run_details(run.run_id)
    assert details.status == "FAILED" and details.status_metadata == {"why": "oom"}
    hook.create_run("p", "r", external_id="ext-1")  # resumed: back to RUNNING, source "resume"
    hook.update_status(run.run_id, "COMPLETED")
    events = hook.status_history(run.run_id).events
    assert [(e.from_status, e.to_status, e.source) for e in events] == [
        ("RUNNING", "FAILED", "api"),
        ("FAILED", "RUNNING", "resume"),
        ("RUNNING", "COMPLETED", "api"),
    ]
    assert events[0].metadata == {"why": "oom"}
    with pytest.raises(errors.NotFoundError, match="Run not found"):
        hook.status_history(run.run_id + 99)


def test_heartbeat_errors_are_the_py_services_and_a_stop_requested_in_pluto_answers_cancelled(modelops_sandbox):
    url, control = modelops_sandbox.url, modelops_sandbox.control
    hook = PlutoHook()
    run = hook.create_run("p", "r")
    ping = f"{url}/api/runs/trigger"
    assert httpx.post(ping, json={"runId": run.run_id}).json() == {"detail": "Authorization header missing or invalid"}
    basic = httpx.post(ping, json={"runId": run.run_id}, headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401 and basic.json() == {"detail": "Authorization header missing or invalid"}
    control.pluto_key("mlps_expired_key_01", "expired")
    expired = httpx.post(ping, json={"runId": run.run_id}, headers={"Authorization": "Bearer mlps_expired_key_01"})
    assert expired.status_code == 401 and expired.json() == {"detail": "Invalid or expired API key for this run"}
    missing = httpx.post(ping, json={}, headers=AUTH)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "runId"]
    with pytest.raises(errors.NotFoundError, match="Run not found"):
        hook.heartbeat(run.run_id + 99)

    assert hook.heartbeat(run.run_id).model_dump() == {"status": "RUNNING", "triggers": None}
    control.pluto_cancel(run.run_id)
    assert stored(control, run.run_id)["status"] == "RUNNING"  # until the client pings
    assert hook.heartbeat(run.run_id).status == "CANCELLED"
    after = stored(control, run.run_id)
    # Written directly by the py service: no precedence check and no status event.
    assert after["status"] == "CANCELLED" and after["statusHistory"] == []


# --- metrics as the ingest service takes them -------------------------------------------------------
def test_nan_and_infinity_are_logged_and_none_is_skipped(modelops_sandbox):
    hook = PlutoHook()
    run = hook.create_run("p", "r")
    sent = hook.log_metrics(
        run.run_id,
        "p",
        [
            {"loss": float("nan"), "grad": float("inf"), "lr": 0.1},
            {"loss": None, "grad": float("-inf")},
            {"loss": None},  # nothing left: not sent (the service would reject an empty record)
            {"loss": "NaN", "acc": "0.5"},
        ],
        step=0,
    )
    assert sent == 3
    metrics = stored(modelops_sandbox.control, run.run_id)["metrics"]
    values = {name: [(p["step"], p["value"]) for p in points] for name, points in metrics.items()}
    assert values == {
        "loss": [(0, "NaN"), (3, "NaN")],
        "grad": [(0, "Infinity"), (1, "-Infinity")],
        "lr": [(0, 0.1)],
        "acc": [(3, 0.5)],
    }
    # Only a record with nothing in it sends nothing at all.
    assert hook.log_metrics(run.run_id, "p", {"loss": None}) == 0
    assert len(modelops_sandbox.control.requests(path_prefix="/ingest/metrics")) == 1


def test_the_sandbox_ingest_reads_lines_as_the_service_does(modelops_sandbox):
    url = modelops_sandbox.url
    headers = {**AUTH, "X-Run-Id": "1", "X-Project-Name": "p"}
    PlutoHook().create_run("p", "r")

    def send(body: bytes) -> httpx.Response:
        return httpx.post(f"{url}/ingest/metrics", content=body, headers=headers)

    ok = send(b'{"time":1,"step":0,"data":{"a":NaN,"b":-Infinity,"c":"Infinity","d":null}}\n')
    assert ok.status_code == 200 and ok.text == "Stream processed successfully: 1 records"
    prefix = "Failed to process metrics stream: "
    for body, message in (
        (b'{"time":1,"step":0,"data":{"a":null}}', "InvalidMetricFormat (2005 - Validation Error): "),
        (b'{"time":1,"step":0,"data":{"a":1},"extra":1}', "StreamDecodingError (3004 - Processing Error): "),
        (b'{"time":1,"step":0,"data":{"a":"high"}}', "StreamDecodingError (3004 - Processing Error): "),
        (b'{"time":1,"step":0,"data":{"a":true}}', "StreamDecodingError (3004 - Processing Error): "),
        (b"not json", "StreamDecodingError (3004 - Processing Error): Failed to parse JSON line (bytes): 'not json'"),
    ):
        answer = send(body)
        assert answer.status_code == 422 and answer.json()["code"] == "PROCESSING_FAILED", body
        assert answer.json()["message"].startswith(prefix + message), answer.json()


@pytest.mark.parametrize(
    ("key_state", "cls", "message"),
    [
        (None, errors.UnauthorizedError, "Invalid API key"),
        ("revoked", errors.UnauthorizedError, "API key has been revoked"),
        ("expired", errors.UnauthorizedError, "API key has expired"),
    ],
)
def test_ingest_auth_failures_inside_a_422_are_authentication_errors(
    modelops_sandbox, monkeypatch, key_state, cls, message
):
    import json

    key = "mlpi_ingest_key_0001"
    if key_state:
        modelops_sandbox.control.pluto_key(key, key_state)
    url = modelops_sandbox.url
    conn = {"conn_type": "pluto", "password": key, "extra": {"api_url": url, "ingest_url": url}}
    monkeypatch.setenv("AIRFLOW_CONN_PLUTO_INGEST", json.dumps(conn))
    with pytest.raises(cls) as caught:
        PlutoHook("pluto_ingest").log_metrics(1, "p", {"loss": 1})
    exc = caught.value
    assert exc.status == 422 and exc.message == message and exc.error_name == "InvalidToken"
    assert exc.error_code == "PROCESSING_FAILED" and exc.parameters == {
        "code": 1002,
        "category": "Authentication Error",
    }
    assert key not in str(exc)


def test_ingest_validation_and_dependency_failures_map_to_their_types(modelops_sandbox):
    hook = PlutoHook()
    run = hook.create_run("p", "r")

    def fault(message: str) -> None:
        modelops_sandbox.control.fault(
            [{"status": 422, "body": {"code": "PROCESSING_FAILED", "message": message}}],
            path_prefix="/ingest/metrics",
        )

    fault("Failed to process metrics stream: DatabaseError (4001 - Database Error): Failed to validate API key")
    with pytest.raises(errors.ServerError, match="Failed to validate API key"):
        hook.log_metrics(run.run_id, "p", {"loss": 1})
    fault("Failed to process metrics stream: InvalidMetricFormat (2005 - Validation Error): bad")
    with pytest.raises(errors.InvalidArgumentError) as caught:
        hook.log_metrics(run.run_id, "p", {"loss": 1})
    assert caught.value.error_name == "InvalidMetricFormat" and caught.value.message == "bad"
    # A 422 of another shape stays what its status says.
    modelops_sandbox.control.fault([{"status": 422, "body": {"code": "OTHER", "message": "x"}}], path_prefix="/ingest")
    with pytest.raises(errors.InvalidArgumentError) as other:
        hook.log_metrics(run.run_id, "p", {"loss": 1})
    assert other.value.error_code == "OTHER" and other.value.error_name is None


# --- the keep-alive trigger -----------------------------------------------------------------------
def keep_alive_trigger(run_id: int, **kwargs):
    from modelops_provider.pluto.triggers import PlutoKeepAliveTrigger

    trigger = PlutoKeepAliveTrigger(
        conn_id="pluto_default",
        run_id=run_id,
        dag_id="d",
        dag_run_id="r",
        **{"interval": 0.1, **kwargs},
    )
    # As the triggerer sets it (dag.test() leaves it None).
    trigger.task_instance = types.SimpleNamespace(task_id="pluto_keep_alive")
    return trigger


def first_event(trigger) -> dict:
    async def go():
        return await anext(trigger.run())

    return asyncio.run(go()).payload


def test_the_keep_alive_outlasts_the_heartbeat_grace_and_stops_when_the_run_is_closed(modelops_sandbox):
    from modelops_provider.pluto.triggers import PlutoKeepAliveTrigger

    control = modelops_sandbox.control
    control.pluto_settings(heartbeat_grace_s=0.5, monitor_interval_s=0.1, heartbeat_coalesce_s=0)
    hook = PlutoHook()
    run = hook.create_run("p", "r")
    trigger = keep_alive_trigger(run.run_id)
    assert PlutoKeepAliveTrigger(**trigger.serialize()[1]).serialize() == trigger.serialize()
    assert "mlpi" not in str(trigger.serialize())

    import threading

    def close_later() -> None:
        time.sleep(2.0)  # four heartbeat graces
        PlutoHook().update_status(run.run_id, "COMPLETED")

    closer = threading.Thread(target=close_later)
    closer.start()
    event = first_event(trigger)
    closer.join()
    assert event["status"] == "closed" and event["plutoStatus"] == "COMPLETED" and event["pings"] >= 10
    # Never reaped: the only transition is the one the finish made.
    history = stored(control, run.run_id)["statusHistory"]
    assert [(e["toStatus"], e["source"]) for e in history] == [("COMPLETED", "api")]


def test_the_keep_alive_reports_a_cancel_and_rides_out_outages(modelops_sandbox, monkeypatch, capfd):
    control = modelops_sandbox.control
    hook = PlutoHook()
    run = hook.create_run("p", "r")
    control.pluto_cancel(run.run_id)
    # Four answers of 503: two pings, each retried once, miss; the third ping gets through.
    control.fault([{"status": 503, "body": {"detail": "busy"}}] * 4, path_prefix="/api/runs/trigger")
    event = first_event(keep_alive_trigger(run.run_id))
    assert event == {"status": "closed", "runId": run.run_id, "plutoStatus": "CANCELLED", "pings": 1}
    assert [r["status"] for r in control.requests(path_prefix="/api/runs/trigger")] == [503, 503, 503, 503, 200]
    out = capfd.readouterr().out
    assert out.count(f"Heartbeat for Pluto run {run.run_id} failed") == 2
    assert f"Pluto run {run.run_id} is CANCELLED" in out

    other = hook.create_run("p", "r2")
    from modelops_provider.pluto import triggers

    # A permanent error ends it as an error event (the task fails with it).
    event = first_event(keep_alive_trigger(other.run_id + 99))
    assert event["status"] == triggers.ERROR and "Run not found" in event["message"]


def test_keep_alive_events_become_task_outcomes_and_log_lines(capfd):
    from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

    from modelops_provider.pluto.operators import PlutoKeepAliveOperator

    op = PlutoKeepAliveOperator(task_id="k", heartbeat_interval=5)
    result = op.execute_complete({}, {"status": "closed", "runId": 7, "plutoStatus": "CANCELLED", "pings": 3})
    assert result == {"runId": 7, "status": "CANCELLED", "stoppedBecause": "closed", "pings": 3}
    assert "Pluto run 7 was CANCELLED in Pluto" in capfd.readouterr().out
    with pytest.raises(AirflowSkipException, match=r"dag\.test"):
        op.execute_complete({}, {"status": "inline", "runId": 7})
    with pytest.raises(AirflowException, match="Keep-alive of Pluto run 7 failed: boom"):
        op.execute_complete({}, {"status": "error", "runId": 7, "message": "boom"})
    for bad in (0, 91, -1, "30"):
        with pytest.raises(ValueError, match="heartbeat_interval"):
            PlutoKeepAliveOperator(task_id="k2", heartbeat_interval=bad)


# --- tracked DAG runs whose training outlasts the stale window ----------------------------------------
def long_dag(dag_id: str, *, fail: bool = False, finish_kwargs=None, during_training=None):
    from airflow.sdk import DAG, task

    from modelops_provider.pluto.operators import (
        PlutoFinishRunOperator,
        PlutoKeepAliveOperator,
        PlutoStartRunOperator,
    )

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        start = PlutoStartRunOperator(task_id="pluto_start", project_name="liveness")

        @task
        def train(ti=None) -> dict:
            if during_training is not None:
                during_training(ti)
            time.sleep(1.5)  # three stale graces: Pluto reaps the run meanwhile
            if fail:
                raise RuntimeError("diverged")
            # XCom is JSON: a diverged loss travels as the string Pluto's ingest also takes.
            return {"loss": str(math.nan), "grad": "-Infinity", "lr": None}

        keep_alive = PlutoKeepAliveOperator(task_id="pluto_keep_alive", heartbeat_interval=0.2)
        finish = PlutoFinishRunOperator(
            task_id="pluto_finish", metrics_from_xcom={"train": "train"}, **(finish_kwargs or {})
        )
        start.as_setup() >> train() >> finish.as_teardown(setups=start)
        start >> keep_alive
    return dag


@pytest.mark.usefixtures("airflow_db")
def test_a_reaped_run_ends_with_the_dag_runs_outcome_and_says_why(modelops_sandbox, capfd):
    control = modelops_sandbox.control
    control.pluto_settings(stale_grace_s=0.5, monitor_interval_s=0.1)
    result = run_dag(long_dag("t_pluto_reaped"))
    assert result.state == "success"
    # dag.test() runs one task at a time: the keep-alive cannot accompany the work, and says so.
    assert result.task("pluto_keep_alive").state == "skipped"
    assert control.requests(path_prefix="/api/runs/trigger") == []
    run = control.pluto_runs()[0]
    assert run["status"] == "COMPLETED"
    closed = run["statusMetadata"]["closedByServer"]
    assert closed["status"] == "FAILED" and closed["source"] == "stale-monitor"
    assert closed["statusMetadata"]["reason"] == "stale"
    assert [(e["toStatus"], e["source"]) for e in run["statusHistory"]] == [
        ("FAILED", "stale-monitor"),
        ("RUNNING", "api"),
        ("COMPLETED", "api"),
    ]
    values = {name: [p["value"] for p in points] for name, points in run["metrics"].items()}
    assert values == {"train/loss": ["NaN"], "train/grad": ["-Infinity"]}
    finish = result.task("pluto_finish").xcom["return_value"]
    assert finish["status"] == "COMPLETED" and finish["closedByServer"]["source"] == "stale-monitor"
    out = "".join(capfd.readouterr())
    assert "was already FAILED before this DAG run finished (closed by stale-monitor" in out


@pytest.mark.usefixtures("airflow_db")
def test_policy_keep_leaves_the_servers_verdict_and_adds_the_dag_runs(modelops_sandbox):
    control = modelops_sandbox.control
    control.pluto_settings(stale_grace_s=0.5, monitor_interval_s=0.1)
    result = run_dag(long_dag("t_pluto_keep", finish_kwargs={"on_closed_by_server": "keep"}))
    assert result.state == "success"
    run = control.pluto_runs()[0]
    assert run["status"] == "FAILED"
    assert run["statusMetadata"]["reason"] == "stale"
    assert run["statusMetadata"]["airflow"]["status"] == "COMPLETED"
    assert run["statusMetadata"]["airflow"]["dagId"] == "t_pluto_keep"
    with pytest.raises(ValueError, match="on_closed_by_server must be one of reopen, keep, got 'ignore'"):
        long_dag("t_pluto_bad_policy", finish_kwargs={"on_closed_by_server": "ignore"})


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize(("fail", "final"), [(False, "COMPLETED"), (True, "FAILED")])
def test_a_run_cancelled_in_pluto_ends_with_the_dag_runs_outcome(modelops_sandbox, fail, final):
    control = modelops_sandbox.control

    def cancel_in_pluto(ti) -> None:
        # A stop requested in Pluto's UI, then a heartbeat (as a pluto client in the training
        # code would send) that applies it.
        run_id = ti.xcom_pull(task_ids="pluto_start", key="runId")
        control.pluto_cancel(run_id)
        assert PlutoHook().heartbeat(run_id).status == "CANCELLED"

    result = run_dag(long_dag(f"t_pluto_cancel_{final.lower()}", fail=fail, during_training=cancel_in_pluto))
    assert result.state == ("failed" if fail else "success")
    run = control.pluto_runs()[0]
    assert run["status"] == final
    assert run["statusMetadata"]["closedByServer"]["status"] == "CANCELLED"
    assert run["statusMetadata"]["failedTasks"] == (["train"] if fail else [])
