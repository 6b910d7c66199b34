"""Pluto by Trainy, as ``CONTRACTS.md`` section C describes it.

One port serves Pluto's services under distinct paths (they do not collide with each other or
with the other sandboxed services):

- API service: ``/api/runs/...`` (create, resume, status/update, tags/update, config/update,
  auth/validate, details) and ``/api/slug``; errors ``{"error": ..., "message"?: ...}``, and zod's
  ``{"success": false, "error": {"name": "ZodError", "issues": [...]}}`` for a malformed body.
- Ingest service: ``/ingest/metrics`` (NDJSON; requires ``X-Run-Id`` and ``X-Project-Name``);
  errors ``{"code": ..., "message": ..., "details"?: ...}``; success is text/plain.
- Py service: ``/api/runs/trigger`` (heartbeat); errors ``{"detail": ...}``; and its stale-run
  monitor (section F), which marks RUNNING runs FAILED when their liveness signals go quiet.
- Threshold triggers (``loggerSettings.trigger``, section F): a logged metric that matches one
  cancels the run (:func:`apply_threshold_triggers`).
- App: the run page ``/o/<org>/projects/<project>/<runId>`` (the ``url`` the API returns; the
  real app uses an encoded id where the sandbox uses the numeric run id).

Control API: ``GET /_sandbox/pluto/runs`` (stored runs with status, config, tags and metrics),
``POST /_sandbox/pluto/keys`` (``{"key": ..., "state": "active"|"revoked"|"expired"}``),
``POST /_sandbox/pluto/settings`` (the monitor's timings, see :data:`DEFAULT_SETTINGS`),
``POST /_sandbox/pluto/cancel`` (``{"runId": N}``: a stop requested in Pluto's UI, answered by the
next heartbeat).

The monitor is evaluated lazily: every Pluto request and every control read first plays the
monitor cycles that have come due since the last one (at the times they would have run), so the
observable behaviour is that of a loop running every ``monitor_interval_s`` without a thread.
"""

from __future__ import annotations

import html
import json
import math
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from modelops_provider.sandbox.clock import Clock

ORG_SLUG = "sandbox"
ORG_ID = "org_sandbox"
USER_ID = "user_sandbox"
SANDBOX_KEY = "mlpi_sandbox_6b1f0c2d9e4a"
KEY_PREFIXES = ("mlps_", "mlpi_")
STATUSES = ("RUNNING", "COMPLETED", "FAILED", "TERMINATED", "CANCELLED")
MAX_TAGS = 50
# Status precedence (web/server/lib/run-status.ts): a terminal status never replaces a more severe one.
SEVERITY = {"RUNNING": -1, "COMPLETED": 0, "TERMINATED": 1, "CANCELLED": 2, "FAILED": 3}
# The real timings (section F); POST /_sandbox/pluto/settings changes them (tests use seconds).
DEFAULT_SETTINGS: dict[str, float] = {
    "heartbeat_grace_s": 150.0,  # a run with a heartbeat row: FAILED ("heartbeat-timeout") after this
    "stale_grace_s": 1800.0,  # a run that never pinged: FAILED ("stale") after this
    "monitor_interval_s": 60.0,  # one monitor cycle every this many seconds
    "heartbeat_coalesce_s": 30.0,  # lastSeen is rewritten at most this often (HEARTBEAT_COALESCE_SECONDS)
}


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
    created_at: int = field(kw_only=True)
    updated_at: int = field(kw_only=True)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    opened: int = 1  # create/resume answers that returned this run
    heartbeats: int = 0
    last_seen: float | None = None  # the run_heartbeats row (epoch seconds), once the run has pinged
    events: list[dict[str, Any]] = field(default_factory=list)  # run_status_events, oldest first

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
            "metrics": {k: [{**p, "value": json_safe(p["value"])} for p in v] for k, v in self.metrics.items()},
            "url": self.url(base_url),
            "opened": self.opened,
            "heartbeats": self.heartbeats,
            "lastSeen": None if self.last_seen is None else int(self.last_seen * 1000),
            "statusHistory": [dict(e) for e in self.events],
        }

    def last_metric_s(self) -> float | None:
        """``MAX(time) FROM mlop_metrics``: the newest metric timestamp the client sent (seconds)."""
        times = [p["time"] for points in self.metrics.values() for p in points]
        return max(times) / 1000 if times else None


