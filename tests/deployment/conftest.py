"""The deployment tier: tests against a real Airflow (four components as processes) and the sandbox.

Run it with ``make test-deployment`` (or ``pytest -m deployment tests/deployment``). Every test in
this folder carries the ``deployment`` marker; the unit tier (``make test-unit``) leaves them out.

The session fixture ``deployment`` is an :class:`airflow_deployment.AirflowDeployment`: ``base_url``,
``token``, ``password``, REST helpers (``trigger``, ``ti``, ``tries``, ``wait_ti``, ``wait_run``,
``mark``, ``clear``, ``xcom``, ``log``), the sandbox (``sandbox``, ``control``, ``requests``) and
component control (``restart_component``, ``stop_component``, ``procs``). Tests share one deployment:
they must not reset the sandbox and should script their own studio/project so that the request log
can be filtered to what they caused.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow_deployment import AirflowDeployment

HERE = Path(__file__).resolve().parent


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``MODELOPS_DEPLOYMENT_REPEAT=N`` runs each selected test N times in a row (one deployment)."""
    repeat = int(os.environ.get("MODELOPS_DEPLOYMENT_REPEAT", "1") or 1)
    if repeat > 1 and Path(str(metafunc.definition.fspath)).resolve().is_relative_to(HERE):
        metafunc.fixturenames.append("repetition")
        metafunc.parametrize("repetition", range(1, repeat + 1), ids=lambda n: f"rep{n}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.deployment)


@pytest.fixture(scope="session")
def deployment() -> Iterator[AirflowDeployment]:
    dep = AirflowDeployment()
    try:
        dep.start()
        yield dep
    finally:
        dep.stop()
        if os.environ.get("MODELOPS_KEEP_DEPLOYMENT"):
            print(f"deployment kept in {dep.home}")
        else:
            dep.cleanup()


# A failing test's evidence outlives the deployment only in the test output (CI keeps nothing else):
# the task and trigger logs written while it ran, their last lines each, up to this much in all.
FAILED_LOGS_MAX_CHARS = 40_000
FAILED_LOGS_LINES = 40


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    started = time.time()
    try:
        return (yield)
    except BaseException:
        dep = getattr(item, "funcargs", {}).get("deployment")
        if isinstance(dep, AirflowDeployment):
            item.add_report_section("call", "airflow task logs", _logs_since(dep.log_folder, started))
        raise


def _logs_since(folder: Path, started: float) -> str:
    files = sorted(
        (p for p in folder.glob("dag_id=*/run_id=*/task_id=*/*.log*") if p.stat().st_mtime >= started - 1),
        key=lambda p: p.stat().st_mtime,
    )
    parts: list[str] = []
    for path in files:
        lines = path.read_text(errors="replace").splitlines()[-FAILED_LOGS_LINES:]
        parts.append(f"--- {path.relative_to(folder)} (last {len(lines)} lines)\n" + "\n".join(lines))
    text = "\n".join(parts) or f"no task log written in {folder} since the test started"
    return text[-FAILED_LOGS_MAX_CHARS:]


@pytest.fixture
def studio(deployment: AirflowDeployment) -> str:
    """A Model Studio of this test's own (runs SUCCEED after 20 s unless the test scripts it again)."""
    rid = f"ri.models.main.model-studio.{uuid.uuid4()}"
    deployment.control.foundry_studio(rid, outcome="SUCCEEDED", duration_s=20)
    return rid


@pytest.fixture
def project(deployment: AirflowDeployment) -> str:
    """A DuckLake project of this test's own: one model taking 20 s, with one passing test."""
    name = f"p{uuid.uuid4().hex[:12]}"
    deployment.control.ducklake_model("orders", project=name, duration_s=20)
    return name
