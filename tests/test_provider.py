"""Packaging: provider registration, connection form metadata, light imports, the sandbox CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelops_provider import get_provider_info


def test_provider_info_declares_foundry_connection_form():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-modelops"
    conn = next(c for c in info["connection-types"] if c["connection-type"] == "foundry")
    assert conn["hook-class-name"] == "modelops_provider.foundry.hooks.FoundryHook"
    assert conn["conn-fields"]["client_secret"]["schema"]["format"] == "password"
    assert {"scopes", "client_id", "scheme", "connect_timeout", "read_timeout"} <= set(conn["conn-fields"])
    assert "password" in conn["ui-field-behaviour"]["relabeling"]
    for link in info["extra-links"]:
        module, _, name = link.rpartition(".")
        __import__(module)
        assert getattr(sys.modules[module], name)().name
    for section in ("operators", "sensors", "hooks", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                __import__(module)


def test_airflow_providers_list_shows_the_package(airflow_db):
    airflow = str(Path(sys.executable).with_name("airflow"))
    out = subprocess.run([airflow, "providers", "list"], capture_output=True, text=True, check=True).stdout
    assert "airflow-provider-modelops" in out
    assert out.count("airflow-provider-modelops") == 1


# What DAG files import: every operator, sensor and trigger module of the three integrations.
OPERATOR_MODULES = [
    f"modelops_provider.{integration}.{kind}"
    for integration, kinds in (
        ("foundry", ("operators", "sensors", "triggers")),
        ("ducklake", ("operators", "sensors", "triggers")),
        ("pluto", ("operators",)),
    )
    for kind in kinds
]
# Never at DAG-parse time: the sandbox and its web stack, test-only libraries, and the Pluto hook
# (the Pluto operators import it when they run).
HEAVY = (
    "fastapi",
    "uvicorn",
    "starlette",
    "modelops_provider.sandbox",
    "foundry_sdk",
    "openapi_core",
    "modelops_provider.pluto.hooks",
)


def test_operator_modules_import_light():
    code = (
        "import time, sys\n"
        "import airflow.sdk, airflow.triggers.base, airflow.providers.common.compat.sdk\n"
        "t = time.process_time()\n"
        f"import {', '.join(OPERATOR_MODULES)}\n"
        "elapsed = time.process_time() - t\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(elapsed, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-W", "error::FutureWarning", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(" ", 1)
    assert out[1].strip() == "[]"
    # CPU time, not wall time: a loaded machine (CI, parallel suites) stretches the wall clock, not the work.
    assert float(out[0]) < 0.75, f"importing the operator modules took {out[0]}s of CPU on top of Airflow"


def test_sandbox_cli_prints_url_and_connection_then_serves_loopback_only(sandbox_cli):
    import httpx

    assert sandbox_cli["first_line"].startswith("modelops sandbox listening on http://127.0.0.1:")
    url = sandbox_cli["url"]
    assert set(sandbox_cli["exports"]) == {
        "AIRFLOW_CONN_FOUNDRY_DEFAULT",
        "AIRFLOW_CONN_DUCKLAKE_DEFAULT",
        "AIRFLOW_CONN_PLUTO_DEFAULT",
    }
    foundry = sandbox_cli["exports"]["AIRFLOW_CONN_FOUNDRY_DEFAULT"]
    assert foundry["conn_type"] == "foundry" and foundry["host"] == "http://127.0.0.1"
    # Airflow masks every string of a connection's extra and warns about each shorter than 5 characters.
    for name, conn in sandbox_cli["exports"].items():
        short = {k: v for k, v in (conn.get("extra") or {}).items() if isinstance(v, str) and len(v) < 5}
        assert not short, f"{name} has extra values Airflow will not mask: {short}"
    assert httpx.get(f"{url}/_sandbox/requests").status_code == 200
    refused = subprocess.run(
        [sys.executable, "-m", "modelops_provider.sandbox.cli", "serve", "--host", "0.0.0.0"],  # must reject
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "loopback only" in refused.stderr


@pytest.mark.parametrize("value", ["1", "  7 ", "Wed, 21 Oct 2015 07:28:00 GMT", "", "soon"])
def test_retry_after_parsing(value):
    from modelops_provider.core.retry import parse_retry_after

    parsed = parse_retry_after(value, now=1445412470.0)
    expected = {"1": 1.0, "  7 ": 7.0, "Wed, 21 Oct 2015 07:28:00 GMT": 10.0, "": None, "soon": None}[value]
    assert parsed == expected


def test_retry_policy_caps_retry_after_and_respects_the_time_budget():
    import httpx

    from modelops_provider.core.retry import Kind, RetryPolicy, decide

    policy = RetryPolicy(max_attempts=4, max_elapsed=10, retry_after_cap=5)

    def wait(attempt: int, retry_after: str, now: float) -> float | None:
        answer = httpx.Response(503, headers={"Retry-After": retry_after})
        decision = decide(answer, attempt=attempt, kind=Kind.READ, policy=policy, started=0.0, now=now)
        return decision.wait if decision.action == "retry" else None

    assert wait(1, "3600", 0.0) == 5
    assert wait(1, "3", 8.0) is None
    assert wait(4, "0", 0.0) is None
    with pytest.raises(ValueError, match="max_attempts must be an integer >= 1 and <= 100, got 0"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="'retry_max_attempts' must be an integer >= 1 and <= 100, got 'many'"):
        RetryPolicy.from_extra({"retry_max_attempts": "many"})
