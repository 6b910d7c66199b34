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


class BuildState(BaseModel):
    """A build as a poll reads it from getBatch: its RID and status. The rest of each build is
    skipped, not kept (at 100 builds per answer, reading what nobody uses is most of a poll's cost)."""

    model_config = ConfigDict(extra="ignore")

    rid: str
    status: str


class GetBuildsBatchResponse(FoundryModel):
    """``data`` maps each build RID found to its state; a RID Foundry does not return is left out."""

    data: dict[str, BuildState] = {}


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


# --- model versions, experiments, inference (CONTRACTS.md section E) -----------------------------
class ModelVersion(FoundryModel):
    rid: str
    # {inputs: [...], outputs: [...]}; kept as plain JSON: the union of input/output kinds is wide.
    model_api: dict[str, Any] = {}
    conda_requirements: list[str] = []
    backing_repositories: list[str] = []
    created_time: str | None = None
    # {type: modelStudio | promoted | sdk | ..., ...}
    source: dict[str, Any] | None = None
    linked_experiment: str | None = None


class ListModelVersionsResponse(FoundryModel):
    data: list[ModelVersion] = []
    next_page_token: str | None = None


class ExperimentSeriesValue(FoundryModel):
    type: str = "double"
    min: float | None = None
    max: float | None = None
    last: float | None = None


class ExperimentSeries(FoundryModel):
    name: str
    length: int | None = None
    value: ExperimentSeriesValue = ExperimentSeriesValue()


class SummaryMetric(FoundryModel):
    series_name: str
    # MIN | MAX | LAST
    aggregation: str
    value: float


class Experiment(FoundryModel):
    rid: str
    model_rid: str | None = None
    created_time: str | None = None
    created_by: str | None = None
    source: dict[str, Any] | None = None
    # RUNNING | SUCCEEDED | FAILED
    status: str | None = None
    status_message: str | None = None
    branch: str | None = None
    parameters: list[dict[str, Any]] = []
    series: list[ExperimentSeries] = []
    summary_metrics: list[SummaryMetric] = []
    artifacts: dict[str, Any] = {}
    tags: list[str] = []
    linked_model_version: str | None = None
    job_rid: str | None = None

    def metric(self, name: str, aggregation: str) -> float | None:
        """A metric's aggregate (MIN | MAX | LAST): the series' own aggregate, else a summary metric."""
        key = aggregation.lower()
        for series in self.series:
            if series.name == name:
                value = getattr(series.value, key, None)
                if value is not None:
                    return float(value)
        for summary in self.summary_metrics:
            if summary.series_name == name and summary.aggregation.upper() == aggregation.upper():
                return float(summary.value)
        return None


class SearchExperimentsResponse(FoundryModel):
    data: list[Experiment] = []
    next_page_token: str | None = None


class SeriesPoint(FoundryModel):
    value: float
    timestamp: int | None = None
    step: int | None = None


class ExperimentSeriesPoints(FoundryModel):
    type: str = "doubleV1"
    series: list[SeriesPoint] = []


class ListLiveDeploymentsResponse(FoundryModel):
    data: list[LiveDeployment] = []


class TransformJsonResponse(FoundryModel):
    output: dict[str, Any]
