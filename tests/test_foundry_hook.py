"""FoundryHook and the shared HTTP core, against the sandbox over loopback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from modelops_provider.core import errors
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.sandbox import foundry as sf

STUDIO = "ri.models.main.model-studio.11111111-1111-4111-8111-111111111111"
LAUNCH_PATH = f"/api/v2/models/modelStudios/{STUDIO}/launch"


@pytest.fixture
def hook(modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    hook = FoundryHook()
    yield hook
    hook.close()


def _hook_for(monkeypatch, url, conn_id, *, password=sf.STATIC_TOKEN, **extra):
    """A hook on a connection to the sandbox with these extras."""
    host, port = url.split("://")[1].split(":")
    conn = {"conn_type": "foundry", "host": host, "port": int(port), "extra": {"scheme": "http", **extra}}
    if password:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return FoundryHook(conn_id)


def _oauth_conn(monkeypatch, url, **extra):
    extra = {"client_id": sf.CLIENT_ID, "client_secret": sf.CLIENT_SECRET, **extra}
    return _hook_for(monkeypatch, url, "foundry_oauth", password=None, **extra)


def test_launch_then_get_list_and_build(hook, modelops_sandbox):
    run = hook.launch_model_studio(STUDIO)
    assert run.build_status == "RUNNING"
    assert run.build_rid.startswith("ri.foundry-build.main.build.")
    assert hook.get_model_studio_run(STUDIO, run.run_id).run_id == run.run_id
    assert hook.get_build(run.build_rid).status == "RUNNING"
    launched = modelops_sandbox.control.requests(path_prefix=LAUNCH_PATH)
    assert launched[0]["query"] == {"preview": "true"}
    hook.cancel_build(run.build_rid)
    assert hook.get_build(run.build_rid).status == "CANCELED"
    assert hook.get_model_studio_run(STUDIO, run.run_id).build_status == "CANCELED"


def test_list_runs_pages_lazily_and_filters_config_version(hook, modelops_sandbox):
    ids = [hook.launch_model_studio(STUDIO).run_id for _ in range(5)]
    control = modelops_sandbox.control
    runs_path = f"/api/v2/models/modelStudios/{STUDIO}/runs"
    before = len(control.requests(path_prefix=runs_path))
    iterator = hook.list_model_studio_runs(STUDIO, page_size=2)
    first = next(iterator)
    assert len(control.requests(path_prefix=runs_path)) == before + 1, "only the first page is fetched"
    listed = [first.run_id, *(r.run_id for r in iterator)]
    assert sorted(listed) == sorted(ids)
    pages = control.requests(path_prefix=runs_path)[before:]
    assert len(pages) == 3
    assert "pageToken" not in pages[0]["query"] and pages[1]["query"]["pageToken"].startswith("v1.")
    assert list(hook.list_model_studio_runs(STUDIO, config_version=1)) != []
    with pytest.raises(errors.NotFoundError) as info:
        list(hook.list_model_studio_runs(STUDIO, config_version=7))
    assert info.value.error_name == "ModelStudioConfigVersionNotFound"
    assert info.value.parameters == {"studioRid": STUDIO, "configVersion": 7}


def test_get_run_stops_at_first_match(hook, modelops_sandbox):
    for _ in range(4):
        newest = hook.launch_model_studio(STUDIO)
    runs_path = f"/api/v2/models/modelStudios/{STUDIO}/runs"
    before = len(modelops_sandbox.control.requests(path_prefix=runs_path))
    # Newest first, so the match is on the first page of one.
    hook.call(hook.api.find_model_studio_run(STUDIO, lambda r: r.run_id == newest.run_id, page_size=1))
    assert len(modelops_sandbox.control.requests(path_prefix=runs_path)) == before + 1


def test_run_without_build_status_takes_it_from_the_build(hook, modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2, omit_build_status=True)
    run = hook.launch_model_studio(STUDIO)
    assert run.build_status is None
    time.sleep(0.3)
    snap = hook.call(hook.api.model_studio_run_snapshot(STUDIO, run.run_id))
    assert snap.status == "SUCCEEDED" and snap.data["buildStatus"] == "SUCCEEDED"
    assert modelops_sandbox.control.requests(path_prefix=f"/api/v2/orchestration/builds/{run.build_rid}")


def test_repeated_page_token_is_refused(hook, modelops_sandbox):
    page = {"data": [], "nextPageToken": "v1.same"}
    modelops_sandbox.control.fault(
        [{"status": 200, "body": page}] * 2, path_prefix=f"/api/v2/models/modelStudios/{STUDIO}/runs"
    )
    with pytest.raises(errors.ServerError, match=r"repeated page token 'v1\.same'"):
        list(hook.list_model_studio_runs(STUDIO))


def test_typed_errors_carry_service_details(hook):
    missing = "ri.models.main.model-studio.22222222-2222-4222-8222-222222222222"
    with pytest.raises(errors.NotFoundError) as info:
        hook.launch_model_studio(missing)
    err = info.value
    assert (err.status, err.error_name, err.error_code) == (404, "ModelStudioNotFound", "NOT_FOUND")
    assert err.parameters == {"studioRid": missing}
    assert err.error_instance_id and err.method == "POST" and err.path.endswith("/launch")
    assert "ModelStudioNotFound" in str(err) and sf.STATIC_TOKEN not in str(err)
    with pytest.raises(errors.NotFoundError, match="BuildNotFound"):
        hook.get_build("ri.foundry-build.main.build.33333333-3333-4333-8333-333333333333")


@pytest.mark.parametrize(
    ("method", "args", "param"),
    [
        ("launch_model_studio", ("not-a-rid",), "model_studio_rid"),
        ("get_build", ("ri.foundry-build.main.build",), "build_rid"),
        ("cancel_build", ("ri.bad rid",), "build_rid"),
        ("get_live_deployment", ("",), "live_deployment_rid"),
        ("get_model_studio_run", ("x/../y", "run"), "model_studio_rid"),
    ],
)
def test_bad_rids_fail_before_any_request(hook, modelops_sandbox, method, args, param):
    with pytest.raises(ValueError, match=param) as info:
        result = getattr(hook, method)(*args)
        list(result) if method == "list_model_studio_runs" else None
    assert repr(args[0]) in str(info.value)
    assert modelops_sandbox.control.requests() == []


def test_path_parameters_are_encoded(hook, modelops_sandbox):
    # A RID may contain '.', '_' and '-' only, but the locator of a run id is free text.
    with pytest.raises(errors.NotFoundError):
        hook.get_model_studio_run(STUDIO, "a/b?c")
    assert modelops_sandbox.control.requests()[0]["path"] == f"/api/v2/models/modelStudios/{STUDIO}/runs"


def test_429_retry_honours_retry_after(hook, modelops_sandbox):
    modelops_sandbox.control.fault(
        [{"status": 429, "headers": {"Retry-After": "1"}, "body": {"errorCode": "RATE_LIMITED"}}],
        path_prefix=LAUNCH_PATH,
    )
    started = time.monotonic()
    hook.launch_model_studio(STUDIO)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 2.5, waited
    assert [r["status"] for r in modelops_sandbox.control.requests(path_prefix=LAUNCH_PATH)] == [429, 200]


def test_retry_after_as_http_date(hook, modelops_sandbox):
    from email.utils import formatdate

    run = hook.launch_model_studio(STUDIO)
    # The date is set just before the read (a slow launch must not eat into it); whole seconds: 1-2 s away.
    modelops_sandbox.control.fault(
        [{"status": 503, "headers": {"Retry-After": formatdate(time.time() + 2, usegmt=True)}}],
        path_prefix="/api/v2/orchestration/builds",
    )
    started = time.monotonic()
    hook.get_build(run.build_rid)
    assert 0.9 <= time.monotonic() - started < 3.5


def test_503_and_dropped_and_malformed_reads_are_retried(hook, modelops_sandbox, caplog):
    run = hook.launch_model_studio(STUDIO)
    build_path = f"/api/v2/orchestration/builds/{run.build_rid}"
    modelops_sandbox.control.fault(
        [{"status": 503, "headers": {"Retry-After": "0"}}, {"kind": "drop"}, {"kind": "malformed"}],
        path_prefix=build_path,
    )
    with caplog.at_level("WARNING", logger="modelops_provider.core.transport"):
        assert hook.get_build(run.build_rid).status == "RUNNING"
    statuses = [r["status"] for r in modelops_sandbox.control.requests(path_prefix=build_path)]
    assert statuses == [503, "dropped", 200, 200]
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3
    assert f"GET {build_path} -> HTTP 503; retry 1/5 in 0.00s (Retry-After)" in retries[0]


def test_retry_budget_is_bounded(modelops_sandbox, monkeypatch):
    hook = _hook_for(monkeypatch, modelops_sandbox.url, "foundry_small", retry_max_attempts=3, retry_base_delay=0.01)
    modelops_sandbox.control.fault([{"status": 502}] * 5, path_prefix="/api/v2/orchestration")
    with pytest.raises(errors.ServerError) as info:
        hook.get_build("ri.foundry-build.main.build.44444444-4444-4444-8444-444444444444")
    assert info.value.status == 502
    assert len(modelops_sandbox.control.requests(path_prefix="/api/v2/orchestration")) == 3


def test_launch_is_not_retried_blindly_and_never_double_launches(hook, modelops_sandbox):
    # The server launches the run, then the connection drops before the answer arrives.
    modelops_sandbox.control.fault([{"kind": "drop"}], path_prefix=LAUNCH_PATH)
    run = hook.launch_model_studio(STUDIO)
    launches = modelops_sandbox.control.requests(path_prefix=LAUNCH_PATH)
    assert len(launches) == 1, "the launch must not be sent again"
    assert [r.run_id for r in hook.list_model_studio_runs(STUDIO)] == [run.run_id]


def _looks_after_first_launch(control) -> int:
    first = control.requests(path_prefix=LAUNCH_PATH)[0]["time"]
    runs_path = f"/api/v2/models/modelStudios/{STUDIO}/runs"
    return len([r for r in control.requests(path_prefix=runs_path) if r["time"] > first])


@pytest.mark.parametrize("fault", [{"status": 502}, {"status": 502, "process": True}, {"kind": "malformed"}])
def test_ambiguous_launch_looks_before_deciding(modelops_sandbox, monkeypatch, fault):
    # A 502 instead of the service: the launch did not happen, nothing is found within the window and
    # the try fails without launching again. A 502 or a malformed answer after the service acted:
    # the run is found and adopted. Either way, one launch, and the runs were looked at.
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    hook = _hook_for(monkeypatch, modelops_sandbox.url, "foundry_window", adoption_window=1)
    modelops_sandbox.control.fault([fault], path_prefix=LAUNCH_PATH)
    if fault.get("process") or "kind" in fault:
        run = hook.launch_model_studio(STUDIO)
        assert [r.run_id for r in hook.list_model_studio_runs(STUDIO)] == [run.run_id]
        assert _looks_after_first_launch(modelops_sandbox.control) >= 1
    else:
        with pytest.raises(errors.OutcomeUnknownError, match="outcome unknown, nothing found within 1s"):
            hook.launch_model_studio(STUDIO)
        assert list(hook.list_model_studio_runs(STUDIO)) == []
        assert _looks_after_first_launch(modelops_sandbox.control) >= 2
    assert len(modelops_sandbox.control.requests(path_prefix=LAUNCH_PATH)) == 1


def test_launch_retried_on_429_and_503_only(hook, modelops_sandbox):
    modelops_sandbox.control.fault(
        [{"status": 429, "headers": {"Retry-After": "0"}}, {"status": 503, "headers": {"Retry-After": "0"}}],
        path_prefix=LAUNCH_PATH,
    )
    hook.launch_model_studio(STUDIO)
    assert [r["status"] for r in modelops_sandbox.control.requests(path_prefix=LAUNCH_PATH)] == [429, 503, 200]
    assert len(list(hook.list_model_studio_runs(STUDIO))) == 1


def test_connection_refused_is_retried_then_reported(monkeypatch):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    conn = {
        "conn_type": "foundry",
        "host": "127.0.0.1",
        "port": port,
        "password": "tok-refused-1234",
        "extra": {"scheme": "http", "retry_max_attempts": 2, "retry_base_delay": 0.01},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FOUNDRY_DOWN", json.dumps(conn))
    with pytest.raises(errors.TransportError, match="gave up after 2 attempts") as info:
        FoundryHook("foundry_down").launch_model_studio(STUDIO)
    assert "tok-refused-1234" not in str(info.value)


def test_read_timeout_on_launch_is_ambiguous(modelops_sandbox, monkeypatch):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    modelops_sandbox.control.fault([{"delay_s": 0.8}], path_prefix=LAUNCH_PATH)
    hook = _hook_for(monkeypatch, modelops_sandbox.url, "foundry_slow", read_timeout=0.3)
    run = hook.launch_model_studio(STUDIO)
    # The slow launch landed while the hook kept looking: adopted, never launched again.
    assert len(modelops_sandbox.control.requests(path_prefix=LAUNCH_PATH)) == 1
    assert [r.run_id for r in hook.list_model_studio_runs(STUDIO)] == [run.run_id]
    assert _looks_after_first_launch(modelops_sandbox.control) >= 1


def test_oauth_token_cached_and_refreshed_once_on_401(modelops_sandbox, monkeypatch):
    hook = _oauth_conn(monkeypatch, modelops_sandbox.url, scopes="api:models-read api:models-write")
    hook.get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)
    hook.get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)
    assert len(modelops_sandbox.control.requests(path_prefix="/multipass")) == 1
    modelops_sandbox.control.foundry_oauth(revoke_all=True)
    hook.get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)
    statuses = [(r["path"], r["status"]) for r in modelops_sandbox.control.requests()]
    assert statuses[-3:] == [
        (f"/api/v2/models/liveDeployments/{sf.DEFAULT_LIVE_DEPLOYMENT}", 401),
        ("/multipass/api/oauth2/token", 200),
        (f"/api/v2/models/liveDeployments/{sf.DEFAULT_LIVE_DEPLOYMENT}", 200),
    ]


def test_oauth_token_refreshed_before_expiry(modelops_sandbox, monkeypatch):
    modelops_sandbox.control.foundry_oauth(token_lifetime_s=2)  # refreshed at 75 % of its life: 1.5 s
    hook = _oauth_conn(monkeypatch, modelops_sandbox.url, scopes="api:models-read")
    hook.get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)
    hook.get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)
    assert len(modelops_sandbox.control.requests(path_prefix="/multipass")) == 1
    time.sleep(1.6)
    hook.get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)
    assert len(modelops_sandbox.control.requests(path_prefix="/multipass")) == 2
    assert [r["status"] for r in modelops_sandbox.control.requests()] == [200] * 5, "no 401 on the way"


def test_oauth_wrong_secret_is_unauthorized(modelops_sandbox, monkeypatch):
    hook = _oauth_conn(monkeypatch, modelops_sandbox.url, client_secret="wrong-secret-value")
    with pytest.raises(errors.UnauthorizedError) as info:
        hook.get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)
    assert "wrong-secret-value" not in str(info.value)


def test_wrong_token_reported_by_test_connection(modelops_sandbox, monkeypatch):
    ok, message = _hook_for(
        monkeypatch, modelops_sandbox.url, "foundry_bad", password="not-the-token"
    ).test_connection()
    assert not ok and "401" in message and "not-the-token" not in message
    assert FoundryHook().test_connection() == (True, "Authenticated as sandbox-user.")


def test_https_by_default(monkeypatch):
    conn = {"conn_type": "foundry", "host": "example.palantirfoundry.com", "password": "tok-https-123"}
    monkeypatch.setenv("AIRFLOW_CONN_FOUNDRY_PROD", json.dumps(conn))
    assert FoundryHook("foundry_prod").service.base_url == "https://example.palantirfoundry.com"


def test_preview_flag_is_required_by_the_sandbox(modelops_sandbox):
    import httpx

    answer = httpx.post(f"{modelops_sandbox.url}{LAUNCH_PATH}", headers={"Authorization": f"Bearer {sf.STATIC_TOKEN}"})
    assert answer.status_code == 400 and answer.json()["errorName"] == "ApiFeaturePreviewUsageOnly"


def test_async_calls_share_one_client_per_loop(hook, modelops_sandbox):
    run = hook.launch_model_studio(STUDIO)

    async def main():
        from modelops_provider.core.transport import shared_async_client

        hooks = [FoundryHook() for _ in range(20)]
        snaps = await asyncio.gather(*(h.acall(h.api.model_studio_run_snapshot(STUDIO, run.run_id)) for h in hooks))
        # Kept alive while compared: ids of collected objects are reused, which would hide new clients.
        clients = [shared_async_client(await h.aget_conn()) for h in hooks]
        return snaps, clients

    snaps, clients = asyncio.run(main())
    assert {s.status for s in snaps} == {"RUNNING"}
    assert len({id(c) for c in clients}) == 1


def test_models_keep_unknown_fields_and_tolerate_absent_optional_ones(hook, modelops_sandbox):
    run = {
        "runId": "r-tolerant",
        "buildRid": "ri.foundry-build.main.build.12121212-1212-4121-8121-121212121212",
        "startedTime": "2026-01-01T00:00:00Z",
        "buildStatus": "SUCCEEDED",
        "someFutureField": {"nested": [1, 2]},
    }
    modelops_sandbox.control.fault(
        [{"status": 200, "body": {"data": [run]}}], path_prefix=f"/api/v2/models/modelStudios/{STUDIO}/runs"
    )
    snap = hook.call(hook.api.model_studio_run_snapshot(STUDIO, "r-tolerant"))
    assert snap.data["someFutureField"] == {"nested": [1, 2]}
    assert snap.data["resolvedOutputs"] == {} and "jobRid" not in snap.data


def test_operator_on_kill_cancels_the_build_it_waits_for(hook, modelops_sandbox):
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    op = ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO)
    job = op.submit_job({})  # what execute() does first
    op._job = job
    op.on_kill()
    assert hook.get_build(job["build_rid"]).status == "CANCELED"


def test_oauth_token_of_one_connection_does_not_serve_a_wrong_secret(modelops_sandbox, monkeypatch):
    good = _oauth_conn(monkeypatch, modelops_sandbox.url, scopes="api:models-read")
    good.get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)
    bad = _hook_for(
        monkeypatch,
        modelops_sandbox.url,
        "foundry_oauth_bad",
        password=None,
        client_id=sf.CLIENT_ID,
        client_secret="revoked-secret",
        scopes="api:models-read",
    )
    ok, message = bad.test_connection()
    assert not ok and "401" in message


def test_launch_answer_that_does_not_parse_is_ambiguous(modelops_sandbox, monkeypatch):
    # 200 with a body that is not a run: the launch is not sent again; the runs are looked at.
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=30)
    hook = _hook_for(monkeypatch, modelops_sandbox.url, "foundry_window", adoption_window=1)
    modelops_sandbox.control.fault([{"status": 200, "body": {"unexpected": True}}], path_prefix=LAUNCH_PATH)
    with pytest.raises(errors.OutcomeUnknownError, match="response does not match the expected schema"):
        hook.launch_model_studio(STUDIO)
    assert len(modelops_sandbox.control.requests(path_prefix=LAUNCH_PATH)) == 1
    assert _looks_after_first_launch(modelops_sandbox.control) >= 2


def test_encode_path_keeps_reserved_characters_inside_a_parameter():
    from modelops_provider.core.transport import encode_path

    assert encode_path("/runs/{id}/x", {"id": "a/b?c#d e"}) == "/runs/a%2Fb%3Fc%23d%20e/x"


def test_ambiguous_launch_never_adopts_another_users_run(hook, modelops_sandbox, monkeypatch):
    other = _hook_for(monkeypatch, modelops_sandbox.url, "foundry_other", password=sf.OTHER_TOKEN)
    theirs = other.launch_model_studio(STUDIO)
    assert theirs.started_by == sf.OTHER_USER_ID
    hook = _hook_for(monkeypatch, modelops_sandbox.url, "foundry_window", adoption_window=1)
    modelops_sandbox.control.fault([{"status": 502}], path_prefix=LAUNCH_PATH)
    with pytest.raises(errors.OutcomeUnknownError):
        hook.launch_model_studio(STUDIO)  # their fresh run was listed every look, and never adopted
    assert [r.run_id for r in hook.list_model_studio_runs(STUDIO)] == [theirs.run_id]
    # A launch that acted is adopted, theirs still not.
    modelops_sandbox.control.fault([{"status": 502, "process": True}], path_prefix=LAUNCH_PATH)
    ours = hook.launch_model_studio(STUDIO)
    assert ours.run_id != theirs.run_id and ours.started_by == sf.USER_ID
