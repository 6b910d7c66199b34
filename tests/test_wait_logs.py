"""The log of a wait, worker and trigger alike: one short line per change naming the run once, a
progress line at ``[modelops] progress_log_interval`` counted from the launch, and a summary line."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime

import pytest

from dagrun import run_dag
from modelops_provider.core.waiting import duration, progress_log_interval
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.triggers import ModelStudioRunTrigger

STUDIO = "ri.models.main.model-studio.77777777-7777-4777-8777-777777777777"
BUILDS_PATH = "/api/v2/orchestration/builds"
RUNS_PATH = f"/api/v2/models/modelStudios/{STUDIO}/runs"


@pytest.fixture
def every_half_second(monkeypatch):
    monkeypatch.setenv("AIRFLOW__MODELOPS__PROGRESS_LOG_INTERVAL", "0.5")


def _lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def _named_twice(lines: list[str], name: str) -> list[str]:
    """Lines that name the run more than once (a link, which carries the id, aside)."""
    return [line for line in lines if re.sub(r"https?://\S+", "", line).count(name) > 1]


def test_progress_interval_and_duration_format(monkeypatch):
    monkeypatch.delenv("AIRFLOW__MODELOPS__PROGRESS_LOG_INTERVAL", raising=False)
    assert progress_log_interval() == 300.0  # every 5 minutes unless configured
    monkeypatch.setenv("AIRFLOW__MODELOPS__PROGRESS_LOG_INTERVAL", "0")
    assert progress_log_interval() == float("inf")  # off
    assert [duration(s) for s in (0.4, 45, 725, 7380)] == ["0s", "45s", "12m05s", "2h03m"]


@pytest.mark.parametrize("shared", [True, False], ids=["shared-poller", "own-loop"])
def test_trigger_logs_changes_progress_from_the_launch_and_names_the_run_once(
    modelops_sandbox, every_half_second, monkeypatch, capfd, shared
):
    monkeypatch.setenv("AIRFLOW__MODELOPS__SHARED_POLLING", str(shared))
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=2.0)
    run = FoundryHook().launch_model_studio(STUDIO)
    # A trigger re-created by another triggerer an hour after the launch: elapsed counts from the launch.
    trigger = ModelStudioRunTrigger(
        model_studio_rid=STUDIO,
        run_id=run.run_id,
        build_rid=run.build_rid,
        config_version=run.config_version,
        conn_id="foundry_default",
        poll_interval=0.1,
        started_at=time.time() - 3600,
    )

    async def events() -> list:
        return [e.payload async for e in trigger.run()]

    (event,) = asyncio.run(events())
    assert event["status"] == "done"
    text = "".join(capfd.readouterr())
    mine = _lines(text, run.run_id)
    assert mine, text
    assert _named_twice(mine, run.run_id) == []
    assert not _lines(text, "'model_studio_rid'"), text  # no kwargs dict
    changes = [line for line in mine if f"Model Studio run {run.run_id}: build RUNNING" in line]
    progress = [line for line in mine if f"Model Studio run {run.run_id}: still build RUNNING" in line]
    ended = [line for line in mine if f"Model Studio run {run.run_id}: build SUCCEEDED" in line]
    # Neither the first look (RUNNING: the task's line before deferring says what it handed over) nor
    # the end (the task logs it when it resumes, from the event) is logged by the trigger.
    assert changes == [] and ended == [], mine
    # ~2 s of RUNNING at one line per 0.5 s of silence.
    assert 2 <= len(progress) <= 5, mine
    assert all("(1h00m elapsed)" in line for line in progress), mine
    assert 3600 <= event["elapsed"] < 3700


def test_a_handed_over_wait_logs_its_changes_but_not_its_first_look_or_end():
    from modelops_provider.core.waiting import Outcome, Snapshot, WaitProgress

    logged: list[str] = []

    class Log:
        def info(self, msg: str, *args: object) -> None:
            logged.append(msg % args)

        warning = info

    def snap(status: str, outcome: Outcome = Outcome.WAITING) -> Snapshot:
        return Snapshot(outcome=outcome, status=status, summary=status)

    progress = WaitProgress("run r", None, Log(), handed_over=True)
    assert not progress.seen(snap("PENDING"))
    assert not progress.seen(snap("PENDING"))
    assert not progress.seen(snap("RUNNING"))
    assert progress.seen(snap("SUCCESS", Outcome.SUCCEEDED))
    assert logged == ["run r: RUNNING (0s elapsed)"]
    # A wait of the task's own logs its first look and its end too.
    logged.clear()
    progress = WaitProgress("run r", None, Log())
    for status in ("PENDING", "RUNNING"):
        progress.seen(snap(status))
    progress.seen(snap("SUCCESS", Outcome.SUCCEEDED))
    assert logged == ["run r: PENDING (0s elapsed)", "run r: RUNNING (0s elapsed)", "run r: SUCCESS (0s elapsed)"]


def test_no_progress_line_before_the_interval(modelops_sandbox, modelops_sandbox_clock, monkeypatch, capfd):
    monkeypatch.delenv("AIRFLOW__MODELOPS__PROGRESS_LOG_INTERVAL", raising=False)
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=1.0)
    run = FoundryHook().launch_model_studio(STUDIO)
    trigger = ModelStudioRunTrigger(
        model_studio_rid=STUDIO, run_id=run.run_id, conn_id="foundry_default", poll_interval=0.1
    )

    async def first() -> dict:
        return (await trigger.run().__anext__()).payload

    # The build ends once the trigger has seen it RUNNING, however slow the machine.
    with modelops_sandbox_clock.advancing(1.0, path_prefix=BUILDS_PATH):
        assert asyncio.run(first())["status"] == "done"
    text = "".join(capfd.readouterr())
    assert not _lines(text, "still "), text


def _launch_dag(dag_id: str, **kwargs):
    from airflow.sdk import DAG

    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO, poll_interval=0.1, **kwargs)
    return dag


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_operator_logs_progress_and_a_summary_line(
    modelops_sandbox, modelops_sandbox_clock, every_half_second, capfd, deferrable
):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=1.6)
    # The build ends after eight polls at 0.1 s: at least 0.7 s of RUNNING, past one progress interval.
    with modelops_sandbox_clock.advancing(1.6, after=8, path_prefix=(BUILDS_PATH, RUNS_PATH)):
        result = run_dag(_launch_dag(f"t_wait_logs_{deferrable}", deferrable=deferrable))
    assert result.state == "success"
    ti = result.task("train")
    run_id, version = ti.xcom["run_id"], ti.xcom["return_value"]["resolvedOutputs"]["model"]["modelVersionRid"]
    text = "".join(capfd.readouterr())
    mine = _lines(text, run_id)
    assert _named_twice(mine, run_id) == []
    assert _lines(text, "still build RUNNING ("), mine
    # Deferred, the task says once what it hands over and what comes next (the trigger does not log
    # its first look).
    handed = _lines(text, f"Model Studio run {run_id} (build ")
    handed = [line for line in handed if ": waiting in the triggerer; a line follows when its status changes" in line]
    assert len(handed) == (1 if deferrable else 0), mine
    if deferrable:
        assert "and every 0s while it does not" in handed[0], handed
    # The end is logged once, with the elapsed time: by the wait (sync), or on resume from the event.
    ended = _lines(text, "build SUCCEEDED")
    assert len(ended) == 1 and re.search(r"\(\ds elapsed\)", ended[0]), mine
    summary = _lines(text, f"Foundry training run {run_id}: succeeded after ")
    assert len(summary) == 1, mine
    assert re.search(r"after \ds; model version " + re.escape(version) + "; http", summary[0]), summary
    assert ti.xcom["_link_ModelStudioRunLink"] in summary[0]


@pytest.mark.usefixtures("airflow_db")
def test_sensor_logs_progress_and_a_summary_line(modelops_sandbox, modelops_sandbox_clock, every_half_second, capfd):
    from airflow.sdk import DAG

    from modelops_provider.foundry.sensors import ModelStudioRunSensor

    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=1.6, outcome="FAILED")
    run = FoundryHook().launch_model_studio(STUDIO)
    with DAG("t_wait_logs_sensor", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioRunSensor(task_id="wait", model_studio_rid=STUDIO, run_id=run.run_id, poke_interval=0.1, timeout=30)
    with modelops_sandbox_clock.advancing(1.6, after=8, path_prefix=RUNS_PATH):
        assert run_dag(dag).state == "failed"
    text = "".join(capfd.readouterr())
    assert _lines(text, f"Model Studio run {run.run_id}: still build RUNNING ("), text
    assert len(_lines(text, f"Foundry training run {run.run_id}: failed after ")) == 1, text


def test_a_result_delivered_as_the_wait_times_out_is_kept():
    """The shared wait wakes on a timer for the progress line; a result delivered in that same
    instant must reach the next wait, not be lost with the cancelled one (a lost terminal result
    would leave the trigger waiting for ever)."""
    from modelops_provider.core.poller import Waiter
    from modelops_provider.core.waiting import Outcome, Snapshot

    waiter = Waiter(ModelStudioRunTrigger(model_studio_rid=STUDIO, run_id="r", conn_id="c", poll_interval=1))
    done = Snapshot(outcome=Outcome.SUCCEEDED, status="SUCCEEDED", summary="build SUCCEEDED")

    async def main() -> object:
        task = asyncio.ensure_future(waiter.next())
        await asyncio.sleep(0)  # the wait is now awaiting its future
        waiter.deliver(done)
        task.cancel()  # the timeout fires before the task resumes
        with pytest.raises(asyncio.CancelledError):
            await task
        return await asyncio.wait_for(waiter.next(), 1)

    assert asyncio.run(main()) is done
