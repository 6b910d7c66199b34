"""Foundry's model versions, experiments, promotion, live-deployment list and inference in the
sandbox, as ``CONTRACTS.md`` section E describes them.

- Every studio run gets an experiment when it is launched (``jobRid`` = the run's job,
  ``linkedModelVersion`` = the version it produces) and, once it SUCCEEDED, a model version on the
  ``master`` branch of the studio's model (``source: modelStudio``, ``linkedExperiment`` set).
  ``resolvedOutputs.model.experimentRid`` names the experiment.
- Metrics are scripted per studio (``"metrics": {"accuracy": 0.93, "loss": 0.21}``, or a list of such
  dicts, one per run launched after the script, the last repeating). A number becomes a series of five points
  ending at it, linearly from twice the value (names containing ``loss``) or half of it (others); a
  list is taken as the points. Each series has its MIN/MAX/LAST aggregates and, once the run ended,
  the same three as summary metrics. While the run is running the points appear in proportion to
  its elapsed time.
- ``promoteVersion`` copies a version onto a branch of the target model (new RID,
  ``source: promoted{previousModelRid, previousModelVersionRid}``, no ``linkedExperiment``); live
  deployments that track that branch roll it out like a new training run.
- ``transformJson`` answers from a documented function of the input: the model API has one tabular
  input ``df_in`` with a double column ``x`` and one tabular output ``df_out``; each input row comes
  back with its fields and ``prediction = slope * x + intercept`` (rounded to 6 places; slope 2,
  intercept 1 unless the deployment is scripted with ``"transform": {"slope", "intercept"}``).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from modelops_provider.sandbox.foundry_auth import FoundryError, State, granted_scopes, page_size, paged, requires

if TYPE_CHECKING:
    from modelops_provider.sandbox.foundry import FoundryState, LiveDeployment, Run

INPUT_NAME = "df_in"
OUTPUT_NAME = "df_out"
MODEL_API = {
    "inputs": [
        {
            "type": "tabular",
            "name": INPUT_NAME,
            "required": True,
            "columns": [{"name": "x", "required": True, "dataType": {"type": "double"}}],
            "format": "PANDAS",
        }
    ],
    "outputs": [
        {
            "type": "tabular",
            "name": OUTPUT_NAME,
            "required": True,
            "columns": [
                {"name": "x", "required": True, "dataType": {"type": "double"}},
                {"name": "prediction", "required": True, "dataType": {"type": "double"}},
            ],
            "format": "PANDAS",
        }
    ],
}
SERIES_POINTS = 5
EXECUTE_SCOPE = "api:models-execute"
WRITE_SCOPE = "api:models-write"


def _iso(ts: float) -> str:
    from modelops_provider.sandbox.foundry import _now_iso

    return _now_iso(ts)


def rid(kind: str) -> str:
    return f"ri.models.main.{kind}.{uuid.uuid4()}"


def series_points(name: str, value: Any) -> list[float]:
    """The points of a scripted metric (see the module docstring)."""
    if isinstance(value, list):
        return [float(v) for v in value]
    end = float(value)
    start = end * (2.0 if "loss" in name.lower() else 0.5)
    return [start + (end - start) * i / (SERIES_POINTS - 1) for i in range(SERIES_POINTS)]


def check_metrics(value: Any) -> list[dict[str, Any]]:
    """``"metrics"`` of the studio control request: a dict, or a list of dicts (one per run)."""
    runs = value if isinstance(value, list) else [value]
    if not runs or not all(isinstance(m, dict) for m in runs):
        raise ValueError(f"metrics must be {{name: number | [numbers]}} or a list of those, got {value!r}")
    for metrics in runs:
        for name, v in metrics.items():
            points = v if isinstance(v, list) else [v]
            if not points or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) for p in points
            ):
                raise ValueError(f"metric {name!r} must be a finite number or a list of them, got {v!r}")
    return [dict(m) for m in runs]


@dataclass
class Experiment:
    rid: str
    model_rid: str
    created: float
    metrics: dict[str, list[float]]
    parameters: list[dict[str, Any]] = field(default_factory=list)
    run: Run | None = None
    job_rid: str | None = None
    linked_version: str | None = None
    branch: str = "master"

    def status(self, now: float) -> str:
        if self.run is None:
            return "SUCCEEDED"
        # CANCELED is not an experiment status (Foundry's client rejects it): a cancelled run FAILED.
        return {"RUNNING": "RUNNING", "SUCCEEDED": "SUCCEEDED"}.get(self.run.status(now), "FAILED")

    def visible_points(self, name: str, now: float) -> list[float]:
        points = self.metrics.get(name, [])
        if self.run is None or self.status(now) != "RUNNING":
            return points
        done = max(0.0, min(1.0, (now - self.run.started) / max(self.run.duration_s, 1e-9)))
        return points[: int(len(points) * done)]

    def to_json(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        series, summaries = [], []
        for name in self.metrics:
            points = self.visible_points(name, now)
            value: dict[str, Any] = {"type": "double"}
            if points:
                value.update(min=min(points), max=max(points), last=points[-1])
            series.append({"name": name, "length": len(points), "value": value})
            if points and status != "RUNNING":
                for aggregation, number in (("MIN", min(points)), ("MAX", max(points)), ("LAST", points[-1])):
                    summaries.append({"seriesName": name, "aggregation": aggregation, "value": number})
        body: dict[str, Any] = {
            "rid": self.rid,
            "modelRid": self.model_rid,
            "createdTime": _iso(self.created),
            "createdBy": self.run.started_by if self.run is not None else _user_id(),
            "source": {"type": "sdk"},
            "status": status,
            "branch": self.branch,
            "parameters": self.parameters,
            "series": series,
            "summaryMetrics": summaries,
            "artifacts": {},
            "tags": [],
        }
        if self.linked_version and status == "SUCCEEDED":
            body["linkedModelVersion"] = self.linked_version
        if self.job_rid:
            body["jobRid"] = self.job_rid
        if status == "FAILED":
            body["statusMessage"] = "the training run did not succeed"
        return body

    def name_of(self) -> str:
        # No name field in the API; EXPERIMENT_NAME filters match the run id or the RID.
        return self.run.run_id if self.run is not None else self.rid


def _user_id() -> str:
    from modelops_provider.sandbox.foundry import USER_ID

    return USER_ID


@dataclass
class Version:
    rid: str
    model_rid: str
    branch: str
    created: float
    source: dict[str, Any]
    linked_experiment: str | None = None
    # A version a studio run produces exists once the run SUCCEEDED, created when it finished.
    run: Run | None = None

    def visible(self, now: float) -> bool:
        return self.run is None or self.run.status(now) == "SUCCEEDED"

    def created_at(self) -> float:
        return self.run.started + self.run.duration_s if self.run is not None else self.created

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "rid": self.rid,
            "modelApi": MODEL_API,
            "condaRequirements": ["python=3.11", "scikit-learn=1.5"],
            "backingRepositories": [],
            "createdTime": _iso(self.created_at()),
            "source": self.source,
        }
        if self.linked_experiment:
            body["linkedExperiment"] = self.linked_experiment
        return body


class Registry:
    """Models, their versions by branch, and experiments."""

    def __init__(self) -> None:
        self.versions: dict[str, Version] = {}
        self.models: dict[str, list[Version]] = {}
        self.experiments: dict[str, Experiment] = {}

    def ensure_model(self, model_rid: str) -> list[Version]:
        return self.models.setdefault(model_rid, [])

    def add_version(self, version: Version) -> Version:
        self.ensure_model(version.model_rid).append(version)
        self.versions[version.rid] = version
        return version

    def add_experiment(self, experiment: Experiment) -> Experiment:
        self.experiments[experiment.rid] = experiment
        return experiment

    def measured_version(
        self,
        model_rid: str,
        version_rid: str,
        *,
        branch: str,
        source: dict[str, Any],
        metrics: dict[str, Any] | None,
        created: float,
    ) -> Version:
        """A version (not from a run), with an experiment when ``metrics`` are given."""
        version = self.versions.get(version_rid) or self.add_version(
            Version(version_rid, model_rid, branch, created, source)
        )
        if metrics and version.linked_experiment is None:
            experiment = self.add_experiment(
                Experiment(
                    rid("experiment"),
                    model_rid,
                    created,
                    {name: series_points(name, v) for name, v in metrics.items()},
                    linked_version=version_rid,
                    branch=branch,
                )
            )
            version.linked_experiment = experiment.rid
        return version

    def visible_versions(self, model_rid: str, now: float, branch: str | None = None) -> list[Version]:
        found = [v for v in self.models.get(model_rid, []) if v.visible(now) and (branch is None or v.branch == branch)]
        return sorted(found, key=lambda v: v.created_at(), reverse=True)

    def on_launch(self, run: Run, model_rid: str, metrics: dict[str, Any]) -> Experiment:
        experiment = self.add_experiment(
            Experiment(
                rid("experiment"),
                model_rid,
                run.started,
                {name: series_points(name, v) for name, v in metrics.items()},
                parameters=[{"name": "configVersion", "value": {"type": "integer", "value": run.config_version}}],
                run=run,
                job_rid=run.job_rid,
                linked_version=run.model_version_rid,
            )
        )
        self.add_version(
            Version(
                run.model_version_rid,
                model_rid,
                "master",
                run.started,
                {"type": "modelStudio", "modelStudioRid": run.studio.rid},
                linked_experiment=experiment.rid,
                run=run,
            )
        )
        return experiment


# --- experiment search filters (the flat form the SDK sends) --------------------------------------
class BadFilter(ValueError):
    pass


def _compare(operator: str, actual: Any, wanted: Any) -> bool:
    if actual is None:
        return False
    if operator == "EQ":
        return bool(actual == wanted)
    if operator == "CONTAINS":
        return isinstance(actual, str) and str(wanted) in actual
    try:
        return bool(actual > wanted) if operator == "GT" else bool(actual < wanted)
    except TypeError:
        return False


def matches(flt: Any, exp: dict[str, Any], name: str) -> bool:
    """Does the experiment (as JSON) match the filter? Raises BadFilter on a malformed filter."""
    if not isinstance(flt, dict) or "type" not in flt:
        raise BadFilter(f"a filter must be an object with a 'type', got {flt!r}")
    kind = flt["type"]
    if kind in ("and", "or"):
        items = flt.get("filters")
        if not isinstance(items, list):
            raise BadFilter(f"'{kind}' needs 'filters' (a list)")
        results = [matches(f, exp, name) for f in items]
        return all(results) if kind == "and" else any(results)
    if kind == "not":
        return not matches(flt.get("value"), exp, name)
    if kind in ("eq", "contains", "startsWith"):
        fld, wanted = flt.get("field"), flt.get("value")
        values: list[Any] | None = {
            "STATUS": [exp["status"]],
            "BRANCH": [exp["branch"]],
            "EXPERIMENT_NAME": [name],
            "EXPERIMENT_RID": [exp["rid"]],
            "JOB_RID": [exp.get("jobRid")],
            "TAG": exp["tags"],
            "PARAMETER_NAME": [p["name"] for p in exp["parameters"]],
            "SERIES_NAME": [s["name"] for s in exp["series"]],
        }.get(fld)  # type: ignore[arg-type]
        if values is None or (kind != "eq" and fld not in ("EXPERIMENT_NAME", "PARAMETER_NAME", "SERIES_NAME")):
            raise BadFilter(f"field {fld!r} cannot be used with '{kind}'")
        if kind == "eq":
            return wanted in values
        test = (lambda v: str(wanted) in v) if kind == "contains" else (lambda v: v.startswith(str(wanted)))
        return any(isinstance(v, str) and test(v) for v in values)
    if kind == "parameterFilter":
        op = flt.get("operator")
        if op not in ("EQ", "GT", "LT", "CONTAINS"):
            raise BadFilter(f"parameterFilter operator must be EQ, GT, LT or CONTAINS, got {op!r}")
        params = [p["value"]["value"] for p in exp["parameters"] if p["name"] == flt.get("parameterName")]
        return any(_compare(op, v, flt.get("value")) for v in params)
    if kind in ("seriesFilter", "summaryMetricFilter"):
        op = flt.get("operator")
        if op not in ("EQ", "GT", "LT"):
            raise BadFilter(f"{kind} operator must be EQ, GT or LT, got {op!r}")
        series_name = flt.get("seriesName")
        if kind == "summaryMetricFilter":
            agg = flt.get("aggregation")
            if agg not in ("MIN", "MAX", "LAST"):
                raise BadFilter(f"aggregation must be MIN, MAX or LAST, got {agg!r}")
            values = [
                m["value"] for m in exp["summaryMetrics"] if m["seriesName"] == series_name and m["aggregation"] == agg
            ]
        else:
            fld = flt.get("field")
            keys = {"LENGTH": "length", "AGGREGATION_MIN": "min", "AGGREGATION_MAX": "max", "AGGREGATION_LAST": "last"}
            if fld not in keys:
                raise BadFilter(f"seriesFilter field must be one of {', '.join(keys)}, got {fld!r}")
            values = [
                s.get("length") if fld == "LENGTH" else s["value"].get(keys[fld])
                for s in exp["series"]
                if s["name"] == series_name
            ]
        return any(_compare(op, v, flt.get("value")) for v in values)
    raise BadFilter(f"unknown filter type {kind!r}")


# --- inference -------------------------------------------------------------------------------------
def transform(body: Any, live_rid: str, slope: float, intercept: float) -> tuple[int, dict[str, Any]]:
    """The sandbox model: (status, JSON) for a transformJson body (see the module docstring)."""

    def invalid(error_type: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 400, _error(
            "INVALID_ARGUMENT", "InferenceInvalidInput", {"liveDeploymentRid": live_rid, "errorType": error_type}
        )

    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return 400, _error("INVALID_ARGUMENT", "InvalidArgument", {"reason": 'body must be {"input": {...}}'})
    given = body["input"]
    for name in given:
        if name != INPUT_NAME:
            return invalid({"type": "unknownInputName", "inputName": name})
    if INPUT_NAME not in given:
        return invalid({"type": "requiredValueMissing", "fieldName": INPUT_NAME})
    rows = given[INPUT_NAME]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return invalid({"type": "invalidTabularFormat", "inputFieldName": INPUT_NAME})
    out = []
    for row in rows:
        x = row.get("x")
        if x is None:
            return invalid({"type": "requiredValueMissing", "fieldName": "x"})
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return invalid({"type": "typeMismatch", "expectedType": "double", "actualType": type(x).__name__})
        out.append({**row, "prediction": round(slope * float(x) + intercept, 6)})
    return 200, {"output": {OUTPUT_NAME: out}}


def _error(code: str, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"errorCode": code, "errorName": name, "errorInstanceId": str(uuid.uuid4()), "parameters": parameters}


# --- the section E routes: on the Foundry router's auth and errors ---------------------------
router = APIRouter(dependencies=[requires(preview=True)])
Scopes = Annotated[set[str] | None, Depends(granted_scopes)]


def model_known(fs: FoundryState, model_rid: str) -> None:
    if model_rid not in fs.registry.models:
        raise FoundryError(404, "NOT_FOUND", "ModelNotFound", {"modelRid": model_rid})


def with_token(body: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token:
        body["nextPageToken"] = token
    return body


@router.get("/api/v2/models/liveDeployments")
def list_live_deployments(request: Request, fs: State) -> dict[str, Any]:
    model_rid = request.query_params.get("modelRid", "")
    model_known(fs, model_rid)
    branch = request.query_params.get("branch")
    with fs.lock:
        return {
            "data": [
                live.to_json(fs)
                for live in fs.live.values()
                if live.model_rid == model_rid and live.supported and (branch is None or live.branch == branch)
            ]
        }


@router.post("/api/v2/models/liveDeployments/{live_rid}/transformJson")
async def transform_json(live_rid: str, request: Request, fs: State, granted: Scopes) -> Response:
    if granted is not None and EXECUTE_SCOPE not in granted:
        raise FoundryError(
            403, "PERMISSION_DENIED", "TransformJsonLiveDeploymentPermissionDenied", {"liveDeploymentRid": live_rid}
        )
    live: LiveDeployment | None = fs.live.get(live_rid)
    if live is None:
        raise FoundryError(404, "NOT_FOUND", "LiveDeploymentNotFound", {"liveDeploymentRid": live_rid})
    try:
        body = await request.json()
    except ValueError:
        body = None
    with fs.lock:
        _, state, ready = live.current(fs)
        if live.inference_timeouts > 0:
            live.inference_timeouts -= 1
            # 500, not 503: Foundry's client would retry a 503 without reading the error.
            raise FoundryError(500, "TIMEOUT", "InferenceTimeout", {"liveDeploymentRid": live_rid})
    if state != "ACTIVE" or not ready:
        raise FoundryError(
            400,
            "INVALID_ARGUMENT",
            "InferenceFailure",
            {"liveDeploymentRid": live_rid, "errorMessage": f"the live deployment is not ready (state {state})"},
        )
    status, answer = transform(body, live_rid, live.slope, live.intercept)
    return JSONResponse(answer, status_code=status)


@router.get("/api/v2/models/{model_rid}/versions")
def list_versions(model_rid: str, request: Request, fs: State) -> dict[str, Any]:
    model_known(fs, model_rid)
    q = dict(request.query_params)
    with fs.lock:
        versions = fs.registry.visible_versions(model_rid, fs.clock.now(), q.get("branch"))
    page, token = paged(fs, versions, page_size(q.get("pageSize"), 50, 1000), q.get("pageToken"))
    return with_token({"data": [v.to_json() for v in page]}, token)


@router.get("/api/v2/models/{model_rid}/versions/{version_rid}")
def get_version(model_rid: str, version_rid: str, fs: State) -> dict[str, Any]:
    version = fs.registry.versions.get(version_rid)
    if version is None or version.model_rid != model_rid or not version.visible(fs.clock.now()):
        raise FoundryError(
            404, "NOT_FOUND", "ModelVersionNotFound", {"modelRid": model_rid, "modelVersionRid": version_rid}
        )
    return version.to_json()


@router.post("/api/v2/models/{model_rid}/promoteVersion")
async def promote(model_rid: str, request: Request, fs: State, granted: Scopes) -> dict[str, Any]:
    if granted is not None and WRITE_SCOPE not in granted:
        raise FoundryError(403, "PERMISSION_DENIED", "PromoteVersionModelPermissionDenied", {"modelRid": model_rid})
    model_known(fs, model_rid)
    body = await request.json()
    source_rid = body.get("sourceModelVersionRid") if isinstance(body, dict) else None
    now = fs.clock.now()
    with fs.lock:
        source = fs.registry.versions.get(source_rid) if isinstance(source_rid, str) else None
        if source is None or not source.visible(now):
            raise FoundryError(
                404, "NOT_FOUND", "ModelVersionNotFound", {"modelRid": model_rid, "modelVersionRid": source_rid}
            )
        copy = fs.registry.add_version(
            Version(
                rid("model-version"),
                model_rid,
                str(body.get("branch") or "master"),
                now,
                {"type": "promoted", "previousModelRid": source.model_rid, "previousModelVersionRid": source.rid},
            )
        )
    return copy.to_json()


@router.get("/api/v2/models/{model_rid}/experiments/{experiment_rid}")
def get_experiment(model_rid: str, experiment_rid: str, fs: State) -> dict[str, Any]:
    experiment = fs.registry.experiments.get(experiment_rid)
    params = {"experimentRid": experiment_rid, "modelRid": model_rid}
    if experiment is None:
        raise FoundryError(404, "NOT_FOUND", "ExperimentNotFound", params)
    if experiment.model_rid != model_rid:
        raise FoundryError(404, "NOT_FOUND", "ModelExperimentNotFound", params)
    return experiment.to_json(fs.clock.now())


@router.post("/api/v2/models/{model_rid}/experiments/search")
async def search_experiments(model_rid: str, request: Request, fs: State) -> dict[str, Any]:
    model_known(fs, model_rid)
    body = await request.json() if (await request.body()).strip() else {}
    now = fs.clock.now()
    with fs.lock:
        found = [e for e in fs.registry.experiments.values() if e.model_rid == model_rid]
        rendered = [(e, e.to_json(now)) for e in found]
    where = body.get("where")
    try:
        if where is not None:
            rendered = [(e, j) for e, j in rendered if matches(where, j, e.name_of())]
    except BadFilter as exc:
        raise FoundryError(400, "INVALID_ARGUMENT", "InvalidExperimentSearchFilter", {"reason": str(exc)}) from None
    order = body.get("orderBy") or {"field": "CREATED_TIME", "direction": "DESC"}
    key = (lambda p: p[0].created) if order.get("field") == "CREATED_TIME" else (lambda p: p[0].name_of())
    rendered.sort(key=key, reverse=order.get("direction") == "DESC")
    page, token = paged(fs, [j for _, j in rendered], page_size(body.get("pageSize"), 50, 100), body.get("pageToken"))
    return with_token({"data": page}, token)


@router.get("/api/v2/models/{model_rid}/experiments/{experiment_rid}/series/{series_name}/json")
def series_json(model_rid: str, experiment_rid: str, series_name: str, request: Request, fs: State) -> dict[str, Any]:
    experiment = fs.registry.experiments.get(experiment_rid)
    if experiment is None or experiment.model_rid != model_rid:
        raise FoundryError(
            404, "NOT_FOUND", "ModelExperimentNotFound", {"modelRid": model_rid, "experimentRid": experiment_rid}
        )
    if series_name not in experiment.metrics:
        raise FoundryError(
            404,
            "NOT_FOUND",
            "ExperimentSeriesNotFound",
            {"modelRid": model_rid, "experimentRid": experiment_rid, "seriesName": series_name},
        )
    points = experiment.visible_points(series_name, fs.clock.now())
    q = request.query_params
    try:
        offset = int(q.get("offset") or 0)
        size = int(q.get("pageSize") or 200)
        if offset < 0 or not 1 <= size <= 1000:
            raise ValueError
    except ValueError:
        raise FoundryError(400, "INVALID_ARGUMENT", "InvalidPageSize", {"pageSize": q.get("pageSize")}) from None
    start = experiment.created
    span = experiment.run.duration_s if experiment.run is not None else 1.0
    count = len(experiment.metrics[series_name])
    rows = [
        {"value": v, "timestamp": int((start + span * (i + 1) / count) * 1000), "step": i} for i, v in enumerate(points)
    ]
    return {"type": "doubleV1", "series": rows[offset : offset + size]}
