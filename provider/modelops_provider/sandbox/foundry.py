"""Foundry, as ``CONTRACTS.md`` section A describes it: Models v2 (preview), Orchestration builds,
OAuth2 client credentials, Foundry's error JSON. Model versions, experiments, promotion and inference
(section E) are in :mod:`modelops_provider.sandbox.foundry_registry`."""

from __future__ import annotations

import html
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from modelops_provider.sandbox import foundry_registry
from modelops_provider.sandbox.app import note_names
from modelops_provider.sandbox.clock import Clock
from modelops_provider.sandbox.foundry_auth import FoundryError, State, User, on_error, page_size, paged, requires
from modelops_provider.sandbox.foundry_registry import Registry

STATIC_TOKEN = "sandbox-token"
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
USER_ID = "f05f8da4-b84c-4fca-9c77-8af0b13d11de"
# A second user, to play "someone else launched a run of the same studio".
OTHER_TOKEN = "sandbox-token-other"
OTHER_USER_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
# Static tokens and the user each acts as; OAuth client tokens act as the sandbox user too.
USERS = {STATIC_TOKEN: (USER_ID, "sandbox-user"), OTHER_TOKEN: (OTHER_USER_ID, "other-user")}

SUCCEEDING_STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001"
FAILING_STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000002"
DEFAULT_LIVE_DEPLOYMENT = "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000001"
SUCCEEDING_MODEL = "ri.models.main.model.00000000-0000-4000-8000-000000000001"
FAILING_MODEL = "ri.models.main.model.00000000-0000-4000-8000-000000000002"
# The verification chain (CONTRACTS.md section E): a production deployment on branch "prod" of the
# first model, and a studio whose runs train a model that clears the bars but is worse than prod's.
PROD_LIVE_DEPLOYMENT = "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-000000000002"
PROD_BRANCH = "prod"
PROD_VERSION = "ri.models.main.model-version.00000000-0000-4000-8000-0000000000a1"
REGRESSING_STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000003"
REGRESSING_MODEL = "ri.models.main.model.00000000-0000-4000-8000-000000000003"
SEED_METRICS = {"accuracy": 0.93, "loss": 0.21}
SEED_PROD_METRICS = {"accuracy": 0.92, "loss": 0.25}
SEED_REGRESSING_METRICS = {"accuracy": 0.905, "loss": 0.27}
RID_PREFIX = "ri."
# The scopes an OAuth client may be granted (the sandbox client is allowed all of them unless the
# control API narrows it), and the one each endpoint needs (section A; getCurrent needs admin-read,
# inference models-execute). A user token (the static ones) carries its user's full rights.
ALL_SCOPES = frozenset(
    {
        "api:models-read",
        "api:models-write",
        "api:models-execute",
        "api:orchestration-read",
        "api:orchestration-write",
        "api:admin-read",
    }
)


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rid(kind: str, service: str = "models") -> str:
    return f"ri.{service}.main.{kind}.{uuid.uuid4()}"


@dataclass
class Studio:
    rid: str
    outcome: str = "SUCCEEDED"
    duration_s: float = 2.0
    config_version: int = 1
    omit_build_status: bool = False
    # Users (ids) without permission to launch the studio / to cancel its builds: they get the
    # documented 403s LaunchModelStudioPermissionDenied / CancelBuildPermissionDenied.
    launch_denied_to: tuple[str, ...] = ()
    cancel_denied_to: tuple[str, ...] = ()
    model_rid: str = field(default_factory=lambda: _rid("model"))
    initial_version_rid: str = field(default_factory=lambda: _rid("model-version"))
    # Metrics of each run's experiment: one dict per run in launch order, the last repeating.
    metrics: list[dict[str, Any]] = field(default_factory=list)
    # Metrics of the experiment linked to the model's first version (none: it has no experiment).
    initial_metrics: dict[str, Any] | None = None
    launched: int = 0


