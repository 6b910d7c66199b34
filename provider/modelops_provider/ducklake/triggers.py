"""Deferrable waits on DuckLake, on the shared polling trigger."""

from __future__ import annotations

from typing import Any

from modelops_provider.core.transport import Call
from modelops_provider.core.triggers import PollingTrigger
from modelops_provider.core.waiting import Snapshot
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.ducklake.polling import DuckLakeRunSource


class DuckLakeModelRunTrigger(PollingTrigger):
    """Wait for a DuckLake model run to be SUCCESS, FAILED or CANCELLED. With ``cancel_on_kill``
    (set when the operator triggered the run), a user killing the deferred task cancels the run."""

    hook_class = DuckLakeHook
    poll_source = DuckLakeRunSource
    what = "DuckLake model run"
    name_field = "run_id"

    run_id: str
    project_name: str | None = None

    def check(self, hook: DuckLakeHook) -> Call[Snapshot]:
        return hook.api.model_run_snapshot(self.run_id)

    def cancel(self, hook: DuckLakeHook) -> Call[Any]:
        return hook.api.cancel_if_running(self.run_id)
