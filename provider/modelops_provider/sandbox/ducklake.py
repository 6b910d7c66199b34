"""The DuckLake data platform's Model Runs API (``/v1``), as ``CONTRACTS.md`` section B and issue 4 describe it.

* Runs go PENDING -> RUNNING -> SUCCESS | FAILED, one step per model, run one after the other in
  the project's model order; after a failed model the later ones are SKIPPED and the run FAILS
  ("one or more models failed"). Test results appear on a step once its model is built.
* Cancel (``POST /v1/model-runs/{id}/cancel``; ``/cancellations`` as newer servers have it, when
  enabled) moves a PENDING or RUNNING run to CANCELLED ("cancelled by <principal>") and its unfinished
  steps to CANCELLED; on a finished run it answers 400.
* Auth: ``Authorization: Bearer <JWT>`` (HS256, signed with the sandbox's secret) or ``X-API-Key``.
* A token bucket per client answers 429 with ``Retry-After`` and ``X-RateLimit-*``; every answer
  carries ``X-RateLimit-*``. Errors are ``{"code", "message"}``.
* Paging: ``max_results`` (default 100, clamped to 1000) and ``page_token`` (base64 of the offset).

* The trigger body (section G): unknown fields are ignored, ``model_names`` entries are selectors
  (``name``, ``project.name``, ``+name``, ``name+``, ``tag:x``, ``project:p``, ``state:modified``),
  ``target_catalog``/``target_schema`` are accepted, and a project with scripted environments picks
  one as newer servers do (``environment_name``, else the development environment ``dev``, else the
  only development environment, else 400).

Control API: ``POST /_sandbox/ducklake/models`` scripts a model, ``POST /_sandbox/ducklake/runs``
starts a run as a schedule would (``GET`` lists runs with the trigger body each received),
``POST /_sandbox/ducklake/environments`` scripts a project environment,
``POST /_sandbox/ducklake/settings`` changes the cancel routes, the rate limit and the PENDING time.
``GET /ui/ducklake/model-runs/{id}`` is a page for the link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from modelops_provider.sandbox.app import note_names
from modelops_provider.sandbox.clock import Clock

PREFIX = "/v1"
JWT_SECRET = b"modelops-sandbox-ducklake-jwt-secret"
JWT_SUBJECT = "sandbox-admin"
API_KEY = "dlk_sandbox_0123456789abcdef"
API_KEY_PRINCIPAL = "sandbox-api-key"
SCHEDULER_PRINCIPAL = "scheduler"
DEFAULT_PROJECT = "analytics"

RUN_STATUSES = ("PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED")
TEST_STATUSES = ("PASS", "FAIL", "ERROR")
UNAUTHORIZED = "unauthorized: provide a valid JWT Bearer token or API key"
MAX_RESULTS_DEFAULT = 100
MAX_RESULTS_LIMIT = 1000


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def make_jwt(subject: str, *, expires_in: float = 10 * 365 * 86400, secret: bytes = JWT_SECRET) -> str:
    """An HS256 JWT the sandbox accepts (``sub`` is the principal)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": subject, "iss": "modelops-sandbox", "iat": int(time.time()), "exp": int(time.time() + expires_in)}
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64url(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def jwt_subject(token: str, now: float) -> str | None:
    """The JWT's subject if its signature is valid and it has not expired by ``now``, else None."""
    try:
        header, payload, signature = token.split(".")
        expected = _b64url(hmac.new(JWT_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            return None
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict) or float(claims.get("exp", 0)) <= now:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) and subject and not any(c.isspace() for c in subject) else None


SANDBOX_JWT = make_jwt(JWT_SUBJECT)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TestSpec:
    name: str
    status: str = "PASS"
    rows_returned: int = 0


@dataclass(frozen=True)
class ModelSpec:
    project: str
    name: str
    outcome: str = "SUCCESS"
    duration_s: float = 1.0
    rows_affected: int = 1000
    tests: tuple[TestSpec, ...] = ()
    error_message: str | None = None
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "name": self.name,
            "outcome": self.outcome,
            "duration_s": self.duration_s,
            "rows_affected": self.rows_affected,
            "tests": [{"name": t.name, "status": t.status, "rows_returned": t.rows_returned} for t in self.tests],
            "tags": list(self.tags),
        }


@dataclass
class Step:
    id: str
    model: ModelSpec
    start: float
    end: float
    created: float
    depends_on: list[str]
    test_ids: list[tuple[str, str]]  # (result id, test id) per test


