"""DuckLakeHook and DuckLakeModelRunTrigger against the sandbox over loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import pytest

from ducklake_helpers import add_connection, script_project, service_requests, wait_for
from modelops_provider.core.errors import (
    ApiError,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    UnauthorizedError,
)
from modelops_provider.ducklake.hooks import DuckLakeHook, token_principals
from modelops_provider.ducklake.triggers import DuckLakeModelRunTrigger
from modelops_provider.sandbox import ducklake as sd


def test_every_hook_method(modelops_sandbox):
    control = modelops_sandbox.control
    script_project(
        control,
        "shop",
        {"name": "stg_orders", "rows_affected": 1500, "tests": [{"name": "not_null_id"}, {"name": "unique_id"}]},
        {
            "name": "fct_orders",
            "rows_affected": 700,
            "tests": [{"name": "positive_total", "status": "FAIL", "rows_returned": 2}],
        },
    )
    hook = DuckLakeHook()

    run = hook.trigger_model_run("shop", full_refresh=True)
    assert run.status == "PENDING"
    assert run.project_name == "shop" and run.full_refresh is True and run.triggered_by == sd.JWT_SUBJECT
    trigger_request = service_requests(control, "POST")[0]
    assert trigger_request["path"] == "/v1/model-runs" and trigger_request["status"] == 201

    assert hook.get_model_run(run.id).id == run.id
    assert run.id in [r.id for r in hook.list_model_runs()]
    wait_for(lambda: hook.get_model_run(run.id).status == "SUCCESS")

    steps = hook.list_model_run_steps(run.id)
    assert [(s.model_name, s.status, s.rows_affected) for s in steps] == [
        ("stg_orders", "SUCCESS", 1500),
        ("fct_orders", "SUCCESS", 700),
    ]
    first = hook.list_model_test_results(run.id, steps[0].id)
    assert [(t.test_name, t.status) for t in first] == [("not_null_id", "PASS"), ("unique_id", "PASS")]
    second = hook.list_model_test_results(run.id, steps[1].id)
    assert [(t.test_name, t.status, t.rows_returned) for t in second] == [("positive_total", "FAIL", 2)]

    # Cancelling a finished run: the platform answers 400, the hook raises it typed, with code and message.
    with pytest.raises(InvalidArgumentError) as info:
        hook.cancel_model_run(run.id)
    assert info.value.status == 400 and info.value.error_code == 400
    assert "cannot cancel run in status SUCCESS" in info.value.message
    # ... which is not an error for the operator's and trigger's cancel.
    assert hook.call(hook.api.cancel_if_running(run.id)).status == "SUCCESS"

    # Cancelling a running one.
    control.ducklake_model("slow", project="shop", duration_s=5)
    slow = hook.trigger_model_run("shop", model_names=["slow"])
    cancelled = hook.cancel_model_run(slow.id)
    assert cancelled is not None and cancelled.status == "CANCELLED"
    assert cancelled.error_message == f"cancelled by {sd.JWT_SUBJECT}"
    assert [s.status for s in hook.list_model_run_steps(slow.id)] == ["CANCELLED"]

    with pytest.raises(NotFoundError) as missing:
        hook.get_model_run(str(uuid.uuid4()))
    assert missing.value.error_code == 404 and "not found" in missing.value.message
    with pytest.raises(InvalidArgumentError, match="model\\(s\\) not found in project 'shop': nope"):
        hook.trigger_model_run("shop", model_names=["nope"])


def test_failed_model_skips_later_models(modelops_sandbox):
    control = modelops_sandbox.control
    script_project(
        control,
        "shop",
        {"name": "a"},
        {"name": "b", "outcome": "FAILED", "tests": [{"name": "never_runs"}]},
        {"name": "c"},
    )
    hook = DuckLakeHook()
    run = hook.trigger_model_run("shop")
    final = wait_for(lambda: (r := hook.get_model_run(run.id)).status not in ("PENDING", "RUNNING") and r)
    assert final.status == "FAILED" and final.error_message == "one or more models failed"
    steps = hook.list_model_run_steps(run.id)
    assert [s.status for s in steps] == ["SUCCESS", "FAILED", "SKIPPED"]
    assert "model b failed" in (steps[1].error_message or "")
    assert hook.list_model_test_results(run.id, steps[1].id) == []


@pytest.mark.parametrize("auth_type", ["bearer", "api_key"])
def test_both_auth_kinds(modelops_sandbox, monkeypatch, auth_type):
    secret = sd.SANDBOX_JWT if auth_type == "bearer" else sd.API_KEY
    conn_id = add_connection(monkeypatch, f"ducklake_{auth_type}", auth_type=auth_type, password=secret)
    run = DuckLakeHook(conn_id).trigger_model_run("analytics")
    expected = sd.JWT_SUBJECT if auth_type == "bearer" else sd.API_KEY_PRINCIPAL
    assert run.triggered_by == expected


@pytest.mark.parametrize("auth_type", ["bearer", "api_key"])
def test_wrong_credentials_are_a_typed_401_without_the_secret(modelops_sandbox, monkeypatch, auth_type):
    wrong = "wrong-secret-value-1234567890"
    conn_id = add_connection(monkeypatch, "ducklake_wrong", auth_type=auth_type, password=wrong)
    hook = DuckLakeHook(conn_id)
    with pytest.raises(UnauthorizedError) as info:
        hook.get_model_run(str(uuid.uuid4()))
    assert info.value.status == 401 and info.value.error_code == 401
    assert info.value.message == sd.UNAUTHORIZED
    assert wrong not in str(info.value) and wrong not in json.dumps(info.value.to_dict())
    ok, message = hook.test_connection()
    assert not ok and "401" in message and wrong not in message
    assert DuckLakeHook().test_connection()[0]


def test_paging_over_more_than_one_page(modelops_sandbox):
    control = modelops_sandbox.control
    created = [control.post("/_sandbox/ducklake/runs", {"project": "analytics"})["id"] for _ in range(5)]
    hook = DuckLakeHook()

    runs = list(hook.list_model_runs(max_results=2))
    assert [r.id for r in runs] == list(reversed(created))  # newest first, every run once
    lists = service_requests(control, "GET", "/v1/model-runs")
    tokens = [r["query"].get("page_token") for r in lists]
    # base64 of the offset, as the platform does it
    assert tokens == [None, base64.b64encode(b"2").decode(), base64.b64encode(b"4").decode()]
    assert all(r["query"]["max_results"] == "2" for r in lists)

    # Lazy: stopping after the first item fetches one page only.
    control.reset()
    for _ in range(3):
        control.post("/_sandbox/ducklake/runs", {"project": "analytics"})
    next(iter(hook.list_model_runs(max_results=1)))
    assert len(service_requests(control, "GET", "/v1/model-runs")) == 1

    # The status filter is passed on.
    assert list(hook.list_model_runs(status="FAILED")) == []
    assert service_requests(control, "GET", "/v1/model-runs")[-1]["query"] == {"status": "FAILED"}


def test_bad_arguments_are_rejected_before_any_request(modelops_sandbox):
    hook = DuckLakeHook()
    good = str(uuid.uuid4())
    bad_calls = [
        (lambda: hook.get_model_run("not-a-uuid"), "run_id", "'not-a-uuid'"),
        (lambda: hook.cancel_model_run("123"), "run_id", "'123'"),
        (lambda: hook.list_model_run_steps(good + "x"), "run_id", good + "x"),
        (lambda: hook.list_model_test_results("nope", good), "run_id", "'nope'"),
        (lambda: hook.list_model_test_results(good, "../steps"), "step_id", "'../steps'"),
        (lambda: hook.list_model_runs(status="DONE"), "status", "'DONE'"),
        (lambda: hook.list_model_runs(max_results=0), "max_results", "0"),
        (lambda: hook.list_model_runs(max_results=5000), "max_results", "5000"),
        (lambda: hook.trigger_model_run("my project"), "project_name", "'my project'"),
        (lambda: hook.trigger_model_run(""), "project_name", "''"),
        (lambda: hook.trigger_model_run("shop", model_names="stg_orders"), "model_names", "'stg_orders'"),
        (lambda: hook.trigger_model_run("shop", model_names=["ok", ""]), "model_names", "''"),
        (lambda: hook.trigger_model_run("shop", full_refresh="yes"), "full_refresh", "'yes'"),
    ]
    for call, name, value in bad_calls:
        with pytest.raises(ValueError) as info:
            call()
        assert name in str(info.value) and value in str(info.value), str(info.value)
    assert service_requests(modelops_sandbox.control) == []


@pytest.mark.parametrize("missing_route_status", [404, 405])
def test_cancel_falls_back_to_cancellations_and_remembers(modelops_sandbox, monkeypatch, missing_route_status):
    control = modelops_sandbox.control
    control.post(
        "/_sandbox/ducklake/settings",
        {"cancel_routes": ["cancellations"], "missing_route_status": missing_route_status},
    )
    control.ducklake_model("slow", project="shop", duration_s=5)
    conn_id = add_connection(monkeypatch, f"ducklake_newer_{missing_route_status}")
    hook = DuckLakeHook(conn_id)
    first, second = (hook.trigger_model_run("shop") for _ in range(2))

    assert hook.cancel_model_run(first.id).status == "CANCELLED"
    assert hook.get_model_run(first.id).status == "CANCELLED"
    cancels = [
        (r["path"].rsplit("/", 1)[1], r["status"])
        for r in service_requests(control, "POST")
        if r["path"] != "/v1/model-runs"
    ]
    assert cancels == [("cancel", missing_route_status), ("cancellations", 200)]

    # Remembered for the connection (also by a new hook in this process): straight to /cancellations.
    assert DuckLakeHook(conn_id).cancel_model_run(second.id).status == "CANCELLED"
    cancels = [r["path"].rsplit("/", 1)[1] for r in service_requests(control, "POST") if r["path"] != "/v1/model-runs"]
    assert cancels == ["cancel", "cancellations", "cancellations"]

    # A run that does not exist: both routes tried, the first answer reported.
    with pytest.raises(NotFoundError):
        DuckLakeHook(add_connection(monkeypatch, f"ducklake_other_{missing_route_status}")).cancel_model_run(
            str(uuid.uuid4())
        )


def test_cancel_route_memory_goes_back_to_cancel(modelops_sandbox, monkeypatch):
    """A connection that learnt /cancellations, pointed at a server with /cancel only, falls back the other way."""
    control = modelops_sandbox.control
    control.ducklake_model("slow", project="shop", duration_s=5)
    conn_id = add_connection(monkeypatch, "ducklake_back_and_forth")
    hook = DuckLakeHook(conn_id)
    control.post("/_sandbox/ducklake/settings", {"cancel_routes": ["cancellations"]})
    hook.cancel_model_run(hook.trigger_model_run("shop").id)
    control.post("/_sandbox/ducklake/settings", {"cancel_routes": ["cancel"]})
    assert hook.cancel_model_run(hook.trigger_model_run("shop").id).status == "CANCELLED"
    cancels = [r["path"].rsplit("/", 1)[1] for r in service_requests(control, "POST") if r["path"] != "/v1/model-runs"]
    assert cancels == ["cancel", "cancellations", "cancellations", "cancel"]


@pytest.mark.parametrize("server_routes", [["cancellations"], ["cancel", "cancellations"]])
def test_pinned_cancel_route_is_used_from_the_first_cancel(modelops_sandbox, monkeypatch, server_routes):
    """``cancel_route`` pins the route: a new process (a new task try) needs nothing learnt."""
    control = modelops_sandbox.control
    control.post("/_sandbox/ducklake/settings", {"cancel_routes": server_routes})
    control.ducklake_model("slow", project="shop", duration_s=5)
    hook = DuckLakeHook(
        add_connection(monkeypatch, f"ducklake_pinned_{len(server_routes)}", cancel_route="cancellations")
    )
    run = hook.trigger_model_run("shop")
    assert hook.cancel_model_run(run.id).status == "CANCELLED"
    cancels = [(r["path"].rsplit("/", 1)[1], r["status"]) for r in service_requests(control, "POST")][1:]
    assert cancels == [("cancellations", 200)]


def test_pinned_cancel_route_does_not_fall_back(modelops_sandbox, monkeypatch):
    control = modelops_sandbox.control
    control.post("/_sandbox/ducklake/settings", {"cancel_routes": ["cancellations"], "missing_route_status": 405})
    control.ducklake_model("slow", project="shop", duration_s=5)
    hook = DuckLakeHook(add_connection(monkeypatch, "ducklake_pinned_old", cancel_route="cancel"))
    run = hook.trigger_model_run("shop")
    with pytest.raises(ApiError) as info:
        hook.cancel_model_run(run.id)
    assert info.value.status == 405
    assert [r["path"].rsplit("/", 1)[1] for r in service_requests(control, "POST")][1:] == ["cancel"]
    assert hook.get_model_run(run.id).status in ("PENDING", "RUNNING")


def test_429_waits_for_retry_after(modelops_sandbox):
    control = modelops_sandbox.control
    control.post("/_sandbox/ducklake/settings", {"rate_limit": {"rps": 1, "burst": 1}})
    hook = DuckLakeHook()
    started = time.monotonic()
    assert list(hook.list_model_runs()) == []
    assert list(hook.list_model_runs()) == []  # the bucket is empty: 429, Retry-After: 1, then 200
    elapsed = time.monotonic() - started
    statuses = [r["status"] for r in service_requests(control)]
    assert statuses == [200, 429, 200]
    assert elapsed >= 1.0, elapsed


def test_429_after_the_retry_budget_is_a_typed_error(modelops_sandbox, monkeypatch):
    control = modelops_sandbox.control
    control.post("/_sandbox/ducklake/settings", {"rate_limit": {"rps": 0.01, "burst": 1}})
    hook = DuckLakeHook(add_connection(monkeypatch, "ducklake_once", retry_max_attempts=1))
    list(hook.list_model_runs())  # takes the only token
    with pytest.raises(RateLimitedError) as info:
        list(hook.list_model_runs())
    assert info.value.status == 429 and info.value.error_code == 429 and info.value.message == "rate limit exceeded"
    assert [r["status"] for r in service_requests(control)] == [200, 429]


def test_429_fault_with_retry_after_header(modelops_sandbox):
    """The same through the generic fault injection, on the trigger (a create: only 429/503 are re-sent)."""
    control = modelops_sandbox.control
    control.fault(
        [{"status": 429, "body": {"code": 429, "message": "rate limit exceeded"}, "headers": {"Retry-After": "1"}}],
        method="POST",
        path_prefix="/v1/model-runs",
    )
    started = time.monotonic()
    run = DuckLakeHook().trigger_model_run("analytics")
    assert time.monotonic() - started >= 1.0
    assert [r["status"] for r in service_requests(control, "POST")] == [429, 201]
    assert [r.id for r in DuckLakeHook().list_model_runs()] == [run.id]


def test_ambiguous_trigger_adopts_the_run_instead_of_triggering_again(modelops_sandbox):
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "a"}, {"name": "b"})
    control.fault([{"kind": "drop"}], method="POST", path_prefix="/v1/model-runs")
    hook = DuckLakeHook()
    run = hook.trigger_model_run("shop", model_names=["b"])
    runs = list(hook.list_model_runs())
    assert [r.id for r in runs] == [run.id] and run.model_names == ["b"]
    assert len(service_requests(control, "POST")) == 1


def test_ambiguous_trigger_reads_back_only_to_the_request_and_skips_other_principals_runs(
    modelops_sandbox, monkeypatch
):
    """No run of ours was created: the look stops at the first page that reaches back past the
    request (the list is newest first) instead of walking the whole history, and a fresh run of the
    same request by another principal is not adopted."""
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "a"})
    # A long history (three pages of 100) of runs like ours in all but their age.
    same = {"project": "shop", "trigger_type": "MANUAL", "triggered_by": sd.JWT_SUBJECT}
    control.post("/_sandbox/ducklake/runs", {**same, "count": 250, "created_ago_s": 3600})
    theirs = control.post("/_sandbox/ducklake/runs", {**same, "triggered_by": "someone-else"})
    # A 502 without processing the trigger: the client cannot know whether it took effect.
    control.fault([{"status": 502, "body": {"code": 502, "message": "bad gateway"}}], method="POST")
    hook = DuckLakeHook(add_connection(monkeypatch, "ducklake_window", adoption_window=1))
    with pytest.raises(OutcomeUnknownError, match="outcome unknown"):
        hook.trigger_model_run("shop")

    assert [r["status"] for r in service_requests(control, "POST")] == [502]  # never triggered again
    pages = service_requests(control, "GET", "/v1/model-runs")
    assert len(pages) >= 2  # kept looking within the window
    assert {r["query"].get("page_token") for r in pages} == {None}  # each look one page, not three
    # Their run was never adopted; a trigger that acted is, and is ours.
    control.fault([{"status": 502, "body": {"code": 502, "message": "bad gateway"}, "process": True}], method="POST")
    run = hook.trigger_model_run("shop")
    assert run.id != theirs["id"] and run.triggered_by == sd.JWT_SUBJECT


def test_token_principals_are_the_jwt_claims_lower_cased():
    token = sd.make_jwt("Robot-7")
    assert {"robot-7", "modelops-sandbox"} <= token_principals(token)
    assert token_principals("an-opaque-token") == frozenset()
    assert token_principals("not.a.jwt") == frozenset()


def test_connection_settings(modelops_sandbox, monkeypatch):
    hook = DuckLakeHook()
    base = modelops_sandbox.url + "/v1"
    assert hook.service.base_url == base
    run_id = str(uuid.uuid4())
    assert hook.run_url(run_id) == f"{modelops_sandbox.url}/ui/ducklake/model-runs/{run_id}"
    assert hook.asset_uri("shop", "fct_orders") == "ducklake://127.0.0.1/shop/fct_orders"

    plain = DuckLakeHook(add_connection(monkeypatch, "ducklake_plain", ui_url_template=None, path_prefix="/api/v1/"))
    assert plain.service.base_url == modelops_sandbox.url + "/api/v1"
    assert plain.run_url(run_id) == f"{modelops_sandbox.url}/api/v1/model-runs/{run_id}"
    templated = DuckLakeHook(
        add_connection(
            monkeypatch, "ducklake_ui", ui_url_template="https://ui.example.com/p/{project_name}/runs/{run_id}"
        )
    )
    assert templated.run_url(run_id, "shop") == f"https://ui.example.com/p/shop/runs/{run_id}"

    for conn_id, extra, words in [
        ("ducklake_bad_auth", {"auth_type": "basic"}, "auth_type"),
        ("ducklake_bad_ui", {"ui_url_template": "https://ui/{id}"}, "ui_url_template"),
        ("ducklake_bad_prefix", {"path_prefix": "/v 1"}, "path_prefix"),
        ("ducklake_no_secret", {"password": ""}, "no token or API key"),
        ("ducklake_bad_cancel", {"cancel_route": "cancelation"}, "'cancel_route' must be one of .*'cancelation'"),
    ]:
        with pytest.raises(ValueError, match=words):
            DuckLakeHook(add_connection(monkeypatch, conn_id, **extra)).get_conn()


def test_trigger_serializes_the_conn_id_only(modelops_sandbox):
    trigger = DuckLakeModelRunTrigger(
        run_id=str(uuid.uuid4()), project_name="shop", conn_id="ducklake_default", poll_interval=0.1, deadline=None
    )
    path, kwargs = trigger.serialize()
    assert path == "modelops_provider.ducklake.triggers.DuckLakeModelRunTrigger"
    text = json.dumps(kwargs)
    assert sd.SANDBOX_JWT not in text and "password" not in text
    assert DuckLakeModelRunTrigger(**kwargs).serialize() == (path, kwargs)


async def test_trigger_polls_to_the_end(modelops_sandbox):
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "a", "outcome": "FAILED"})
    run = DuckLakeHook().trigger_model_run("shop")
    trigger = DuckLakeModelRunTrigger(run_id=run.id, project_name="shop", conn_id="ducklake_default", poll_interval=0.1)
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1
    assert events[0]["status"] == "done" and events[0]["target"] == {"run_id": run.id, "project_name": "shop"}
    assert events[0]["snapshot"]["outcome"] == "failed"
    assert events[0]["snapshot"]["reason"] == "one or more models failed"


async def test_trigger_on_kill_cancels_the_run(modelops_sandbox, capfd):
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "slow", "duration_s": 5})
    hook = DuckLakeHook()
    run = hook.trigger_model_run("shop")
    trigger = DuckLakeModelRunTrigger(
        run_id=run.id, project_name="shop", conn_id="ducklake_default", poll_interval=0.1, cancel_on_kill=True
    )
    waiting = asyncio.ensure_future(trigger.run().__anext__())
    await asyncio.sleep(0.4)
    assert not waiting.done()
    waiting.cancel()  # what the triggerer does, before calling on_kill
    await trigger.on_kill()
    assert hook.get_model_run(run.id).status == "CANCELLED"
    assert any(r["path"].endswith("/cancel") for r in service_requests(control, "POST"))
    assert f"Cancel of DuckLake model run {run.id} accepted" in "".join(capfd.readouterr())  # the cancel went through


def test_provider_info_declares_the_ducklake_connection_form():
    import os

    import airflow
    import jsonschema

    from modelops_provider import get_provider_info

    info = get_provider_info()
    schema_path = os.path.join(os.path.dirname(airflow.__file__), "provider_info.schema.json")
    with open(schema_path) as schema:
        jsonschema.validate(info, json.load(schema))
    conn = next(c for c in info["connection-types"] if c["connection-type"] == "ducklake")
    assert conn["hook-class-name"] == "modelops_provider.ducklake.hooks.DuckLakeHook"
    fields = conn["conn-fields"]
    assert {"scheme", "path_prefix", "auth_type", "ui_url_template", "cancel_route", "read_timeout"} <= set(fields)
    assert fields["auth_type"]["schema"]["enum"] == ["bearer", "api_key"]
    assert fields["auth_type"]["schema"]["default"] == "bearer"
    assert fields["cancel_route"]["schema"]["enum"] == ["detect", "cancel", "cancellations"]
    assert fields["cancel_route"]["schema"]["default"] == "detect"
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "JWT or API key"
    assert "modelops_provider.ducklake.links.DuckLakeModelRunLink" in info["extra-links"]
    assert DuckLakeHook.default_conn_name == "ducklake_default" and DuckLakeHook.conn_type == "ducklake"


def test_sandbox_cli_prints_the_ducklake_connection(sandbox_cli):
    conn = sandbox_cli["exports"]["AIRFLOW_CONN_DUCKLAKE_DEFAULT"]
    assert conn["conn_type"] == "ducklake" and conn["host"] == "http://127.0.0.1"
    assert conn["extra"]["auth_type"] == "bearer"