@dataclass
class Run:
    studio: Studio
    run_id: str
    build_rid: str
    job_rid: str
    started: float
    duration_s: float
    outcome: str
    config_version: int
    model_version_rid: str
    started_by: str = USER_ID
    cancelled_at: float | None = None
    experiment_rid: str | None = None
    clock: Clock = field(kw_only=True, repr=False)

    def status(self, now: float | None = None) -> str:
        now = self.clock.now() if now is None else now
        finished_at = self.started + self.duration_s
        if self.cancelled_at is not None and self.cancelled_at < finished_at:
            return "CANCELED"
        return self.outcome if now >= finished_at else "RUNNING"

    def to_json(self) -> dict[str, Any]:
        status = self.status()
        body: dict[str, Any] = {
            "runId": self.run_id,
            "buildRid": self.build_rid,
            "jobRid": self.job_rid,
            "configVersion": self.config_version,
            "startedBy": self.started_by,
            "startedTime": _now_iso(self.started),
            # Filled from the launch on, as the docs' example shows it on a RUNNING run: the version
            # the run will produce, which exists only once the build SUCCEEDED.
            "resolvedOutputs": {
                "model": {
                    "type": "model",
                    "modelRid": self.studio.model_rid,
                    "modelVersionRid": self.model_version_rid,
                }
            },
        }
        if self.experiment_rid:
            body["resolvedOutputs"]["model"]["experimentRid"] = self.experiment_rid
        if not self.studio.omit_build_status:
            body["buildStatus"] = status
        return body

    def build_json(self) -> dict[str, Any]:
        now = self.clock.now()
        status = self.status(now)
        body: dict[str, Any] = {
            "rid": self.build_rid,
            "branchName": "master",
            "createdTime": _now_iso(self.started),
            "createdBy": self.started_by,
            "fallbackBranches": [],
            "jobRids": [self.job_rid],
            "retryCount": 0,
            "retryBackoffDuration": {"value": 1, "unit": "SECONDS"},
            "abortOnFailure": False,
            "status": status,
        }
        if status != "RUNNING":
            body["finishedTime"] = _now_iso(min(now, self.started + self.duration_s))
        return body


@dataclass
class LiveDeployment:
    """A live deployment. With ``studio_rid`` it tracks that studio's branch: after a run of the studio
    succeeds it goes STARTING (old version, not ready) for ``rollout_s``, then ends as ``outcome``;
    ACTIVE serves the new version, not ready for ``ready_after_s`` more, then ready."""

    rid: str
    model_rid: str
    model_version_rid: str
    state: str = "ACTIVE"
    is_ready: bool = True
    branch: str | None = "master"
    supported: bool = True
    studio_rid: str | None = None
    rollout_s: float = 2.0
    ready_after_s: float = 1.0
    outcome: str = "ACTIVE"
    # Alternatively a fixed sequence, one step per GET (the last one repeats): deterministic tests.
    steps: list[dict[str, Any]] = field(default_factory=list)
    reads: int = 0
    # Without a studio: roll out each version added to ``branch`` of the model after creation
    # (promotions); with a studio, promotions to its branch roll out as its runs do.
    track_branch: bool = False
    created_at: float = field(kw_only=True)
    # transformJson: prediction = slope * x + intercept; the next N requests answer InferenceTimeout.
    slope: float = 2.0
    intercept: float = 1.0
    inference_timeouts: int = 0

    def releases(self, foundry: FoundryState, now: float) -> list[tuple[float, str]]:
        """(time, version) of each version this deployment rolls out, oldest first."""
        events: list[tuple[float, str]] = []
        if self.studio_rid is not None:
            for r in foundry.runs.get(self.studio_rid, []):
                if r.status(now) == "SUCCEEDED":
                    events.append((r.started + r.duration_s, r.model_version_rid))
        if self.studio_rid is not None or self.track_branch:
            for v in foundry.registry.visible_versions(self.model_rid, now, self.branch or "master"):
                if (v.run is None or self.studio_rid is None) and v.created_at() > self.created_at:
                    events.append((v.created_at(), v.rid))
        return sorted(set(events))

    def current(self, foundry: FoundryState) -> tuple[str, str, bool]:
        """(served model version, state, ready) now."""
        if self.steps:
            step = self.steps[min(self.reads, len(self.steps) - 1)]
            return (
                step.get("model_version_rid", self.model_version_rid),
                step.get("state", "ACTIVE"),
                bool(step.get("is_ready", step.get("state", "ACTIVE") == "ACTIVE")),
            )
        base = (self.model_version_rid, self.state, self.is_ready)
        now = foundry.clock.now()
        releases = self.releases(foundry, now)
        if not releases:
            return base
        released_at, latest = releases[-1]
        since = now - released_at
        old_version = releases[-2][1] if len(releases) > 1 else self.model_version_rid
        if since < self.rollout_s:
            return old_version, "STARTING", False
        if self.outcome in ("FAILED", "DISABLED"):
            return old_version, self.outcome, False
        if self.outcome == "DEGRADED":
            return latest, "DEGRADED", False
        return latest, "ACTIVE", since >= self.rollout_s + self.ready_after_s

    def to_json(self, foundry: FoundryState) -> dict[str, Any]:
        version, state, ready = self.current(foundry)
        body: dict[str, Any] = {
            "rid": self.rid,
            "modelVersion": {"modelRid": self.model_rid, "modelVersionRid": version},
            "runtimeConfiguration": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "cpu": 1.0,
                "memory": "256MiB",
                "threadCount": 32,
                # Foundry's own client requires both, though the docs example omits them.
                "sources": [],
                "environmentVariables": {},
            },
            "status": {"state": state, "isReady": ready},
        }
        if self.branch:
            body["branch"] = self.branch
        return body