@dataclass
class Run:
    id: str
    project: str
    model_names: list[str]
    full_refresh: bool
    trigger_type: str
    triggered_by: str
    created: float
    running_at: float
    steps: list[Step]
    cancelled_at: float | None = None
    cancelled_by: str | None = None
    environment_name: str | None = None  # set when the project has environments (newer servers)
    request: dict[str, Any] | None = None  # the trigger body as received (control API only)
    reported_status: str | None = None  # a status to answer instead (plays a server with new statuses)

    def _failed_index(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.model.outcome == "FAILED"), None)

    @property
    def natural_end(self) -> float:
        failed = self._failed_index()
        if failed is not None:
            return self.steps[failed].end
        return self.steps[-1].end if self.steps else self.running_at

    def _status_at(self, t: float) -> str:
        if t < self.running_at:
            return "PENDING"
        if t < self.natural_end:
            return "RUNNING"
        return "FAILED" if self._failed_index() is not None else "SUCCESS"

    def status(self, now: float) -> str:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "CANCELLED"
        return self._status_at(now)

    def finished_at(self, now: float) -> float | None:
        status = self.status(now)
        if status == "CANCELLED":
            return self.cancelled_at
        return self.natural_end if status in ("SUCCESS", "FAILED") else None

    def step_status_at(self, index: int, t: float) -> str:
        failed = self._failed_index()
        step = self.steps[index]
        if failed is not None and index > failed:
            return "SKIPPED" if t >= self.steps[failed].end else "PENDING"
        if t < step.start:
            return "PENDING"
        if t < step.end:
            return "RUNNING"
        return step.model.outcome

    def step_status(self, index: int, now: float) -> str:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            before = self.step_status_at(index, self.cancelled_at)
            return "CANCELLED" if before in ("PENDING", "RUNNING") else before
        return self.step_status_at(index, now)

    def to_json(self, now: float) -> dict[str, Any]:
        status = self.reported_status or self.status(now)
        manifest = {"version": 1, "models": [{"model_name": f"{self.project}.{s.model.name}"} for s in self.steps]}
        body: dict[str, Any] = {
            "id": self.id,
            "status": status,
            "trigger_type": self.trigger_type,
            "triggered_by": self.triggered_by,
            "model_names": list(self.model_names),
            "project_name": self.project,
            "full_refresh": self.full_refresh,
            **({"environment_name": self.environment_name} if self.environment_name else {}),
            "compile_manifest": json.dumps(manifest, separators=(",", ":")),
            "compile_diagnostics": {"warnings": [], "errors": []},
            "created_at": _iso(self.created),
        }
        started = (
            self.running_at
            if now >= self.running_at and (self.cancelled_at is None or self.cancelled_at >= self.running_at)
            else None
        )
        if started is not None:
            body["started_at"] = _iso(started)
        finished = self.finished_at(now)
        if finished is not None:
            body["finished_at"] = _iso(finished)
        if status == "FAILED":
            body["error_message"] = "one or more models failed"
        elif status == "CANCELLED":
            body["error_message"] = f"cancelled by {self.cancelled_by}"
        return body

    def step_json(self, index: int, now: float) -> dict[str, Any]:
        step = self.steps[index]
        status = self.step_status(index, now)
        sql = f'CREATE OR REPLACE TABLE "{self.project}"."{step.model.name}" AS SELECT * FROM source_{step.model.name}'
        body: dict[str, Any] = {
            "id": step.id,
            "run_id": self.id,
            "model_name": step.model.name,
            "compiled_sql": sql,
            "compiled_hash": "sha256:" + hashlib.sha256(sql.encode()).hexdigest(),
            "depends_on": list(step.depends_on),
            "vars_used": [],
            "macros_used": [],
            "status": status,
            "created_at": _iso(step.created),
        }
        ran = status in ("SUCCESS", "FAILED", "RUNNING") or (
            status == "CANCELLED" and self.cancelled_at is not None and self.cancelled_at >= step.start
        )
        if ran:
            body["started_at"] = _iso(step.start)
        if status in ("SUCCESS", "FAILED"):
            body["finished_at"] = _iso(step.end)
        elif status == "CANCELLED" and ran and self.cancelled_at is not None:
            body["finished_at"] = _iso(self.cancelled_at)
        if status == "SUCCESS":
            body["rows_affected"] = step.model.rows_affected
        if status == "FAILED":
            body["error_message"] = step.model.error_message or (
                f'model {step.model.name} failed: Catalog Error: Table "source_{step.model.name}" does not exist'
            )
        return body

    def test_results_json(self, index: int, now: float) -> list[dict[str, Any]]:
        step = self.steps[index]
        if self.step_status(index, now) != "SUCCESS":
            return []
        results = []
        for spec, (result_id, test_id) in zip(step.model.tests, step.test_ids, strict=True):
            body: dict[str, Any] = {
                "id": result_id,
                "run_step_id": step.id,
                "test_id": test_id,
                "test_name": spec.name,
                "status": spec.status,
                "rows_returned": spec.rows_returned,
                "created_at": _iso(step.end),
            }
            if spec.status == "FAIL":
                body["error_message"] = f"test {spec.name} returned {spec.rows_returned} failing rows (expected 0)"
            elif spec.status == "ERROR":
                body["error_message"] = f"test {spec.name} could not run: Binder Error: column not found"
            results.append(body)
        return results


