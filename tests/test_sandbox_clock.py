"""The sandbox clock: every service's state transitions follow it; tests move it instead of sleeping."""

from __future__ import annotations

import time

import httpx
import pytest

from ducklake_helpers import script_project
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.pluto.hooks import PlutoHook
from modelops_provider.sandbox import foundry as sf
from modelops_provider.sandbox.clock import Clock

STUDIO = "ri.models.main.model-studio.c10c0000-0000-4000-8000-000000000001"


class FakeWall:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_clock_modes_keep_the_reading_and_never_go_back():
    wall = FakeWall(1000.0)
    clock = Clock(wall)
    assert clock.mode == "wall" and clock.now() == 1000.0
    wall.t = 1005.0
    assert clock.now() == 1005.0
    clock.advance(10)  # a jump: time still flows
    wall.t = 1006.0
    assert clock.now() == 1016.0
    clock.set_mode("manual")
    wall.t = 2000.0
    assert clock.now() == 1016.0  # stands still
    assert clock.advance(4) == 1020.0
    clock.set_mode("wall")  # flows on from the frozen reading
    assert clock.now() == 1020.0
    wall.t = 2001.0
    assert clock.now() == 1021.0
    clock.reset()
    assert clock.mode == "wall" and clock.now() == 2001.0
    for bad in (-1, "5", True, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="advance_s must be a non-negative number"):
            clock.advance(bad)
    with pytest.raises(ValueError, match="mode must be one of wall, manual, got 'fast'"):
        clock.set_mode("fast")


def test_control_api_sets_the_mode_advances_and_rejects_bad_input(modelops_sandbox):
    control, url = modelops_sandbox.control, modelops_sandbox.url
    assert control.clock()["mode"] == "wall"
    frozen = control.clock(mode="manual")
    assert frozen["mode"] == "manual"
    time.sleep(0.05)
    assert control.clock()["now"] == frozen["now"]
    assert control.advance(30) == pytest.approx(frozen["now"] + 30)
    for body in ({"advance_s": -1}, {"mode": "fast"}, {"speed": 2}, {"mode": "wall", "advance_s": "x"}):
        answer = httpx.post(f"{url}/_sandbox/clock", json=body)
        assert answer.status_code == 400, body
    assert control.clock()["mode"] == "manual"  # the rejected {"mode": "wall", "advance_s": "x"} changed nothing
    control.reset()
    assert control.clock()["mode"] == "wall" and abs(control.clock()["offset_s"]) < 1


def test_a_foundry_run_and_its_rollout_follow_the_clock(modelops_sandbox, modelops_sandbox_clock):
    control = modelops_sandbox.control
    control.foundry_studio(STUDIO, duration_s=600)
    live = "ri.foundry-ml-live.main.live-deployment.c10c0000-0000-4000-8000-000000000001"
    control.post(
        "/_sandbox/foundry/live-deployments", {"rid": live, "studio_rid": STUDIO, "rollout_s": 60, "ready_after_s": 30}
    )
    hook = FoundryHook()
    run = hook.launch_model_studio(STUDIO)
    modelops_sandbox_clock.advance(599)
    assert hook.get_build(run.build_rid).status == "RUNNING"
    modelops_sandbox_clock.advance(1)
    assert hook.get_build(run.build_rid).status == "SUCCEEDED"
    version = run.resolved_outputs["model"].model_version_rid
    deployment = hook.get_live_deployment(live)
    assert deployment.status.state == "STARTING" and deployment.model_version.model_version_rid != version
    modelops_sandbox_clock.advance(60)
    deployment = hook.get_live_deployment(live)
    assert (deployment.status.state, deployment.status.is_ready) == ("ACTIVE", False)
    assert deployment.model_version.model_version_rid == version
    modelops_sandbox_clock.advance(30)
    assert hook.get_live_deployment(live).status.is_ready is True


def test_foundry_oauth_tokens_expire_by_the_clock(modelops_sandbox, modelops_sandbox_clock):
    modelops_sandbox.control.foundry_oauth(token_lifetime_s=3600)
    token = httpx.post(
        f"{modelops_sandbox.url}/multipass/api/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": sf.CLIENT_ID, "client_secret": sf.CLIENT_SECRET},
    ).json()["access_token"]
    me = f"{modelops_sandbox.url}/api/v2/admin/users/getCurrent"
    assert httpx.get(me, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    modelops_sandbox_clock.advance(3600)
    assert httpx.get(me, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_ducklake_run_follows_the_clock(modelops_sandbox, modelops_sandbox_clock):
    control = modelops_sandbox.control
    script_project(control, "clocked", {"name": "a", "duration_s": 300}, {"name": "b", "duration_s": 300})
    hook = DuckLakeHook()
    run = hook.trigger_model_run("clocked")
    assert hook.get_model_run(run.id).status == "PENDING"  # pending_s 0.1, and time stands still
    modelops_sandbox_clock.advance(0.1)
    assert hook.get_model_run(run.id).status == "RUNNING"
    modelops_sandbox_clock.advance(300)
    steps = hook.list_model_run_steps(run.id)
    assert [s.status for s in steps] == ["SUCCESS", "RUNNING"]
    modelops_sandbox_clock.advance(300)
    assert hook.get_model_run(run.id).status == "SUCCESS"


def test_ducklake_rate_limit_refills_by_the_clock(modelops_sandbox, modelops_sandbox_clock):
    control = modelops_sandbox.control
    control.post("/_sandbox/ducklake/settings", {"rate_limit": {"rps": 1, "burst": 2}})
    url = f"{modelops_sandbox.url}/v1/model-runs"
    headers = {"X-API-Key": "dlk_sandbox_0123456789abcdef"}
    assert [httpx.get(url, headers=headers).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(1.1)  # real time refills nothing: the bucket follows the sandbox clock
    assert httpx.get(url, headers=headers).status_code == 429
    modelops_sandbox_clock.advance(1)
    assert httpx.get(url, headers=headers).status_code == 200


def test_pluto_reaps_a_quiet_run_when_the_stale_window_passes(modelops_sandbox, modelops_sandbox_clock):
    control = modelops_sandbox.control  # the real timings: 1800 s stale grace, a cycle a minute
    hook = PlutoHook()
    run = hook.create_run("p", "quiet")
    modelops_sandbox_clock.advance(1800)
    assert next(r for r in control.pluto_runs() if r["runId"] == run.run_id)["status"] == "RUNNING"
    modelops_sandbox_clock.advance(60)  # the first monitor cycle after the grace
    reaped = next(r for r in control.pluto_runs() if r["runId"] == run.run_id)
    assert reaped["status"] == "FAILED" and reaped["statusMetadata"]["reason"] == "stale"
    assert reaped["statusMetadata"]["grace_seconds"] == 1800


def test_the_clock_fixture_stands_still_until_moved_and_then_flows_on(modelops_sandbox, modelops_sandbox_clock):
    control = modelops_sandbox.control
    first = modelops_sandbox_clock.now()
    assert control.clock()["mode"] == "manual"
    assert modelops_sandbox_clock.now() == first  # stands still
    assert modelops_sandbox_clock.advance(30) == pytest.approx(first + 30)
    modelops_sandbox_clock.wall()
    assert control.clock()["mode"] == "wall"
    resumed = modelops_sandbox_clock.now()
    assert resumed >= first + 30  # on from where it stood, not back to the wall's reading
    deadline = time.monotonic() + 5
    while modelops_sandbox_clock.now() == resumed:  # and time flows again
        assert time.monotonic() < deadline, "the sandbox clock did not move in wall mode"
        time.sleep(0.01)
