"""DuckLake's trigger body and run statuses as the platform really has them (CONTRACTS.md section
G), against the sandbox over loopback: model selectors, full_refresh, target_catalog/target_schema
and environment_name sent only when set and checked before any request; unknown body fields
ignored; environments per project; an unknown run status reported and not waited on forever."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from dagrun import run_dag
from ducklake_helpers import script_project, service_requests
from modelops_provider.core import errors
from modelops_provider.ducklake.hooks import DuckLakeHook

MODELS = [
    {"name": "raw_orders", "tags": ["nightly"]},
    {"name": "stg_orders"},
    {"name": "fct_orders", "tags": ["nightly"]},
]


def received(control: Any) -> list[dict[str, Any]]:
    """Per run (oldest first): the trigger body the sandbox received, and the run's models."""
    return [{"request": r["request"], "models": r["model_names"]} for r in control.get("/_sandbox/ducklake/runs")]


def steps_of(hook: DuckLakeHook, run_id: str) -> list[str]:
    return [s.model_name for s in hook.list_model_run_steps(run_id)]


def test_only_the_fields_set_are_sent_and_selectors_pick_models(modelops_sandbox):
    control = modelops_sandbox.control
    script_project(control, "shop", *MODELS)
    hook = DuckLakeHook()
    bare = hook.trigger_model_run("shop")
    full = hook.trigger_model_run(
        "shop",
        ["+stg_orders"],
        True,
        target_catalog="lake",
        target_schema="analytics_dev",
        environment_name="dev",
    )
    sent = received(control)
    assert sent[-2]["request"] == {"project_name": "shop"}
    assert sent[-1]["request"] == {
        "project_name": "shop",
        "model_names": ["+stg_orders"],
        "full_refresh": True,
        "target_catalog": "lake",
        "target_schema": "analytics_dev",
        "environment_name": "dev",
    }
    assert steps_of(hook, bare.id) == ["raw_orders", "stg_orders", "fct_orders"]
    assert steps_of(hook, full.id) == ["raw_orders", "stg_orders"]  # +name: with its upstream
    for selectors, models in (
        (["stg_orders+"], ["stg_orders", "fct_orders"]),
        (["shop.fct_orders"], ["fct_orders"]),
        (["tag:nightly"], ["raw_orders", "fct_orders"]),
        (["project:shop"], ["raw_orders", "stg_orders", "fct_orders"]),
        (["state:modified"], ["raw_orders", "stg_orders", "fct_orders"]),
    ):
        assert steps_of(hook, hook.trigger_model_run("shop", selectors).id) == models, selectors
    with pytest.raises(errors.InvalidArgumentError, match="not found in project 'shop': tag:weekly"):
        hook.trigger_model_run("shop", ["tag:weekly"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"model_names": ["stg orders"]},
            r"model_names must hold non-empty model names without whitespace, or selectors .*'stg orders'",
        ),
        ({"model_names": ["+"]}, r"got '\+'"),
        ({"model_names": ["stg_orders\n"]}, r"got 'stg_orders\\n'"),
        ({"model_names": ["state:modified", "x"]}, r"'state:modified' is the only state selector"),
        ({"model_names": ["state:new"]}, r"'state:modified' is the only state selector"),
        ({"model_names": "stg_orders"}, r"model_names must be a list"),
        ({"full_refresh": "yes"}, r"full_refresh must be a boolean, got 'yes'"),
        (
            {"target_catalog": "my lake"},
            r"target_catalog must be a non-empty name without whitespace .*, got 'my lake'",
        ),
        ({"target_schema": ""}, r"target_schema must be a non-empty name"),
        ({"environment_name": 7}, r"environment_name must be a non-empty name .* got 7"),
    ],
)
def test_bad_fields_fail_before_any_request(modelops_sandbox, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DuckLakeHook().trigger_model_run("analytics", **kwargs)
    assert service_requests(modelops_sandbox.control) == []


def test_the_sandbox_ignores_unknown_body_fields_as_the_platform_does(modelops_sandbox):
    import json
    import os

    conn = json.loads(os.environ["AIRFLOW_CONN_DUCKLAKE_DEFAULT"])
    url = f"{modelops_sandbox.url}/v1/model-runs"
    body = {"project_name": "analytics", "variables": {"x": 1}, "selector": "a", "target_catalog": "lake"}
    answer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {conn['password']}"})
    assert answer.status_code == 201 and answer.json()["status"] == "PENDING"
    assert received(modelops_sandbox.control)[-1]["request"] == body


def test_environments_per_project_as_newer_servers_pick_them(modelops_sandbox):
    control = modelops_sandbox.control
    script_project(control, "shop", *MODELS)
    hook = DuckLakeHook()
    # A project without environments (2026-03): environment_name is ignored.
    assert hook.trigger_model_run("shop", environment_name="anything").environment_name is None

    def environment(name: str, kind: str = "development", **extra: Any) -> None:
        control.post("/_sandbox/ducklake/environments", {"project": "shop", "name": name, "kind": kind, **extra})

    environment("prod", "production", replace_project=True)
    with pytest.raises(errors.InvalidArgumentError, match="project has no development environment"):
        hook.trigger_model_run("shop")
    environment("alice")
    assert hook.trigger_model_run("shop").environment_name == "alice"  # the only development one
    environment("bob")
    with pytest.raises(errors.InvalidArgumentError) as caught:
        hook.trigger_model_run("shop")
    assert caught.value.status == 400
    assert caught.value.message == "project has multiple development environments; environment_name is required"
    assert hook.trigger_model_run("shop", environment_name="bob").environment_name == "bob"
    assert hook.trigger_model_run("shop", environment_name="prod").environment_name == "prod"
    with pytest.raises(errors.InvalidArgumentError, match="environment 'carol' not found in project 'shop'"):
        hook.trigger_model_run("shop", environment_name="carol")
    environment("dev")
    assert hook.trigger_model_run("shop").environment_name == "dev"  # "dev" wins among several


@pytest.mark.usefixtures("airflow_db")
def test_the_operator_sends_its_templated_fields(modelops_sandbox):
    from airflow.sdk import DAG, Param

    from modelops_provider.ducklake.operators import DuckLakeModelRunOperator

    control = modelops_sandbox.control
    script_project(control, "shop", *MODELS)
    control.post("/_sandbox/ducklake/environments", {"project": "shop", "name": "ci"})
    with DAG(
        "t_ducklake_fields",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"model": Param("stg_orders"), "full": Param("true"), "env": Param("ci")},
    ) as dag:
        DuckLakeModelRunOperator(
            task_id="transform",
            project_name="shop",
            model_names=["{{ params.model }}+"],
            full_refresh="{{ params.full }}",
            target_catalog="lake",
            target_schema="{{ params.env }}_schema",
            environment_name="{{ params.env }}",
            poll_interval=0.1,
        )
    result = run_dag(dag)
    assert result.state == "success"
    assert received(control)[-1]["request"] == {
        "project_name": "shop",
        "model_names": ["stg_orders+"],
        "full_refresh": True,
        "target_catalog": "lake",
        "target_schema": "ci_schema",
        "environment_name": "ci",
    }
    summary = result.task("transform").xcom["return_value"]
    assert [s["model_name"] for s in summary["steps"]] == ["stg_orders", "fct_orders"]
    assert summary["run"]["environment_name"] == "ci"


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("deferrable", [False, True])
def test_an_unknown_run_status_is_reported_and_not_waited_on_forever(modelops_sandbox, monkeypatch, capfd, deferrable):
    import threading
    import time

    from airflow.sdk import DAG

    from modelops_provider.core import waiting
    from modelops_provider.ducklake.operators import DuckLakeModelRunOperator

    monkeypatch.setattr(waiting, "UNKNOWN_STATUS_GRACE_S", 1.0)
    control = modelops_sandbox.control
    script_project(control, "shop", {"name": "slow", "duration_s": 30})

    def report_queued() -> None:
        for _ in range(200):
            runs = control.get("/_sandbox/ducklake/runs")
            if runs:
                control.post(f"/_sandbox/ducklake/runs/{runs[-1]['id']}/reported-status", {"status": "QUEUED"})
                return
            time.sleep(0.05)

    with DAG(f"t_ducklake_unknown_{deferrable}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        # The timeout only bounds the test should the unknown status be waited on silently again.
        DuckLakeModelRunOperator(
            task_id="transform", project_name="shop", poll_interval=0.1, deferrable=deferrable, timeout=25
        )
    helper = threading.Thread(target=report_queued)
    helper.start()
    result = run_dag(dag)
    helper.join()
    assert result.state == "failed"
    out = "".join(capfd.readouterr())
    assert out.count("status 'QUEUED' is not one this provider knows; waiting at most 1s") == 1
    assert (
        "a status this provider does not know" in out and "known: PENDING, RUNNING, SUCCESS, FAILED, CANCELLED" in out
    )
