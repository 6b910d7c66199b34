"""The sandbox's DuckLake answers against the platform's own OpenAPI documents (openapi-core), so that
the sandbox cannot drift from the contract: every endpoint, every status it answers with, headers
(``X-RateLimit-*``, ``Retry-After``) included."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from ducklake_helpers import script_project, wait_for
from modelops_provider.sandbox import ducklake as sd

# Copies of the platform's OpenAPI documents (shared/contracts/ducklake), kept with the tests so the
# contract check can never be skipped for want of a file.
CONTRACTS = Path(__file__).resolve().parent / "contracts" / "ducklake"
MAR_1 = CONTRACTS / "model-runs.main-2026-03-01.bundled.yaml"
NEWEST = CONTRACTS / "model-runs.newest-extract.internal-api-gen-openapi.yaml"


class Req:
    """An httpx request, as openapi-core reads requests."""

    def __init__(self, request: httpx.Request) -> None:
        url = urlsplit(str(request.url))
        self.host_url = f"{url.scheme}://{url.netloc}"
        self.path = url.path
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "application/json")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(url.query)),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )


class Resp:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = Headers(dict(response.headers))
        self.content_type = response.headers.get("content-type", "")
        self.data = response.content


def openapi_for(path: Path, server: str) -> OpenAPI:
    spec = yaml.safe_load(path.read_text())
    spec = copy.deepcopy(spec)
    spec["servers"] = [{"url": server + "/v1"}]
    spec.setdefault("components", {}).setdefault("securitySchemes", {})
    return OpenAPI.from_dict(spec)


def test_every_sandbox_answer_matches_the_openapi_document(modelops_sandbox):
    control = modelops_sandbox.control
    base = modelops_sandbox.url + "/v1"
    jwt = {"Authorization": f"Bearer {sd.SANDBOX_JWT}"}
    key = {"X-API-Key": sd.API_KEY}
    seen: list[httpx.Response] = []
    client = httpx.Client(base_url=base, event_hooks={"response": [lambda r: (r.read(), seen.append(r))]})

    script_project(
        control,
        "shop",
        {
            "name": "a",
            "rows_affected": 10,
            "tests": [{"name": "t_pass"}, {"name": "t_fail", "status": "FAIL", "rows_returned": 3}],
        },
        {"name": "b", "tests": [{"name": "t_error", "status": "ERROR"}]},
        {"name": "c", "outcome": "FAILED"},
        {"name": "d"},
        {"name": "e", "duration_s": 30},
    )
    # Runs in every state.
    ok = client.post(
        "/model-runs", json={"project_name": "shop", "model_names": ["a", "b"], "full_refresh": True}, headers=jwt
    )
    failed = client.post("/model-runs", json={"project_name": "shop", "model_names": ["a", "c", "d"]}, headers=key)
    pending = client.post("/model-runs", json={"project_name": "shop", "model_names": ["e"]}, headers=jwt)
    slow = client.post("/model-runs", json={"project_name": "shop", "model_names": ["a", "e", "d"]}, headers=jwt)
    scheduled = control.post("/_sandbox/ducklake/runs", {"project": "shop", "model_names": ["a"]})
    assert {r.status_code for r in (ok, failed, pending, slow)} == {201}
    assert pending.json()["status"] == "PENDING"
    client.get(f"/model-runs/{pending.json()['id']}/steps", headers=jwt)  # PENDING steps

    wait_for(lambda: client.get(f"/model-runs/{failed.json()['id']}", headers=jwt).json()["status"] == "FAILED")
    wait_for(lambda: client.get(f"/model-runs/{ok.json()['id']}", headers=jwt).json()["status"] == "SUCCESS")
    assert client.get(f"/model-runs/{slow.json()['id']}", headers=jwt).json()["status"] == "RUNNING"
    client.get(f"/model-runs/{slow.json()['id']}/steps", headers=jwt)  # SUCCESS, RUNNING, PENDING steps
    cancelled = client.post(f"/model-runs/{slow.json()['id']}/cancel", headers=key)
    assert cancelled.json()["status"] == "CANCELLED"
    client.post(f"/model-runs/{pending.json()['id']}/cancel", headers=jwt)  # cancelled while PENDING

    for run in (ok, failed, pending, slow):
        run_id = run.json()["id"]
        client.get(f"/model-runs/{run_id}", headers=jwt)
        steps = client.get(f"/model-runs/{run_id}/steps", headers=jwt).json()["data"]
        for step in steps:
            client.get(f"/model-runs/{run_id}/steps/{step['id']}/test-results", headers=key)
    statuses = {
        s["status"]
        for r in (ok, failed, slow)
        for s in client.get(f"/model-runs/{r.json()['id']}/steps", headers=jwt).json()["data"]
    }
    assert statuses == {"SUCCESS", "FAILED", "SKIPPED", "CANCELLED"}
    client.get(f"/model-runs/{scheduled['id']}", headers=jwt)

    # Lists: pages, a filter, an empty page.
    first = client.get("/model-runs", params={"max_results": 2}, headers=jwt).json()
    client.get("/model-runs", params={"max_results": 2, "page_token": first["next_page_token"]}, headers=jwt)
    client.get("/model-runs", params={"status": "CANCELLED"}, headers=jwt)
    client.get("/model-runs", params={"status": "PENDING"}, headers=jwt)

    # Errors.
    unknown = str(uuid.uuid4())
    client.get("/model-runs", params={"status": "DONE"}, headers=jwt)  # 400
    client.post("/model-runs", json={"model_names": ["a"]}, headers=jwt)  # 400: no project
    client.post("/model-runs", json={"project_name": "shop", "colour": "red"}, headers=jwt)  # 400: unknown field
    client.post("/model-runs", json={"project_name": "shop", "model_names": ["zz"]}, headers=jwt)  # 400: no such model
    client.post(f"/model-runs/{ok.json()['id']}/cancel", headers=jwt)  # 400: finished
    client.post(f"/model-runs/{unknown}/cancel", headers=jwt)  # 404
    client.get(f"/model-runs/{unknown}", headers=jwt)  # 404
    client.get(f"/model-runs/{unknown}/steps", headers=jwt)  # 404
    client.get(f"/model-runs/{ok.json()['id']}/steps/{unknown}/test-results", headers=jwt)  # 404
    client.get(f"/model-runs/{unknown}/steps/{unknown}/test-results", headers=jwt)  # 404
    for method, path in [
        ("GET", "/model-runs"),
        ("POST", "/model-runs"),
        ("GET", f"/model-runs/{unknown}"),
        ("POST", f"/model-runs/{unknown}/cancel"),
        ("GET", f"/model-runs/{unknown}/steps"),
        ("GET", f"/model-runs/{unknown}/steps/{unknown}/test-results"),
    ]:
        client.request(
            method, path, headers={"Authorization": "Bearer not.a.jwt"}, json={} if method == "POST" else None
        )  # 401
        client.request(method, path, headers={"X-API-Key": "wrong"}, json={} if method == "POST" else None)  # 401
    not_uuid = "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"
    client.get(f"/model-runs/{not_uuid}", headers=jwt)  # 400
    client.get(f"/model-runs/{not_uuid}/steps", headers=jwt)  # 400
    client.post(f"/model-runs/{not_uuid}/cancel", headers=jwt)  # 400
    client.get(f"/model-runs/{ok.json()['id']}/steps/{not_uuid}/test-results", headers=jwt)  # 400
    control.post("/_sandbox/ducklake/settings", {"rate_limit": {"rps": 0.5, "burst": 1}})
    client.get("/model-runs", headers=jwt)  # takes the only token
    for method, path in [
        ("GET", "/model-runs"),
        ("POST", "/model-runs"),
        ("GET", f"/model-runs/{unknown}"),
        ("POST", f"/model-runs/{unknown}/cancel"),
        ("GET", f"/model-runs/{unknown}/steps"),
        ("GET", f"/model-runs/{unknown}/steps/{unknown}/test-results"),
    ]:
        client.request(method, path, headers=jwt, json={"project_name": "shop"} if method == "POST" else None)  # 429

    openapi = openapi_for(MAR_1, modelops_sandbox.url)
    checked: dict[tuple[str, str], set[int]] = {}
    problems = []
    for response in seen:
        try:
            openapi.validate_response(Req(response.request), Resp(response))
        except Exception as exc:  # report them all at once
            problems.append(
                f"{response.request.method} {response.request.url.path} -> {response.status_code}: {exc!r}"[:2000]
            )
        shape = response.request.url.path.replace(modelops_sandbox.url, "")
        for part in shape.split("/"):
            if len(part) == 36:
                shape = shape.replace(part, "{id}")
        checked.setdefault((response.request.method, shape), set()).add(response.status_code)
    assert not problems, "\n".join(problems)
    assert checked == {
        ("GET", "/v1/model-runs"): {200, 400, 401, 429},
        ("POST", "/v1/model-runs"): {201, 400, 401, 429},
        ("GET", "/v1/model-runs/{id}"): {200, 400, 401, 404, 429},
        ("POST", "/v1/model-runs/{id}/cancel"): {200, 400, 401, 404, 429},
        ("GET", "/v1/model-runs/{id}/steps"): {200, 400, 401, 404, 429},
        ("GET", "/v1/model-runs/{id}/steps/{id}/test-results"): {200, 400, 401, 404, 429},
    }
    # The validator is not vacuous: a run in an undocumented status, or an error without a code, is refused.
    sample = next(
        r
        for r in seen
        if r.request.method == "GET"
        and r.status_code == 200
        and "/steps" not in r.request.url.path
        and r.request.url.path != "/v1/model-runs"
    )
    for status, body in [(200, {"id": ok.json()["id"], "status": "DONE"}), (404, {"message": "gone"})]:
        with pytest.raises(Exception):  # noqa: B017 - openapi-core raises several classes
            openapi.validate_response(Req(sample.request), Resp(httpx.Response(status, json=body)))
    statuses_429 = [r for r in seen if r.status_code == 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in statuses_429)
    assert all("X-RateLimit-Remaining" in r.headers for r in seen)


def test_cancellations_answers_match_the_newer_document(modelops_sandbox):
    """The newer servers' ``/cancellations`` route (no headers declared there; the body is a ModelRun or an Error)."""
    control = modelops_sandbox.control
    control.post("/_sandbox/ducklake/settings", {"cancel_routes": ["cancellations"]})
    script_project(control, "shop", {"name": "slow", "duration_s": 10})
    jwt = {"Authorization": f"Bearer {sd.SANDBOX_JWT}"}
    seen: list[httpx.Response] = []
    client = httpx.Client(
        base_url=modelops_sandbox.url + "/v1", event_hooks={"response": [lambda r: (r.read(), seen.append(r))]}
    )
    run_id = client.post("/model-runs", json={"project_name": "shop"}, headers=jwt).json()["id"]
    seen.clear()
    answers: list[Any] = [
        client.post(f"/model-runs/{run_id}/cancellations", headers=jwt).status_code,  # 200
        client.post(f"/model-runs/{run_id}/cancellations", headers=jwt).status_code,  # 400: finished
        client.post(f"/model-runs/{run_id}/cancellations", headers={"X-API-Key": "x"}).status_code,  # 401
    ]
    assert answers == [200, 400, 401]
    openapi = openapi_for(NEWEST, modelops_sandbox.url)
    for response in seen:
        openapi.validate_response(Req(response.request), Resp(response))