class RateLimiter:
    """A token bucket, as the platform's middleware: ``rps`` tokens a second, at most ``burst``."""

    def __init__(self, rps: float, burst: int, clock: Clock) -> None:
        self.rps = rps
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock.now()

    def take(self) -> tuple[bool, dict[str, str]]:
        now = self.clock.now()
        # max(): a clock reset (wall again after an advance) must not drain the bucket.
        self.tokens = min(float(self.burst), self.tokens + max(0.0, now - self.updated) * self.rps)
        self.updated = now
        headers = {"X-RateLimit-Limit": str(self.burst), "X-RateLimit-Reset": str(int(now) + 1)}
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            headers["X-RateLimit-Remaining"] = str(int(self.tokens))
            return True, headers
        delay = (1.0 - self.tokens) / self.rps if self.rps > 0 else 3600.0
        headers["X-RateLimit-Remaining"] = "0"
        headers["Retry-After"] = str(min(3600, int(delay) + 1))
        return False, headers


def _default_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            DEFAULT_PROJECT,
            "stg_orders",
            duration_s=1.0,
            rows_affected=1500,
            tests=(TestSpec("not_null_order_id"), TestSpec("unique_order_id")),
        ),
        ModelSpec(
            DEFAULT_PROJECT,
            "fct_orders",
            duration_s=1.0,
            rows_affected=1200,
            tests=(TestSpec("relationships_fct_orders_customer_id"),),
        ),
    ]