class PlutoState:
    def __init__(self, clock: Clock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.runs: dict[int, PlutoRun] = {}
        self.projects: dict[str, dict[str, Any]] = {}  # name -> {"prefix", "next"}
        self.keys: dict[str, str] = {SANDBOX_KEY: "active"}
        self.next_id = 1
        self.next_event_id = 1
        self.settings: dict[str, float] = dict(DEFAULT_SETTINGS)
        # The py process (monitor and heartbeat service) starts with the sandbox state.
        self.py_started = clock.now()
        self.next_cycle = self.py_started + self.settings["monitor_interval_s"]
        self.cancel_requests: set[int] = set()  # run_triggers CANCEL rows
        self.orphan_records = 0  # metric records ingested for runs that do not exist

    def record(self, run: PlutoRun, to: str, source: str, metadata: Any = None, at: float | None = None) -> None:
        """A status transition and its ``run_status_events`` row."""
        at = self.clock.now() if at is None else at
        run.events.append(
            {
                "id": self.next_event_id,
                "runId": run.id,
                "fromStatus": run.status,
                "toStatus": to,
                "source": source,
                "metadata": metadata,
                "actorId": USER_ID if source == "api" else None,
                "apiKeyId": None,
                "createdAt": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
            }
        )
        self.next_event_id += 1
        run.status = to
        run.status_updated = int(at * 1000)

    def configure(self, changes: dict[str, Any]) -> dict[str, float]:
        for name, value in changes.items():
            self.settings[name] = float(value)
        # A new interval takes effect from now on (as a restarted monitor would).
        self.next_cycle = min(self.next_cycle, self.clock.now() + self.settings["monitor_interval_s"])
        return dict(self.settings)

    def sweep(self, now: float | None = None) -> None:
        """Play the monitor cycles due by ``now``: each RUNNING run whose liveness signal is older
        than its grace at a cycle is marked FAILED at that cycle's time (source ``stale-monitor``,
        which bypasses precedence). Call with the lock held, before reading or changing runs."""
        now = self.clock.now() if now is None else now
        if now < self.next_cycle:
            return
        interval = max(self.settings["monitor_interval_s"], 1e-3)
        first = self.next_cycle
        for run in self.runs.values():
            if run.status == "RUNNING":
                self._judge(run, first, now, interval)
        self.next_cycle = first + (math.floor((now - first) / interval) + 1) * interval

    def _judge(self, run: PlutoRun, first: float, now: float, interval: float) -> None:
        status_updated = (run.status_updated or 0) / 1000
        metric = run.last_metric_s()
        if run.last_seen is not None:
            grace = self.settings["heartbeat_grace_s"]
            signal = max(run.last_seen, metric or 0.0, status_updated)
            reason = "heartbeat-timeout"
            # Warm-up: for one grace after the py process starts, pinging runs are not judged.
            earliest = max(first, self.py_started + grace)
        else:
            grace = self.settings["stale_grace_s"]
            signal = max(metric if metric is not None else run.updated_at / 1000, status_updated)
            reason = "stale"
            earliest = first
        # The first cycle at which the signal is more than ``grace`` old.
        threshold = max(earliest, signal + grace + 1e-6)
        at = first + math.ceil((threshold - first) / interval) * interval
        if at > now:
            return
        metadata = {
            "reason": reason,
            "grace_seconds": _number(grace),
            "stale_for_seconds": int(at - signal),
            "last_update_time": datetime.fromtimestamp(signal, UTC).isoformat().replace("+00:00", "Z"),
        }
        self.record(run, "FAILED", "stale-monitor", metadata, at=at)
        run.status_metadata = metadata

    def project(self, name: str) -> dict[str, Any]:
        project = self.projects.get(name)
        if project is None:
            letters = "".join(c for c in name.upper() if c.isalnum())[:3] or "RUN"
            project = self.projects[name] = {"prefix": letters, "next": 1}
        return project

    def find_external(self, project: str, external_id: str) -> PlutoRun | None:
        return next((r for r in self.runs.values() if r.project == project and r.external_id == external_id), None)


# Threshold triggers (section F): ``loggerSettings.trigger = {"<logName>": {"operator": "<"|"<="|">"|">=",
# "threshold": number}}``; a matching metric makes the run CANCELLED (source ``threshold-trigger``,
# which bypasses precedence, ``statusMetadata.reason = "threshold-exceeded"``).
THRESHOLD_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def apply_threshold_triggers(state: PlutoState, run: PlutoRun, records: list[dict[str, Any]]) -> None:
    """Cancel ``run`` if a value just logged matches one of its threshold triggers. Call with the
    lock held, after the records are stored.

    Section F does not say when or how the server evaluates them; the sandbox's choices (change them
    here): when the metrics arrive; on RUNNING runs only (section F lists the triggers with the
    monitor, which looks only at RUNNING runs); values in the order logged, the first match wins; NaN
    never matches; a rule with an unknown operator or a threshold that is not a number is ignored;
    ``statusMetadata`` holds, besides ``reason``, the rule and the value that matched (``logName``,
    ``operator``, ``threshold``, ``value``, ``step``); no email is simulated."""
    rules = run.logger_settings.get("trigger") if isinstance(run.logger_settings, dict) else None
    if run.status != "RUNNING" or not isinstance(rules, dict):
        return
    for record in records:
        for name, value in record["data"].items():
            rule = rules.get(name)
            if not isinstance(rule, dict):
                continue
            compare, threshold = THRESHOLD_OPERATORS.get(str(rule.get("operator"))), rule.get("threshold")
            if compare is None or isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                continue
            if not compare(value, threshold):
                continue
            metadata = {
                "reason": "threshold-exceeded",
                "logName": name,
                "operator": rule["operator"],
                "threshold": threshold,
                "value": json_safe(value),
                "step": record["step"],
            }
            state.record(run, "CANCELLED", "threshold-trigger", metadata)
            run.status_metadata = metadata
            return


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def make_state(clock: Clock) -> PlutoState:
    return PlutoState(clock)


def connection_env(base_url: str) -> dict[str, str]:
    conn = {
        "conn_type": "pluto",
        "password": SANDBOX_KEY,
        "extra": {"api_url": base_url, "ingest_url": base_url, "py_url": base_url, "app_url": base_url},
    }
    return {"AIRFLOW_CONN_PLUTO_DEFAULT": json.dumps(conn)}


# --- errors, one shape per service ------------------------------------------------------------
class ApiError(Exception):
    """The API service's error: ``{"error": ..., "message"?: ...}``, or zod's body for a malformed one."""

    def __init__(self, status: int, error: str, message: str | None = None, *, body: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.body = body if body is not None else {"error": error, **({"message": message} if message else {})}

    @classmethod
    def zod(cls, issues: list[dict[str, Any]]) -> ApiError:
        return cls(400, "ZodError", body={"success": False, "error": {"name": "ZodError", "issues": issues}})


class IngestError(Exception):
    """The ingest service's error: ``{"code", "message", "details"?}``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "message": message, **({"details": details} if details is not None else {})}

    @classmethod
    def failed(cls, variant: str, number: int, category: str, message: str) -> IngestError:
        """Every ingest error: 422 PROCESSING_FAILED with the real cause inside the message."""
        return cls(
            422, "PROCESSING_FAILED", f"Failed to process metrics stream: {variant} ({number} - {category}): {message}"
        )


class PyError(Exception):
    """The py service's (FastAPI's) error: ``{"detail": ...}``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.body = {"detail": detail}


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, (ApiError, IngestError, PyError))
    return JSONResponse(exc.body, status_code=exc.status)


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


