"""Shared polling in a triggerer: the waits of one loop on one connection are polled together, each
still ends with its own event, and the rules of a wait (deadline, missed polls, cancel on kill) hold.
Driven against the sandbox over loopback; request counts come from the sandbox's request log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import httpx
import pytest
from tests.ducklake_helpers import service_requests

from modelops_provider.core import poller as poller_module
from modelops_provider.core import transport
from modelops_provider.core.waiting import MAX_MISSED_POLLS
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.ducklake.triggers import DuckLakeModelRunTrigger
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.triggers import LiveDeploymentTrigger, ModelStudioRunTrigger

OK_STUDIO = "ri.models.main.model-studio.88888888-8888-4888-8888-888888888881"
BAD_STUDIO = "ri.models.main.model-studio.88888888-8888-4888-8888-888888888882"
BATCH_PATH = "/api/v2/orchestration/builds/getBatch"
LIVE = "ri.foundry-ml-live.main.live-deployment.88888888-8888-4888-8888-888888888888"


def _trigger(run: Any, studio: str = OK_STUDIO, **kwargs: Any) -> ModelStudioRunTrigger:
    return ModelStudioRunTrigger(
        model_studio_rid=studio,
        run_id=run.run_id,
        build_rid=run.build_rid,
        config_version=run.config_version,
        **{"conn_id": "foundry_default", "poll_interval": 0.5, **kwargs},
    )


async def _event(trigger: Any) -> dict[str, Any]:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1
    return events[0]


def _launch(control: Any, studio: str, count: int, **settings: Any) -> list[Any]:
    control.foundry_studio(studio, **settings)
    hook = FoundryHook()
    return [hook.launch_model_studio(studio) for _ in range(count)]


def test_150_waits_poll_builds_in_batches_and_each_gets_its_own_event(modelops_sandbox):
    control = modelops_sandbox.control
    good = _launch(control, OK_STUDIO, 100, duration_s=1.5)
    bad = _launch(control, BAD_STUDIO, 50, duration_s=1.0, outcome="FAILED")
    before = len(control.requests())

    async def main() -> list[dict[str, Any]]:
        triggers = [_trigger(r) for r in good] + [_trigger(r, BAD_STUDIO) for r in bad]
        return await asyncio.gather(*(_event(t) for t in triggers))

    started = time.monotonic()
    events = asyncio.run(main())
    elapsed = time.monotonic() - started
    for run, event in zip(good + bad, events, strict=True):
        assert event["status"] == "done"
        assert event["target"]["run_id"] == run.run_id
        assert event["target"]["build_rid"] == run.build_rid
    assert {e["snapshot"]["outcome"] for e in events[:100]} == {"succeeded"}
    assert {e["snapshot"]["outcome"] for e in events[100:]} == {"failed"}
    assert {e["snapshot"]["reason"] for e in events[100:]} == {f"build {r.build_rid} is FAILED" for r in bad}
    # A small event: ids and the outcome, not the run (the worker reads that on resume).
    assert max(len(json.dumps(e)) for e in events) < 600
    assert not [e for e in events if "resolvedOutputs" in json.dumps(e)]

    sent = control.requests()[before:]
    batches = [r for r in sent if r["path"] == BATCH_PATH]
    # 150 builds: at most two getBatch requests per tick (ticks >= 0.5 s apart), never one per wait. Counted
    # against the ticks that fit in the wait's wall time, so a loaded machine (longer, fewer ticks) holds too.
    ticks = elapsed / 0.5 + 2
    assert batches and len(batches) <= 2 * ticks, (len(batches), elapsed)
    # The request log names the builds each getBatch read (the deployment tier attributes polls by it).
    assert {rid for r in batches for rid in r["names"]} == {r.build_rid for r in good + bad}
    assert max(len(r["names"]) for r in batches) <= 100
    # The builds say it all: the triggerer reads no run and no build by itself.
    assert not [r for r in sent if "/runs" in r["path"]]
    assert not [r for r in sent if r["path"].startswith("/api/v2/orchestration/builds/ri.")]


def test_waits_arriving_together_fill_a_batch_without_waiting_out_the_admission_pause(modelops_sandbox, monkeypatch):
    monkeypatch.setattr(poller_module.Poller, "admit_pause_s", 30.0)
    control = modelops_sandbox.control
    runs = _launch(control, OK_STUDIO, 100, duration_s=0.1)
    time.sleep(0.3)  # all ended: the first poll ends every wait
    before = len(control.requests())

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(_event(_trigger(r, poll_interval=30)) for r in runs))

    started = time.monotonic()
    events = asyncio.run(main())
    assert time.monotonic() - started < 10
    assert {e["snapshot"]["outcome"] for e in events} == {"succeeded"}
    batches = [r for r in control.requests()[before:] if r["path"] == BATCH_PATH]
    assert len(batches) == 1


def test_a_slow_round_does_not_hold_up_the_first_poll_of_a_wait_arriving_meanwhile(modelops_sandbox):
    control = modelops_sandbox.control
    first, second = _launch(control, OK_STUDIO, 2, duration_s=0.1)
    time.sleep(0.3)
    control.fault([{"delay_s": 4}], path_prefix=BATCH_PATH)  # the first getBatch is answered 4 s late

    async def main() -> tuple[float, list[dict[str, Any]]]:
        slow = asyncio.ensure_future(_event(_trigger(first, poll_interval=30)))
        await asyncio.sleep(0.5)  # its round is in flight
        started = time.monotonic()
        quick = await _event(_trigger(second, poll_interval=30))
        took = time.monotonic() - started
        return took, [await slow, quick]

    took, events = asyncio.run(main())
    assert took < 2.5, took
    assert [e["snapshot"]["outcome"] for e in events] == ["succeeded", "succeeded"]


def test_a_failed_batch_is_a_missed_poll_for_each_wait(modelops_sandbox, monkeypatch):
    from tests.test_foundry_trigger import _few_attempts

    conn_id = _few_attempts(monkeypatch, modelops_sandbox.url)
    control = modelops_sandbox.control
    runs = _launch(control, OK_STUDIO, 3, duration_s=1.0)
    control.fault([{"status": 503}] * (MAX_MISSED_POLLS - 1), path_prefix=BATCH_PATH)

    async def main(**kwargs: Any) -> list[dict[str, Any]]:
        return await asyncio.gather(*(_event(_trigger(r, conn_id=conn_id, poll_interval=0.2, **kwargs)) for r in runs))

    assert [e["status"] for e in asyncio.run(main())] == ["done"] * 3
    # As many failed batches in a row as the rule allows end every wait of the batch with the error.
    runs = _launch(control, OK_STUDIO, 3, duration_s=60)
    control.fault([{"status": 503}] * MAX_MISSED_POLLS, path_prefix=BATCH_PATH)
    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["error"] * 3
    assert all("HTTP 503" in e["message"] for e in events)


def test_the_smallest_poll_interval_in_a_batch_wins(modelops_sandbox):
    control = modelops_sandbox.control
    fast_run, slow_run = _launch(control, OK_STUDIO, 2, duration_s=1.0)

    async def main() -> float:
        started = time.monotonic()
        await asyncio.gather(
            _event(_trigger(fast_run, poll_interval=0.2)), _event(_trigger(slow_run, poll_interval=30))
        )
        return time.monotonic() - started

    assert asyncio.run(main()) < 5


def test_absolute_deadline_holds_with_shared_polling(modelops_sandbox):
    (run,) = _launch(modelops_sandbox.control, OK_STUDIO, 1, duration_s=60)

    async def main() -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        event = await _event(_trigger(run, poll_interval=30, deadline=time.time() + 1.0))
        return event, time.monotonic() - started

    event, took = asyncio.run(main())
    assert event["status"] == "timeout" and "still RUNNING" in event["message"]
    assert 0.8 < took < 3


def test_a_cancelled_wait_leaves_the_poller_at_once_and_the_others_go_on(modelops_sandbox):
    control = modelops_sandbox.control
    runs = _launch(control, OK_STUDIO, 3, duration_s=1.5)

    async def main() -> tuple[bool, int, list[dict[str, Any]]]:
        tasks = [asyncio.ensure_future(_event(_trigger(r, poll_interval=0.2))) for r in runs]
        await asyncio.sleep(0.5)
        shared = poller_module.poller_for(_trigger(runs[0]))
        assert len(shared.waiters) == 3
        tasks[0].cancel()
        await asyncio.sleep(0)  # one step of the loop: the cancelled trigger awaits nothing on its way out
        gone = tasks[0].done() and len(shared.waiters) == 2
        return gone, shared.rounds, await asyncio.gather(*tasks[1:])

    gone, _, events = asyncio.run(main())
    assert gone
    assert [e["status"] for e in events] == ["done", "done"]


def test_on_kill_cancels_within_its_budget_with_shared_polling(modelops_sandbox):
    (run,) = _launch(modelops_sandbox.control, OK_STUDIO, 1, duration_s=60)
    trigger = _trigger(run, cancel_on_kill=True, poll_interval=0.2)

    async def kill() -> float:
        task = asyncio.ensure_future(_event(trigger))
        await asyncio.sleep(0.5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        started = time.monotonic()
        await trigger.on_kill()
        return time.monotonic() - started

    assert asyncio.run(kill()) < 5
    assert FoundryHook().get_build(run.build_rid).status == "CANCELED"


def test_a_sensor_wait_without_its_build_finds_it_then_joins_the_batch(modelops_sandbox):
    (run,) = _launch(modelops_sandbox.control, OK_STUDIO, 1, duration_s=1.0)
    trigger = ModelStudioRunTrigger(
        model_studio_rid=OK_STUDIO, run_id=run.run_id, conn_id="foundry_default", poll_interval=0.2
    )
    before = len(modelops_sandbox.control.requests())
    event = asyncio.run(_event(trigger))
    assert event["status"] == "done" and event["snapshot"]["outcome"] == "succeeded"
    assert event["target"]["build_rid"] == run.build_rid
    assert [r for r in modelops_sandbox.control.requests()[before:] if r["path"] == BATCH_PATH]


def test_waits_in_other_loops_have_their_own_pollers(modelops_sandbox):
    """Several triggerers (here: loops in threads) each poll for themselves; all end correctly."""
    runs = _launch(modelops_sandbox.control, OK_STUDIO, 6, duration_s=1.0)
    results: dict[int, list[dict[str, Any]]] = {}

    def triggerer(index: int) -> None:
        async def main() -> list[dict[str, Any]]:
            mine = runs[index * 3 : index * 3 + 3]
            return await asyncio.gather(*(_event(_trigger(r, poll_interval=0.2)) for r in mine))

        results[index] = asyncio.run(main())

    threads = [threading.Thread(target=triggerer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    events = results[0] + results[1]
    assert [e["target"]["run_id"] for e in events] == [r.run_id for r in runs]
    assert {e["snapshot"]["outcome"] for e in events} == {"succeeded"}


def test_requests_in_flight_are_bounded_per_loop(modelops_sandbox, monkeypatch):
    monkeypatch.setattr(poller_module, "shared_polling_enabled", lambda: False)
    runs = _launch(modelops_sandbox.control, OK_STUDIO, 60, duration_s=0.5)
    in_flight = peak = 0
    send = httpx.AsyncClient.send

    async def counting_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await send(self, request, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(httpx.AsyncClient, "send", counting_send)

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(_event(_trigger(r, poll_interval=0.1)) for r in runs))

    assert {e["status"] for e in asyncio.run(main())} == {"done"}
    assert 1 < peak <= transport.MAX_IN_FLIGHT_PER_LOOP


def test_ducklake_waits_read_the_running_list_and_each_ended_run_once(modelops_sandbox):
    control = modelops_sandbox.control
    hook = DuckLakeHook()
    runs = [hook.trigger_model_run("analytics") for _ in range(4)]
    before = len(service_requests(control))

    async def main() -> list[dict[str, Any]]:
        triggers = [DuckLakeModelRunTrigger(run_id=r.id, conn_id="ducklake_default", poll_interval=0.3) for r in runs]
        return await asyncio.gather(*(_event(t) for t in triggers))

    events = asyncio.run(main())
    assert [e["target"]["run_id"] for e in events] == [r.id for r in runs]
    assert {e["snapshot"]["status"] for e in events} == {"SUCCESS"}
    sent = service_requests(control)[before:]
    lists = [r for r in sent if r["path"] == "/v1/model-runs"]
    assert lists and {r["query"].get("status") for r in lists} <= {"RUNNING", "PENDING"}
    # The request log names the runs each list answered with.
    assert {name for r in lists for name in r["names"]} == {r.id for r in runs}
    for run in runs:
        assert len([r for r in sent if r["path"] == f"/v1/model-runs/{run.id}"]) == 1


def test_a_live_deployment_is_read_once_per_tick_for_all_its_waiters(modelops_sandbox):
    control = modelops_sandbox.control
    control.post(
        "/_sandbox/foundry/live-deployments",
        {
            "rid": LIVE,
            "steps": [{"model_version_rid": "ri.models.main.model-version.old", "state": "STARTING", "is_ready": False}]
            * 6
            + [{"model_version_rid": "ri.models.main.model-version.new", "state": "ACTIVE", "is_ready": True}],
        },
    )
    before = len(control.requests())

    async def main() -> list[dict[str, Any]]:
        triggers = [
            LiveDeploymentTrigger(
                live_deployment_rid=LIVE,
                expected_model_version_rid="ri.models.main.model-version.new",
                conn_id="foundry_default",
                poll_interval=0.2,
            )
            for _ in range(5)
        ]
        return await asyncio.gather(*(_event(t) for t in triggers))

    events = asyncio.run(main())
    assert {e["snapshot"]["outcome"] for e in events} == {"succeeded"}
    gets = [r for r in control.requests()[before:] if r["path"] == f"/api/v2/models/liveDeployments/{LIVE}"]
    # The scripted steps advance one per GET: 7 GETs for 5 waiters means one GET per tick for all.
    assert len(gets) == 7


@pytest.fixture(autouse=True)
def _shared_polling_on(monkeypatch):
    monkeypatch.setattr(poller_module, "shared_polling_enabled", lambda: True)


def test_a_retry_reattaches_to_the_run_a_deferred_try_waited_for(modelops_sandbox, airflow_db):
    """Deferred with shared polling: the first try's batch is refused (an error event, the try fails);
    the retry re-attaches to the same run instead of launching again."""
    from datetime import datetime, timedelta

    from airflow.sdk import DAG

    from dagrun import run_dag
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    control = modelops_sandbox.control
    control.foundry_studio(OK_STUDIO, duration_s=1.5)
    control.fault(
        [{"status": 403, "body": {"errorCode": "PERMISSION_DENIED", "errorName": "Flaky"}}], path_prefix=BATCH_PATH
    )
    with DAG("t_shared_retry", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioLaunchOperator(
            task_id="train",
            model_studio_rid=OK_STUDIO,
            deferrable=True,
            poll_interval=0.2,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    result = run_dag(dag)
    assert result.state == "success"
    assert result.task("train").try_number == 2
    assert len(control.requests(path_prefix=f"/api/v2/models/modelStudios/{OK_STUDIO}/launch")) == 1
    assert control.requests(path_prefix=BATCH_PATH)
    assert result.task("train").xcom["return_value"]["buildStatus"] == "SUCCEEDED"
