"""Pluto endpoints (API service and ingest service), each described once, and the calls built from them.

Every method returns a *call* (see :mod:`modelops_provider.core.transport`) that the hook runs with a
sync or an async client. Arguments are validated when the call starts, before any request is sent;
JSON-valued fields (``config``, ``loggerSettings``, ``systemMetadata``, ``statusMetadata``) are
accepted as dicts or JSON strings and sent as the JSON strings the API wants.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from modelops_provider.core.adopt import create_or_adopt
from modelops_provider.core.retry import Kind
from modelops_provider.core.transport import Call, Endpoint, Service
from modelops_provider.core.validation import MAX_JSON_DEPTH, json_depth_ok, require_bool, require_count, require_text
from modelops_provider.pluto.models import (
    AuthValidation,
    Heartbeat,
    ListedRun,
    PlutoRun,
    RunDetails,
    RunList,
    RunStatus,
    StatusHistory,
    Success,
)

# API service (``url_api``).
CREATE_RUN: Endpoint[PlutoRun] = Endpoint("POST", "/api/runs/create", PlutoRun, creates=True)
# Sending these twice leaves the run as sending them once: retried like reads (500 included).
RESUME_RUN: Endpoint[PlutoRun] = Endpoint("POST", "/api/runs/resume", PlutoRun, idempotent=True)
UPDATE_STATUS: Endpoint[Success] = Endpoint("POST", "/api/runs/status/update", Success, idempotent=True)
UPDATE_TAGS: Endpoint[Success] = Endpoint("POST", "/api/runs/tags/update", Success, idempotent=True)
UPDATE_CONFIG: Endpoint[Success] = Endpoint("POST", "/api/runs/config/update", Success, idempotent=True)
# Read API: the runs of a project, newest first (used to find a run a lost create answer made).
LIST_RUNS: Endpoint[RunList] = Endpoint("GET", "/api/runs/list", RunList)
LIST_LIMIT = 200
VALIDATE_AUTH: Endpoint[AuthValidation] = Endpoint("GET", "/api/runs/auth/validate", AuthValidation)
RUN_DETAILS: Endpoint[RunDetails] = Endpoint("GET", "/api/runs/details/{run_id}", RunDetails)
STATUS_HISTORY: Endpoint[StatusHistory] = Endpoint("GET", "/api/runs/status/history", StatusHistory)
# Py service (``url_py``): the liveness ping; it answers the run's status (CANCELLED when a stop was
# requested in Pluto). It writes only the heartbeat row, so a lost answer may be asked again.
HEARTBEAT: Endpoint[Heartbeat] = Endpoint("POST", "/api/runs/trigger", Heartbeat, idempotent=True)
# Ingest service (``url_ingest``): NDJSON in, "Stream processed successfully: N records" (text) out.
INGEST_METRICS: Endpoint[str] = Endpoint("POST", "/ingest/metrics", text=True)

MAX_TAGS = 50
# Records per ingest request; a longer series is sent in several requests.
INGEST_BATCH = 1000


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def json_object(name: str, value: Any) -> str | None:
    """A JSON object given as a mapping or a JSON string, as the compact JSON string the API wants."""
    if value is None:
        return None
    too_deep = f"{name} nests deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name} is not valid JSON ({exc.msg} at position {exc.pos}): {_show(value)}") from None
        except RecursionError:
            raise ValueError(too_deep) from None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a JSON object (a dict or a JSON string of an object), got {_show(value)}")
    if not json_depth_ok(dict(value)):
        raise ValueError(too_deep)
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{name} cannot be sent as JSON ({type(exc).__name__}: {exc}): {_show(value)}") from None


def epoch_ms(name: str, value: Any) -> int | None:
    """A timestamp as epoch milliseconds: a datetime (naive means UTC) or a number of milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a datetime or epoch milliseconds (a number >= 0), got {_show(value)}")
    return int(value)


def require_run_id(value: Any, name: str = "run_id") -> int:
    """Pluto's numeric run id (an int, or a string of digits as a template renders it)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be Pluto's numeric run id (a positive integer), got {_show(value)}")
    return value


def require_tags(value: Any, name: str = "tags") -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of strings, got {_show(value)}")
    tags = list(value)
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise ValueError(f"{name} must hold non-empty strings, got {_show(tag)} in {_show(tags)}")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{name} may hold at most {MAX_TAGS} tags, got {len(tags)}")
    groups = [t for t in tags if t.startswith("group:")]
    if len(groups) > 1:
        raise ValueError(f"{name} may hold at most one group:* tag, got {groups!r}")
    return tags


def require_status(value: Any) -> RunStatus:
    try:
        return RunStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in RunStatus)
        raise ValueError(f"status must be one of {allowed}, got {_show(value)}") from None


# How the ingest service spells the special floats it accepts (strict JSON, section F).
_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def metric_value(name: str, value: Any) -> float | int:
    """A metric value: a number (a bool counts as 0/1, a numeric string is converted). NaN and
    ±Infinity are values too (a diverging loss is worth recording); ``None`` is handled by the caller."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {_show(value)}") from None
    if not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number (NaN and ±Infinity included), got {_show(value)}")
    return value


