"""Never twice: every create endpoint (Foundry launch, DuckLake trigger, Pluto create without
externalId) against a sandbox that acts first and answers late, drops or fails, or acts after the
client's read timeout. One create-or-adopt (core/adopt.py) serves all three, in hooks, operators
(sync and deferrable) and async calls alike."""

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
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.pluto.hooks import PlutoHook

STUDIO = "ri.models.main.model-studio.77777777-7777-4777-8777-777777777777"
LAUNCH_PATH = f"/api/v2/models/modelStudios/{STUDIO}/launch"
RUNS_PATH = f"/api/v2/models/modelStudios/{STUDIO}/runs"
DUCKLAKE_TRIGGER = "/v1/model-runs"
PLUTO_CREATE = "/api/runs/create"

# A read timeout of 1 s; the server acts (or answers) 2 s after the request, after the client gave up.
READ_TIMEOUT = 1
LATE = [
    pytest.param({"delay_s": 2}, id="acts-2s-late"),
    pytest.param({"delay_s": 2, "process": True}, id="acts-then-answers-2s-late"),
    pytest.param({"status": 502, "process": True}, id="acts-then-502"),
    pytest.param({"status": 500, "process": True, "delay_s": 2}, id="acts-then-500-2s-late"),
    pytest.param({"kind": "drop"}, id="acts-then-drops"),
]


