"""Sensors that wait on Foundry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import PokeReturnValue

from modelops_provider.core.sensors import PollingSensor
from modelops_provider.core.validation import require_rid, require_text, seconds
from modelops_provider.core.waiting import Snapshot
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.links import LiveDeploymentLink, ModelStudioRunLink, model_version_of
from modelops_provider.foundry.outputs import resolve_version
from modelops_provider.foundry.status import LiveDeploymentWatch
from modelops_provider.foundry.triggers import LiveDeploymentTrigger, ModelStudioRunTrigger

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
    trigger_class = ModelStudioRunTrigger
    what = "Model Studio run"
    service = "Foundry"
    kind = "training run"

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

    def remote(self) -> tuple[str, str | None]:
        return self.run_id, self.hook.run_url(self.model_studio_rid, self.run_id)

    def record_details(self, snap: Snapshot | None, result: Any, error: BaseException | None) -> dict[str, Any]:
        return {"model_version": model_version_of(snap.data if snap else None)}


class LiveDeploymentSensor(PollingSensor):
    """Wait until production serves the model version you expect, ACTIVE and ready.

    Succeeds when the deployment serves ``expected_model_version_rid`` (when given), its state is
    ACTIVE and, with ``require_ready``, ``isReady`` is true. Keeps waiting through STARTING, not
    ready, and while the previous version is still served. Fails fast on FAILED or DISABLED, on
    DEGRADED lasting ``degraded_grace`` seconds, on a missing (``LiveDeploymentNotFound``) or
    unsupported (``UnsupportedLiveDeployment``) deployment. Returns the deployment as a JSON-able dict.

    :param live_deployment_rid: RID of the live deployment (templated).
    :param expected_model_version_rid: the version that must be served (templated). Also accepts the
        launch task's return value (e.g. ``train.output``): the version is then read from
        ``resolvedOutputs[output_alias].modelVersionRid``.
    :param output_alias: which output of the run to take the version from (default ``model``).
    :param require_ready: also require ``isReady`` (default True).
    :param degraded_grace: seconds a DEGRADED state may last before the sensor fails (default 300).
    """

    template_fields: Sequence[str] = (
        "live_deployment_rid",
        "expected_model_version_rid",
        "output_alias",
        "foundry_conn_id",
    )
    operator_extra_links = (LiveDeploymentLink(),)
    hook_class = FoundryHook
    trigger_class = LiveDeploymentTrigger
    what = "Live deployment"
    service = "Foundry"
    kind = "deployment check"
    degraded_since_key = "foundry_live_deployment_degraded_since"

    def __init__(
        self,
        *,
        live_deployment_rid: str,
        expected_model_version_rid: str | dict[str, Any] | None = None,
        output_alias: str = "model",
        require_ready: bool = True,
        degraded_grace: float = 300.0,
        foundry_conn_id: str = FoundryHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.live_deployment_rid = live_deployment_rid
        self.expected_model_version_rid = expected_model_version_rid
        self.output_alias = output_alias
        self.require_ready = require_ready
        self.degraded_grace = seconds("degraded_grace", degraded_grace)
        self.foundry_conn_id = foundry_conn_id

    @property
    def conn_id(self) -> str:
        return self.foundry_conn_id

    def expected_version(self) -> str | None:
        """The version to wait for, from a RID or from a launch task's returned run."""
        ref = resolve_version(self.expected_model_version_rid, self.output_alias, "expected_model_version_rid")
        return None if ref is None else ref.model_version_rid

    def trigger_fields(self) -> dict[str, Any]:
        if self._trigger is not None:
            return super().trigger_fields()
        return {
            "live_deployment_rid": self.live_deployment_rid,
            "expected_model_version_rid": self.expected_version(),
            "require_ready": self.require_ready,
            "degraded_grace": float(self.degraded_grace or 0),
        }

    @property
    def watch(self) -> LiveDeploymentWatch:
        """The judgement of the worker's looks, with its DEGRADED clock."""
        return self.trigger.watch  # type: ignore[attr-defined,no-any-return]

    def validate(self) -> None:
        require_rid("live_deployment_rid", self.live_deployment_rid)
        self.watch  # noqa: B018  (resolves and checks the expected version)

    def describe(self) -> str:
        return f"Live deployment {self.live_deployment_rid}"

    def push_links(self, context: Context) -> None:
        LiveDeploymentLink.push(context, self.hook.live_deployment_url(self.live_deployment_rid))

    def remote(self) -> tuple[str, str | None]:
        return self.live_deployment_rid, self.hook.live_deployment_url(self.live_deployment_rid)

    def record_details(self, snap: Snapshot | None, result: Any, error: BaseException | None) -> dict[str, Any]:
        served = ((snap.data.get("modelVersion") or {}).get("modelVersionRid") if snap else None) or None
        if error is None and snap is not None:
            expected = bool(self.expected_model_version_rid)
            ready = ", ready" if (snap.data.get("status") or {}).get("isReady") else ""
            verdict = f"{'serves the expected version' if expected else 'serving'}: {snap.status}{ready}"
            return {"model_version": served, "verdict": verdict, "passed": True}
        if error is not None:
            return {"model_version": served, "verdict": snap.reason if snap else None, "passed": False}
        return {"model_version": served}

    def poke(self, context: Context) -> bool | PokeReturnValue:
        # In reschedule mode every poke is a new process: keep the DEGRADED clock in the task state
        # store (Airflow 3.3+), where it outlives the poke.
        store = context.get("task_state_store") if self.reschedule else None
        if store is not None:
            stored = store.get(self.degraded_since_key)
            self.watch.degraded_since = float(stored) if isinstance(stored, (int, float)) and stored else None
        done = True
        try:
            result = super().poke(context)
            done = result is not False
            return result
        finally:
            if store is not None:
                if done:  # settled either way: a retry or a clear starts the grace afresh
                    store.delete(self.degraded_since_key)
                else:
                    store.set(self.degraded_since_key, self.watch.degraded_since or 0)
