"""Pluto threshold triggers (CONTRACTS.md section F): ``loggerSettings.trigger`` rules that cancel a run
when a logged metric matches, in the sandbox and through the provider (start task, keep-alive,
finish task and its policy)."""

from __future__ import annotations

import asyncio
import math
import types
from datetime import datetime

import pytest

from dagrun import run_dag
from modelops_provider.pluto.hooks import PlutoHook

LOSS_ABOVE_10 = {"trigger": {"loss": {"operator": ">", "threshold": 10}}}


def stored(control, run_id: int) -> dict:
    return next(r for r in control.pluto_runs() if r["runId"] == run_id)


@pytest.mark.parametrize(
    ("op", "threshold", "below", "at", "above", "cancels"),
    [
        # (values logged: below, at and above the threshold) -> which one cancels, if any
        (">", 1.5, 1.0, 1.5, 2.0, 2.0),
        (">=", 1.5, 1.0, 1.5, 2.0, 1.5),
        ("<", 1.5, 2.0, 1.5, 1.0, 1.0),
        ("<=", 1.5, 2.0, 1.5, 1.0, 1.5),
    ],
)
def test_a_matching_metric_cancels_the_run(modelops_sandbox, op, threshold, below, at, above, cancels):
    control = modelops_sandbox.control
    hook = PlutoHook()
    settings = {"trigger": {"loss": {"operator": op, "threshold": threshold}}}
    run = hook.create_run("p", "r", logger_settings=settings)
    hook.log_metrics(run.run_id, "p", {"loss": below, "acc": 99})  # another metric's value is not judged
    hook.log_metrics(run.run_id, "p", {"loss": math.nan})  # NaN compares with nothing
    assert stored(control, run.run_id)["status"] == "RUNNING"
    for value in (at, above):
        hook.log_metrics(run.run_id, "p", {"loss": value}, step=7)
        if value == cancels:
            break
        assert stored(control, run.run_id)["status"] == "RUNNING"
    cancelled = stored(control, run.run_id)
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["statusMetadata"] == {
        "reason": "threshold-exceeded",
        "logName": "loss",
        "operator": op,
        "threshold": threshold,
        "value": cancels,
        "step": 7,
    }
    assert [(e["fromStatus"], e["toStatus"], e["source"]) for e in cancelled["statusHistory"]] == [
        ("RUNNING", "CANCELLED", "threshold-trigger")
    ]
    # The heartbeat answers it (a pluto client would exit), and precedence keeps it over COMPLETED.
    assert hook.heartbeat(run.run_id).status == "CANCELLED"
    hook.update_status(run.run_id, "COMPLETED")
    assert stored(control, run.run_id)["status"] == "CANCELLED"


def test_rules_come_from_status_updates_too_and_only_running_runs_are_judged(modelops_sandbox):
    control = modelops_sandbox.control
    hook = PlutoHook()
    run = hook.create_run("p", "r", logger_settings={"keep": 1})
    # A RUNNING -> RUNNING update deep-merges loggerSettings: the rule is added.
    hook.update_status(run.run_id, "RUNNING", logger_settings=LOSS_ABOVE_10)
    assert stored(control, run.run_id)["loggerSettings"] == {"keep": 1, **LOSS_ABOVE_10}
    # Malformed rules are ignored, the valid one still applies.
    broken = {"trigger": {"acc": {"operator": "!=", "threshold": 1}, "lr": {"operator": ">", "threshold": "1"}}}
    hook.update_status(run.run_id, "RUNNING", logger_settings=broken)
    hook.log_metrics(run.run_id, "p", {"acc": 5, "lr": 5})
    assert stored(control, run.run_id)["status"] == "RUNNING"

    hook.update_status(run.run_id, "COMPLETED")
    hook.log_metrics(run.run_id, "p", {"loss": 11})
    assert stored(control, run.run_id)["status"] == "COMPLETED"
    # The first value in the order logged wins.
    second = hook.create_run("p", "r2", logger_settings=LOSS_ABOVE_10)
    hook.log_metrics(second.run_id, "p", [{"loss": 1}, {"loss": 12}, {"loss": 13}], step=0)
    assert stored(control, second.run_id)["statusMetadata"]["value"] == 12
    assert stored(control, second.run_id)["statusMetadata"]["step"] == 1


def test_the_keep_alive_trigger_reports_a_threshold_cancel(modelops_sandbox, capfd):
    from modelops_provider.pluto.operators import PlutoKeepAliveOperator
    from modelops_provider.pluto.triggers import PlutoKeepAliveTrigger

    hook = PlutoHook()
    run = hook.create_run("p", "r", logger_settings=LOSS_ABOVE_10)
    hook.log_metrics(run.run_id, "p", {"loss": 50})
    trigger = PlutoKeepAliveTrigger(
        conn_id="pluto_default", run_id=run.run_id, dag_id="d", dag_run_id="r", interval=0.1
    )
    trigger.task_instance = types.SimpleNamespace(task_id="pluto_keep_alive")  # as the triggerer sets it

    async def first_event() -> dict:
        return (await anext(trigger.run())).payload

    event = asyncio.run(first_event())
    assert event == {"status": "closed", "runId": run.run_id, "plutoStatus": "CANCELLED", "pings": 1}
    result = PlutoKeepAliveOperator(task_id="pluto_keep_alive").execute_complete({}, event)
    assert result["status"] == "CANCELLED"
    out = "".join(capfd.readouterr())
    assert f"Pluto run {run.run_id} is CANCELLED (heartbeat 1)" in out
    assert f"Pluto run {run.run_id} was CANCELLED in Pluto" in out


