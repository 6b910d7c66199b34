"""Foundry endpoints for verifying a model before it ships (CONTRACTS.md section E): model versions,
promotion, experiments and their metrics, the live deployments of a model, and inference.

Each endpoint is described once; each method returns a *call* (see
:mod:`modelops_provider.core.transport`) that the hook runs with a sync or an async client. Every
argument is checked when the call starts, before any request is sent.

Errors keep Foundry's ``errorName`` (``ModelVersionNotFound``, ``InferenceTimeout``, ...) on the typed
error the core raises for the status (``NotFoundError``, ``ServerError``, ...).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from modelops_provider.core.adopt import create_or_adopt
from modelops_provider.core.timestamps import parse_timestamp
from modelops_provider.core.transport import Call, Endpoint, Service, find_first
from modelops_provider.core.validation import require_count, require_rid, require_text
from modelops_provider.foundry.models import (
    Experiment,
    ExperimentSeriesPoints,
    ListLiveDeploymentsResponse,
    ListModelVersionsResponse,
    LiveDeployment,
    ModelVersion,
    SearchExperimentsResponse,
    TransformJsonResponse,
)

log = logging.getLogger(__name__)

PREVIEW = {"preview": True}

GET_MODEL_VERSION: Endpoint[ModelVersion] = Endpoint(
    "GET", "/api/v2/models/{modelRid}/versions/{modelVersionRid}", ModelVersion, query=PREVIEW
)
LIST_MODEL_VERSIONS: Endpoint[ListModelVersionsResponse] = Endpoint(
    "GET", "/api/v2/models/{modelRid}/versions", ListModelVersionsResponse, query=PREVIEW
)
# Creates a new version: a lost answer is not re-sent blindly (create-or-adopt, see promote_version).
PROMOTE_VERSION: Endpoint[ModelVersion] = Endpoint(
    "POST", "/api/v2/models/{modelRid}/promoteVersion", ModelVersion, query=PREVIEW, creates=True
)
GET_EXPERIMENT: Endpoint[Experiment] = Endpoint(
    "GET", "/api/v2/models/{modelRid}/experiments/{experimentRid}", Experiment, query=PREVIEW
)
# A read sent as a POST: retried like a read.
SEARCH_EXPERIMENTS: Endpoint[SearchExperimentsResponse] = Endpoint(
    "POST", "/api/v2/models/{modelRid}/experiments/search", SearchExperimentsResponse, query=PREVIEW, idempotent=True
)
GET_SERIES_POINTS: Endpoint[ExperimentSeriesPoints] = Endpoint(
    "GET",
    "/api/v2/models/{modelRid}/experiments/{experimentRid}/series/{seriesName}/json",
    ExperimentSeriesPoints,
    query=PREVIEW,
)
LIST_LIVE_DEPLOYMENTS: Endpoint[ListLiveDeploymentsResponse] = Endpoint(
    "GET", "/api/v2/models/liveDeployments", ListLiveDeploymentsResponse, query=PREVIEW
)
# Not marked idempotent on purpose: Foundry answers InferenceTimeout with a 5xx after minutes of
# waiting; the inference operator rides those out against its own deadline instead of the transport
# re-sending them (429/502/503/504 are still retried here).
TRANSFORM_JSON: Endpoint[TransformJsonResponse] = Endpoint(
    "POST", "/api/v2/models/liveDeployments/{liveDeploymentRid}/transformJson", TransformJsonResponse, query=PREVIEW
)

# Foundry's error names (section E) that callers act on.
INFERENCE_FAILURE = "InferenceFailure"
INFERENCE_INVALID_INPUT = "InferenceInvalidInput"
INFERENCE_TIMEOUT = "InferenceTimeout"

AGGREGATIONS = ("MIN", "MAX", "LAST")
_FILTER_FIELDS = {
    "eq": (
        "STATUS",
        "BRANCH",
        "EXPERIMENT_NAME",
        "EXPERIMENT_RID",
        "JOB_RID",
        "TAG",
        "PARAMETER_NAME",
        "SERIES_NAME",
    ),
    "contains": ("EXPERIMENT_NAME", "PARAMETER_NAME", "SERIES_NAME"),
    "startsWith": ("EXPERIMENT_NAME", "PARAMETER_NAME", "SERIES_NAME"),
}
_SERIES_FIELDS = ("LENGTH", "AGGREGATION_MIN", "AGGREGATION_MAX", "AGGREGATION_LAST")
# How deep a chain of promotions is followed back to the version that has the experiment.
MAX_PROMOTION_HOPS = 10


def check_experiment_filter(value: Any, name: str = "where") -> dict[str, Any]:
    """Check a SearchExperimentsFilter in the flat form the SDK sends (``{"type": "and", "filters": [...]}``)."""

    def bad(why: str) -> ValueError:
        return ValueError(f"{name} is not an experiment search filter ({why}): {value!r}")

    if not isinstance(value, Mapping):
        raise bad("not a JSON object")
    kind = value.get("type")
    if kind in ("and", "or"):
        filters = value.get("filters")
        if not isinstance(filters, list):
            raise bad(f"{kind!r} needs a list 'filters'")
        for i, item in enumerate(filters):
            check_experiment_filter(item, f"{name}.filters[{i}]")
    elif kind == "not":
        check_experiment_filter(value.get("value"), f"{name}.value")
    elif kind in _FILTER_FIELDS:
        if value.get("field") not in _FILTER_FIELDS[kind]:
            raise bad(f"field must be one of {', '.join(_FILTER_FIELDS[kind])}")
        if "value" not in value:
            raise bad("'value' is missing")
    elif kind == "parameterFilter":
        require_text(f"{name}.parameterName", value.get("parameterName"))
        if value.get("operator") not in ("EQ", "GT", "LT", "CONTAINS"):
            raise bad("operator must be EQ, GT, LT or CONTAINS")
    elif kind in ("seriesFilter", "summaryMetricFilter"):
        require_text(f"{name}.seriesName", value.get("seriesName"))
        if value.get("operator") not in ("EQ", "GT", "LT"):
            raise bad("operator must be EQ, GT or LT")
        if kind == "seriesFilter" and value.get("field") not in _SERIES_FIELDS:
            raise bad(f"field must be one of {', '.join(_SERIES_FIELDS)}")
        if kind == "summaryMetricFilter" and value.get("aggregation") not in AGGREGATIONS:
            raise bad("aggregation must be MIN, MAX or LAST")
    else:
        raise bad(
            "type must be and, or, not, eq, contains, startsWith, parameterFilter, seriesFilter or summaryMetricFilter"
        )
    return dict(value)


def check_inference_input(value: Any, name: str = "input") -> dict[str, Any]:
    """An inference input: a JSON object keyed by the model API's input names, finite numbers only."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{name} must be a non-empty JSON object keyed by input name, got {value!r}")
    for key in value:
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name} keys must be input names (non-empty strings), got {key!r}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON (finite numbers, plain values): {exc}; got {value!r}") from None
    return dict(value)


