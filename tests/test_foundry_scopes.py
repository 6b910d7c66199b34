"""Foundry's OAuth scopes, 403s and resolvedOutputs as the service has them (CONTRACTS.md section A),
against the sandbox over loopback, seen by the provider and by Palantir's own client."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import foundry_sdk  # a test dependency (the "test" extra)
import pytest

from dagrun import run_dag
from modelops_provider.core import errors
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.sandbox import foundry as sf

STUDIO = "ri.models.main.model-studio.51515151-5151-4515-8515-515151515151"
LAUNCH_PATH = f"/api/v2/models/modelStudios/{STUDIO}/launch"
WITHOUT_ADMIN = "api:models-read api:models-write api:orchestration-read api:orchestration-write"


def oauth_hook(monkeypatch, url: str, scopes: str | None, conn_id: str = "foundry_scoped") -> FoundryHook:
    host, port = url.split("://")[1].split(":")
    extra = {"scheme": "http", "client_id": sf.CLIENT_ID, "client_secret": sf.CLIENT_SECRET}
    if scopes is not None:
        extra["scopes"] = scopes
    conn = {"conn_type": "foundry", "host": host, "port": int(port), "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return FoundryHook(conn_id)


def sdk_client(url: str, auth) -> foundry_sdk.FoundryClient:
    return foundry_sdk.FoundryClient(
        auth=auth, hostname=url.split("://", 1)[1], config=foundry_sdk.Config(scheme="http")
    )


def test_each_endpoint_needs_its_scope(modelops_sandbox, monkeypatch):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    reader = oauth_hook(monkeypatch, modelops_sandbox.url, "api:models-read api:orchestration-read")
    with pytest.raises(errors.PermissionDeniedError) as caught:
        reader.launch_model_studio(STUDIO)
    exc = caught.value
    assert exc.status == 403 and exc.error_name == "ApiUsageDenied"
    assert exc.parameters == {"missingScope": "api:models-write"}
    assert list(reader.list_model_studio_runs(STUDIO)) == []  # models-read is enough to list
    run = FoundryHook().launch_model_studio(STUDIO)  # a user token carries every scope
    assert reader.get_build(run.build_rid).status == "RUNNING"
    with pytest.raises(errors.PermissionDeniedError, match="api:orchestration-write"):
        reader.cancel_build(run.build_rid)
    with pytest.raises(errors.PermissionDeniedError, match="api:admin-read"):
        reader.call(reader.api.get_current_user())
    # Without the scope to read the user, the connection test still reports success (auth worked).
    assert reader.test_connection() == (
        True,
        "Authenticated (the credentials lack the scope to read the current user).",
    )
    # A client narrowed by Foundry gets only what it may have, whatever it asks for.
    modelops_sandbox.control.foundry_oauth(client_scopes=["api:models-read"])
    narrowed = oauth_hook(monkeypatch, modelops_sandbox.url, None, conn_id="foundry_narrow")
    with pytest.raises(errors.PermissionDeniedError, match="api:orchestration-read"):
        narrowed.get_build(run.build_rid)


def test_the_sdk_sees_the_scope_and_permission_errors_typed(modelops_sandbox):
    from foundry_sdk.v2.models.errors import LaunchModelStudioPermissionDenied
    from foundry_sdk.v2.orchestration.errors import CancelBuildPermissionDenied

    control = modelops_sandbox.control
    control.foundry_studio(
        STUDIO, duration_s=30, launch_denied_to=[sf.OTHER_USER_ID], cancel_denied_to=[sf.OTHER_USER_ID]
    )
    url = modelops_sandbox.url
    scoped = sdk_client(
        url, foundry_sdk.ConfidentialClientAuth(sf.CLIENT_ID, sf.CLIENT_SECRET, scopes=WITHOUT_ADMIN.split())
    )
    run = scoped.models.ModelStudio.launch(STUDIO, preview=True)
    assert run.resolved_outputs["model"].model_version_rid.startswith("ri.models.main.model-version.")
    # getCurrent does not list ApiUsageDenied among its errors: the SDK raises its 403 class.
    with pytest.raises(foundry_sdk.PermissionDeniedError) as denied:
        scoped.admin.User.get_current()
    assert denied.value.name == "ApiUsageDenied"
    assert denied.value.parameters["missingScope"] == "api:admin-read"
    other = sdk_client(url, foundry_sdk.UserTokenAuth(sf.OTHER_TOKEN))
    with pytest.raises(LaunchModelStudioPermissionDenied) as launch:
        other.models.ModelStudio.launch(STUDIO, preview=True)
    assert launch.value.parameters["studioRid"] == STUDIO
    with pytest.raises(CancelBuildPermissionDenied) as cancel:
        other.orchestration.Build.cancel(run.build_rid)
    assert cancel.value.parameters["buildRid"] == run.build_rid


def test_permission_denied_launch_and_cancel_are_typed_errors_of_the_provider(modelops_sandbox, monkeypatch, caplog):
    control = modelops_sandbox.control
    control.foundry_studio(STUDIO, duration_s=30, launch_denied_to=[sf.USER_ID], cancel_denied_to=[sf.USER_ID])
    with pytest.raises(errors.PermissionDeniedError) as caught:
        FoundryHook().launch_model_studio(STUDIO)
    assert caught.value.error_name == "LaunchModelStudioPermissionDenied"
    assert caught.value.parameters == {"studioRid": STUDIO}
    assert len(control.requests(path_prefix=LAUNCH_PATH)) == 1  # a 403 is not retried
    control.foundry_studio(STUDIO, duration_s=30, cancel_denied_to=[sf.USER_ID])
    run = FoundryHook().launch_model_studio(STUDIO)
    with pytest.raises(errors.PermissionDeniedError) as cancel:
        FoundryHook().cancel_build(run.build_rid)
    assert cancel.value.error_name == "CancelBuildPermissionDenied"
    assert cancel.value.parameters == {"buildRid": run.build_rid}


def test_recovery_without_admin_read_warns_that_it_matches_by_time_only(modelops_sandbox, monkeypatch, caplog):
    control = modelops_sandbox.control
    control.foundry_studio(STUDIO, duration_s=30)
    hook = oauth_hook(monkeypatch, modelops_sandbox.url, WITHOUT_ADMIN)
    control.fault([{"kind": "drop"}], path_prefix=LAUNCH_PATH)
    with caplog.at_level(logging.WARNING, logger="modelops_provider.foundry.api"):
        run = hook.launch_model_studio(STUDIO)
    assert len(control.requests(path_prefix=LAUNCH_PATH)) == 1  # adopted, not launched again
    assert [r.run_id for r in list(hook.list_model_studio_runs(STUDIO))] == [run.run_id]
    assert "matching runs by start time ONLY" in caplog.text
    assert "lack the api:admin-read scope" in caplog.text and "Add api:admin-read" in caplog.text
    # With the scope, no such warning.
    caplog.clear()
    full = oauth_hook(monkeypatch, modelops_sandbox.url, WITHOUT_ADMIN + " api:admin-read", conn_id="foundry_admin")
    control.fault([{"kind": "drop"}], path_prefix=LAUNCH_PATH)
    with caplog.at_level(logging.WARNING, logger="modelops_provider.foundry.api"):
        full.launch_model_studio(STUDIO)
    assert "start time ONLY" not in caplog.text


@pytest.mark.usefixtures("airflow_db")
def test_a_failed_run_with_resolved_outputs_produces_no_version(modelops_sandbox):
    from airflow.sdk import DAG

    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    modelops_sandbox.control.foundry_studio(STUDIO, outcome="FAILED", duration_s=0.3)
    with DAG("t_foundry_failed_outputs", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO, poll_interval=0.1)
    result = run_dag(dag)
    assert result.state == "failed"
    assert "return_value" not in result.task("train").xcom
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = [e for e in session.query(AssetEvent).all() if (e.extra or {}).get("modelStudioRid") == STUDIO]
    assert events == []