def _parse_json_string(value: Any) -> Any:
    """A JSON-string field as the server stores it (``"null"`` and absent are null). ValueError if invalid."""
    if value is None or value == "null":
        return None
    return json.loads(value)


def pluto(request: Request) -> PlutoState:
    """The Pluto state of this request's sandbox; the monitor cycles due by now happen first."""
    ps: PlutoState = request.app.state.sandbox.pluto
    with ps.lock:
        ps.sweep()
    return ps


State = Annotated[PlutoState, Depends(pluto)]


def base(request: Request) -> str:
    return request.app.state.sandbox.base_url or str(request.base_url).rstrip("/")


def api_key(request: Request, ps: State) -> None:
    problem = key_problem(request, ps.keys)
    if problem is not None:
        raise ApiError(401, "Unauthorized", problem or None)


async def read_body(request: Request, spec: dict[str, tuple[str, bool]]) -> tuple[Any, list[dict[str, Any]]]:
    """The JSON body of an API write and its zod issues against ``spec``."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise ApiError(400, "Invalid JSON format in request body") from None
    return body, check_body(body, spec)


def get_run(ps: PlutoState, run_id: Any) -> PlutoRun | None:
    return ps.runs.get(run_id) if isinstance(run_id, int) and not isinstance(run_id, bool) else None


def found(ps: PlutoState, run_id: Any) -> PlutoRun:
    run = get_run(ps, run_id)
    if run is None:
        raise ApiError(404, "Run not found")
    return run


def parse_json_field(value: Any, error: str) -> Any:
    try:
        return _parse_json_string(value)
    except ValueError:
        raise ApiError(400, error) from None


def listed(run: PlutoRun, base_url: str) -> dict[str, Any]:
    """A run as the read API shows it (details, list)."""
    body = run.to_json(base_url)
    hidden = ("runId", "metrics", "url", "opened", "heartbeats", "lastSeen", "statusHistory")
    return {"id": run.id, **{k: v for k, v in body.items() if k not in hidden}}


# --- API service: {"error", "message"?} errors ----------------------------------------------------
api = APIRouter(prefix="/api", dependencies=[Depends(api_key)])

CREATE_SPEC = {
    "runName": ("string", True),
    "projectName": ("string", True),
    "externalId": ("string", False),
    "tags": ("array", False),
    "loggerSettings": ("string", False),
    "systemMetadata": ("string", False),
    "config": ("string", False),
    "createdAt": ("number", False),
    "updatedAt": ("number", False),
}


@api.post("/slug")
def slug() -> dict[str, Any]:
    return {"organization": {"slug": ORG_SLUG}}


@api.get("/runs/auth/validate")
def validate() -> dict[str, Any]:
    return {"valid": True, "organization": {"id": ORG_ID, "slug": ORG_SLUG}, "user": {"id": USER_ID}}


def create_issues(body: Any, issues: list[dict[str, Any]]) -> list[str]:
    """The create body's checks beyond the types (added to ``issues``); the tags."""
    if not issues and body.get("externalId") == "":
        issues.append(
            {
                "code": "too_small",
                "minimum": 1,
                "path": ["externalId"],
                "message": "String must contain at least 1 character(s)",
            }
        )
    tags: list[str] = (body.get("tags") or []) if not issues else []
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
        raise ApiError.zod(issues)
    if sum(1 for t in tags if t.startswith("group:")) > 1:
        raise ApiError(400, "A run can have at most one group:* tag.")
    return tags


