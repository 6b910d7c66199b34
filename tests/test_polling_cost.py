"""What one poll costs: a run is read through a narrowed list, a waiting trigger keeps no response,
and each trigger's fields are declared once (they are its kwargs, its target and what operators and
sensors look through)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import httpx
import pytest

from modelops_provider.ducklake.triggers import DuckLakeModelRunTrigger
from modelops_provider.foundry.api import RUN_LOOKUP_PAGE_SIZE
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.triggers import LiveDeploymentTrigger, ModelStudioRunTrigger

STUDIO = "ri.models.main.model-studio.77777777-7777-4777-8777-777777777777"
RUNS_PATH = f"/api/v2/models/modelStudios/{STUDIO}/runs"


@pytest.fixture
def history(modelops_sandbox):
    """Our run (config version 1), then a studio history of 2.5 pages of later runs (version 2)."""
    control = modelops_sandbox.control
    control.foundry_studio(STUDIO, duration_s=60, config_version=1)
    hook = FoundryHook()
    ours = hook.launch_model_studio(STUDIO)
    control.foundry_studio(STUDIO, duration_s=60, config_version=2)
    later = RUN_LOOKUP_PAGE_SIZE * 5 // 2
    for _ in range(later):
        hook.launch_model_studio(STUDIO)
    return hook, ours, len(control.requests())


def test_a_run_is_read_through_its_config_version_in_one_request(history, modelops_sandbox):
    hook, ours, before = history
    assert hook.get_model_studio_run(STUDIO, ours.run_id, ours.config_version).run_id == ours.run_id
    sent = modelops_sandbox.control.requests()[before:]
    assert [r["query"] for r in sent] == [
        {"preview": "true", "configVersion": "1", "pageSize": str(RUN_LOOKUP_PAGE_SIZE)}
    ]


def test_without_the_config_version_the_walk_uses_full_pages_and_stops_at_the_match(history, modelops_sandbox):
    hook, ours, before = history
    newest = next(hook.list_model_studio_runs(STUDIO))
    before = len(modelops_sandbox.control.requests())
    assert hook.get_model_studio_run(STUDIO, newest.run_id).run_id == newest.run_id
    sent = modelops_sandbox.control.requests()[before:]
    assert len(sent) == 1 and sent[0]["query"]["pageSize"] == str(RUN_LOOKUP_PAGE_SIZE)
    # The oldest run, without its version: 3 pages of 100, not 13 of the server's default 20.
    before = len(modelops_sandbox.control.requests())
    assert hook.get_model_studio_run(STUDIO, ours.run_id).run_id == ours.run_id
    assert len(modelops_sandbox.control.requests()[before:]) == 3


def test_a_waiting_trigger_keeps_no_response(history, monkeypatch):
    _, ours, _ = history
    received: weakref.WeakSet[httpx.Response] = weakref.WeakSet()
    sent = 0
    send = httpx.AsyncClient.send

    async def recording_send(self, request, **kwargs):
        nonlocal sent
        response = await send(self, request, **kwargs)
        received.add(response)
        sent += 1
        return response

    monkeypatch.setattr(httpx.AsyncClient, "send", recording_send)
    trigger = ModelStudioRunTrigger(
        model_studio_rid=STUDIO,
        run_id=ours.run_id,
        build_rid=ours.build_rid,
        config_version=ours.config_version,
        conn_id="foundry_default",
        poll_interval=0.5,
    )

    async def main() -> int:
        task = asyncio.ensure_future(trigger.run().__anext__())
        await asyncio.sleep(1.2)  # polls at 0, 0.5 and 1 s done, sleeping before the next
        gc.collect()
        alive = len(received)
        task.cancel()
        return alive

    assert asyncio.run(main()) == 0
    assert sent >= 2  # the polls happened; their responses are gone


def test_trigger_fields_are_its_kwargs_and_its_target():
    trigger = DuckLakeModelRunTrigger(run_id="r", conn_id="c", poll_interval=5)
    assert trigger.target() == {"run_id": "r", "project_name": None}
    assert trigger.serialize()[1] == {
        "run_id": "r",
        "project_name": None,
        "conn_id": "c",
        "poll_interval": 5.0,
        "deadline": None,
        "cancel_on_kill": False,
        "started_at": None,
    }
    live = LiveDeploymentTrigger(live_deployment_rid="ri.a.b.c.d", conn_id="c")
    assert live.target() == {
        "live_deployment_rid": "ri.a.b.c.d",
        "expected_model_version_rid": None,
        "require_ready": True,
        "degraded_grace": 300.0,
    }
    with pytest.raises(TypeError, match="'run_id'"):
        DuckLakeModelRunTrigger(conn_id="c")
    with pytest.raises(TypeError, match="runid"):
        DuckLakeModelRunTrigger(run_id="r", runid="r", conn_id="c")
