"""Pluto by Trainy, as ``CONTRACTS.md`` section C describes it.

One port serves Pluto's services under distinct paths (they do not collide with each other or
with the other sandboxed services):

- API service: ``/api/runs/...`` (create, resume, status/update, tags/update, config/update,
  auth/validate, details) and ``/api/slug``; errors ``{"error": ..., "message"?: ...}``, and zod's
  ``{"success": false, "error": {"name": "ZodError", "issues": [...]}}`` for a malformed body.
- Ingest service: ``/ingest/metrics`` (NDJSON; requires ``X-Run-Id`` and ``X-Project-Name``);
  errors ``{"code": ..., "message": ..., "details"?: ...}``; success is text/plain.
- Py service: ``/api/runs/trigger`` (heartbeat); errors ``{"detail": ...}``.
- App: the run page ``/o/<org>/projects/<project>/<runId>`` (the ``url`` the API returns; the
  real app uses an encoded id where the sandbox uses the numeric run id).

Control API: ``GET /_sandbox/pluto/runs`` (stored runs with status, config, tags and metrics),
``POST /_sandbox/pluto/keys`` (``{"key": ..., "state": "active"|"revoked"|"expired"}``).
"""

from __future__ import annotations

import html
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

if TYPE_CHECKING:
    from modelops_provider.sandbox.app import SandboxState

ORG_SLUG = "sandbox"
ORG_ID = "org_sandbox"
USER_ID = "user_sandbox"
SANDBOX_KEY = "mlpi_sandbox_6b1f0c2d9e4a"
KEY_PREFIXES = ("mlps_", "mlpi_")
STATUSES = ("RUNNING", "COMPLETED", "FAILED", "TERMINATED", "CANCELLED")
MAX_TAGS = 50


def _now_ms() -> int:
    return int(time.time() * 1000)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Objects merge key by key, recursively; anything else in ``update`` replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class PlutoRun:
    id: int
    name: str
    number: int
    project: str
    prefix: str
    external_id: str | None
    tags: list[str]
    config: Any
    system_metadata: Any
    logger_settings: Any
    status: str = "RUNNING"
    status_metadata: Any = None
    status_updated: int | None = None
    created_at: int = field(default_factory=_now_ms)
    updated_at: int = field(default_factory=_now_ms)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    opened: int = 1  # create/resume answers that returned this run
    heartbeats: int = 0

    @property
    def display_id(self) -> str:
        return f"{self.prefix}-{self.number}"

    def url(self, base_url: str) -> str:
        return f"{base_url}/o/{ORG_SLUG}/projects/{quote(self.project, safe='')}/{self.id}"

    def answer(self, base_url: str, resumed: bool) -> dict[str, Any]:
        return {
            "runId": self.id,
            "number": self.number,
            "displayId": self.display_id,
            "projectName": self.project,
            "organizationSlug": ORG_SLUG,
            "url": self.url(base_url),
            "resumed": resumed,
        }

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "runId": self.id,
            "name": self.name,
            "number": self.number,
            "displayId": self.display_id,
            "projectName": self.project,
            "externalId": self.external_id,
            "status": self.status,
            "statusMetadata": self.status_metadata,
            "statusUpdated": self.status_updated,
            "tags": list(self.tags),
            "config": self.config,
            "systemMetadata": self.system_metadata,
            "loggerSettings": self.logger_settings,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "url": self.url(base_url),
            "opened": self.opened,
            "heartbeats": self.heartbeats,
        }


class PlutoState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[int, PlutoRun] = {}
        self.projects: dict[str, dict[str, Any]] = {}  # name -> {"prefix", "next"}
        self.keys: dict[str, str] = {SANDBOX_KEY: "active"}
        self.next_id = 1

    def project(self, name: str) -> dict[str, Any]:
        project = self.projects.get(name)
        if project is None:
            letters = "".join(c for c in name.upper() if c.isalnum())[:3] or "RUN"
            project = self.projects[name] = {"prefix": letters, "next": 1}
        return project

    def find_external(self, project: str, external_id: str) -> PlutoRun | None:
        return next((r for r in self.runs.values() if r.project == project and r.external_id == external_id), None)


def make_state() -> PlutoState:
    return PlutoState()


def connection_env(base_url: str) -> dict[str, str]:
    conn = {
        "conn_type": "pluto",
        "password": SANDBOX_KEY,
        "extra": {"api_url": base_url, "ingest_url": base_url, "app_url": base_url},
    }
    return {"AIRFLOW_CONN_PLUTO_DEFAULT": json.dumps(conn)}


