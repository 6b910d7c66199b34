"""The one mapping from Foundry states to outcomes, used by operators, sensors and triggers alike."""

from __future__ import annotations

import time
from dataclasses import dataclass

from modelops_provider.core.waiting import Outcome, Snapshot
from modelops_provider.foundry.models import Build, BuildState, LiveDeployment, ModelStudioRun

BUILD_OUTCOMES: dict[str, Outcome] = {
    "RUNNING": Outcome.WAITING,
    "SUCCEEDED": Outcome.SUCCEEDED,
    "FAILED": Outcome.FAILED,
    "CANCELED": Outcome.CANCELLED,
}


def build_outcome(status: str) -> Outcome:
    """An unknown build status keeps the wait going."""
    return BUILD_OUTCOMES.get(status, Outcome.WAITING)


def build_snapshot(run_id: str, build: Build | BuildState) -> Snapshot:
    """A run judged by its build alone: its outcome and status are the build's. The run's own
    fields (``resolvedOutputs``) are not in it: who needs them reads the run."""
    outcome = build_outcome(build.status)
    note = "" if build.status in BUILD_OUTCOMES else " (unknown status; still waiting)"
    return Snapshot(
        outcome=outcome,
        status=build.status,
        summary=f"build {build.status} (from the build){note}",
        data={"runId": run_id, "buildRid": build.rid, "buildStatus": build.status},
        reason=f"build {build.rid} is {build.status}" if outcome in (Outcome.FAILED, Outcome.CANCELLED) else None,
    )


def run_snapshot(run: ModelStudioRun, build_status: str, *, source: str = "run") -> Snapshot:
    """Snapshot of a Model Studio run; an unknown status keeps the wait going (and says so)."""
    outcome = BUILD_OUTCOMES.get(build_status, Outcome.WAITING)
    data = run.to_json()
    data["buildStatus"] = build_status
    note = "" if build_status in BUILD_OUTCOMES else " (unknown status; still waiting)"
    via = " (from the build)" if source == "build" else ""
    return Snapshot(
        outcome=outcome,
        status=build_status,
        # Short: the logs already say which run this is.
        summary=f"build {build_status}{via}{note}",
        data=data,
        reason=None
        if outcome is not Outcome.FAILED and outcome is not Outcome.CANCELLED
        else f"build {run.build_rid} is {build_status}",
    )


# Live deployment states that end the wait at once: nothing will roll out by itself from there.
FAIL_FAST_STATES = frozenset({"FAILED", "DISABLED"})


@dataclass
class LiveDeploymentWatch:
    """What "the deployment serves what we expect" means, and the memory it needs across looks.

    Succeeded: the expected version (when given) is served, the state is ACTIVE and, with
    ``require_ready``, ``isReady`` is true. Waiting: STARTING, not ready, or the old version still
    served. Failed: FAILED or DISABLED at once; DEGRADED once it has lasted ``degraded_grace`` seconds.
    """

    expected_model_version_rid: str | None = None
    require_ready: bool = True
    degraded_grace: float = 300.0
    degraded_since: float | None = None

    def evaluate(self, deployment: LiveDeployment, *, now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        state = deployment.status.state
        ready = deployment.status.is_ready
        served = deployment.model_version.model_version_rid if deployment.model_version else None
        summary = f"serves {served}: {state}, {'ready' if ready else 'not ready'}"
        if state == "DEGRADED":
            self.degraded_since = self.degraded_since or now
        else:
            self.degraded_since = None
        outcome = Outcome.WAITING
        reason: str | None = None
        if state in FAIL_FAST_STATES:
            outcome, reason = Outcome.FAILED, f"live deployment {deployment.rid} is {state} (serving {served})"
        elif (
            state == "DEGRADED" and self.degraded_since is not None and now - self.degraded_since >= self.degraded_grace
        ):
            outcome = Outcome.FAILED
            reason = (
                f"live deployment {deployment.rid} has been DEGRADED for {now - self.degraded_since:.0f}s "
                f"(grace {self.degraded_grace:.0f}s; serving {served})"
            )
        elif (
            state == "ACTIVE"
            and (self.expected_model_version_rid is None or served == self.expected_model_version_rid)
            and (ready or not self.require_ready)
        ):
            outcome = Outcome.SUCCEEDED
        elif self.expected_model_version_rid and served != self.expected_model_version_rid:
            summary += f" (waiting for {self.expected_model_version_rid})"
        return Snapshot(outcome=outcome, status=state, summary=summary, data=deployment.to_json(), reason=reason)