class FoundryState:
    def __init__(self, clock: Clock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.studios: dict[str, Studio] = {}
        self.runs: dict[str, list[Run]] = {}
        self.builds: dict[str, Run] = {}
        self.live: dict[str, LiveDeployment] = {}
        self.tokens: dict[str, float] = {}  # issued OAuth token -> expiry
        self.token_scopes: dict[str, frozenset[str]] = {}  # issued OAuth token -> granted scopes
        self.client_scopes: frozenset[str] = ALL_SCOPES  # what the sandbox client may be granted
        self.registry = Registry()
        self.token_lifetime_s = 3600
        self.page_tokens: dict[str, int] = {}
        self.add_studio(
            Studio(
                SUCCEEDING_STUDIO,
                "SUCCEEDED",
                2.0,
                model_rid=SUCCEEDING_MODEL,
                metrics=[SEED_METRICS],
                initial_metrics=SEED_PROD_METRICS,
            )
        )
        self.add_studio(Studio(FAILING_STUDIO, "FAILED", 2.0, model_rid=FAILING_MODEL))
        self.add_studio(
            Studio(REGRESSING_STUDIO, "SUCCEEDED", 2.0, model_rid=REGRESSING_MODEL, metrics=[SEED_REGRESSING_METRICS])
        )
        # Tracks the succeeding studio's branch: every successful run rolls out in 2 s, ready 1 s later.
        self.add_live_deployment(DEFAULT_LIVE_DEPLOYMENT, studio_rid=SUCCEEDING_STUDIO)
        # Production: branch "prod" of the first model, serving a copy of its first version promoted
        # there (no experiment of its own; the first version's is reached through the promotion).
        first = self.studios[SUCCEEDING_STUDIO].initial_version_rid
        self.registry.measured_version(
            SUCCEEDING_MODEL,
            PROD_VERSION,
            branch=PROD_BRANCH,
            source={"type": "promoted", "previousModelRid": SUCCEEDING_MODEL, "previousModelVersionRid": first},
            metrics=None,
            created=clock.now() - 30,
        )
        self.add_live_deployment(
            PROD_LIVE_DEPLOYMENT,
            model_rid=SUCCEEDING_MODEL,
            branch=PROD_BRANCH,
            track_branch=True,
            model_version_rid=PROD_VERSION,
        )

    def add_live_deployment(
        self, rid: str, *, studio_rid: str | None = None, model_rid: str | None = None, **settings: Any
    ) -> LiveDeployment:
        with self.lock:
            studio = self.studios.get(studio_rid) if studio_rid else None
            settings.setdefault("model_version_rid", studio.initial_version_rid if studio else _rid("model-version"))
            model = studio.model_rid if studio else model_rid or _rid("model")
            settings.setdefault("created_at", self.clock.now())
            live = LiveDeployment(rid=rid, model_rid=model, studio_rid=studio_rid, **settings)
            # The version it serves exists in the model registry (without an experiment unless it has one).
            self.registry.measured_version(
                model,
                live.model_version_rid,
                branch=live.branch or "master",
                source={"type": "sdk"},
                metrics=None,
                created=live.created_at - 60,
            )
            self.live[rid] = live
            return live

    def add_studio(self, studio: Studio, *, model_rid: str | None = None) -> None:
        with self.lock:
            old = self.studios.get(studio.rid)
            if old is not None:
                # Re-scripting a studio changes how its runs behave, not which model it trains.
                studio.model_rid = old.model_rid
                studio.initial_version_rid = old.initial_version_rid
            if model_rid:
                studio.model_rid = model_rid
            self.studios[studio.rid] = studio
            self.runs.setdefault(studio.rid, [])
            self.registry.measured_version(
                studio.model_rid,
                studio.initial_version_rid,
                branch="master",
                source={"type": "modelStudio", "modelStudioRid": studio.rid},
                metrics=studio.initial_metrics,
                created=self.clock.now() - 120,
            )

    def launch(self, studio: Studio, started_by: str = USER_ID) -> Run:
        with self.lock:
            run = Run(
                studio=studio,
                run_id=secrets.token_hex(6),
                build_rid=_rid("build", "foundry-build"),
                job_rid=_rid("job", "foundry-build"),
                started=self.clock.now(),
                duration_s=studio.duration_s,
                outcome=studio.outcome,
                config_version=studio.config_version,
                model_version_rid=_rid("model-version"),
                started_by=started_by,
                clock=self.clock,
            )
            self.runs[studio.rid].insert(0, run)
            self.builds[run.build_rid] = run
            metrics = studio.metrics[min(studio.launched, len(studio.metrics) - 1)] if studio.metrics else {}
            studio.launched += 1
            run.experiment_rid = self.registry.on_launch(run, studio.model_rid, metrics).rid
            return run

    def scopes_of(self, token: str) -> frozenset[str]:
        with self.lock:
            return self.token_scopes.get(token, ALL_SCOPES)

    def user_of(self, token: str) -> tuple[str, str] | None:
        """(user id, username) the token acts as, or None for an invalid token."""
        if token in USERS:
            return USERS[token]
        with self.lock:
            expiry = self.tokens.get(token)
        return USERS[STATIC_TOKEN] if expiry is not None and expiry > self.clock.now() else None


def make_state(clock: Clock) -> FoundryState:
    return FoundryState(clock)


def connection_env(base_url: str) -> dict[str, str]:
    host, _, port = base_url.split("://", 1)[1].rpartition(":")
    # The scheme rides in the host: Airflow masks every extra string, and one as short as "http" makes
    # it warn "Skipping masking for a secret as it's too short" in every task log.
    conn = {
        "conn_type": "foundry",
        "host": f"http://{host}",
        "port": int(port),
        "password": STATIC_TOKEN,
    }
    return {"AIRFLOW_CONN_FOUNDRY_DEFAULT": json.dumps(conn)}


# --- Foundry's API: one router; errors raised as FoundryError, auth by dependency -------------
router = APIRouter()
MODELS_READ = requires("api:models-read", preview=True)


def studio_of(fs: FoundryState, studio_rid: str) -> Studio:
    studio = fs.studios.get(studio_rid)
    if studio is None:
        raise FoundryError(404, "NOT_FOUND", "ModelStudioNotFound", {"studioRid": studio_rid})
    return studio


def build_of(fs: FoundryState, build_rid: str) -> Run:
    run = fs.builds.get(build_rid)
    if run is None:
        raise FoundryError(404, "NOT_FOUND", "BuildNotFound", {"buildRid": build_rid})
    return run


@router.post("/multipass/api/oauth2/token")
async def token(request: Request, fs: State) -> Response:
    form = dict((await request.form()).items())
    if form.get("grant_type") != "client_credentials":
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    value = "sbx-oauth-" + secrets.token_urlsafe(16)
    asked = set(str(form.get("scope", "")).split()) - {"offline_access"}
    with fs.lock:
        lifetime = fs.token_lifetime_s
        fs.tokens[value] = fs.clock.now() + lifetime
        # The scopes asked for that the client may have; all the client's when none are asked.
        granted = fs.client_scopes & asked if asked else fs.client_scopes
        fs.token_scopes[value] = frozenset(granted)
    return JSONResponse(
        {"access_token": value, "token_type": "bearer", "expires_in": lifetime, "scope": " ".join(sorted(granted))}
    )


@router.get("/api/v2/admin/users/getCurrent")
def current_user(who: Annotated[User, requires("api:admin-read")]) -> dict[str, Any]:
    return {"id": who[0], "username": who[1]}


@router.post("/api/v2/models/modelStudios/{studio_rid}/launch")
def launch(studio_rid: str, fs: State, who: Annotated[User, requires("api:models-write", preview=True)]) -> Any:
    studio = studio_of(fs, studio_rid)
    if who[0] in studio.launch_denied_to:
        raise FoundryError(403, "PERMISSION_DENIED", "LaunchModelStudioPermissionDenied", {"studioRid": studio_rid})
    return fs.launch(studio, started_by=who[0]).to_json()


def runs_of_config(fs: FoundryState, studio: Studio, raw: str | None) -> list[Run]:
    """The studio's runs, newest first, of config version ``raw`` when given."""
    runs = list(fs.runs.get(studio.rid, []))
    if raw is None:
        return runs
    try:
        version = int(raw)
    except ValueError:
        raise FoundryError(400, "INVALID_ARGUMENT", "InvalidArgument", {"configVersion": raw}) from None
    if version > studio.config_version or version < 1:
        raise FoundryError(
            404,
            "NOT_FOUND",
            "ModelStudioConfigVersionNotFound",
            {"studioRid": studio.rid, "configVersion": version},
        )
    return [r for r in runs if r.config_version == version]


@router.get("/api/v2/models/modelStudios/{studio_rid}/runs", dependencies=[MODELS_READ])
def list_runs(studio_rid: str, request: Request, fs: State) -> dict[str, Any]:
    studio = studio_of(fs, studio_rid)
    q = request.query_params
    size = page_size(q.get("pageSize", "20"), 20, 1000)
    runs = runs_of_config(fs, studio, q.get("configVersion"))
    page, token = paged(fs, runs, size, q.get("pageToken"))
    body: dict[str, Any] = {"data": [r.to_json() for r in page]}
    if token:
        body["nextPageToken"] = token
    return body


@router.get("/api/v2/orchestration/builds/{build_rid}", dependencies=[requires("api:orchestration-read")])
def get_build(build_rid: str, fs: State) -> dict[str, Any]:
    return build_of(fs, build_rid).build_json()


# --- Orchestration: many builds in one request (CONTRACTS.md section D) --------------------------
@router.post("/api/v2/orchestration/builds/getBatch", dependencies=[requires("api:orchestration-read")])
async def get_builds_batch(request: Request, fs: State) -> dict[str, Any]:
    try:
        body = await request.json()
        rids = [item["buildRid"] for item in body]
        if not isinstance(body, list) or not all(isinstance(r, str) for r in rids):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        raise FoundryError(400, "INVALID_ARGUMENT", "InvalidArgument", {"body": "a JSON array of {buildRid}"}) from None
    if not 1 <= len(rids) <= 100:
        raise FoundryError(400, "INVALID_ARGUMENT", "InvalidArgument", {"size": len(rids)})
    note_names(request, rids)
    # Unknown RIDs are left out of the map rather than failing the call (as inferred in section D).
    return {"data": {rid: run.build_json() for rid in rids if (run := fs.builds.get(rid)) is not None}}


@router.post("/api/v2/orchestration/builds/{build_rid}/cancel")
def cancel_build(build_rid: str, fs: State, who: Annotated[User, requires("api:orchestration-write")]) -> Response:
    run = build_of(fs, build_rid)
    if who[0] in run.studio.cancel_denied_to:
        raise FoundryError(403, "PERMISSION_DENIED", "CancelBuildPermissionDenied", {"buildRid": build_rid})
    with fs.lock:
        if run.status() == "RUNNING":
            run.cancelled_at = fs.clock.now()
    return Response(status_code=204)


@router.get("/api/v2/models/liveDeployments/{rid}", dependencies=[MODELS_READ])
def get_live_deployment(rid: str, fs: State) -> dict[str, Any]:
    live = fs.live.get(rid)
    if live is None:
        raise FoundryError(404, "NOT_FOUND", "LiveDeploymentNotFound", {"liveDeploymentRid": rid})
    if not live.supported:
        raise FoundryError(400, "INVALID_ARGUMENT", "UnsupportedLiveDeployment")
    with fs.lock:
        body = live.to_json(fs)
        live.reads += 1
    return body


# --- Foundry's pages (the operators' extra links) --------------------------------------------
pages = APIRouter()


@pages.get("/workspace/model-studio/{studio_rid}/runs/{run_id}")
def run_page(studio_rid: str, run_id: str, fs: State) -> Response:
    run = next((r for r in fs.runs.get(studio_rid, []) if r.run_id == run_id), None)
    if run is None:
        return HTMLResponse("<h1>Run not found</h1>", status_code=404)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in run.to_json().items()
    )
    return HTMLResponse(
        f"<html><head><title>Model Studio run {html.escape(run_id)}</title></head><body>"
        f"<h1>Model Studio run {html.escape(run_id)}</h1><p>Build status: <b>{run.status()}</b></p>"
        f"<table>{rows}</table></body></html>"
    )