class DuckLakeState:
    def __init__(self, clock: Clock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.projects: dict[str, dict[str, ModelSpec]] = {}
        self.runs: dict[str, Run] = {}
        self.order: list[str] = []  # run ids, oldest first
        self.cancel_routes: set[str] = {"cancel"}
        self.missing_route_status = 404
        self.pending_s = 0.2
        self.limiter = RateLimiter(100.0, 200, clock)
        # project -> environment name -> {"kind": "development" | "production", ...}
        self.environments: dict[str, dict[str, dict[str, Any]]] = {}
        for model in _default_models():
            self.add_model(model)

    def add_model(self, model: ModelSpec) -> None:
        with self.lock:
            self.projects.setdefault(model.project, {})[model.name] = model

    def start_run(
        self,
        project: str,
        names: list[str] | None,
        full_refresh: bool,
        trigger_type: str,
        principal: str,
        *,
        ago_s: float = 0.0,
        environment_name: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> Run:
        """Compile and start a run (``ago_s`` seconds in the past, for a scripted history); ValueError
        (a 400) if the project, a model or the environment is unknown."""
        with self.lock:
            models = self.projects.get(project)
            if not models:
                raise ValueError(f"project {project!r} has no models")
            selected = [models[n] for n in select_models(project, models, names)] if names else list(models.values())
            environment = self.pick_environment(project, environment_name)
            now = self.clock.now() - ago_s
            t = running_at = now + self.pending_s
            steps = []
            previous: str | None = None
            for model in selected:
                steps.append(
                    Step(
                        id=str(uuid.uuid4()),
                        model=model,
                        start=t,
                        end=t + model.duration_s,
                        created=now,
                        depends_on=[f"{project}.{previous}"] if previous else [],
                        test_ids=[(str(uuid.uuid4()), str(uuid.uuid4())) for _ in model.tests],
                    )
                )
                t += model.duration_s
                previous = model.name
            run = Run(
                id=str(uuid.uuid4()),
                project=project,
                model_names=list(names) if names else [m.name for m in selected],
                full_refresh=full_refresh,
                trigger_type=trigger_type,
                triggered_by=principal,
                created=now,
                running_at=running_at,
                steps=steps,
                environment_name=environment,
                request=request,
            )
            self.runs[run.id] = run
            self.order.append(run.id)
            return run

    def pick_environment(self, project: str, name: str | None) -> str | None:
        """The environment a run of ``project`` uses, as newer servers pick it; None for a project
        without environments (a 2026-03 server, which ignores ``environment_name``)."""
        envs = self.environments.get(project)
        if not envs:
            return None
        if name:
            if name not in envs:
                raise ValueError(f"environment {name!r} not found in project {project!r}")
            return name
        development = [n for n, e in envs.items() if e.get("kind") == "development"]
        if "dev" in development:
            return "dev"
        if len(development) == 1:
            return development[0]
        if not development:
            raise ValueError("project has no development environment")
        raise ValueError("project has multiple development environments; environment_name is required")


def select_models(project: str, models: dict[str, ModelSpec], selectors: list[str]) -> list[str]:
    """The model names ``selectors`` pick, in the project's order (each model depends on the one
    before it). ValueError (a 400) for a selector that picks nothing."""
    order = list(models)
    chosen: set[str] = set()
    for selector in selectors:
        core = selector.strip("+")
        method, _, value = core.partition(":") if ":" in core else ("", "", core)
        if method == "tag":
            matched = [n for n in order if value in models[n].tags]
        elif method == "project":
            matched = order if value == project else []
        elif method == "state":
            matched = order if value == "modified" else []  # the sandbox keeps no state: all are new
        elif "." in core:
            owner, _, name = core.partition(".")
            matched = [name] if owner == project and name in models else []
        else:
            matched = [core] if core in models else []
        if not matched:
            raise ValueError(f"model(s) not found in project {project!r}: {selector}")
        for name in matched:
            index = order.index(name)
            chosen.add(name)
            if selector.startswith("+"):
                chosen.update(order[:index])
            if selector.endswith("+"):
                chosen.update(order[index + 1 :])
    return [n for n in order if n in chosen]


def make_state(clock: Clock) -> DuckLakeState:
    return DuckLakeState(clock)


def connection_env(base_url: str) -> dict[str, str]:
    host, _, port = base_url.split("://", 1)[1].rpartition(":")
    conn = {
        "conn_type": "ducklake",
        "host": f"http://{host}",  # not a "scheme" extra: see the Foundry sandbox's connection
        "port": int(port),
        "password": SANDBOX_JWT,
        "extra": {
            "auth_type": "bearer",
            "ui_url_template": base_url + "/ui/ducklake/model-runs/{run_id}",
        },
    }
    return {"AIRFLOW_CONN_DUCKLAKE_DEFAULT": json.dumps(conn)}


def _valid_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255 and not any(c.isspace() for c in value)


class DuckLakeError(Exception):
    """An error answer in the platform's shape, ``{"code": <status>, "message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DuckLakeError)
    # Every answer carries the rate limiter's headers, errors included.
    headers = getattr(request.state, "ratelimit", None) or {}
    return JSONResponse({"code": exc.status, "message": exc.message}, status_code=exc.status, headers=headers)


def ducklake(request: Request) -> DuckLakeState:
    """The DuckLake state of this request's sandbox (a new one after each reset)."""
    return request.app.state.sandbox.ducklake  # type: ignore[no-any-return]


State = Annotated[DuckLakeState, Depends(ducklake)]


def admit(request: Request, response: Response, ds: State) -> str:
    """Rate limit, then authenticate (JWT first, then API key): the principal."""
    with ds.lock:
        allowed, headers = ds.limiter.take()
    request.state.ratelimit = headers
    response.headers.update(headers)
    if not allowed:
        raise DuckLakeError(429, "rate limit exceeded")
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        subject = jwt_subject(auth[7:].strip(), ds.clock.now())
        if subject:
            return subject
    key = request.headers.get("x-api-key")
    if key is not None and hmac.compare_digest(
        hashlib.sha256(key.encode()).digest(), hashlib.sha256(API_KEY.encode()).digest()
    ):
        return API_KEY_PRINCIPAL
    raise DuckLakeError(401, UNAUTHORIZED)


Principal = Annotated[str, Depends(admit)]
router = APIRouter(prefix=PREFIX, dependencies=[Depends(admit)])


def find_run(ds: DuckLakeState, run_id: str) -> Run:
    if not _valid_uuid(run_id):
        raise DuckLakeError(400, f"invalid run id {run_id!r}: must be a UUID")
    run = ds.runs.get(run_id)
    if run is None:
        raise DuckLakeError(404, f"model run {run_id} not found")
    return run


def _max_results(raw: str | None) -> int:
    try:
        limit = int(raw if raw is not None else MAX_RESULTS_DEFAULT)
    except ValueError:
        raise DuckLakeError(400, f"max_results must be an integer, got {raw!r}") from None
    return min(limit if limit > 0 else MAX_RESULTS_DEFAULT, MAX_RESULTS_LIMIT)


def _offset(page_token: str | None) -> int:
    if not page_token:
        return 0
    try:
        return max(0, int(base64.b64decode(page_token, validate=True).decode()))
    except (ValueError, binascii.Error):
        return 0  # as the platform does: an unreadable token starts over


@router.get("/model-runs")
def list_runs(request: Request, ds: State) -> dict[str, Any]:
    q = request.query_params
    status = q.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise DuckLakeError(400, "status must be one of: " + ", ".join(RUN_STATUSES))
    limit, offset = _max_results(q.get("max_results")), _offset(q.get("page_token"))
    now = ds.clock.now()
    with ds.lock:
        # Newest first (by creation time, as the platform orders them; a scripted history may be backdated).
        order = sorted(enumerate(ds.order), key=lambda item: (ds.runs[item[1]].created, item[0]), reverse=True)
        runs = [ds.runs[run_id] for _, run_id in order]
        if status is not None:
            runs = [r for r in runs if r.status(now) == status]
        body: dict[str, Any] = {"data": [r.to_json(now) for r in runs[offset : offset + limit]]}
        note_names(request, [item["id"] for item in body["data"]])
        if offset + limit < len(runs):
            body["next_page_token"] = base64.b64encode(str(offset + limit).encode()).decode()
    return body


def check_trigger_body(body: Any) -> dict[str, Any]:
    """The trigger body as the platform validates it. Unknown fields are ignored, as Go's JSON
    decoding does (section G): one superset body serves every server version."""
    if not isinstance(body, dict):
        raise DuckLakeError(400, "request body must be a JSON object")
    if not _name(body.get("project_name")):
        raise DuckLakeError(400, "project_name is required and must be a name without whitespace")
    names = body.get("model_names")
    if names is not None and (
        not isinstance(names, list)
        or len(names) > 1000
        or not all(isinstance(n, str) and n.strip() and n == n.lstrip() and len(n) <= 255 for n in names)
    ):
        raise DuckLakeError(400, "model_names must be a list of model names")
    for key in ("target_catalog", "target_schema", "environment_name"):
        if body.get(key) is not None and not _name(body[key]):
            raise DuckLakeError(400, f"{key} must be a name without whitespace")
    if not isinstance(body.get("full_refresh", False), bool):
        raise DuckLakeError(400, "full_refresh must be a boolean")
    return body


@router.post("/model-runs", status_code=201)
async def trigger(request: Request, ds: State, principal: Principal) -> dict[str, Any]:
    try:
        body = check_trigger_body(json.loads(await request.body() or b"null"))
    except ValueError:
        raise DuckLakeError(400, "request body must be JSON") from None
    try:
        run = ds.start_run(
            str(body["project_name"]),
            body.get("model_names"),
            body.get("full_refresh", False),
            "MANUAL",
            principal,
            environment_name=body.get("environment_name"),
            request=body,
        )
    except ValueError as exc:
        raise DuckLakeError(400, str(exc)) from None
    return run.to_json(ds.clock.now())


@router.get("/model-runs/{run_id}")
def get_run(run_id: str, ds: State) -> dict[str, Any]:
    run = find_run(ds, run_id)
    with ds.lock:
        return run.to_json(ds.clock.now())


def cancel(ds: DuckLakeState, route: str, run_id: str, principal: str) -> dict[str, Any]:
    if route not in ds.cancel_routes:
        missing_status = ds.missing_route_status
        raise DuckLakeError(missing_status, "method not allowed" if missing_status == 405 else "404 page not found")
    run = find_run(ds, run_id)
    with ds.lock:
        now = ds.clock.now()
        status = run.status(now)
        if status not in ("PENDING", "RUNNING"):
            raise DuckLakeError(400, f"validation error: cannot cancel run in status {status}")
        run.cancelled_at = now
        run.cancelled_by = principal
        return run.to_json(now)


@router.post("/model-runs/{run_id}/cancel")
def cancel_old(run_id: str, ds: State, principal: Principal) -> dict[str, Any]:
    return cancel(ds, "cancel", run_id, principal)


@router.post("/model-runs/{run_id}/cancellations")
def cancel_new(run_id: str, ds: State, principal: Principal) -> dict[str, Any]:
    return cancel(ds, "cancellations", run_id, principal)


@router.get("/model-runs/{run_id}/steps")
def list_steps(run_id: str, ds: State) -> dict[str, Any]:
    run = find_run(ds, run_id)
    now = ds.clock.now()
    with ds.lock:
        return {"data": [run.step_json(i, now) for i in range(len(run.steps))]}


@router.get("/model-runs/{run_id}/steps/{step_id}/test-results")
def list_test_results(run_id: str, step_id: str, ds: State) -> dict[str, Any]:
    run = find_run(ds, run_id)
    if not _valid_uuid(step_id):
        raise DuckLakeError(400, f"invalid step id {step_id!r}: must be a UUID")
    index = next((i for i, s in enumerate(run.steps) if s.id == step_id), None)
    if index is None:
        raise DuckLakeError(404, f"step {step_id} not found in model run {run_id}")
    with ds.lock:
        return {"data": run.test_results_json(index, ds.clock.now())}


# --- the run page (the operator's extra link) -------------------------------------------------
pages = APIRouter()


@pages.get("/ui/ducklake/model-runs/{run_id}")
def run_page(run_id: str, ds: State) -> Response:
    run = ds.runs.get(run_id)
    if run is None:
        return HTMLResponse("<h1>Model run not found</h1>", status_code=404)
    now = ds.clock.now()
    rows = "".join(
        f"<tr><td>{html.escape(s['model_name'])}</td><td>{s['status']}</td><td>{s.get('rows_affected', '')}</td></tr>"
        for s in (run.step_json(i, now) for i in range(len(run.steps)))
    )
    return HTMLResponse(
        f"<html><head><title>DuckLake model run {run.id}</title></head><body>"
        f"<h1>DuckLake model run {run.id}</h1><p>Project {html.escape(run.project)}: <b>{run.status(now)}</b></p>"
        f"<table><tr><th>model</th><th>status</th><th>rows affected</th></tr>{rows}</table></body></html>"
    )


# --- control API: errors are {"error": ...} with 400 ------------------------------------------
control = APIRouter(prefix="/_sandbox/ducklake")


def bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def model_spec(body: Any) -> ModelSpec:
    """A ``/_sandbox/ducklake/models`` body as a model; ValueError with the reason."""
    if not isinstance(body, dict):
        raise ValueError("body must be an object")
    project, name = body.get("project", DEFAULT_PROJECT), body.get("name")
    if not _name(project) or not _name(name):
        raise ValueError(f"project and name must be names without whitespace, got {project!r}, {name!r}")
    outcome = body.get("outcome", "SUCCESS")
    if outcome not in ("SUCCESS", "FAILED"):
        raise ValueError(f"outcome must be SUCCESS or FAILED, got {outcome!r}")
    tests = []
    for raw in body.get("tests") or []:
        if not isinstance(raw, dict) or not _name(raw.get("name")) or raw.get("status", "PASS") not in TEST_STATUSES:
            raise ValueError(f"each test needs a name and a status in {TEST_STATUSES}, got {raw!r}")
        tests.append(TestSpec(raw["name"], raw.get("status", "PASS"), int(raw.get("rows_returned", 0))))
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(_name(t) for t in tags):
        raise ValueError(f"tags must be a list of names, got {tags!r}")
    return ModelSpec(
        project=str(project),
        name=str(name),
        outcome=outcome,
        duration_s=float(body.get("duration_s", 1.0)),
        rows_affected=int(body.get("rows_affected", 1000)),
        tests=tuple(tests),
        error_message=body.get("error_message"),
        tags=tuple(tags),
    )


@control.post("/models")
async def script_model(request: Request, ds: State) -> Response:
    body = await request.json()
    try:
        model = model_spec(body)
    except (TypeError, ValueError) as exc:
        return bad(str(exc))
    if body.get("replace_project"):
        with ds.lock:
            ds.projects.pop(model.project, None)
    ds.add_model(model)
    return JSONResponse(model.to_json())


@control.post("/runs")
async def script_run(request: Request, ds: State) -> Response:
    """A run started by something else than our operator (a schedule, by default); ``count`` runs
    at once, created ``created_ago_s`` seconds ago (a history), answers the last one."""
    body = await request.json()
    try:
        count = int(body.get("count", 1))
        ago_s = float(body.get("created_ago_s", 0.0))
        if count < 1 or ago_s < 0:
            raise ValueError(f"count must be >= 1 and created_ago_s >= 0, got {count!r}, {ago_s!r}")
        for _ in range(count):
            run = ds.start_run(
                body.get("project", DEFAULT_PROJECT),
                body.get("model_names"),
                bool(body.get("full_refresh", False)),
                body.get("trigger_type", "SCHEDULED"),
                body.get("triggered_by", SCHEDULER_PRINCIPAL),
                ago_s=ago_s,
            )
    except (TypeError, ValueError) as exc:
        return bad(str(exc))
    return JSONResponse(run.to_json(ds.clock.now()), status_code=201)


@control.get("/runs")
def control_runs(ds: State) -> Response:
    now = ds.clock.now()
    with ds.lock:
        return JSONResponse([{**ds.runs[i].to_json(now), "request": ds.runs[i].request} for i in ds.order])


@control.post("/runs/{run_id}/reported-status")
async def report_status(run_id: str, request: Request, ds: State) -> Response:
    """Answer ``status`` for the run instead of its own (null: its own again)."""
    body = await request.json()
    with ds.lock:
        run = ds.runs.get(run_id)
        if run is None or not isinstance(body, dict):
            return bad(f"no run {run_id!r}, or no body")
        run.reported_status = body.get("status")
        return JSONResponse(run.to_json(ds.clock.now()))


@control.post("/environments")
async def script_environment(request: Request, ds: State) -> Response:
    body = await request.json()
    if not isinstance(body, dict):
        return bad("body must be an object")
    project, name = body.get("project", DEFAULT_PROJECT), body.get("name")
    kind = body.get("kind", "development")
    if not _name(project) or not _name(name) or kind not in ("development", "production"):
        return bad(f"need a project, a name and kind development|production, got {body!r}")
    with ds.lock:
        if body.get("replace_project"):
            ds.environments.pop(project, None)
        envs = ds.environments.setdefault(project, {})
        envs[str(name)] = {"kind": kind}
        return JSONResponse({"project": project, "environments": envs})


def apply_settings(ds: DuckLakeState, body: dict[str, Any]) -> None:
    """``/_sandbox/ducklake/settings``; ValueError with the reason (nothing after it is applied)."""
    if "cancel_routes" in body:
        routes = set(body["cancel_routes"])
        if not routes <= {"cancel", "cancellations"}:
            raise ValueError(
                f"cancel_routes must be a subset of ['cancel', 'cancellations'], got {body['cancel_routes']!r}"
            )
        ds.cancel_routes = routes
    if "missing_route_status" in body:
        if body["missing_route_status"] not in (404, 405):
            raise ValueError("missing_route_status must be 404 or 405")
        ds.missing_route_status = int(body["missing_route_status"])
    if "pending_s" in body:
        ds.pending_s = float(body["pending_s"])
    if "rate_limit" in body:
        limit = body["rate_limit"] or {}
        ds.limiter = RateLimiter(float(limit.get("rps", 100.0)), int(limit.get("burst", 200)), ds.clock)


@control.post("/settings")
async def settings(request: Request, ds: State) -> Response:
    body = await request.json()
    with ds.lock:
        try:
            apply_settings(ds, body)
        except ValueError as exc:
            return bad(str(exc))
        return JSONResponse(
            {
                "cancel_routes": sorted(ds.cancel_routes),
                "missing_route_status": ds.missing_route_status,
                "pending_s": ds.pending_s,
                "rate_limit": {"rps": ds.limiter.rps, "burst": ds.limiter.burst},
            }
        )


def install(app: FastAPI) -> None:
    for part in (router, pages, control):
        app.include_router(part)
    app.add_exception_handler(DuckLakeError, on_error)