@api.post("/runs/create")
async def create(request: Request, ps: State) -> dict[str, Any]:
    body, issues = await read_body(request, CREATE_SPEC)
    tags = create_issues(body, issues)
    try:
        config = _parse_json_string(body.get("config"))
        system_metadata = _parse_json_string(body.get("systemMetadata"))
        logger_settings = _parse_json_string(body.get("loggerSettings"))
    except ValueError:
        raise ApiError(400, "Invalid JSON format in request body") from None
    project_name, external_id = body["projectName"], body.get("externalId")
    with ps.lock:
        project = ps.project(project_name)
        run = ps.find_external(project_name, external_id) if external_id else None
        if run is not None:
            # Resume: a terminal run goes back to RUNNING; the sent config is deep-merged.
            run.opened += 1
            if run.status != "RUNNING":
                ps.record(run, "RUNNING", "resume")
            if isinstance(config, dict):
                run.config = deep_merge(run.config if isinstance(run.config, dict) else {}, config)
            run.updated_at = ps.clock.now_ms()
            return run.answer(base(request), True)
        run = PlutoRun(
            id=ps.next_id,
            name=body["runName"],
            number=project["next"],
            project=project_name,
            prefix=project["prefix"],
            external_id=external_id,
            tags=list(tags),
            config=config,
            system_metadata=system_metadata,
            logger_settings=logger_settings,
            created_at=int(body.get("createdAt") or ps.clock.now_ms()),
            updated_at=int(body.get("updatedAt") or ps.clock.now_ms()),
        )
        ps.next_id += 1
        project["next"] += 1
        ps.runs[run.id] = run
        return run.answer(base(request), False)


