"""Deferrable waits on Foundry, on the shared polling trigger."""

from __future__ import annotations

from typing import Any

from modelops_provider.core.transport import Call
from modelops_provider.core.triggers import PollingTrigger
from modelops_provider.core.waiting import Snapshot
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.polling import LiveDeploymentSource, ModelStudioRunSource
from modelops_provider.foundry.status import LiveDeploymentWatch


class ModelStudioRunTrigger(PollingTrigger):
    """Wait for a Model Studio run's build to be terminal. With ``cancel_on_kill`` (set when the
    operator launched the run), a user killing the deferred task cancels the build.

    ``config_version`` (the run's) narrows the runs list when the run is read; ``build_rid`` may be
    empty when only the run id is known (a sensor's first look). The event carries the ids and the
    build's outcome; the worker reads the run (``resolvedOutputs``) on resume.
    """

    hook_class = FoundryHook
    poll_source = ModelStudioRunSource
    what = "Model Studio run"
    name_field = "run_id"

    model_studio_rid: str
    run_id: str
    build_rid: str = ""
    config_version: int | None = None

    def check(self, hook: FoundryHook) -> Call[Snapshot]:
        snap = yield from hook.api.model_studio_run_snapshot(self.model_studio_rid, self.run_id, self.config_version)
        self.learn(snap)
        return snap

    def learn(self, snap: Snapshot) -> None:
        """Keep the build and config version a look found (a sensor knows only the run id at first)."""
        self.build_rid = self.build_rid or snap.data.get("buildRid") or ""
        if self.config_version is None and isinstance(snap.data.get("configVersion"), int):
            self.config_version = snap.data["configVersion"]

    def cancel(self, hook: FoundryHook) -> Call[Any] | None:
        return hook.api.cancel_build(self.build_rid) if self.build_rid else None


class LiveDeploymentTrigger(PollingTrigger):
    """Wait until a live deployment serves the expected version, ACTIVE (and ready); fail fast on
    FAILED/DISABLED, on DEGRADED past its grace, on a missing or unsupported deployment.

    The DEGRADED clock lives in this trigger: a triggerer restart starts it again.
    """

    hook_class = FoundryHook
    poll_source = LiveDeploymentSource
    what = "Live deployment"
    name_field = "live_deployment_rid"
    # The deployment as judged (served version, state, readiness; under a kilobyte) is the verdict's
    # own evidence: the event carries it and the worker neither reads it again nor judges again. A
    # fresh look could see a later rollout; what the task vouches for is what the trigger saw.
    event_data = None

    live_deployment_rid: str
    expected_model_version_rid: str | None = None
    require_ready: bool = True
    degraded_grace: float = 300.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.degraded_grace = float(self.degraded_grace)
        self.watch = LiveDeploymentWatch(self.expected_model_version_rid, self.require_ready, self.degraded_grace)

    def check(self, hook: FoundryHook) -> Call[Snapshot]:
        return hook.api.live_deployment_snapshot(self.live_deployment_rid, self.watch)