@pages.get("/workspace/model-live-deployments/{rid}")
def live_page(rid: str, fs: State) -> Response:
    live = fs.live.get(rid)
    if live is None:
        return HTMLResponse("<h1>Live deployment not found</h1>", status_code=404)
    version, state, ready = live.current(fs)
    return HTMLResponse(
        f"<html><head><title>Live deployment</title></head><body><h1>Live deployment {html.escape(rid)}</h1>"
        f"<p>Serving {html.escape(version)}: <b>{state}</b>, ready: {ready}</p></body></html>"
    )


@pages.get("/workspace/models/{model_rid}")
def model_page(model_rid: str, fs: State) -> Response:
    if model_rid not in fs.registry.models:
        return HTMLResponse("<h1>Model not found</h1>", status_code=404)
    with fs.lock:
        versions = fs.registry.visible_versions(model_rid, fs.clock.now())
    rows = "".join(
        f"<tr><td>{html.escape(v.rid)}</td><td>{html.escape(v.branch)}</td>"
        f"<td>{html.escape(str(v.source.get('type', '')))}</td></tr>"
        for v in versions
    )
    return HTMLResponse(
        f"<html><head><title>Model</title></head><body><h1>Model {html.escape(model_rid)}</h1>"
        f"<table><tr><th>version</th><th>branch</th><th>source</th></tr>{rows}</table></body></html>"
    )