def _optional_text(name: str, value: Any) -> str | None:
    return None if value is None else require_text(name, value)


def _page_size(name: str, value: Any, maximum: int) -> int | None:
    size = require_count(name, value, minimum=1, allow_none=True)
    if size is not None and size > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")
    return size


def is_promoted_copy(version: ModelVersion, source_model_version_rid: str) -> bool:
    source = version.source or {}
    return source.get("type") == "promoted" and source.get("previousModelVersionRid") == source_model_version_rid


class ModelRegistryApi:
    """Call builders for model versions, experiments, promotion, live-deployment lists and inference."""

    def __init__(self, service: Callable[[], Service]) -> None:
        self._service = service

    # --- model versions ------------------------------------------------------------------------
    def get_model_version(self, model_rid: str, model_version_rid: str) -> Call[ModelVersion]:
        require_rid("model_rid", model_rid)
        require_rid("model_version_rid", model_version_rid)
        return (
            yield from self._service().call(
                GET_MODEL_VERSION, path={"modelRid": model_rid, "modelVersionRid": model_version_rid}
            )
        )

    def list_model_versions_page(
        self, model_rid: str, *, branch: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> Call[tuple[list[ModelVersion], str | None]]:
        require_rid("model_rid", model_rid)
        _optional_text("branch", branch)
        _page_size("page_size", page_size, 1000)
        page = yield from self._service().call(
            LIST_MODEL_VERSIONS,
            path={"modelRid": model_rid},
            query={"branch": branch, "pageSize": page_size, "pageToken": page_token},
        )
        return page.data, page.next_page_token

    def version_pages(
        self, model_rid: str, **kwargs: Any
    ) -> Callable[[str | None], Call[tuple[list[ModelVersion], str | None]]]:
        return lambda token: self.list_model_versions_page(model_rid, page_token=token, **kwargs)

    def latest_version(self, model_rid: str, branch: str | None) -> Call[ModelVersion | None]:
        """The newest version on ``branch`` (by ``createdTime``; the list's order is not documented)."""
        latest: ModelVersion | None = None

        def newer(version: ModelVersion) -> bool:
            nonlocal latest
            if latest is None or (parse_timestamp(version.created_time) or 0) > (
                parse_timestamp(latest.created_time) or 0
            ):
                latest = version
            return False  # read every page

        yield from find_first(self.version_pages(model_rid, branch=branch), newer)
        return latest

    # --- promotion -------------------------------------------------------------------------------
    def promote_version(
        self, model_rid: str, source_model_version_rid: str, branch: str | None = None
    ) -> Call[ModelVersion]:
        """Promote ``source_model_version_rid`` to ``branch`` of ``model_rid`` exactly once.

        If the newest version on that branch already is a promoted copy of the source (an earlier
        try did it, or its answer was lost), that copy is returned and nothing is promoted. A promote
        of unknown outcome is resolved by the core's create-or-adopt, looking the same way.
        """
        require_rid("model_rid", model_rid)
        require_rid("source_model_version_rid", source_model_version_rid)
        _optional_text("branch", branch)
        existing = yield from self.find_promoted(model_rid, source_model_version_rid, branch)
        if existing is not None:
            log.info(
                "%s is already the newest version on branch %s, promoted from %s: not promoting again",
                existing.rid,
                branch or "(default)",
                source_model_version_rid,
            )
            return existing
        service = self._service()
        body: dict[str, Any] = {"sourceModelVersionRid": source_model_version_rid}
        if branch is not None:
            body["branch"] = branch

        def find(since: float) -> Call[ModelVersion | None]:
            # The branch's newest version being a copy of the source is the evidence, whenever made.
            return (yield from self.find_promoted(model_rid, source_model_version_rid, branch))

        return (
            yield from create_or_adopt(
                service,
                what=f"promotion of {source_model_version_rid} to branch {branch or '(default)'} of {model_rid}",
                create=lambda: service.call(PROMOTE_VERSION, path={"modelRid": model_rid}, json=body),
                find=find,
                describe=lambda version: f"promoted copy {version.rid}",
            )
        )

    def find_promoted(
        self, model_rid: str, source_model_version_rid: str, branch: str | None
    ) -> Call[ModelVersion | None]:
        """The newest version on ``branch`` if it is a promoted copy of the source, else None.

        Only the newest counts: promoting a version that was promoted long ago and since superseded
        (a rollback) must promote it again.
        """
        latest = yield from self.latest_version(model_rid, branch)
        return latest if latest is not None and is_promoted_copy(latest, source_model_version_rid) else None

    # --- experiments ---------------------------------------------------------------------------
    def get_experiment(self, model_rid: str, experiment_rid: str) -> Call[Experiment]:
        require_rid("model_rid", model_rid)
        require_rid("experiment_rid", experiment_rid)
        return (
            yield from self._service().call(
                GET_EXPERIMENT, path={"modelRid": model_rid, "experimentRid": experiment_rid}
            )
        )

    def search_experiments_page(
        self,
        model_rid: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Mapping[str, Any] | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Call[tuple[list[Experiment], str | None]]:
        """One page of experiments. ``where`` is the flat filter the SDK sends, e.g.
        ``{"type": "eq", "field": "JOB_RID", "value": "<jobRid>"}``."""
        require_rid("model_rid", model_rid)
        body: dict[str, Any] = {}
        if where is not None:
            body["where"] = check_experiment_filter(where)
        if order_by is not None:
            if not isinstance(order_by, Mapping) or order_by.get("field") not in ("EXPERIMENT_NAME", "CREATED_TIME"):
                raise ValueError(
                    f"order_by must be {{field: EXPERIMENT_NAME|CREATED_TIME, direction}}, got {order_by!r}"
                )
            if order_by.get("direction", "ASC") not in ("ASC", "DESC"):
                raise ValueError(f"order_by.direction must be ASC or DESC, got {order_by!r}")
            body["orderBy"] = dict(order_by)
        if _page_size("page_size", page_size, 100) is not None:
            body["pageSize"] = page_size
        if page_token:
            body["pageToken"] = page_token
        page = yield from self._service().call(SEARCH_EXPERIMENTS, path={"modelRid": model_rid}, json=body)
        return page.data, page.next_page_token

    def experiment_pages(
        self, model_rid: str, **kwargs: Any
    ) -> Callable[[str | None], Call[tuple[list[Experiment], str | None]]]:
        return lambda token: self.search_experiments_page(model_rid, page_token=token, **kwargs)

    def get_series_points(
        self,
        model_rid: str,
        experiment_rid: str,
        series_name: str,
        *,
        offset: int | None = None,
        page_size: int | None = None,
    ) -> Call[ExperimentSeriesPoints]:
        """A series' raw points (``{value, timestamp, step}``), ``page_size`` (max 1000) from ``offset``."""
        require_rid("model_rid", model_rid)
        require_rid("experiment_rid", experiment_rid)
        require_text("series_name", series_name)
        require_count("offset", offset, allow_none=True)
        _page_size("page_size", page_size, 1000)
        return (
            yield from self._service().call(
                GET_SERIES_POINTS,
                path={"modelRid": model_rid, "experimentRid": experiment_rid, "seriesName": series_name},
                query={"offset": offset, "pageSize": page_size},
            )
        )

    def experiment_of_version(
        self, model_rid: str, model_version_rid: str
    ) -> Call[tuple[ModelVersion, Experiment | None]]:
        """A version and the experiment that measured it: its ``linkedExperiment``, or, for a promoted
        copy without one, that of the version it was promoted from (followed back up to
        ``MAX_PROMOTION_HOPS`` promotions). None when no version in the chain has an experiment."""
        version = yield from self.get_model_version(model_rid, model_version_rid)
        current, current_model = version, model_rid
        for _ in range(MAX_PROMOTION_HOPS):
            if current.linked_experiment:
                experiment = yield from self.get_experiment(current_model, current.linked_experiment)
                return version, experiment
            source = current.source or {}
            previous = source.get("previousModelVersionRid")
            if source.get("type") != "promoted" or not previous:
                break
            current_model = source.get("previousModelRid") or current_model
            current = yield from self.get_model_version(current_model, previous)
        return version, None

    def find_experiment_by_job(self, model_rid: str, job_rid: str) -> Call[Experiment | None]:
        require_rid("job_rid", job_rid)
        where = {"type": "eq", "field": "JOB_RID", "value": job_rid}
        return (yield from find_first(self.experiment_pages(model_rid, where=where), lambda e: True))

    # --- live deployments and inference ------------------------------------------------------------
    def list_live_deployments(self, model_rid: str, *, branch: str | None = None) -> Call[list[LiveDeployment]]:
        """The deployments that track the newest version of a branch of ``model_rid`` (no paging)."""
        require_rid("model_rid", model_rid)
        _optional_text("branch", branch)
        page = yield from self._service().call(LIST_LIVE_DEPLOYMENTS, query={"modelRid": model_rid, "branch": branch})
        return page.data

    def transform_json(
        self,
        live_deployment_rid: str,
        input: Mapping[str, Any],
        *,
        attribution: str | None = None,
        trace_parent: str | None = None,
    ) -> Call[dict[str, Any]]:
        """Run the deployed model on ``input`` (``{inputName: value}``); returns its ``output`` object.
        Needs the ``api:models-execute`` scope."""
        require_rid("live_deployment_rid", live_deployment_rid)
        body = {"input": check_inference_input(input)}
        headers = {
            k: v
            for k, v in (
                ("attribution", _optional_text("attribution", attribution)),
                ("traceParent", _optional_text("trace_parent", trace_parent)),
            )
            if v is not None
        }
        answer = yield from self._service().call(
            TRANSFORM_JSON, path={"liveDeploymentRid": live_deployment_rid}, json=body, headers=headers
        )
        return answer.output


def finite(name: str, value: Any) -> float:
    """A finite number (not a bool): thresholds and tolerances."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)
