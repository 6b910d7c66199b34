"""Foundry response models: tolerant of additions (unknown fields are kept) and of documented
optional fields being absent."""

from __future__ import annotations

from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class FoundryModel(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
    )

    def to_json(self) -> dict[str, Any]:
        """The object as Foundry spelled it (camelCase, unknown fields included), JSON-able."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ModelStudioRunOutput(FoundryModel):
    type: str = "model"
    model_rid: str | None = None
    model_version_rid: str | None = None
    experiment_rid: str | None = None


class ModelStudioRun(FoundryModel):
    run_id: str
    build_rid: str
    job_rid: str | None = None
    config_version: int | None = None
    started_by: str | None = None
    started_time: str | None = None
    # RUNNING | SUCCEEDED | FAILED | CANCELED; kept as text so a new value does not break parsing.
    build_status: str | None = None
    resolved_outputs: dict[str, ModelStudioRunOutput] = {}


class ListModelStudioRunsResponse(FoundryModel):
    data: list[ModelStudioRun] = []
    next_page_token: str | None = None


class Build(FoundryModel):
    rid: str
    status: str
    branch_name: str | None = None
    created_time: str | None = None
    finished_time: str | None = None


class GetBuildsBatchResponse(FoundryModel):
    """``data`` maps each build RID found to its build; a RID Foundry does not return is left out."""

    data: dict[str, Build] = {}


class ModelVersionRef(FoundryModel):
    model_rid: str | None = None
    model_version_rid: str | None = None


class LiveDeploymentStatus(FoundryModel):
    # ACTIVE | STARTING | DEGRADED | DISABLED | FAILED
    state: str
    is_ready: bool = False


class LiveDeployment(FoundryModel):
    rid: str
    model_version: ModelVersionRef | None = None
    branch: str | None = None
    runtime_configuration: dict[str, Any] = {}
    status: LiveDeploymentStatus


class CurrentUser(FoundryModel):
    id: str | None = None
    username: str | None = None