# --- control API: errors are {"error": ...} with 400 ----------------------------------------
control = APIRouter(prefix="/_sandbox/foundry")


def bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def scripted_studio(body: dict[str, Any]) -> Studio:
    """A ``/_sandbox/foundry/studios`` body as a studio; ValueError with the reason."""
    rid = body.get("rid")
    if not isinstance(rid, str) or not rid.startswith(RID_PREFIX):
        raise ValueError(f"rid must be a RID, got {rid!r}")
    outcome = body.get("outcome", "SUCCEEDED")
    if outcome not in ("SUCCEEDED", "FAILED"):
        raise ValueError(f"outcome must be SUCCEEDED or FAILED, got {outcome!r}")
    studio = Studio(
        rid=rid,
        outcome=outcome,
        duration_s=float(body.get("duration_s", 2.0)),
        config_version=int(body.get("config_version", 1)),
        omit_build_status=bool(body.get("omit_build_status", False)),
        launch_denied_to=tuple(body.get("launch_denied_to") or ()),
        cancel_denied_to=tuple(body.get("cancel_denied_to") or ()),
    )
    if "metrics" in body:
        studio.metrics = foundry_registry.check_metrics(body["metrics"])
    if body.get("initial_metrics") is not None:
        studio.initial_metrics = foundry_registry.check_metrics(body["initial_metrics"])[0]
    return studio


