"""A DuckLake run report: fetched by one call (``DuckLakeApi.run_report``) that either client runs, and
a plain value (ducklake/report.py imports neither the hook nor the API)."""

from __future__ import annotations

import ast
import asyncio
import pathlib
import subprocess
import sys

from ducklake_helpers import script_project, service_requests, wait_for
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.ducklake.models import ModelRun, ModelRunStep, ModelTestResult
from modelops_provider.ducklake.report import RunReport

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "provider" / "modelops_provider" / "ducklake"


def test_one_call_read_by_the_sync_and_the_async_client(modelops_sandbox):
    control = modelops_sandbox.control
    script_project(
        control,
        "shop",
        {"name": "a", "tests": [{"name": "not_null_id"}]},
        {"name": "b", "outcome": "FAILED", "tests": [{"name": "never_runs"}]},
        {"name": "c", "tests": [{"name": "skipped_with_its_model"}]},
    )
    hook = DuckLakeHook()
    run = hook.trigger_model_run("shop")
    wait_for(lambda: hook.get_model_run(run.id).status == "FAILED")
    before = len(service_requests(control, "GET"))

    report = hook.run_report(run.id)

    # The run, its steps, and the tests of the steps that ran (a and b, not the skipped c).
    paths = [r["path"] for r in service_requests(control, "GET")[before:]]
    steps = {s.model_name: s.id for s in report.steps}
    assert paths == [
        f"/v1/model-runs/{run.id}",
        f"/v1/model-runs/{run.id}/steps",
        f"/v1/model-runs/{run.id}/steps/{steps['a']}/test-results",
        f"/v1/model-runs/{run.id}/steps/{steps['b']}/test-results",
    ]
    assert [(s.model_name, s.status) for s in report.steps] == [("a", "SUCCESS"), ("b", "FAILED"), ("c", "SKIPPED")]
    assert [t.test_name for t in report.tests_of(report.steps[0])] == ["not_null_id"]
    assert report.tests_of(report.steps[2]) == []

    async def in_a_trigger() -> RunReport:
        await hook.aget_conn()
        return await hook.acall(hook.api.run_report(run.id, run=report.run))

    again = asyncio.run(in_a_trigger())
    assert again == report
    # Given the run already read, the call does not read it again.
    assert f"/v1/model-runs/{run.id}" not in [r["path"] for r in service_requests(control, "GET")[before + 4 :]]


def test_the_report_is_a_value_built_from_data():
    run = ModelRun(id="r1", status="FAILED", error_message="one or more models failed")
    built = ModelRunStep(id="s1", model_name="stg", status="SUCCESS", rows_affected=3)
    broken = ModelRunStep(id="s2", model_name="fct", status="FAILED", error_message="division by zero")
    skipped = ModelRunStep(id="s3", model_name="agg", status="SKIPPED")
    failing = ModelTestResult(test_name="positive", status="FAIL", rows_returned=2)
    report = RunReport(run=run, steps=[built, broken, skipped], tests={"s1": [failing]})
    assert report.failure_text() == (
        "one or more models failed. failed models: fct (division by zero). not built: agg (SKIPPED)"
    )
    assert report.test_failure_text() == (
        "1 test(s) did not pass on model(s) stg: positive on model stg (FAIL, 2 rows returned)"
    )
    assert [s.model_name for s in report.built_steps()] == ["stg"]


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_import_cycle_in_the_ducklake_package():
    modules = {f"modelops_provider.ducklake.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {name: _imports(path) & modules.keys() for name, path in modules.items()}
    assert not graph["modelops_provider.ducklake.report"] & {
        "modelops_provider.ducklake.hooks",
        "modelops_provider.ducklake.api",
    }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert cycles == []


def test_importing_the_report_loads_neither_the_hook_nor_the_api():
    code = (
        "import sys, modelops_provider.ducklake.report\n"
        "print(sorted(m for m in sys.modules if m.startswith('modelops_provider.ducklake.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ducklake.hooks" not in loaded and "ducklake.api" not in loaded, loaded
    assert "ducklake.report" in loaded
