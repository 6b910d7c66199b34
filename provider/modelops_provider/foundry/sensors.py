"""Sensors that wait on Foundry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelops_provider.core.sensors import PollingSensor
from modelops_provider.core.transport import Call
from modelops_provider.core.validation import require_rid, require_text
from modelops_provider.core.waiting import Snapshot
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.links import ModelStudioRunLink
from modelops_provider.foundry.triggers import ModelStudioRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class ModelStudioRunSensor(PollingSensor):
    """Wait for a Model Studio run (started anywhere) to finish; fail if it FAILED or was CANCELED.

    Works in poke, reschedule (``mode="reschedule"``) and deferrable modes. Returns the run as a
    JSON-able dict. It never cancels the run: it did not start it.
    """

    template_fields: Sequence[str] = ("model_studio_rid", "run_id", "foundry_conn_id")
    operator_extra_links = (ModelStudioRunLink(),)
    hook_class = FoundryHook
    what = "Model Studio run"

    def __init__(
        self,
        *,
        model_studio_rid: str,
        run_id: str,
        foundry_conn_id: str = FoundryHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_studio_rid = model_studio_rid
        self.run_id = run_id
        self.foundry_conn_id = foundry_conn_id

    @property
    def conn_id(self) -> str:
        return self.foundry_conn_id

    def validate(self) -> None:
        require_rid("model_studio_rid", self.model_studio_rid)
        require_text("run_id", self.run_id)

    def describe(self) -> str:
        return f"Model Studio run {self.run_id}"

    def push_links(self, context: Context) -> None:
        ModelStudioRunLink.push(context, self.hook.run_url(self.model_studio_rid, self.run_id))

    def check(self, hook: FoundryHook) -> Call[Snapshot]:
        return hook.api.model_studio_run_snapshot(self.model_studio_rid, self.run_id)

    def make_trigger(self, deadline: float | None) -> ModelStudioRunTrigger:
        # The build RID is needed only to cancel, which a sensor never does.
        return ModelStudioRunTrigger(
            model_studio_rid=self.model_studio_rid,
            run_id=self.run_id,
            build_rid="",
            conn_id=self.foundry_conn_id,
            poll_interval=float(self.poke_interval),
            deadline=deadline,
            cancel_on_kill=False,
        )