def resumed_run(ps: PlutoState, body: dict[str, Any]) -> PlutoRun | None:
    """The run a resume body names (by runId, displayId or externalId)."""
    if body.get("runId") is not None:
        return get_run(ps, body["runId"])
    if body.get("displayId") is not None:
        prefix, sep, number = body["displayId"].rpartition("-")
        if not sep or not prefix or not number.isdigit():
            raise ApiError(400, "Invalid displayId format. Expected PREFIX-NUMBER (e.g., 'MMP-1')")
        return next((r for r in ps.runs.values() if r.prefix == prefix.upper() and r.number == int(number)), None)
    if not body.get("projectName"):
        raise ApiError(400, "projectName is required when using externalId")
    return ps.find_external(body["projectName"], body["externalId"])


@api.post("/runs/resume")
async def resume(request: Request, ps: State) -> dict[str, Any]:
    body, issues = await read_body(
        request,
        {
            "runId": ("number", False),
            "displayId": ("string", False),
            "externalId": ("string", False),
            "projectName": ("string", False),
        },
    )
    if not issues and sum(1 for k in ("runId", "displayId", "externalId") if body.get(k) is not None) != 1:
        issues.append(
            {"code": "custom", "path": [], "message": "Provide exactly one of: runId, displayId, or externalId"}
        )
    if issues:
        raise ApiError.zod(issues)
    with ps.lock:
        run = resumed_run(ps, body)
        if run is None:
            raise ApiError(404, "Run not found")
        run.opened += 1
        if run.status != "RUNNING":
            ps.record(run, "RUNNING", "resume")
        return run.answer(base(request), True)


STATUS_SPEC = {
    "runId": ("number", True),
    "status": ("string", True),
    "statusMetadata": ("string", False),
    "loggerSettings": ("string", False),
    "statusUpdated": ("number", False),
}


@api.post("/runs/status/update")
async def status_update(request: Request, ps: State) -> dict[str, Any]:
    body, issues = await read_body(request, STATUS_SPEC)
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
        raise ApiError.zod(issues)
    with ps.lock:
        run = found(ps, body["runId"])
        metadata = parse_json_field(body.get("statusMetadata"), "Invalid statusMetadata JSON")
        settings = parse_json_field(body.get("loggerSettings"), "Invalid loggerSettings JSON")
        set_status(ps, run, body["status"], metadata, settings, body.get("statusUpdated"))
    return {"success": True}


