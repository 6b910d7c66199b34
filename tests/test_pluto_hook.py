"""PlutoHook against the sandbox over loopback: create/resume, status, tags, config, metric ingest,
error mapping, and input checks that fail before any request."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from modelops_provider.core import errors
from modelops_provider.core.transport import Endpoint
from modelops_provider.pluto.api import UPDATE_STATUS
from modelops_provider.pluto.hooks import PlutoHook
from modelops_provider.sandbox import pluto as sp

PLUTO_PATHS = ("/api/", "/ingest/")


def pluto_requests(control) -> list[dict]:
    return [r for r in control.requests() if r["path"].startswith(PLUTO_PATHS)]


def use_conn(monkeypatch, sandbox_url: str, conn_id: str = "pluto_default", **fields) -> None:
    extra = {
        "api_url": sandbox_url,
        "ingest_url": sandbox_url,
        "py_url": sandbox_url,
        "app_url": sandbox_url,
        **fields.pop("extra", {}),
    }
    conn = {"conn_type": "pluto", "password": sp.SANDBOX_KEY, "extra": extra, **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def only_run(control) -> dict:
    runs = control.pluto_runs()
    assert len(runs) == 1, runs
    return runs[0]


def test_create_then_same_external_id_resumes_and_deep_merges_config(modelops_sandbox):
    hook = PlutoHook()
    first = hook.create_run(
        "Churn Model",
        "nightly",
        external_id="airflow:d:r1",
        tags=["airflow", "group:nightly"],
        config={"lr": 0.01, "optim": {"name": "adam", "beta": 0.9}},
        system_metadata='{"host": "w1"}',
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert first.resumed is False
    assert first.display_id == "CHU-1" and first.number == 1 and first.organization_slug == "sandbox"
    assert first.url == f"{modelops_sandbox.url}/o/sandbox/projects/Churn%20Model/{first.run_id}"
    hook.update_status(first.run_id, "FAILED")

    again = hook.create_run("Churn Model", "nightly", external_id="airflow:d:r1", config={"optim": {"beta": 0.8}})
    assert again.resumed is True and again.run_id == first.run_id and again.display_id == "CHU-1"
    run = only_run(modelops_sandbox.control)
    assert run["status"] == "RUNNING"  # a terminal run goes back to RUNNING
    assert run["config"] == {"lr": 0.01, "optim": {"name": "adam", "beta": 0.8}}
    assert run["tags"] == ["airflow", "group:nightly"]
    assert run["systemMetadata"] == {"host": "w1"}
    assert run["createdAt"] == 1767323045000  # epoch ms on the wire
    assert run["opened"] == 2

    # Another external id is another run; resume finds runs by id, display id or external id.
    other = hook.create_run("Churn Model", "other")
    assert other.resumed is False and other.display_id == "CHU-2"
    assert hook.resume_run(display_id="CHU-1").run_id == first.run_id
    assert hook.resume_run(run_id=other.run_id).resumed is True
    assert hook.resume_run(external_id="airflow:d:r1", project_name="Churn Model").run_id == first.run_id
    with pytest.raises(errors.NotFoundError, match="Run not found"):
        hook.resume_run(external_id="nope", project_name="Churn Model")


def test_status_tags_config_updates(modelops_sandbox):
    hook = PlutoHook()
    run = hook.create_run("p", "r", tags=["a", "b"], config={"x": {"y": 1}})
    hook.update_tags(run.run_id, ["c"])
    hook.update_config(run.run_id, {"x": {"z": 2}, "w": [1, 2]})
    hook.update_config(run.run_id, '{"x": {"y": 5}}')
    when = datetime(2026, 3, 1, tzinfo=UTC)
    hook.update_status(run.run_id, "COMPLETED", status_metadata={"failedTasks": []}, status_updated=when)
    stored = only_run(modelops_sandbox.control)
    assert stored["tags"] == ["c"]  # replaced, not appended
    assert stored["config"] == {"x": {"y": 5, "z": 2}, "w": [1, 2]}
    assert stored["status"] == "COMPLETED" and stored["statusMetadata"] == {"failedTasks": []}
    assert stored["statusUpdated"] == int(when.timestamp() * 1000)
    # Precedence: a final status never replaces a more severe one (the update is dropped, and the
    # answer is still 200 {"success": true}); RUNNING re-opens any run.
    for status, result in (
        ("RUNNING", "RUNNING"),
        ("TERMINATED", "TERMINATED"),
        ("COMPLETED", "TERMINATED"),
        ("FAILED", "FAILED"),
        ("CANCELLED", "FAILED"),
        ("RUNNING", "RUNNING"),
        ("CANCELLED", "CANCELLED"),
    ):
        hook.update_status(run.run_id, status)
        assert only_run(modelops_sandbox.control)["status"] == result, status


def test_metrics_are_ndjson_with_the_required_headers(modelops_sandbox):
    hook = PlutoHook()
    run = hook.create_run("p", "r")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    sent = hook.log_metrics(run.run_id, "p", [{"loss": 0.9, "acc": 0.5}, {"loss": "0.4"}], step=3, timestamp=at)
    assert sent == 2
    metrics = only_run(modelops_sandbox.control)["metrics"]
    ms = int(at.timestamp() * 1000)
    assert metrics["loss"] == [{"step": 3, "time": ms, "value": 0.9}, {"step": 4, "time": ms, "value": 0.4}]
    assert metrics["acc"] == [{"step": 3, "time": ms, "value": 0.5}]
    assert modelops_sandbox.control.requests(path_prefix="/ingest/metrics")[-1]["status"] == 200

    # The ingest service itself refuses a body without the headers (the hook always sends them).
    line = b'{"time": 1, "step": 0, "data": {"loss": 1}}\n'
    auth = {"Authorization": f"Bearer {sp.SANDBOX_KEY}", "Content-Type": "application/x-ndjson"}
    bare = httpx.post(f"{modelops_sandbox.url}/ingest/metrics", content=line, headers=auth)
    assert bare.status_code == 422
    assert bare.json() == {
        "code": "PROCESSING_FAILED",
        "message": "Failed to process metrics stream: InvalidHeaderFormat (2004 - Validation Error): "
        "Missing required header: X-Run-Id",
    }
    # An unknown run: the ingest service never looks the run up, and stores the records (section F).
    assert hook.log_metrics(run.run_id + 1, "p", {"loss": 1}) == 1


def test_the_three_error_shapes_map_to_typed_errors(modelops_sandbox, monkeypatch):
    hook = PlutoHook()
    # {"code": ..., "message": ...} (ingest) is covered above; {"detail": ...} (py service):
    with pytest.raises(errors.NotFoundError) as caught:
        hook.call(hook.service.call(Endpoint("POST", "/api/runs/trigger"), json={"runId": 404}))
    assert caught.value.message == "Run not found"
    # and the same shape answered by the API service (fault injected):
    modelops_sandbox.control.fault(
        [{"status": 404, "body": {"detail": "Run not found"}}], path_prefix="/api/runs/status"
    )
    with pytest.raises(errors.NotFoundError, match="Run not found"):
        hook.update_status(1, "COMPLETED")
    # {"error": ...} with zod's issues (a body the hook itself would never send):
    run = hook.create_run("p", "r")
    with pytest.raises(errors.InvalidArgumentError, match=r"status: Invalid enum value"):
        hook.call(hook.service.call(UPDATE_STATUS, json={"runId": run.run_id, "status": "DONE"}))
    # {"error": "Unauthorized", "message": ...}: keys with the right prefix that the server rejects.
    modelops_sandbox.control.pluto_key("mlps_revoked_key_0001", "revoked")
    for key, message in (
        ("mlpi_unknown_key_0001", "Key not found"),
        ("mlps_revoked_key_0001", "API key has been revoked"),
    ):
        use_conn(monkeypatch, modelops_sandbox.url, password=key)
        with pytest.raises(errors.UnauthorizedError) as caught:
            PlutoHook().create_run("p", "r")
        assert caught.value.status == 401 and caught.value.message == f"Unauthorized: {message}"
        assert key not in str(caught.value)
        ok, text = PlutoHook().test_connection()
        assert ok is False and message in text and key not in text


def test_sandbox_answers_401_to_keys_without_the_prefixes(modelops_sandbox):
    auth = {"Authorization": "Bearer sk-not-a-pluto-key"}
    api = httpx.post(f"{modelops_sandbox.url}/api/runs/create", json={"runName": "r", "projectName": "p"}, headers=auth)
    assert api.status_code == 401 and api.json() == {"error": "Unauthorized", "message": "Invalid API key"}
    ingest = httpx.post(f"{modelops_sandbox.url}/ingest/metrics", content=b"{}", headers=auth)
    assert ingest.status_code == 422 and ingest.json() == {
        "code": "PROCESSING_FAILED",
        "message": "Failed to process metrics stream: InvalidToken (1002 - Authentication Error): Invalid API key",
    }
    py = httpx.post(f"{modelops_sandbox.url}/api/runs/trigger", json={"runId": 1}, headers=auth)
    assert py.status_code == 401 and py.json() == {"detail": "Invalid or expired API key for this run"}
    missing = httpx.post(f"{modelops_sandbox.url}/api/runs/create", json={"runName": "r", "projectName": "p"})
    assert missing.status_code == 401 and missing.json() == {"error": "Unauthorized"}
    assert modelops_sandbox.control.pluto_runs() == []


@pytest.mark.parametrize("key", ["sk-live-0123456789abcdef", "MLPI_upper_case_0001", "  "])
def test_bad_key_fails_before_any_request_without_echoing_it(modelops_sandbox, monkeypatch, key):
    use_conn(monkeypatch, modelops_sandbox.url, password=key)
    hook = PlutoHook()
    with pytest.raises(ValueError, match="pluto_default") as caught:
        hook.create_run("p", "r")
    if key.strip():
        assert "must start with 'mlps_' or 'mlpi_'" in str(caught.value)
        assert key not in str(caught.value)
    assert hook.test_connection()[0] is False
    assert pluto_requests(modelops_sandbox.control) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.create_run("p", "r", config='{"lr": 0.1'), r"config is not valid JSON"),
        (lambda h: h.create_run("p", "r", config="[1, 2]"), r"config must be a JSON object"),
        (lambda h: h.create_run("p", "r", config={"x": float("nan")}), r"config cannot be sent as JSON"),
        (lambda h: h.create_run("p", "r", logger_settings="{bad"), r"logger_settings is not valid JSON"),
        (lambda h: h.create_run("", "r"), r"project_name must be a non-empty string"),
        (lambda h: h.create_run("p", "r", external_id=""), r"external_id must be a non-empty string"),
        (lambda h: h.create_run("p", "r", tags="a,b"), r"tags must be a list of strings, got 'a,b'"),
        (lambda h: h.create_run("p", "r", tags=["group:a", "group:b"]), r"at most one group:\* tag"),
        (lambda h: h.create_run("p", "r", tags=[f"t{i}" for i in range(51)]), r"at most 50 tags"),
        (lambda h: h.create_run("p", "r", created_at="yesterday"), r"created_at must be a datetime or epoch"),
        (lambda h: h.update_status(1, "DONE"), r"status must be one of RUNNING, COMPLETED, FAILED"),
        (
            lambda h: h.update_status(1, "FAILED", status_metadata="{oops"),
            r"status_metadata is not valid JSON",
        ),
        (lambda h: h.update_status(True, "FAILED"), r"run_id must be Pluto's numeric run id"),
        (lambda h: h.update_config(1, "not json"), r"config is not valid JSON"),
        (
            lambda h: h.resume_run(run_id=1, display_id="A-1"),
            r"exactly one of run_id, display_id, external_id",
        ),
        (lambda h: h.resume_run(external_id="x"), r"project_name must be a non-empty string"),
        (lambda h: h.log_metrics(1, "p", {}), r"metrics must be a non-empty mapping"),
        (lambda h: h.log_metrics(1, "p", {"acc": "high"}), r"metrics\['acc'\] must be a number, got 'high'"),
        (lambda h: h.log_metrics(1, "p", {"acc": [1]}), r"metrics\['acc'\] must be a number .*got \[1\]"),
        (lambda h: h.log_metrics(1, "p", {"acc": 1}, step=-1), r"step must be an integer >= 0, got -1"),
        (lambda h: h.create_run("p", "r", fork_step=-1), r"fork_step must be an integer >= 0, got -1"),
        (lambda h: h.create_run("p", "r", fork_step=True), r"fork_step must be an integer >= 0, got True"),
        (lambda h: h.create_run("p", "r", inherit_config="maybe"), r"inherit_config must be a boolean, got 'maybe'"),
        (lambda h: h.create_run("p", "r", inherit_tags=1), r"inherit_tags must be a boolean, got 1"),
        (lambda h: h.log_metrics(1, "Projekt Ä", {"acc": 1}), r"project_name must be ASCII"),
    ],
)
def test_bad_input_fails_before_any_request(modelops_sandbox, call, message):
    with pytest.raises(ValueError, match=message):
        call(PlutoHook())
    assert pluto_requests(modelops_sandbox.control) == []


def test_bad_connection_urls_fail_before_any_request(modelops_sandbox, monkeypatch):
    use_conn(monkeypatch, modelops_sandbox.url, extra={"ingest_url": "ftp://example.com"})
    with pytest.raises(ValueError, match=r"ingest_url must be an http\(s\) URL"):
        PlutoHook().create_run("p", "r")
    assert pluto_requests(modelops_sandbox.control) == []


def test_create_with_external_id_is_retried_after_a_lost_answer_without_it_is_not(modelops_sandbox):
    control = modelops_sandbox.control
    hook = PlutoHook()
    # The sandbox creates the run, then drops the connection: asking again is safe with an externalId.
    control.fault([{"kind": "drop"}], path_prefix="/api/runs/create")
    run = hook.create_run("p", "r", external_id="ext-1")
    assert run.resumed is True
    stored = only_run(control)
    assert stored["externalId"] == "ext-1" and stored["opened"] == 2
    assert len(control.requests(path_prefix="/api/runs/create")) == 2

    # Without one, a second create could make a second run: the hook looks for the run and adopts it.
    control.fault([{"kind": "drop"}], path_prefix="/api/runs/create")
    adopted = hook.create_run("p", "r2")
    assert [r["runId"] for r in control.pluto_runs()] == [run.run_id, adopted.run_id]
    assert len(control.requests(path_prefix="/api/runs/create")) == 3
    assert control.requests(path_prefix="/api/runs/list")


def test_retry_after_is_honoured_on_ingest(modelops_sandbox):
    hook = PlutoHook()
    run = hook.create_run("p", "r")
    modelops_sandbox.control.fault(
        [
            {
                "status": 503,
                "headers": {"Retry-After": "0.2"},
                "body": {"code": "SERVICE_UNAVAILABLE", "message": "busy"},
            }
        ],
        path_prefix="/ingest/metrics",
    )
    assert hook.log_metrics(run.run_id, "p", {"loss": 1}) == 1
    sent = modelops_sandbox.control.requests(path_prefix="/ingest/metrics")
    assert [r["status"] for r in sent] == [503, 200]
    assert sent[1]["time"] - sent[0]["time"] >= 0.2


def test_connection_defaults_links_and_test_connection(modelops_sandbox, monkeypatch):
    assert PlutoHook().test_connection() == (True, "Authenticated to organization sandbox.")
    monkeypatch.setenv("AIRFLOW_CONN_PLUTO_HOSTED", json.dumps({"conn_type": "pluto", "password": "mlps_x_0001"}))
    hosted = PlutoHook("pluto_hosted")
    assert hosted.service.base_url == "https://pluto-api.trainy.ai"
    assert hosted.ingest_service.base_url == "https://pluto-ingest.trainy.ai"
    assert hosted.py_service.base_url == "https://pluto-py.trainy.ai"
    from modelops_provider.pluto.models import PlutoRun

    run = PlutoRun(
        runId=7,
        projectName="p q",
        organizationSlug="acme",
        url="http://10.0.0.5:3000/o/acme/projects/p%20q/abc",
    )
    assert hosted.run_url(run) == "https://pluto.trainy.ai/o/acme/projects/p%20q/abc"
    assert hosted.run_url(run.model_copy(update={"url": ""})) == "https://pluto.trainy.ai/o/acme/projects/p%20q"
    assert repr(hosted.service.auth) == "HeaderAuth(***)"


def test_provider_info_declares_the_pluto_connection_form():
    from modelops_provider import get_provider_info

    info = get_provider_info()
    conn = next(c for c in info["connection-types"] if c["connection-type"] == "pluto")
    assert conn["hook-class-name"] == "modelops_provider.pluto.hooks.PlutoHook"
    fields = conn["conn-fields"]
    assert fields["api_url"]["schema"]["default"] == "https://pluto-api.trainy.ai"
    assert fields["ingest_url"]["schema"]["default"] == "https://pluto-ingest.trainy.ai"
    assert fields["app_url"]["schema"]["default"] == "https://pluto.trainy.ai"
    assert fields["py_url"]["schema"]["default"] == "https://pluto-py.trainy.ai"
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "API key"
    assert "host" in conn["ui-field-behaviour"]["hidden-fields"]
    assert "modelops_provider.pluto.links.PlutoRunLink" in info["extra-links"]
    assert PlutoHook.conn_type == "pluto" and PlutoHook.default_conn_name == "pluto_default"


def test_sandbox_cli_prints_the_pluto_connection(sandbox_cli):
    url = sandbox_cli["url"]
    conn = sandbox_cli["exports"]["AIRFLOW_CONN_PLUTO_DEFAULT"]
    assert conn["conn_type"] == "pluto" and conn["password"].startswith("mlpi_")
    assert conn["extra"] == {"api_url": url, "ingest_url": url, "py_url": url, "app_url": url}
    auth = {"Authorization": f"Bearer {conn['password']}"}
    assert httpx.get(f"{url}/api/runs/auth/validate", headers=auth).json()["valid"] is True
