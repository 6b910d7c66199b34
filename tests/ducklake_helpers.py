"""Shared helpers of the DuckLake tests (scripting the sandbox, extra connections)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

FAST = {"pending_s": 0.1}


def script_project(control: Any, project: str, *models: dict[str, Any]) -> None:
    """Script a project's models, in order; each dict is a ``/_sandbox/ducklake/models`` body."""
    control.post("/_sandbox/ducklake/settings", FAST)
    for model in models:
        control.ducklake_model(**{"duration_s": 0.3, "rows_affected": 100, **model, "project": project})


def add_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra: Any) -> str:
    """A copy of the sandbox's ``ducklake_default`` connection under ``conn_id``; ``password`` and
    ``extra`` keys override."""
    import os

    conn = json.loads(os.environ["AIRFLOW_CONN_DUCKLAKE_DEFAULT"])
    if "password" in extra:
        conn["password"] = extra.pop("password")
    conn["extra"] = {**conn["extra"], **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def service_requests(control: Any, method: str | None = None, path_prefix: str = "/v1") -> list[dict[str, Any]]:
    return control.requests(path_prefix=path_prefix, method=method)


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