def set_status(ps: PlutoState, run: PlutoRun, wanted: str, metadata: Any, settings: Any, sent_at: Any) -> None:
    current = run.status
    if current != "RUNNING" and wanted != "RUNNING" and SEVERITY[wanted] < SEVERITY[current]:
        # Precedence: a less severe final status never replaces a more severe one. Nothing
        # is written, no event recorded, and the answer does not say so.
        return
    if isinstance(settings, dict):
        run.logger_settings = deep_merge(run.logger_settings if isinstance(run.logger_settings, dict) else {}, settings)
    run.status_metadata = metadata
    if wanted != current:
        ps.record(run, wanted, "api", metadata, at=sent_at / 1000 if sent_at else None)
    elif current == "RUNNING" or sent_at:
        # The same status again records no event; RUNNING -> RUNNING is a liveness ping.
        run.status_updated = int(sent_at or ps.clock.now_ms())
    run.updated_at = ps.clock.now_ms()


@api.post("/runs/tags/update")
async def tags_update(request: Request, ps: State) -> dict[str, Any]:
    body, issues = await read_body(request, {"runId": ("number", True), "tags": ("array", True)})
    if issues:
        raise ApiError.zod(issues)
    if sum(1 for t in body["tags"] if t.startswith("group:")) > 1:
        raise ApiError(400, "A run can have at most one group:* tag.")
    with ps.lock:
        run = found(ps, body["runId"])
        run.tags = list(body["tags"])  # replaces the whole set
        run.updated_at = ps.clock.now_ms()
    return {"success": True}


@api.post("/runs/config/update")
async def config_update(request: Request, ps: State) -> dict[str, Any]:
    body, issues = await read_body(request, {"runId": ("number", True), "config": ("string", True)})
    if issues:
        raise ApiError.zod(issues)
    with ps.lock:
        run = found(ps, body["runId"])
        config = parse_json_field(body["config"], "Invalid config JSON")
        if config is not None:
            if not isinstance(config, dict):
                raise ApiError(400, "Invalid config JSON: expected an object")
            run.config = deep_merge(run.config if isinstance(run.config, dict) else {}, config)
            run.updated_at = ps.clock.now_ms()
    return {"success": True}


@api.get("/runs/details/{run_id}")
def details(run_id: int, request: Request, ps: State) -> dict[str, Any]:
    run = found(ps, run_id)
    return {**listed(run, base(request)), "logNames": sorted(run.metrics)}


@api.get("/runs/list")
def list_project_runs(request: Request, ps: State) -> dict[str, Any]:
    """The read API's run list: ``projectName`` (required), ``search`` (in the name), ``limit``
    (<= 200, default 50), ``offset``; newest first; ``{runs: [...], total}``."""
    query = request.query_params
    project = query.get("projectName")
    if not project:
        raise ApiError(400, "projectName is required")
    try:
        limit = min(int(query.get("limit") or 50), 200)
        offset = int(query.get("offset") or 0)
    except ValueError:
        raise ApiError(400, "limit and offset must be integers") from None
    search = query.get("search") or ""
    with ps.lock:
        runs = [r for r in ps.runs.values() if r.project == project and search in r.name]
        runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        page = runs[offset : offset + max(limit, 0)]
        return {"runs": [listed(run, base(request)) for run in page], "total": len(runs)}


@api.get("/runs/status/history")
def status_history(request: Request, ps: State) -> dict[str, Any]:
    raw = request.query_params.get("runId", "")
    run = found(ps, int(raw) if raw.isdigit() else None)
    return {"runId": run.id, "events": [dict(e) for e in run.events]}


# --- py service (heartbeat): FastAPI's {"detail": ...} errors ---------------------------------
def py_key(request: Request, ps: State) -> None:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        raise PyError(401, "Authorization header missing or invalid")
    key = header[7:].strip()
    if not key:
        raise PyError(401, "Invalid API key format")
    # Only expiry is checked here (the py ApiKey model has no revokedAt; section F, inferred).
    if ps.keys.get(key) in (None, "expired"):
        raise PyError(401, "Invalid or expired API key for this run")


py = APIRouter(dependencies=[Depends(py_key)])