def tripping_dag(dag_id: str, start_kwargs=None, **finish_kwargs):
    from airflow.sdk import DAG, task

    from modelops_provider.pluto.operators import (
        PlutoFinishRunOperator,
        PlutoKeepAliveOperator,
        PlutoStartRunOperator,
    )

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        start = PlutoStartRunOperator(
            task_id="pluto_start", project_name="thresholds", logger_settings='{"trigger": {"loss": '
            '{"operator": ">", "threshold": {{ params.max_loss }}}}}', params={"max_loss": 10}, **(start_kwargs or {})
        )  # fmt: skip

        @task
        def train(ti=None) -> None:
            # The training logs its loss as it goes (as a pluto client would); it diverges.
            run_id = ti.xcom_pull(task_ids="pluto_start", key="runId")
            for step, loss in enumerate((3.0, 2.5, 40.0, 90.0)):
                PlutoHook().log_metrics(run_id, "thresholds", {"loss": loss}, step=step)

        keep_alive = PlutoKeepAliveOperator(task_id="pluto_keep_alive", heartbeat_interval=0.2)
        finish = PlutoFinishRunOperator(task_id="pluto_finish", **finish_kwargs)
        start.as_setup() >> train() >> finish.as_teardown(setups=start)
        start >> keep_alive
    return dag


@pytest.mark.usefixtures("airflow_db")
def test_a_dag_run_that_trips_a_threshold_is_told_and_ends_as_the_policy_says(modelops_sandbox, capfd):
    control = modelops_sandbox.control
    result = run_dag(tripping_dag("t_pluto_threshold"))
    assert result.state == "success"
    [run] = control.pluto_runs()
    assert run["loggerSettings"] == {"trigger": {"loss": {"operator": ">", "threshold": 10}}}
    # Policy "reopen" (the default): the run ends as the DAG run did, Pluto's verdict kept.
    assert run["status"] == "COMPLETED"
    closed = run["statusMetadata"]["closedByServer"]
    assert closed["status"] == "CANCELLED" and closed["source"] == "threshold-trigger"
    assert closed["statusMetadata"]["reason"] == "threshold-exceeded"
    assert (closed["statusMetadata"]["value"], closed["statusMetadata"]["step"]) == (40.0, 2)
    assert [(e["toStatus"], e["source"]) for e in run["statusHistory"]] == [
        ("CANCELLED", "threshold-trigger"),
        ("RUNNING", "api"),
        ("COMPLETED", "api"),
    ]
    assert [p["value"] for p in run["metrics"]["loss"]] == [3.0, 2.5, 40.0, 90.0]
    finish = result.task("pluto_finish").xcom["return_value"]
    assert finish["status"] == "COMPLETED" and finish["closedByServer"]["source"] == "threshold-trigger"
    out = "".join(capfd.readouterr())
    assert "was already CANCELLED before this DAG run finished (closed by threshold-trigger" in out
    assert '"reason": "threshold-exceeded"' in out
    # dag.test() runs one task at a time: the keep-alive cannot ping alongside (the deployment tier
    # shows it reporting the cancel from the triggerer).
    assert result.task("pluto_keep_alive").state == "skipped"


@pytest.mark.usefixtures("airflow_db")
def test_a_resumed_run_gets_the_rules_and_policy_keep_leaves_the_cancel(modelops_sandbox):
    control = modelops_sandbox.control
    # An earlier try of the start task opened the run without rules (and something closed it).
    earlier = PlutoHook().create_run("thresholds", "earlier", external_id="airflow:fixed", logger_settings={"a": 1})
    PlutoHook().update_status(earlier.run_id, "COMPLETED")
    dag = tripping_dag(
        "t_pluto_threshold_resumed", start_kwargs={"external_id": "airflow:fixed"}, on_closed_by_server="keep"
    )
    result = run_dag(dag)
    assert result.state == "success"
    [run] = control.pluto_runs()
    assert run["loggerSettings"] == {"a": 1, "trigger": {"loss": {"operator": ">", "threshold": 10}}}
    # Policy "keep": Pluto's CANCELLED stays, the DAG run's outcome is added to its statusMetadata.
    assert run["status"] == "CANCELLED"
    assert run["statusMetadata"]["reason"] == "threshold-exceeded"
    assert run["statusMetadata"]["airflow"]["status"] == "COMPLETED"
    assert [(e["toStatus"], e["source"]) for e in run["statusHistory"]] == [
        ("COMPLETED", "api"),
        ("RUNNING", "resume"),
        ("CANCELLED", "threshold-trigger"),
    ]