# --- error bodies, one shape per service -----------------------------------------------------
def api_error(status: int, error: str, message: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if message:
        body["message"] = message
    return JSONResponse(body, status_code=status)


def zod_error(issues: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"success": False, "error": {"name": "ZodError", "issues": issues}}, status_code=400)


def ingest_error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def py_error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def key_problem(request: Request, keys: dict[str, str]) -> str | None:
    """None when the bearer key is valid, else the reason (the API's 401 ``message``)."""
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return ""
    key = header[7:].strip()
    if not key.startswith(KEY_PREFIXES):
        return "Invalid API key"
    state = keys.get(key)
    if state is None:
        return "Key not found"
    if state == "revoked":
        return "API key has been revoked"
    if state == "expired":
        return "API key has expired"
    return None


# --- body validation in zod's terms ------------------------------------------------------------
_TYPE_NAMES = {str: "string", int: "number", float: "number", list: "array", bool: "boolean", dict: "object"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def check_body(body: Any, spec: dict[str, tuple[str, bool]]) -> list[dict[str, Any]]:
    """``spec``: field -> (zod type: string|number|array|boolean, required). Optional fields may be null."""
    if not isinstance(body, dict):
        return [
            {
                "code": "invalid_type",
                "expected": "object",
                "received": _type_name(body),
                "path": [],
                "message": "Expected object",
            }
        ]
    issues = []
    for name, (expected, required) in spec.items():
        value = body.get(name)
        if value is None:
            if required:
                issues.append(
                    {
                        "code": "invalid_type",
                        "expected": expected,
                        "received": "undefined" if name not in body else "null",
                        "path": [name],
                        "message": "Required",
                    }
                )
            continue
        got = _type_name(value)
        if got != expected:
            issues.append(
                {
                    "code": "invalid_type",
                    "expected": expected,
                    "received": got,
                    "path": [name],
                    "message": f"Expected {expected}, received {got}",
                }
            )
        elif expected == "array" and any(not isinstance(v, str) for v in value):
            issues.append({"code": "invalid_type", "expected": "string", "path": [name], "message": "Expected string"})
    return issues


async def _json_body(request: Request) -> tuple[Any, JSONResponse | None]:
    try:
        return json.loads(await request.body() or b"null"), None
    except ValueError:
        return None, api_error(400, "Invalid JSON format in request body")


def _parse_json_string(value: Any) -> Any:
    """A JSON-string field as the server stores it (``"null"`` and absent are null). ValueError if invalid."""
    if value is None or value == "null":
        return None
    return json.loads(value)


def install(app: FastAPI, state: SandboxState) -> None:
    def ps() -> PlutoState:
        return state.pluto

    def base(request: Request) -> str:
        return state.base_url or str(request.base_url).rstrip("/")

    def api_auth(request: Request) -> JSONResponse | None:
        problem = key_problem(request, ps().keys)
        if problem is None:
            return None
        return api_error(401, "Unauthorized", problem or None)

    async def read_body(
        request: Request, spec: dict[str, tuple[str, bool]]
    ) -> tuple[Any, list[dict[str, Any]], JSONResponse | None]:
        """What every API write does first: the key, the JSON body, the body's shape (zod issues)."""
        if (denied := api_auth(request)) is not None:
            return None, [], denied
        body, bad = await _json_body(request)
        if bad is not None:
            return None, [], bad
        return body, check_body(body, spec), None

    def get_run(run_id: Any) -> PlutoRun | None:
        return ps().runs.get(run_id) if isinstance(run_id, int) and not isinstance(run_id, bool) else None

    # --- API service -------------------------------------------------------------------------
    @app.post("/api/slug")
    def slug(request: Request) -> Response:
        return api_auth(request) or JSONResponse({"organization": {"slug": ORG_SLUG}})

    @app.get("/api/runs/auth/validate")
    def validate(request: Request) -> Response:
        return api_auth(request) or JSONResponse(
            {"valid": True, "organization": {"id": ORG_ID, "slug": ORG_SLUG}, "user": {"id": USER_ID}}
        )

    @app.post("/api/runs/create")
    async def create(request: Request) -> Response:
        body, issues, refusal = await read_body(
            request,
            {
                "runName": ("string", True),
                "projectName": ("string", True),
                "externalId": ("string", False),
                "tags": ("array", False),
                "loggerSettings": ("string", False),
                "systemMetadata": ("string", False),
                "config": ("string", False),
                "createdAt": ("number", False),
                "updatedAt": ("number", False),
            },
        )
        if refusal is not None:
            return refusal
        if not issues and body.get("externalId") == "":
            issues.append(
                {
                    "code": "too_small",
                    "minimum": 1,
                    "path": ["externalId"],
                    "message": "String must contain at least 1 character(s)",
                }
            )
        tags = (body.get("tags") or []) if not issues else []
        if len(tags) > MAX_TAGS:
            issues.append(
                {
                    "code": "too_big",
                    "maximum": MAX_TAGS,
                    "path": ["tags"],
                    "message": f"Array must contain at most {MAX_TAGS} element(s)",
                }
            )
        if issues:
            return zod_error(issues)
        if sum(1 for t in tags if t.startswith("group:")) > 1:
            return api_error(400, "A run can have at most one group:* tag.")
        try:
            config = _parse_json_string(body.get("config"))
            system_metadata = _parse_json_string(body.get("systemMetadata"))
            logger_settings = _parse_json_string(body.get("loggerSettings"))
        except ValueError:
            return api_error(400, "Invalid JSON format in request body")
        project_name, external_id = body["projectName"], body.get("externalId")
        with ps().lock:
            project = ps().project(project_name)
            run = ps().find_external(project_name, external_id) if external_id else None
            if run is not None:
                # Resume: a terminal run goes back to RUNNING; the sent config is deep-merged.
                run.opened += 1
                if run.status != "RUNNING":
                    run.status, run.status_updated = "RUNNING", _now_ms()
                if isinstance(config, dict):
                    run.config = deep_merge(run.config if isinstance(run.config, dict) else {}, config)
                run.updated_at = _now_ms()
                return JSONResponse(run.answer(base(request), True))
            run = PlutoRun(
                id=ps().next_id,
                name=body["runName"],
                number=project["next"],
                project=project_name,
                prefix=project["prefix"],
                external_id=external_id,
                tags=list(tags),
                config=config,
                system_metadata=system_metadata,
                logger_settings=logger_settings,
                created_at=int(body.get("createdAt") or _now_ms()),
                updated_at=int(body.get("updatedAt") or _now_ms()),
            )
            ps().next_id += 1
            project["next"] += 1
            ps().runs[run.id] = run
            return JSONResponse(run.answer(base(request), False))

    @app.post("/api/runs/resume")
    async def resume(request: Request) -> Response:
        body, issues, refusal = await read_body(
            request,
            {
                "runId": ("number", False),
                "displayId": ("string", False),
                "externalId": ("string", False),
                "projectName": ("string", False),
            },
        )
        if refusal is not None:
            return refusal
        if not issues and sum(1 for k in ("runId", "displayId", "externalId") if body.get(k) is not None) != 1:
            issues.append(
                {
                    "code": "custom",
                    "path": [],
                    "message": "Provide exactly one of: runId, displayId, or externalId",
                }
            )
        if issues:
            return zod_error(issues)
        with ps().lock:
            run: PlutoRun | None
            if body.get("runId") is not None:
                run = get_run(body["runId"])
            elif body.get("displayId") is not None:
                prefix, sep, number = body["displayId"].rpartition("-")
                if not sep or not prefix or not number.isdigit():
                    return api_error(400, "Invalid displayId format. Expected PREFIX-NUMBER (e.g., 'MMP-1')")
                run = next(
                    (r for r in ps().runs.values() if r.prefix == prefix.upper() and r.number == int(number)),
                    None,
                )
            else:
                if not body.get("projectName"):
                    return api_error(400, "projectName is required when using externalId")
                run = ps().find_external(body["projectName"], body["externalId"])
            if run is None:
                return api_error(404, "Run not found")
            run.opened += 1
            if run.status != "RUNNING":
                run.status, run.status_updated = "RUNNING", _now_ms()
            return JSONResponse(run.answer(base(request), True))

    @app.post("/api/runs/status/update")
    async def status_update(request: Request) -> Response:
        body, issues, refusal = await read_body(
            request,
            {
                "runId": ("number", True),
                "status": ("string", True),
                "statusMetadata": ("string", False),
                "loggerSettings": ("string", False),
                "statusUpdated": ("number", False),
            },
        )
        if refusal is not None:
            return refusal
        if not issues and body["status"] not in STATUSES:
            issues.append(
                {
                    "code": "invalid_enum_value",
                    "options": list(STATUSES),
                    "path": ["status"],
                    "message": f"Invalid enum value. Expected {' | '.join(STATUSES)}, received '{body['status']}'",
                }
            )
        if issues:
            return zod_error(issues)
        with ps().lock:
            run = get_run(body["runId"])
            if run is None:
                return api_error(404, "Run not found")
            try:
                metadata = _parse_json_string(body.get("statusMetadata"))
            except ValueError:
                return api_error(400, "Invalid statusMetadata JSON")
            try:
                settings = _parse_json_string(body.get("loggerSettings"))
            except ValueError:
                return api_error(400, "Invalid loggerSettings JSON")
            if isinstance(settings, dict):
                run.logger_settings = deep_merge(
                    run.logger_settings if isinstance(run.logger_settings, dict) else {}, settings
                )
            run.status = body["status"]
            run.status_metadata = metadata
            run.status_updated = int(body.get("statusUpdated") or _now_ms())
            run.updated_at = _now_ms()
        return JSONResponse({"success": True})

    @app.post("/api/runs/tags/update")
    async def tags_update(request: Request) -> Response:
        body, issues, refusal = await read_body(request, {"runId": ("number", True), "tags": ("array", True)})
        if refusal is not None:
            return refusal
        if issues:
            return zod_error(issues)
        if sum(1 for t in body["tags"] if t.startswith("group:")) > 1:
            return api_error(400, "A run can have at most one group:* tag.")
        with ps().lock:
            run = get_run(body["runId"])
            if run is None:
                return api_error(404, "Run not found")
            run.tags = list(body["tags"])  # replaces the whole set
            run.updated_at = _now_ms()
        return JSONResponse({"success": True})

    @app.post("/api/runs/config/update")
    async def config_update(request: Request) -> Response:
        body, issues, refusal = await read_body(request, {"runId": ("number", True), "config": ("string", True)})
        if refusal is not None:
            return refusal
        if issues:
            return zod_error(issues)
        with ps().lock:
            run = get_run(body["runId"])
            if run is None:
                return api_error(404, "Run not found")
            try:
                config = _parse_json_string(body["config"])
            except ValueError:
                return api_error(400, "Invalid config JSON")
            if config is not None:
                if not isinstance(config, dict):
                    return api_error(400, "Invalid config JSON: expected an object")
                run.config = deep_merge(run.config if isinstance(run.config, dict) else {}, config)
                run.updated_at = _now_ms()
        return JSONResponse({"success": True})

    @app.get("/api/runs/details/{run_id}")
    def details(run_id: int, request: Request) -> Response:
        if (denied := api_auth(request)) is not None:
            return denied
        run = get_run(run_id)
        if run is None:
            return api_error(404, "Run not found")
        body = run.to_json(base(request))
        body = {
            "id": run.id,
            **{k: v for k, v in body.items() if k not in ("runId", "metrics", "url", "opened", "heartbeats")},
        }
        body["logNames"] = sorted(run.metrics)
        return JSONResponse(body)

    @app.get("/api/runs/list")
    def list_project_runs(request: Request) -> Response:
        """The read API's run list: ``projectName`` (required), ``search`` (in the name), ``limit``
        (<= 200, default 50), ``offset``; newest first; ``{runs: [...], total}``."""
        if (denied := api_auth(request)) is not None:
            return denied
        query = request.query_params
        project = query.get("projectName")
        if not project:
            return api_error(400, "projectName is required")
        try:
            limit = min(int(query.get("limit") or 50), 200)
            offset = int(query.get("offset") or 0)
        except ValueError:
            return api_error(400, "limit and offset must be integers")
        search = query.get("search") or ""
        with ps().lock:
            runs = [r for r in ps().runs.values() if r.project == project and search in r.name]
            runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
            page = runs[offset : offset + max(limit, 0)]
            listed = []
            for run in page:
                body = run.to_json(base(request))
                listed.append(
                    {
                        "id": run.id,
                        **{
                            k: v
                            for k, v in body.items()
                            if k not in ("runId", "metrics", "url", "opened", "heartbeats")
                        },
                    }
                )
            return JSONResponse({"runs": listed, "total": len(runs)})

    # --- py service (heartbeat): FastAPI's {"detail": ...} errors --------------------------------
    @app.post("/api/runs/trigger")
    async def trigger(request: Request) -> Response:
        problem = key_problem(request, ps().keys)
        if problem is not None:
            return py_error(401, "Invalid API key format" if problem in ("", "Invalid API key") else problem)
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return py_error(422, "body is not JSON")
        run = get_run(body.get("runId") if isinstance(body, dict) else None)
        if run is None:
            return py_error(404, "Run not found")
        run.heartbeats += 1
        return JSONResponse({"status": run.status, "triggers": None})

    # --- ingest service: {"code", "message", "details"} errors, text/plain success ---------------
    @app.post("/ingest/metrics")
    async def ingest_metrics(request: Request) -> Response:
        problem = key_problem(request, ps().keys)
        if problem is not None:
            if problem == "":
                return ingest_error(401, "MISSING_AUTH_HEADER", "Missing Authorization header")
            return ingest_error(401, "INVALID_API_KEY", problem)
        for header in ("X-Run-Id", "X-Project-Name"):
            if not request.headers.get(header):
                return ingest_error(400, "MISSING_HEADER", f"Missing required header: {header}", {"header": header})
        raw_id = request.headers["X-Run-Id"]
        if not raw_id.isdigit():
            return ingest_error(
                400,
                "INVALID_HEADER",
                f"X-Run-Id must be a numeric run id, got {raw_id!r}",
                {"header": "X-Run-Id"},
            )
        # Not confirmed whether the real ingest checks that the run exists; the sandbox does.
        run = get_run(int(raw_id))
        if run is None or run.project != request.headers["X-Project-Name"]:
            return ingest_error(
                422, "RUN_NOT_FOUND", f"no run {raw_id} in project {request.headers['X-Project-Name']!r}"
            )
        records: list[dict[str, Any]] = []
        for number, line in enumerate((await request.body()).decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                return ingest_error(400, "INVALID_JSON", f"line {number} is not JSON", {"line": number})
            problem_text = _metric_problem(record)
            if problem_text:
                return ingest_error(400, "INVALID_METRIC", f"line {number}: {problem_text}", {"line": number})
            records.append(record)
        if not records:
            return ingest_error(400, "EMPTY_BODY", "no records in the request body")
        with ps().lock:
            for record in records:
                for name, value in record["data"].items():
                    run.metrics.setdefault(name, []).append(
                        {"step": record["step"], "time": record["time"], "value": value}
                    )
            run.updated_at = _now_ms()
        return PlainTextResponse(f"Stream processed successfully: {len(records)} records")

    # --- app: the run page --------------------------------------------------------------------
    @app.get("/o/{org}/projects/{project}/{run_ref}")
    def run_page(org: str, project: str, run_ref: str) -> Response:
        run = get_run(int(run_ref)) if run_ref.isdigit() else None
        if org != ORG_SLUG or run is None or run.project != project:
            return HTMLResponse("<h1>Run not found</h1>", status_code=404)
        esc = html.escape
        metrics = "".join(
            f"<tr><th>{esc(name)}</th><td>{esc(json.dumps(points[-1]['value']))}</td><td>{len(points)}</td></tr>"
            for name, points in sorted(run.metrics.items())
        )
        return HTMLResponse(
            f"<html><head><title>Pluto run {esc(run.display_id)}</title></head><body>"
            f"<h1>{esc(run.name)} ({esc(run.display_id)})</h1>"
            f"<p>Project {esc(run.project)} &middot; status <b>{esc(run.status)}</b></p>"
            f"<p>Tags: {esc(', '.join(run.tags))}</p>"
            f"<h2>Config</h2><pre>{esc(json.dumps(run.config, indent=2, sort_keys=True))}</pre>"
            "<h2>Status metadata</h2>"
            f"<pre>{esc(json.dumps(run.status_metadata, indent=2, sort_keys=True))}</pre>"
            f"<h2>Metrics</h2><table><tr><th>name</th><th>last</th><th>points</th></tr>{metrics}</table>"
            "</body></html>"
        )

    # --- control API ----------------------------------------------------------------------------
    @app.get("/_sandbox/pluto/runs")
    def list_runs(request: Request) -> Response:
        with ps().lock:
            return JSONResponse([r.to_json(base(request)) for r in sorted(ps().runs.values(), key=lambda r: r.id)])

    @app.post("/_sandbox/pluto/keys")
    async def keys(request: Request) -> Response:
        body = await request.json()
        key, key_state = body.get("key"), body.get("state", "active")
        if not isinstance(key, str) or key_state not in ("active", "revoked", "expired"):
            return JSONResponse({"error": "need {'key': str, 'state': 'active'|'revoked'|'expired'}"}, status_code=400)
        with ps().lock:
            ps().keys[key] = key_state
        return JSONResponse({"key_states": len(ps().keys)})


def _metric_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    for name in ("time", "step"):
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} must be an integer, got {value!r}"
    data = record.get("data")
    if not isinstance(data, dict) or not data:
        return "data must be a non-empty object"
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"data[{name!r}] must be a number, got {value!r}"
    return None