def heartbeat_run_id(body: Any) -> int:
    """``runId`` as pydantic's lax mode reads it; its 422 otherwise."""
    run_id = body.get("runId") if isinstance(body, dict) else None
    if isinstance(run_id, str) and run_id.strip().lstrip("-").isdigit():
        run_id = int(run_id)
    if run_id is None or isinstance(run_id, bool) or not isinstance(run_id, int):
        kind = "missing" if run_id is None else "int_parsing"
        msg = "Field required" if run_id is None else "Input should be a valid integer"
        raise PyError(422, [{"type": kind, "loc": ["body", "runId"], "msg": msg, "input": run_id}])
    return run_id


@py.post("/api/runs/trigger")
async def trigger(request: Request, ps: State) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    run_id = heartbeat_run_id(body)
    with ps.lock:
        run = get_run(ps, run_id)
        if run is None:
            raise PyError(404, "Run not found")
        now = ps.clock.now()
        run.heartbeats += 1
        if run.last_seen is None or now - run.last_seen >= ps.settings["heartbeat_coalesce_s"]:
            run.last_seen = now
        if run.id in ps.cancel_requests and run.status != "CANCELLED":
            # Written directly: no precedence check, no status event (section F, observed).
            run.status = "CANCELLED"
        # A ping never revives a closed run: it only writes the heartbeat row.
        return {"status": run.status, "triggers": None}


# --- ingest service: every error is 422 PROCESSING_FAILED with the cause inside --------------
def ingest_key(request: Request, ps: State) -> None:
    header = request.headers.get("authorization")
    if header is None:
        raise IngestError.failed("MissingToken", 1003, "Authentication Error", "Missing Authorization header")
    if not header.startswith("Bearer "):
        raise IngestError.failed(
            "InvalidBearerFormat", 1007, "Authentication Error", "Authorization header must start with 'Bearer '"
        )
    key_state = ps.keys.get(header[7:].strip())
    if key_state != "active":
        message = {"revoked": "API key has been revoked", "expired": "API key has expired"}.get(
            key_state or "", "Invalid API key"
        )
        raise IngestError.failed("InvalidToken", 1002, "Authentication Error", message)
    for name in ("X-Run-Id", "X-Project-Name"):
        if not request.headers.get(name):
            raise IngestError.failed(
                "InvalidHeaderFormat", 2004, "Validation Error", f"Missing required header: {name}"
            )


ingest = APIRouter(prefix="/ingest", dependencies=[Depends(ingest_key)])


@ingest.post("/metrics")
async def ingest_metrics(request: Request, ps: State) -> Response:
    raw_id = request.headers["X-Run-Id"]
    # The service never looks the run up: rows are stored under the key's tenant; a
    # non-numeric X-Run-Id becomes run 0.
    run_id = int(raw_id) if raw_id.isdigit() else 0
    records: list[dict[str, Any]] = []
    for line in (await request.body()).splitlines():
        if not line.strip():
            continue
        record, problem = parse_metric_line(line)
        if problem is not None:
            raise IngestError.failed(*problem)
        records.append(record)
    with ps.lock:
        run = get_run(ps, run_id)
        for record in records:
            if run is None:
                ps.orphan_records += 1
                continue
            for name, value in record["data"].items():
                run.metrics.setdefault(name, []).append(
                    {"step": record["step"], "time": record["time"], "value": value}
                )
        if run is not None:
            apply_threshold_triggers(ps, run, records)
    return PlainTextResponse(f"Stream processed successfully: {len(records)} records")


# --- app: the run page ------------------------------------------------------------------------
pages = APIRouter()


@pages.get("/o/{org}/projects/{project}/{run_ref}")
def run_page(org: str, project: str, run_ref: str, ps: State) -> Response:
    run = get_run(ps, int(run_ref)) if run_ref.isdigit() else None
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


# --- control API ------------------------------------------------------------------------------
control = APIRouter(prefix="/_sandbox/pluto")


@control.get("/runs")
def list_runs(request: Request, ps: State) -> Response:
    with ps.lock:
        return JSONResponse([r.to_json(base(request)) for r in sorted(ps.runs.values(), key=lambda r: r.id)])


