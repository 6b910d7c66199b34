"""Pluto response models and status values: tolerant of additions (unknown fields are kept) and of
documented optional fields being absent."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class RunStatus(StrEnum):
    """The statuses ``POST /api/runs/status/update`` accepts."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"
    CANCELLED = "CANCELLED"


class PlutoModel(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
    )

    def to_json(self) -> dict[str, Any]:
        """The object as Pluto spelled it (camelCase, unknown fields included), JSON-able."""
        return self.model_dump(mode="json", by_alias=True)


class PlutoRun(PlutoModel):
    """The answer of ``runs/create`` and ``runs/resume``."""

    run_id: int
    number: int | None = None
    display_id: str | None = None  # "PREFIX-N"
    project_name: str = ""
    organization_slug: str = ""
    url: str = ""
    resumed: bool = False


class ListedRun(PlutoModel):
    """One run of ``GET /api/runs/list``."""

    id: int
    name: str = ""
    project_name: str = ""
    external_id: str | None = None
    created_at: int | None = None  # epoch ms
    status: str | None = None


class RunList(PlutoModel):
    runs: list[ListedRun] = []
    total: int | None = None


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TERMINATED, RunStatus.CANCELLED})
# Status precedence on ``status/update``: a final status never replaces a more severe one (section F).
SEVERITY = {
    RunStatus.RUNNING: -1,
    RunStatus.COMPLETED: 0,
    RunStatus.TERMINATED: 1,
    RunStatus.CANCELLED: 2,
    RunStatus.FAILED: 3,
}


class Heartbeat(PlutoModel):
    """The py service's answer to ``POST /api/runs/trigger``: the run's status as the server sees it."""

    status: str = ""
    triggers: Any = None


class RunDetails(PlutoModel):
    """``GET /api/runs/details/{runId}`` (the fields the provider reads; the rest are kept)."""

    id: int
    status: str = ""
    status_metadata: Any = None
    external_id: str | None = None


class StatusEvent(PlutoModel):
    from_status: str | None = None
    to_status: str = ""
    source: str = ""
    metadata: Any = None
    created_at: str | None = None


class StatusHistory(PlutoModel):
    """``GET /api/runs/status/history?runId=N``, oldest event first."""

    run_id: int
    events: list[StatusEvent] = []


class Success(PlutoModel):
    success: bool = True


class AuthValidation(PlutoModel):
    """``GET /api/runs/auth/validate``."""

    valid: bool = False
    organization: dict[str, Any] = {}
    user: dict[str, Any] = {}
