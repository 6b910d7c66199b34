"""Sensors that wait on DuckLake."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelops_provider.core.errors import JobFailedError
from modelops_provider.core.sensors import PollingSensor
from modelops_provider.core.validation import require_bool, require_uuid
from modelops_provider.core.waiting import Outcome, Snapshot
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.ducklake.links import DuckLakeModelRunLink
from modelops_provider.ducklake.report import RunReport, gate, read_failed_run, read_report, record_details
from modelops_provider.ducklake.triggers import DuckLakeModelRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class DuckLakeModelRunSensor(PollingSensor):
    """Wait for a DuckLake model run started elsewhere (a schedule, another DAG) to end.

    Works in poke, reschedule (``mode="reschedule"``) and deferrable modes. Like the operator, it
    logs the run's models and tests when the run ends, fails if the run FAILED or was CANCELLED or
    (unless ``fail_on_test_failure=False``) if a test did not PASS, and returns
    ``{"run", "steps", "tests"}``. It never cancels the run: it did not start it.

    :param run_id: the run's UUID (templated).
    :param ducklake_conn_id: Airflow connection of type ``ducklake`` (templated).
    """

    template_fields: Sequence[str] = ("run_id", "ducklake_conn_id")
    operator_extra_links = (DuckLakeModelRunLink(),)
    hook_class = DuckLakeHook
    trigger_class = DuckLakeModelRunTrigger
    what = "DuckLake model run"
    service = "DuckLake"
    kind = "model run"
    # The finished run's steps and tests (None when they could not be read), for the run record.
    _report: RunReport | None = None

    def __init__(
        self,
        *,
        run_id: str,
        fail_on_test_failure: bool = True,
        ducklake_conn_id: str = DuckLakeHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.fail_on_test_failure = require_bool("fail_on_test_failure", fail_on_test_failure)
        self.ducklake_conn_id = ducklake_conn_id

    @property
    def conn_id(self) -> str:
        return self.ducklake_conn_id

    def validate(self) -> None:
        self.run_id = require_uuid("run_id", self.run_id)

    def describe(self) -> str:
        return f"DuckLake model run {self.run_id}"

    def push_links(self, context: Context) -> None:
        DuckLakeModelRunLink.push(context, self.hook.run_url(self.run_id))

    def remote(self) -> tuple[str, str | None]:
        return self.run_id, self.hook.run_url(self.run_id)

    def record_details(self, snap: Snapshot | None, result: Any, error: BaseException | None) -> dict[str, Any]:
        return record_details(self._report, None)

    def _settle(self, snap: Snapshot) -> Any:
        self._record_snap = snap
        if snap.outcome is not Outcome.SUCCEEDED:
            url = self.hook.run_url(self.run_id)
            # The report is kept for the run record: a failed run's steps are what a person looks at first.
            self._report, message = read_failed_run(self.hook, self.describe(), self.run_id, snap, url, self.log)
            raise JobFailedError(message)
        report = self._report = read_report(self.hook, self.run_id, snap, self.log)
        gate(report, fail_on_test_failure=self.fail_on_test_failure, what=self.describe(), log=self.log)
        return report.summary()
