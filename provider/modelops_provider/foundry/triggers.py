"""Deferrable waits on Foundry, on the shared polling trigger."""

from __future__ import annotations

from typing import Any

from modelops_provider.core.transport import Call
from modelops_provider.core.triggers import PollingTrigger
from modelops_provider.core.waiting import Snapshot
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.status import LiveDeploymentWatch


class ModelStudioRunTrigger(PollingTrigger):
    """Wait for a Model Studio run's build to be terminal. With ``cancel_on_kill`` (set when the
    operator launched the run), a user killing the deferred task cancels the build."""

    hook_class = FoundryHook

    def __init__(self, *, model_studio_rid: str, run_id: str, build_rid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_studio_rid = model_studio_rid
        self.run_id = run_id
        self.build_rid = build_rid

    def target(self) -> dict[str, Any]:
        return {"model_studio_rid": self.model_studio_rid, "run_id": self.run_id, "build_rid": self.build_rid}

    def check(self, hook: FoundryHook) -> Call[Snapshot]:
        return hook.api.model_studio_run_snapshot(self.model_studio_rid, self.run_id)

    def cancel(self, hook: FoundryHook) -> Call[Any]:
        return hook.api.cancel_build(self.build_rid)


class LiveDeploymentTrigger(PollingTrigger):
    """Wait until a live deployment serves the expected version, ACTIVE (and ready); fail fast on
    FAILED/DISABLED, on DEGRADED past its grace, on a missing or unsupported deployment.

    The DEGRADED clock lives in this trigger: a triggerer restart starts it again.
    """

    hook_class = FoundryHook

    def __init__(
        self,
        *,
        live_deployment_rid: str,
        expected_model_version_rid: str | None = None,
        require_ready: bool = True,
        degraded_grace: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.live_deployment_rid = live_deployment_rid
        self.watch = LiveDeploymentWatch(expected_model_version_rid, require_ready, float(degraded_grace))

    def target(self) -> dict[str, Any]:
        return {
            "live_deployment_rid": self.live_deployment_rid,
            "expected_model_version_rid": self.watch.expected_model_version_rid,
            "require_ready": self.watch.require_ready,
            "degraded_grace": self.watch.degraded_grace,
        }

    def check(self, hook: FoundryHook) -> Call[Snapshot]:
        return hook.api.live_deployment_snapshot(self.live_deployment_rid, self.watch)