@control.post("/settings")
async def settings(request: Request, ps: State) -> Response:
    body = await request.json() if await request.body() else {}
    bad = {
        k: v
        for k, v in (body or {}).items()
        if k not in DEFAULT_SETTINGS or isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
    }
    if not isinstance(body, dict) or bad:
        return JSONResponse(
            {"error": f"settings are non-negative numbers named {sorted(DEFAULT_SETTINGS)}; got {bad or body}"},
            status_code=400,
        )
    with ps.lock:
        return JSONResponse(ps.configure(body))


@control.post("/cancel")
async def cancel(request: Request, ps: State) -> Response:
    body = await request.json()
    with ps.lock:
        run = get_run(ps, body.get("runId") if isinstance(body, dict) else None)
        if run is None:
            return JSONResponse({"error": "need {'runId': <an existing run>}"}, status_code=400)
        # A CANCEL row in run_triggers: the next heartbeat answers (and sets) CANCELLED.
        ps.cancel_requests.add(run.id)
    return JSONResponse({"runId": run.id, "cancelRequested": True})


@control.post("/keys")
async def keys(request: Request, ps: State) -> Response:
    body = await request.json()
    key, key_state = body.get("key"), body.get("state", "active")
    if not isinstance(key, str) or key_state not in ("active", "revoked", "expired"):
        return JSONResponse({"error": "need {'key': str, 'state': 'active'|'revoked'|'expired'}"}, status_code=400)
    with ps.lock:
        ps.keys[key] = key_state
    return JSONResponse({"key_states": len(ps.keys)})


def install(app: FastAPI) -> None:
    for part in (api, py, ingest, pages, control):
        app.include_router(part)
    for error in (ApiError, IngestError, PyError):
        app.add_exception_handler(error, on_error)


SPECIAL_VALUES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
LINE_FIELDS = ("time", "step", "data")
Problem = tuple[str, int, str, str]


def parse_metric_line(line: bytes) -> tuple[dict[str, Any], Problem | None]:
    """One NDJSON line of ``/ingest/metrics`` as the ingest service reads it (section F): bare
    ``NaN``/``Infinity``/``-Infinity`` and the strings ``"NaN"``/``"Infinity"``/``"-Infinity"`` are
    the special values, a ``null`` value is skipped, unknown line fields are rejected."""

    def undecodable(error: str) -> tuple[dict[str, Any], Problem]:
        shown = line[:100].decode("utf-8", "replace")
        return {}, (
            "StreamDecodingError",
            3004,
            "Processing Error",
            f"Failed to parse JSON line (bytes): '{shown}': {error}",
        )

    try:
        # Python's parser accepts the bare tokens, as the service's second, quoting parse does.
        record = json.loads(line)
    except ValueError as exc:
        return undecodable(str(exc))
    if not isinstance(record, dict):
        return undecodable("invalid type: expected struct MetricLine")
    unknown = [k for k in record if k not in LINE_FIELDS]
    if unknown:
        return undecodable(f"unknown field `{unknown[0]}`, expected one of `time`, `step`, `data`")
    for name in LINE_FIELDS:
        if name not in record:
            return undecodable(f"missing field `{name}`")
    for name in ("time", "step"):
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return undecodable(f"invalid value for `{name}`: expected u64, got {json.dumps(value)}")
    if not isinstance(record["data"], dict):
        return undecodable("invalid type for `data`: expected a map")
    data: dict[str, float | int] = {}
    for name, value in record["data"].items():
        if not name.strip():
            return {}, ("InvalidMetricFormat", 2005, "Validation Error", "metric name cannot be empty")
        if value is None:
            continue
        if isinstance(value, str) and value in SPECIAL_VALUES:
            value = SPECIAL_VALUES[value]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return undecodable(f"invalid value for metric `{name}`: expected a number, got {json.dumps(value)}")
        data[name] = value
    if not data:
        return {}, ("InvalidMetricFormat", 2005, "Validation Error", "'data' field cannot be empty")
    return {"time": record["time"], "step": record["step"], "data": data}, None


def json_safe(value: Any) -> Any:
    """A stored metric value for the control API's strict JSON (NaN and the infinities as strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
