"""What the sandbox saw of one test's remote runs: a Foundry studio's or a DuckLake project's runs,
their cancel requests and the polls of them (from ``GET /_sandbox/requests``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from airflow_deployment import AirflowDeployment

FOUNDRY_RUNS = "/api/v2/models/modelStudios/{studio}/runs"
FOUNDRY_BUILD = "/api/v2/orchestration/builds/{build}"
FOUNDRY_BATCH = "/api/v2/orchestration/builds/getBatch"
DUCKLAKE_RUN = "/v1/model-runs/{run}"
DUCKLAKE_RUNS = "/v1/model-runs"
# Marks the test's own look-ups in the request log, so that they never count as the provider's polls.
OBSERVER = {"observer": "deployment-test"}


@dataclass
class Run:
    id: str  # Foundry runId, DuckLake run id
    status: str  # as the service spells it
    cancel_key: str  # the path part a cancel request of this run has (build RID, DuckLake run id)
    raw: dict[str, Any]


class RemoteRuns:
    """The runs of one studio (``system="foundry"``) or project (``system="ducklake"``)."""

    def __init__(self, deployment: AirflowDeployment, system: str, key: str) -> None:
        self.deployment = deployment
        self.system = system
        self.key = key
        env = deployment.sandbox.connection_env()
        conn = json.loads(env[f"AIRFLOW_CONN_{system.upper()}_DEFAULT"])
        self._http = httpx.Client(
            base_url=deployment.sandbox.url, headers={"Authorization": f"Bearer {conn['password']}"}, timeout=30
        )

    @property
    def cancelled_status(self) -> str:
        return "CANCELED" if self.system == "foundry" else "CANCELLED"

    @property
    def succeeded_status(self) -> str:
        return "SUCCEEDED" if self.system == "foundry" else "SUCCESS"

    def runs(self) -> list[Run]:
        """Oldest first."""
        if self.system == "foundry":
            answer = self._http.get(
                FOUNDRY_RUNS.format(studio=self.key), params={"preview": "true", "pageSize": 100, **OBSERVER}
            )
            answer.raise_for_status()
            runs = [Run(r["runId"], r.get("buildStatus") or "", r["buildRid"], r) for r in answer.json()["data"]]
            return sorted(runs, key=lambda r: r.raw.get("startedTime") or "")
        answer = self._http.get("/v1/model-runs", params={"max_results": 100, **OBSERVER})
        answer.raise_for_status()
        runs = [Run(r["id"], r["status"], r["id"], r) for r in answer.json()["data"] if r["project_name"] == self.key]
        return sorted(runs, key=lambda r: r.raw.get("created_at") or "")

    def status(self, run: Run) -> str:
        return next(r.status for r in self.runs() if r.id == run.id)

    def cancel_requests(self, run: Run) -> list[dict[str, Any]]:
        return [
            r
            for r in self.deployment.requests(method="POST", contains=run.cancel_key)
            if r["path"].endswith(("/cancel", "/cancellations"))
        ]

    def all_polls(self) -> list[dict[str, Any]]:
        """Every request of this system that looks at runs, for any run: the triggerer's shared poller
        reads many runs per request (Foundry ``builds/getBatch``, DuckLake's status-filtered list), so
        those requests cannot be told apart by run."""
        if self.system == "foundry":
            prefixes: tuple[str, ...] = ("/api/v2/models/modelStudios/", "/api/v2/orchestration/builds")
        else:
            prefixes = ("/v1/model-runs",)
        return [
            r
            for r in self.deployment.requests()
            if r["path"].startswith(prefixes)
            and not r["path"].endswith(("/cancel", "/cancellations", "/launch"))
            and not (r["method"] == "POST" and r["path"] == "/v1/model-runs")
            and (r.get("query") or {}).get("observer") != OBSERVER["observer"]
        ]

    def polls(self, run: Run) -> list[dict[str, Any]]:
        """Requests that look at ``run``. For DuckLake GETs of the run, and the reads of the runs list
        filtered by status that listed it; for Foundry GETs of its studio's runs or its build, and the
        ``builds/getBatch`` requests that named its build. The triggerer's shared poller reads through
        those batched requests; the sandbox's request log records which runs each of them named."""
        if self.system == "foundry":
            paths = (FOUNDRY_RUNS.format(studio=self.key), FOUNDRY_BUILD.format(build=run.cancel_key))
            named = run.cancel_key
        else:
            paths = (DUCKLAKE_RUN.format(run=run.id),)
            named = run.id
        return [
            r
            for r in self.deployment.requests()
            if (
                (r["method"] == "GET" and r["path"].startswith(paths))
                or (
                    named in (r.get("names") or ())
                    and (
                        (self.system == "foundry" and r["method"] == "POST" and r["path"] == FOUNDRY_BATCH)
                        or (
                            self.system == "ducklake"
                            and r["method"] == "GET"
                            and r["path"] == DUCKLAKE_RUNS
                            and "status" in (r.get("query") or {})
                        )
                    )
                )
            )
            and (r.get("query") or {}).get("observer") != OBSERVER["observer"]
        ]
