"""The one mapping from Foundry states to outcomes, used by operators, sensors and triggers alike."""

from __future__ import annotations

from modelops_provider.core.waiting import Outcome, Snapshot
from modelops_provider.foundry.models import ModelStudioRun

BUILD_OUTCOMES: dict[str, Outcome] = {
    "RUNNING": Outcome.WAITING,
    "SUCCEEDED": Outcome.SUCCEEDED,
    "FAILED": Outcome.FAILED,
    "CANCELED": Outcome.CANCELLED,
}


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
        summary=f"Model Studio run {run.run_id}: build {build_status}{via}{note}",
        data=data,
        reason=None if outcome is not Outcome.FAILED and outcome is not Outcome.CANCELLED
        else f"build {run.build_rid} is {build_status}",
    )
