"""Operators that start work on the DuckLake data platform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelops_provider.core import assets
from modelops_provider.core.links import XComLink
from modelops_provider.core.operators import RemoteJobOperator
from modelops_provider.core.validation import require_bool
from modelops_provider.core.waiting import Snapshot
from modelops_provider.ducklake.api import require_model_names, require_project_name, require_target_name
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.ducklake.links import DuckLakeModelRunLink
from modelops_provider.ducklake.report import RunReport, gate, read_failed_run, read_report, record_details
from modelops_provider.ducklake.triggers import DuckLakeModelRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

# Every DuckLakeModelRunOperator attaches its asset events to this alias (declared in its outlets);
# Airflow resolves them to the assets ``ducklake://<host>/<project>/<model>``.
ASSET_ALIAS = "ducklake-model-runs"


class DuckLakeModelRunOperator(RemoteJobOperator):
    """Trigger a DuckLake model run, wait for it, read its steps and test results, and gate on them.

    Before waiting it pushes ``run_id`` and ``project_name`` to XCom and the "DuckLake model run"
    link. When the run ends it logs a table of its models (status, rows affected, duration) and of
    each model's tests (PASS/FAIL/ERROR, rows returned). The task:

    * returns ``{"run": ..., "steps": [...], "tests": [...]}`` (JSON-able) if the run succeeded and
      every test passed;
    * fails if the run FAILED or was CANCELLED, with the run's error message and the failing models;
    * fails if any test did not PASS (FAIL, ERROR, or a status it does not know), naming the tests,
      models and statuses (with ``fail_on_test_failure=False`` it only warns);
    * emits one asset event per model the run built, ``ducklake://<host>/<project>/<model>``, with
      ``rows_affected`` in the extra, so that DAGs scheduled on a model run when it is refreshed.

    A timeout (counted from the trigger) or a kill cancels the run. A task retry re-attaches to the
    run an earlier try triggered (Airflow 3.3's task state store) while that run is pending, running
    or succeeded; only a failed or cancelled run, or one whose tests failed the gate, is triggered anew.

    Only the arguments set are sent (the platform's defaults apply to the others), and all are
    checked before any request.

    :param project_name: the DuckLake project (templated).
    :param model_names: models to run, as names or selectors: ``name``, ``project.name``, ``+name``
        (with its upstream models), ``name+`` (with its downstream), ``tag:x``, ``project:p``, or
        ``["state:modified"]`` alone (templated); None runs every model of the project.
    :param full_refresh: rebuild incremental models from scratch (templated; ``"true"``/``"false"``
        accepted); None leaves it to the platform (false).
    :param target_catalog: catalog the models are written to (templated; 2026-03 servers, default
        ``memory``; newer servers take it from the environment and ignore it).
    :param target_schema: schema the models are written to (templated; 2026-03 servers, default the
        project name; newer servers ignore it).
    :param environment_name: the project environment that runs (templated; newer servers). Required
        there when the project has several development environments.
    :param fail_on_test_failure: fail the task when a test does not PASS (default True).
    :param wait_for_completion: wait for the run to end (default) or return
        ``{run_id, project_name, started_at}`` right after triggering (no table, gate or asset events;
        wait with :class:`~modelops_provider.ducklake.sensors.DuckLakeModelRunSensor`).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: seconds between looks at the run.
    :param timeout: seconds from the trigger after which the run is cancelled and the task fails.
    :param ducklake_conn_id: Airflow connection of type ``ducklake``.
    """

    template_fields: Sequence[str] = (
        "project_name",
        "model_names",
        "full_refresh",
        "target_catalog",
        "target_schema",
        "environment_name",
        "ducklake_conn_id",
    )
    operator_extra_links = (DuckLakeModelRunLink(),)
    hook_class = DuckLakeHook
    trigger_class = DuckLakeModelRunTrigger
    external_id_key = "ducklake_model_run"
    what = "DuckLake model run"
    service = "DuckLake"
    kind = "model run"
    ui_color = "#fff1c2"
    # The finished run's steps and tests (None when they could not be read), for the run record.
    _report: RunReport | None = None

    def __init__(
        self,
        *,
        project_name: str,
        model_names: Sequence[str] | None = None,
        full_refresh: bool | str | None = None,
        target_catalog: str | None = None,
        target_schema: str | None = None,
        environment_name: str | None = None,
        fail_on_test_failure: bool = True,
        ducklake_conn_id: str = DuckLakeHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        outlets = list(kwargs.pop("outlets", None) or [])
        outlets.append(assets.alias(ASSET_ALIAS))
        super().__init__(outlets=outlets, **kwargs)
        self.project_name = project_name
        self.model_names = model_names
        self.full_refresh = full_refresh
        self.target_catalog = target_catalog
        self.target_schema = target_schema
        self.environment_name = environment_name
        self.fail_on_test_failure = require_bool("fail_on_test_failure", fail_on_test_failure)
        self.ducklake_conn_id = ducklake_conn_id

    @property
    def conn_id(self) -> str:
        return self.ducklake_conn_id

    def validate(self) -> None:
        require_project_name("project_name", self.project_name)
        self.model_names = require_model_names("model_names", self.model_names)
        self.full_refresh = require_bool("full_refresh", self.full_refresh, allow_none=True)
        for name in ("target_catalog", "target_schema", "environment_name"):
            require_target_name(name, getattr(self, name))

    def submit(self, hook: DuckLakeHook, context: Context) -> dict[str, Any]:
        run = hook.call(
            hook.api.trigger_model_run(
                self.project_name,
                self.model_names,
                self.full_refresh,  # type: ignore[arg-type]  # validated
                target_catalog=self.target_catalog,
                target_schema=self.target_schema,
                environment_name=self.environment_name,
                unknown_since=self.unknown_since,
            )
        )
        return {"run_id": run.id, "project_name": run.project_name or self.project_name}

    def describe(self, job: dict[str, Any]) -> str:
        return f"DuckLake model run {job.get('run_id')} (project {job.get('project_name')})"

    def link_urls(self, hook: DuckLakeHook, job: dict[str, Any]) -> dict[type[XComLink], str]:
        return {DuckLakeModelRunLink: hook.run_url(job["run_id"], job.get("project_name"))}

    def on_success(self, hook: DuckLakeHook, job: dict[str, Any], snap: Snapshot, context: Context) -> Any:
        report = self._report = read_report(hook, job["run_id"], snap, self.log)
        gate(report, fail_on_test_failure=self.fail_on_test_failure, what=self.describe(job), log=self.log)
        project = report.run.project_name or job["project_name"]
        for step in report.built_steps():
            uri = hook.asset_uri(project, step.model_name or "")
            extra = {
                "rows_affected": step.rows_affected,
                "run_id": job["run_id"],
                "project_name": project,
                "model_name": step.model_name,
                "full_refresh": report.run.full_refresh,
            }
            assets.emit(context, ASSET_ALIAS, uri, extra)
            self.log.info("Asset event: %s (%s rows affected)", uri, step.rows_affected)
        return report.summary()

    def failure_message(self, hook: DuckLakeHook, job: dict[str, Any], snap: Snapshot) -> str:
        url = hook.run_url(job["run_id"], job.get("project_name"))
        # Kept for the run record: a failed run's steps and tests are what a person looks at first.
        self._report, message = read_failed_run(hook, self.describe(job), job["run_id"], snap, url, self.log)
        return message

    def record_details(self, snap: Snapshot | None, result: Any, error: BaseException | None) -> dict[str, Any]:
        return record_details(self._report, (self._job or {}).get("project_name"))