@control.post("/studios")
async def script_studio(request: Request, fs: State) -> Response:
    body = await request.json()
    try:
        studio = scripted_studio(body)
    except ValueError as exc:
        return bad(str(exc))
    fs.add_studio(studio, model_rid=str(body["model_rid"]) if body.get("model_rid") else None)
    return JSONResponse(
        {"rid": studio.rid, "modelRid": studio.model_rid, "initialModelVersionRid": studio.initial_version_rid}
    )


def live_settings(fs: FoundryState, body: dict[str, Any]) -> dict[str, Any]:
    """A ``/_sandbox/foundry/live-deployments`` body as deployment settings; ValueError with the reason."""
    rid = body.get("rid")
    if not isinstance(rid, str) or not rid.startswith(RID_PREFIX):
        raise ValueError(f"rid must be a RID, got {rid!r}")
    outcome = body.get("outcome", "ACTIVE")
    if outcome not in ("ACTIVE", "FAILED", "DEGRADED", "DISABLED"):
        raise ValueError(f"outcome must be ACTIVE, FAILED, DEGRADED or DISABLED, got {outcome!r}")
    studio_rid = body.get("studio_rid")
    if studio_rid is not None and studio_rid not in fs.studios:
        raise ValueError(f"unknown studio_rid {studio_rid!r}: script the studio first")
    transform = body.get("transform") or {}
    settings: dict[str, Any] = {
        "rollout_s": float(body.get("rollout_s", 2.0)),
        "ready_after_s": float(body.get("ready_after_s", 1.0)),
        "outcome": outcome,
        "supported": bool(body.get("supported", True)),
        "slope": float(transform.get("slope", 2.0)),
        "intercept": float(transform.get("intercept", 1.0)),
        "inference_timeouts": int(body.get("inference_timeouts", 0)),
    }
    if body.get("state"):  # a static deployment in a fixed state
        settings.update(state=body["state"], is_ready=bool(body.get("is_ready", body["state"] == "ACTIVE")))
    if body.get("steps"):
        settings["steps"] = list(body["steps"])
    for key in ("model_version_rid", "branch"):
        if body.get(key):
            settings[key] = str(body[key])
    if body.get("model_rid") and studio_rid is None:
        # Tracks a branch of a model: versions promoted there later are rolled out.
        settings["track_branch"] = True
    return settings


