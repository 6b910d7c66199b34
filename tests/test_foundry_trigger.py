"""ModelStudioRunTrigger driven directly on an event loop, as the triggerer would."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time

import pytest

from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.triggers import ModelStudioRunTrigger
from modelops_provider.sandbox import foundry as sf

STUDIO = "ri.models.main.model-studio.66666666-6666-4666-8666-666666666666"


def _trigger(run, **kwargs) -> ModelStudioRunTrigger:
    return ModelStudioRunTrigger(
        model_studio_rid=STUDIO,
        run_id=run.run_id,
        build_rid=run.build_rid,
        config_version=run.config_version,
        **{"conn_id": "foundry_default", "poll_interval": 0.1, **kwargs},
    )


async def _events(trigger) -> list:
    return [event.payload async for event in trigger.run()]


@pytest.fixture
def launch(modelops_sandbox):
    def _launch(**studio):
        modelops_sandbox.control.foundry_studio(STUDIO, **{"duration_s": 0.5, **studio})
        return FoundryHook().launch_model_studio(STUDIO)

    return _launch


def test_serialize_is_json_without_secrets_and_round_trips(launch):
    run = launch()
    trigger = _trigger(run, deadline=time.time() + 60, cancel_on_kill=True)
    path, kwargs = trigger.serialize()
    assert path == "modelops_provider.foundry.triggers.ModelStudioRunTrigger"
    dumped = json.dumps(kwargs)
    assert sf.STATIC_TOKEN not in dumped and "password" not in dumped
    module, _, name = path.rpartition(".")
    clone = getattr(importlib.import_module(module), name)(**json.loads(dumped))
    assert clone.serialize() == trigger.serialize()


@pytest.mark.parametrize("shared", [True, False], ids=["shared-poller", "own-loop"])
def test_yields_one_small_event_and_the_worker_reads_the_run(launch, modelops_sandbox, monkeypatch, shared):
    monkeypatch.setenv("AIRFLOW__MODELOPS__SHARED_POLLING", str(shared))
    run = launch()
    trigger = _trigger(run)
    events = asyncio.run(_events(trigger))
    assert len(events) == 1
    assert events[0]["status"] == "done"
    assert events[0]["target"] == {
        "model_studio_rid": STUDIO,
        "run_id": run.run_id,
        "build_rid": run.build_rid,
        "config_version": run.config_version,
    }
    # Ids and the outcome only: the run (resolvedOutputs) stays out of the event.
    assert events[0]["snapshot"] == {
        "outcome": "succeeded",
        "status": "SUCCEEDED",
        "summary": events[0]["snapshot"]["summary"],
    }
    assert "SUCCEEDED" in events[0]["snapshot"]["summary"]
    # On resume the worker reads the run once (narrowed to its config version) and keeps the verdict.
    from modelops_provider.core.operators import unpack_event

    before = len(modelops_sandbox.control.requests())
    hook = FoundryHook()
    snap = hook.call(trigger.complete(hook, unpack_event(events[0])))
    reads = modelops_sandbox.control.requests()[before:]
    assert [r["path"] for r in reads] == [f"/api/v2/models/modelStudios/{STUDIO}/runs"]
    assert reads[0]["query"].get("configVersion") == str(run.config_version)
    assert snap.outcome.value == "succeeded" and snap.status == "SUCCEEDED"
    assert snap.data["runId"] == run.run_id
    assert snap.data["resolvedOutputs"]["model"]["modelVersionRid"]


def test_absolute_deadline_survives_a_restart(launch):
    run = launch(duration_s=60)
    # A trigger re-created after a triggerer restart, past its deadline, times out at once.
    started = time.monotonic()
    events = asyncio.run(_events(_trigger(run, deadline=time.time() - 1)))
    assert time.monotonic() - started < 1.0
    assert events[0]["status"] == "timeout" and "still RUNNING" in events[0]["message"]


def test_keeps_polling_through_transient_errors(launch, modelops_sandbox):
    run = launch(duration_s=0.6)
    modelops_sandbox.control.fault(
        [
            {"status": 503, "headers": {"Retry-After": "0"}},
            {"kind": "drop"},
            {"status": 429, "headers": {"Retry-After": "0"}},
        ],
        path_prefix=f"/api/v2/models/modelStudios/{STUDIO}/runs",
    )
    events = asyncio.run(_events(_trigger(run)))
    assert events[0]["status"] == "done"


def test_error_event_carries_the_message(launch, monkeypatch):
    run = launch()
    trigger = _trigger(run)
    trigger.conn_id = "foundry_missing"
    events = asyncio.run(_events(trigger))
    assert events[0]["status"] == "error"
    assert "foundry_missing" in events[0]["message"]


def test_on_kill_cancels_the_build_and_sensor_triggers_do_not(launch, modelops_sandbox):
    async def kill(trigger):
        events = trigger.run()
        pending = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.4)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        await trigger.on_kill()

    run = launch(duration_s=60)
    asyncio.run(kill(_trigger(run, cancel_on_kill=True)))
    assert FoundryHook().get_build(run.build_rid).status == "CANCELED"

    other = launch(duration_s=60)
    asyncio.run(kill(_trigger(other, cancel_on_kill=False)))
    assert FoundryHook().get_build(other.build_rid).status == "RUNNING"
    assert not modelops_sandbox.control.requests(path_prefix=f"/api/v2/orchestration/builds/{other.build_rid}/cancel")


def test_many_triggers_share_one_loop_and_client(launch, modelops_sandbox):
    run = launch(duration_s=0.8)

    async def main():
        return await asyncio.gather(*(_events(_trigger(run, poll_interval=0.2)) for _ in range(50)))

    results = asyncio.run(main())
    assert all(r[0]["status"] == "done" for r in results)


def _few_attempts(monkeypatch, url) -> str:
    host, port = url.split("://")[1].split(":")
    conn = {
        "conn_type": "foundry",
        "host": host,
        "port": int(port),
        "password": sf.STATIC_TOKEN,
        "extra": {"scheme": "http", "retry_max_attempts": 1},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FOUNDRY_ONE_TRY", json.dumps(conn))
    return "foundry_one_try"


def test_rides_out_an_outage_longer_than_one_requests_retry_budget(launch, modelops_sandbox, monkeypatch):
    from modelops_provider.core.waiting import MAX_MISSED_POLLS

    # The trigger's own loop, which reads the run (shared polling reads builds: test_shared_polling.py).
    monkeypatch.setenv("AIRFLOW__MODELOPS__SHARED_POLLING", "False")
    run = launch(duration_s=0.5)
    runs_path = f"/api/v2/models/modelStudios/{STUDIO}/runs"
    modelops_sandbox.control.fault([{"status": 503}] * (MAX_MISSED_POLLS - 1), path_prefix=runs_path)
    trigger = _trigger(run, conn_id=_few_attempts(monkeypatch, modelops_sandbox.url))
    events = asyncio.run(_events(trigger))
    assert events[0]["status"] == "done"
    # ...but not forever: MAX_MISSED_POLLS failed polls in a row end the wait with the error.
    modelops_sandbox.control.fault([{"status": 503}] * MAX_MISSED_POLLS, path_prefix=runs_path)
    events = asyncio.run(_events(_trigger(run, conn_id="foundry_one_try")))
    assert events[0]["status"] == "error" and "HTTP 503" in events[0]["message"]


def test_on_kill_before_the_trigger_ran_still_cancels(launch):
    run = launch(duration_s=60)
    asyncio.run(_trigger(run, cancel_on_kill=True).on_kill())
    assert FoundryHook().get_build(run.build_rid).status == "CANCELED"


def test_on_kill_is_bounded_by_airflows_kill_timeout(launch, modelops_sandbox, monkeypatch):
    import modelops_provider.core.triggers as core_triggers

    run = launch(duration_s=60)
    monkeypatch.setattr(core_triggers, "ON_KILL_BUDGET_S", 0.5)
    modelops_sandbox.control.fault(
        [{"status": 429, "headers": {"Retry-After": "30"}}], path_prefix="/api/v2/orchestration"
    )
    started = time.monotonic()
    asyncio.run(_trigger(run, cancel_on_kill=True).on_kill())
    assert time.monotonic() - started < 2
