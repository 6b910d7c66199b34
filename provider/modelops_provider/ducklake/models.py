"""DuckLake Model Runs response models (``CONTRACTS.md`` section B).

Tolerant on purpose: every field is optional, unknown fields are kept (``extra="allow"``), and the
enumerations (run, step and test status; trigger type) are plain strings, because the platform's
newer spec dropped them and added fields (``environment_name``, ``build_id``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class DuckLakeModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json(self, *, exclude: set[str] | None = None) -> dict[str, Any]:
        """The object as the platform spelled it (unknown fields included), JSON-able."""
        return self.model_dump(mode="json", exclude_none=True, exclude=exclude)


class CompileDiagnostics(DuckLakeModel):
    warnings: list[str] | None = None
    errors: list[str] | None = None


class ModelRun(DuckLakeModel):
    id: str | None = None
    # PENDING | RUNNING | SUCCESS | FAILED | CANCELLED
    status: str | None = None
    # MANUAL | SCHEDULED | PIPELINE
    trigger_type: str | None = None
    triggered_by: str | None = None
    project_name: str | None = None
    environment_name: str | None = None
    build_id: str | None = None
    model_names: list[str] | None = None
    full_refresh: bool | None = None
    compile_manifest: str | None = None
    compile_diagnostics: CompileDiagnostics | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error_message: str | None = None
    created_at: str | None = None


class ModelRunStep(DuckLakeModel):
    id: str | None = None
    run_id: str | None = None
    model_name: str | None = None
    compiled_sql: str | None = None
    compiled_hash: str | None = None
    depends_on: list[str] | None = None
    vars_used: list[str] | None = None
    macros_used: list[str] | None = None
    # PENDING | RUNNING | SUCCESS | FAILED | SKIPPED | CANCELLED
    status: str | None = None
    rows_affected: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error_message: str | None = None
    created_at: str | None = None


class ModelTestResult(DuckLakeModel):
    id: str | None = None
    run_step_id: str | None = None
    test_id: str | None = None
    test_name: str | None = None
    # PASS | FAIL | ERROR
    status: str | None = None
    rows_returned: int | None = None
    error_message: str | None = None
    created_at: str | None = None


class _ListModel(DuckLakeModel):
    @field_validator("data", mode="before", check_fields=False)
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        # A Go server marshals an empty (nil) slice as null.
        return [] if value is None else value


class PaginatedModelRuns(_ListModel):
    data: list[ModelRun] = []
    next_page_token: str | None = None


class ModelRunStepList(_ListModel):
    data: list[ModelRunStep] = []
    # Declared by the 2026-03-01 spec only; followed if a server ever sends it.
    next_page_token: str | None = None


class ModelTestResultList(_ListModel):
    data: list[ModelTestResult] = []