@control.post("/live-deployments")
async def script_live_deployment(request: Request, fs: State) -> Response:
    body = await request.json()
    try:
        settings = live_settings(fs, body)
    except ValueError as exc:
        return bad(str(exc))
    model_rid = str(body["model_rid"]) if body.get("model_rid") else None
    live = fs.add_live_deployment(body["rid"], studio_rid=body.get("studio_rid"), model_rid=model_rid, **settings)
    return JSONResponse(live.to_json(fs))


def oauth_settings_of(fs: FoundryState, body: dict[str, Any]) -> None:
    if "token_lifetime_s" in body:
        fs.token_lifetime_s = int(body["token_lifetime_s"])
    if body.get("revoke_all"):
        fs.tokens.clear()
    if "client_scopes" in body:
        scopes = body["client_scopes"]
        if scopes is None:
            fs.client_scopes = ALL_SCOPES
        elif not isinstance(scopes, list) or not set(scopes) <= ALL_SCOPES:
            raise ValueError(f"client_scopes must be a list of {sorted(ALL_SCOPES)} (or null: all)")
        else:
            fs.client_scopes = frozenset(scopes)


@control.post("/oauth")
async def oauth_settings(request: Request, fs: State) -> Response:
    body = await request.json()
    with fs.lock:
        try:
            oauth_settings_of(fs, body)
        except ValueError as exc:
            return bad(str(exc))
        return JSONResponse(
            {
                "token_lifetime_s": fs.token_lifetime_s,
                "issued": len(fs.tokens),
                "client_scopes": sorted(fs.client_scopes),
            }
        )


def install(app: FastAPI) -> None:
    for part in (router, foundry_registry.router, pages, control):
        app.include_router(part)
    app.add_exception_handler(FoundryError, on_error)