def metric_data(name: str, value: Any) -> dict[str, float | int]:
    """``{metric name: number}``; a ``None`` value is left out, as the ingest service skips nulls
    (the result may be empty when every value is None)."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{name} must be a non-empty mapping of metric name to number, got {_show(value)}")
    data: dict[str, float | int] = {}
    for key, number in value.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{name} has a metric name that is not a non-empty string: {_show(key)}")
        if number is not None:
            data[key] = metric_value(f"{name}[{key!r}]", number)
    return data


def wire_value(value: float | int) -> float | int | str:
    """A metric value as sent (and as JSON can hold it): NaN and the infinities as Pluto's strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return _SPECIAL[repr(value)]
    return value


def _ndjson(lines: Sequence[dict[str, Any]]) -> bytes:
    out = []
    for line in lines:
        line = {**line, "data": {k: wire_value(v) for k, v in line["data"].items()}}
        out.append(json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n")
    return "".join(out).encode()


class PlutoApi:
    """Call builders over Pluto's API and ingest services (resolved lazily, so async code can resolve
    the connection first)."""

    def __init__(
        self, api: Callable[[], Service], ingest: Callable[[], Service], py: Callable[[], Service] | None = None
    ) -> None:
        self._api = api
        self._ingest = ingest
        self._py = py or api

    def create_run(
        self,
        project_name: str,
        run_name: str,
        *,
        external_id: str | None = None,
        tags: Sequence[str] | None = None,
        config: Mapping[str, Any] | str | None = None,
        logger_settings: Mapping[str, Any] | str | None = None,
        system_metadata: Mapping[str, Any] | str | None = None,
        created_at: datetime | float | None = None,
        updated_at: datetime | float | None = None,
        fork_run_id: int | None = None,
        fork_step: int | None = None,
        inherit_config: bool | None = None,
        inherit_tags: bool | None = None,
    ) -> Call[PlutoRun]:
        """Create a run, or get the existing one of the same ``external_id`` (``resumed: true``; the
        server moves it back to RUNNING and deep-merges ``config`` into its config)."""
        body: dict[str, Any] = {
            "runName": require_text("run_name", run_name),
            "projectName": require_text("project_name", project_name),
        }
        if external_id is not None:
            body["externalId"] = require_text("external_id", external_id)
        optional = {
            "tags": require_tags(tags),
            "config": json_object("config", config),
            "loggerSettings": json_object("logger_settings", logger_settings),
            "systemMetadata": json_object("system_metadata", system_metadata),
            "createdAt": epoch_ms("created_at", created_at),
            "updatedAt": epoch_ms("updated_at", updated_at),
            "forkRunId": None if fork_run_id is None else require_run_id(fork_run_id, "fork_run_id"),
            "forkStep": require_count("fork_step", fork_step, allow_none=True),
            "inheritConfig": require_bool("inherit_config", inherit_config, allow_none=True),
            "inheritTags": require_bool("inherit_tags", inherit_tags, allow_none=True),
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        service = self._api()
        if external_id is not None:
            # With an externalId the create is idempotent (the server returns the existing run), so an
            # answer lost on the way back may be asked again like a read.
            return (yield from service.call(CREATE_RUN, json=body, kind=Kind.IDEMPOTENT))
        # Without one, a lost answer is looked for (a run of this name in the project, no externalId,
        # created since the request, or at the createdAt we sent) and adopted rather than created twice.
        sent_at = body.get("createdAt")

        def find(since: float) -> Call[PlutoRun | None]:
            listed = yield from service.call(
                LIST_RUNS, query={"projectName": project_name, "search": run_name, "limit": LIST_LIMIT}
            )

            def ours(run: ListedRun) -> bool:
                if run.name != run_name or run.external_id or run.created_at is None:
                    return False
                return run.created_at == sent_at if sent_at is not None else run.created_at >= since * 1000

            match = next((r for r in listed.runs if ours(r)), None)
            if match is None:
                return None
            # The create answer's shape (display id, url) for the run found: resume is idempotent.
            return (yield from service.call(RESUME_RUN, json={"runId": match.id}))

        return (
            yield from create_or_adopt(
                service,
                what=f"create of Pluto run {run_name!r} in project {project_name!r}",
                create=lambda: service.call(CREATE_RUN, json=body),
                find=find,
                describe=lambda run: f"run {run.run_id} ({run.display_id})",
            )
        )

    def resume_run(
        self,
        *,
        run_id: int | None = None,
        display_id: str | None = None,
        external_id: str | None = None,
        project_name: str | None = None,
    ) -> Call[PlutoRun]:
        """Reopen a run (status back to RUNNING), found by exactly one of its run id, display id
        (``PREFIX-N``) or external id (with ``project_name``)."""
        given = [
            n
            for n, v in (("run_id", run_id), ("display_id", display_id), ("external_id", external_id))
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError(f"resume_run needs exactly one of run_id, display_id, external_id; got {given or 'none'}")
        body: dict[str, Any]
        if run_id is not None:
            body = {"runId": require_run_id(run_id)}
        elif display_id is not None:
            body = {"displayId": require_text("display_id", display_id)}
        else:
            body = {"externalId": require_text("external_id", external_id)}
            body["projectName"] = require_text("project_name", project_name)
        return (yield from self._api().call(RESUME_RUN, json=body))

    def update_status(
        self,
        run_id: int,
        status: RunStatus | str,
        *,
        status_metadata: Mapping[str, Any] | str | None = None,
        logger_settings: Mapping[str, Any] | str | None = None,
        status_updated: datetime | float | None = None,
    ) -> Call[None]:
        body: dict[str, Any] = {"runId": require_run_id(run_id), "status": require_status(status).value}
        optional = {
            "statusMetadata": json_object("status_metadata", status_metadata),
            "loggerSettings": json_object("logger_settings", logger_settings),
            "statusUpdated": epoch_ms("status_updated", status_updated),
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        yield from self._api().call(UPDATE_STATUS, json=body)
        return None

    def update_tags(self, run_id: int, tags: Sequence[str]) -> Call[None]:
        """Replace the run's whole tag set with ``tags``."""
        body = {"runId": require_run_id(run_id), "tags": require_tags(tags)}
        if body["tags"] is None:
            raise ValueError("tags must be a list of strings, got None")
        yield from self._api().call(UPDATE_TAGS, json=body)
        return None

    def update_config(self, run_id: int, config: Mapping[str, Any] | str) -> Call[None]:
        """Deep-merge ``config`` into the run's config."""
        body = {"runId": require_run_id(run_id), "config": json_object("config", config)}
        if body["config"] is None:
            raise ValueError("config must be a JSON object, got None")
        yield from self._api().call(UPDATE_CONFIG, json=body)
        return None

    def validate_auth(self) -> Call[AuthValidation]:
        return (yield from self._api().call(VALIDATE_AUTH))

    def run_details(self, run_id: int) -> Call[RunDetails]:
        """The run as the server stores it: status, statusMetadata, config, tags, ..."""
        return (yield from self._api().call(RUN_DETAILS, path={"run_id": require_run_id(run_id)}))

    def status_history(self, run_id: int) -> Call[StatusHistory]:
        """Every status transition with its source (``api``, ``resume``, ``stale-monitor``,
        ``threshold-trigger``), oldest first."""
        return (yield from self._api().call(STATUS_HISTORY, query={"runId": require_run_id(run_id)}))

    def heartbeat(self, run_id: int) -> Call[Heartbeat]:
        """Tell Pluto the run is alive (``POST {url_py}/api/runs/trigger``); the answer carries its
        status. A run that has pinged once is judged by the 150 s heartbeat grace from then on."""
        return (yield from self._py().call(HEARTBEAT, json={"runId": require_run_id(run_id)}))

    def log_metrics(
        self,
        run_id: int,
        project_name: str,
        metrics: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        step: int = 0,
        timestamp: datetime | float | None = None,
        run_name: str | None = None,
    ) -> Call[int]:
        """Send metric values to the ingest service; returns the number of records sent.

        ``metrics`` is one mapping of name to number (one record at ``step``), or a sequence of them
        (records at ``step``, ``step + 1``, ...). ``timestamp`` defaults to now.
        """
        rid = require_run_id(run_id)
        require_text("project_name", project_name)
        if not project_name.isascii():
            # It travels in the X-Project-Name header.
            raise ValueError(f"project_name must be ASCII to log metrics, got {_show(project_name)}")
        require_count("step", step)
        if isinstance(metrics, Mapping):
            series: list[Any] = [metrics]
        elif isinstance(metrics, Sequence) and not isinstance(metrics, (str, bytes)) and metrics:
            series = list(metrics)
        else:
            raise ValueError(
                f"metrics must be a mapping of name to number, or a non-empty list of them, got {_show(metrics)}"
            )
        at = epoch_ms("timestamp", timestamp)
        at = int(time.time() * 1000) if at is None else at
        lines = [
            {
                "time": at,
                "step": step + i,
                "data": metric_data("metrics" if len(series) == 1 else f"metrics[{i}]", data),
            }
            for i, data in enumerate(series)
        ]
        # A record whose values are all None would be rejected ("'data' field cannot be empty").
        lines = [line for line in lines if line["data"]]
        # The ingest service requires X-Run-Id and X-Project-Name.
        headers = {
            "Content-Type": "application/x-ndjson",
            "X-Run-Id": str(rid),
            "X-Project-Name": project_name,
        }
        if run_name and run_name.isascii():
            headers["X-Run-Name"] = run_name
        service = self._ingest()
        for start in range(0, len(lines), INGEST_BATCH):
            batch = lines[start : start + INGEST_BATCH]
            # A failure comes typed by its cause (pluto/errors.py reads the ingest's 422 wrapping).
            yield from service.call(INGEST_METRICS, content=_ndjson(batch), headers=headers)
        return len(lines)