def with_extra(monkeypatch, service: str, conn_id: str, **extra) -> str:
    """A copy of the sandbox's default connection of ``service`` with these extras."""
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{service.upper()}_DEFAULT"])
    conn["extra"] = {**(conn.get("extra") or {}), **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def wait_until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def posts(control, path: str) -> list[dict]:
    return [r for r in control.requests(path_prefix=path, method="POST") if r["path"] == path]


def looked_between(control, create_path: str, list_path: str) -> int:
    """How many list requests came after the first create request (the looks for its run)."""
    first = posts(control, create_path)[0]["time"]
    return len([r for r in control.requests(path_prefix=list_path, method="GET") if r["time"] > first])


# --- hooks (sync) and async calls ----------------------------------------------------------------
@pytest.mark.parametrize("fault", LATE)
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_foundry_launch_is_never_sent_twice(fault, driver, modelops_sandbox, monkeypatch, caplog):
    control = modelops_sandbox.control
    control.foundry_studio(STUDIO, duration_s=60)
    control.fault([fault], path_prefix=LAUNCH_PATH)
    hook = FoundryHook(with_extra(monkeypatch, "foundry", "foundry_slow", read_timeout=READ_TIMEOUT))
    with caplog.at_level(logging.INFO):
        if driver == "sync":
            run = hook.launch_model_studio(STUDIO)
        else:

            async def launch():
                await hook.aget_conn()
                return await hook.acall(hook.api.launch_model_studio(STUDIO))

            run = asyncio.run(launch())
    runs = list(FoundryHook().list_model_studio_runs(STUDIO))
    assert [r.run_id for r in runs] == [run.run_id], "exactly one run, and it is the one adopted"
    assert len(posts(control, LAUNCH_PATH)) == 1
    assert looked_between(control, LAUNCH_PATH, RUNS_PATH) >= 1
    assert any("adopting it instead of creating again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fault", LATE)
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_ducklake_trigger_is_never_sent_twice(fault, driver, modelops_sandbox, monkeypatch):
    control = modelops_sandbox.control
    control.fault([fault], method="POST", path_prefix=DUCKLAKE_TRIGGER)
    hook = DuckLakeHook(with_extra(monkeypatch, "ducklake", "ducklake_slow", read_timeout=READ_TIMEOUT))
    if driver == "sync":
        run = hook.trigger_model_run("analytics")
    else:

        async def trigger():
            await hook.aget_conn()
            return await hook.acall(hook.api.trigger_model_run("analytics"))

        run = asyncio.run(trigger())
    assert [r.id for r in DuckLakeHook().list_model_runs()] == [run.id]
    assert len(posts(control, DUCKLAKE_TRIGGER)) == 1
    assert looked_between(control, DUCKLAKE_TRIGGER, DUCKLAKE_TRIGGER) >= 1


@pytest.mark.parametrize("fault", LATE)
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_pluto_create_without_external_id_is_never_sent_twice(fault, driver, modelops_sandbox, monkeypatch):
    control = modelops_sandbox.control
    control.fault([fault], path_prefix=PLUTO_CREATE)
    hook = PlutoHook(with_extra(monkeypatch, "pluto", "pluto_slow", read_timeout=READ_TIMEOUT))
    if driver == "sync":
        run = hook.create_run("late", "nightly")
    else:

        async def create():
            await hook.aget_conn()
            return await hook.acall(hook.api.create_run("late", "nightly"))

        run = asyncio.run(create())
    stored = control.pluto_runs()
    assert [r["runId"] for r in stored] == [run.run_id] and run.display_id == stored[0]["displayId"]
    assert len(posts(control, PLUTO_CREATE)) == 1
    assert looked_between(control, PLUTO_CREATE, "/api/runs/list") >= 1


def test_pluto_create_with_external_id_is_asked_again_like_a_read(modelops_sandbox):
    control = modelops_sandbox.control
    control.fault([{"kind": "drop"}], path_prefix=PLUTO_CREATE)
    run = PlutoHook().create_run("p", "r", external_id="airflow:d:r")
    assert len(posts(control, PLUTO_CREATE)) == 2  # re-sent: the server answers with the same run
    assert [r["runId"] for r in control.pluto_runs()] == [run.run_id]
    assert not control.requests(path_prefix="/api/runs/list")


# --- the window passes with nothing found --------------------------------------------------------
def test_nothing_found_within_the_window_fails_clearly_and_the_next_try_looks_first(modelops_sandbox, monkeypatch):
    control = modelops_sandbox.control
    control.foundry_studio(STUDIO, duration_s=60)
    # The server does not act and answers 502: the outcome looks unknown, and nothing turns up.
    control.fault([{"status": 502}], path_prefix=LAUNCH_PATH)
    hook = FoundryHook(with_extra(monkeypatch, "foundry", "foundry_window", adoption_window=1.5))
    with pytest.raises(errors.OutcomeUnknownError) as info:
        hook.launch_model_studio(STUDIO)
    message = str(info.value)
    assert f"launch of {STUDIO} at " in message and "outcome unknown, nothing found within 1.5s" in message
    assert len(posts(control, LAUNCH_PATH)) == 1  # never created again inside the try
    assert looked_between(control, LAUNCH_PATH, RUNS_PATH) >= 2  # kept looking
    # The next try looks first (nothing), then launches once.
    before = len(control.requests(path_prefix=RUNS_PATH))
    run = hook.call(hook.api.launch_model_studio(STUDIO, unknown_since=info.value.asked_at))
    assert len(control.requests(path_prefix=RUNS_PATH)) > before
    assert [r.run_id for r in hook.list_model_studio_runs(STUDIO)] == [run.run_id]


def test_the_next_try_adopts_what_an_earlier_tries_create_made(modelops_sandbox, monkeypatch):
    control = modelops_sandbox.control
    # The server acts 2.5 s late, after a window of 1 s: the first try gives up, the run appears later.
    control.fault([{"delay_s": 2.5}], method="POST", path_prefix=DUCKLAKE_TRIGGER)
    hook = DuckLakeHook(with_extra(monkeypatch, "ducklake", "ducklake_window", read_timeout=0.5, adoption_window=1))
    with pytest.raises(errors.OutcomeUnknownError) as info:
        hook.trigger_model_run("analytics")
    wait_until(lambda: control.get("/_sandbox/ducklake/runs"))  # the server acted, late
    run = hook.call(hook.api.trigger_model_run("analytics", unknown_since=info.value.asked_at))
    assert [r.id for r in hook.list_model_runs()] == [run.id]
    assert len(posts(control, DUCKLAKE_TRIGGER)) == 1


def test_the_default_window_covers_the_read_timeout_plus_30s(modelops_sandbox, monkeypatch):
    assert FoundryHook().service.adopt_window() == 30 + 30
    hook = FoundryHook(with_extra(monkeypatch, "foundry", "foundry_rt", read_timeout=5))
    assert hook.service.adopt_window() == 35
    hook = FoundryHook(with_extra(monkeypatch, "foundry", "foundry_aw", adoption_window=90))
    assert hook.service.adopt_window() == 90


# --- operators, sync and deferrable --------------------------------------------------------------
def _foundry_dag(dag_id: str, deferrable: bool):
    from airflow.sdk import DAG

    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioLaunchOperator(
            task_id="train", model_studio_rid=STUDIO, poll_interval=0.2, deferrable=deferrable, retries=0
        )
    return dag


def _ducklake_dag(dag_id: str, deferrable: bool):
    from airflow.sdk import DAG

    from modelops_provider.ducklake.operators import DuckLakeModelRunOperator

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        DuckLakeModelRunOperator(
            task_id="transform", project_name="analytics", poll_interval=0.2, deferrable=deferrable, retries=0
        )
    return dag


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
@pytest.mark.parametrize("fault", [{"delay_s": 2}, {"delay_s": 2, "process": True}], ids=["acts-late", "answers-late"])
def test_operators_never_create_twice(deferrable, fault, modelops_sandbox, monkeypatch):
    control = modelops_sandbox.control
    control.foundry_studio(STUDIO, duration_s=0.5)
    control.post("/_sandbox/ducklake/settings", {"pending_s": 0.1})
    for service in ("foundry", "ducklake"):
        with_extra(monkeypatch, service, f"{service}_default", read_timeout=READ_TIMEOUT)
    control.fault([fault], path_prefix=LAUNCH_PATH)
    control.fault([fault], method="POST", path_prefix=DUCKLAKE_TRIGGER)
    name = f"{'defer' if deferrable else 'sync'}_{'process' if fault.get('process') else 'late'}"
    foundry = run_dag(_foundry_dag(f"adopt_foundry_{name}", deferrable))
    ducklake = run_dag(_ducklake_dag(f"adopt_ducklake_{name}", deferrable))
    assert (foundry.state, ducklake.state) == ("success", "success")
    assert len(posts(control, LAUNCH_PATH)) == 1 and len(posts(control, DUCKLAKE_TRIGGER)) == 1
    assert [r.run_id for r in FoundryHook().list_model_studio_runs(STUDIO)] == [foundry.task("train").xcom["run_id"]]
    assert [r.id for r in DuckLakeHook().list_model_runs()] == [ducklake.task("transform").xcom["run_id"]]
