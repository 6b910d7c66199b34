"""The one mapping from DuckLake run, step and test statuses to outcomes, used by the operator, the
sensor, the trigger and the run report alike."""

from __future__ import annotations

from modelops_provider.core.waiting import Outcome, Snapshot
from modelops_provider.ducklake.models import ModelRun

RUN_OUTCOMES: dict[str, Outcome] = {
    "PENDING": Outcome.WAITING,
    "RUNNING": Outcome.WAITING,
    "SUCCESS": Outcome.SUCCEEDED,
    "FAILED": Outcome.FAILED,
    "CANCELLED": Outcome.CANCELLED,
}
# A step that never ran because an earlier tier failed is SKIPPED: not built, like a cancelled one.
STEP_OUTCOMES: dict[str, Outcome] = {**RUN_OUTCOMES, "SKIPPED": Outcome.CANCELLED}
# A test's verdict. Only PASS passes the gate: FAIL, ERROR and any other (or a missing) status fail it.
PASSING_TEST_STATUS = "PASS"
TEST_STATUSES: tuple[str, ...] = ("PASS", "FAIL", "ERROR")

RUN_STATUSES: tuple[str, ...] = tuple(RUN_OUTCOMES)

# Fields left out of snapshots and summaries: they can be hundreds of kilobytes (XCom, trigger events).
BULKY_RUN_FIELDS = {"compile_manifest"}
BULKY_STEP_FIELDS = {"compiled_sql"}


def run_outcome(status: str | None) -> Outcome:
    """An unknown (or missing) run status keeps the wait going (within the limit the wait sets for
    unknown statuses, see ``core.waiting.UNKNOWN_STATUS_GRACE_S``)."""
    return RUN_OUTCOMES.get(status or "", Outcome.WAITING)


def step_outcome(status: str | None) -> Outcome:
    return STEP_OUTCOMES.get(status or "", Outcome.WAITING)


def test_outcome(status: str | None) -> Outcome:
    return Outcome.SUCCEEDED if status == PASSING_TEST_STATUS else Outcome.FAILED


def run_snapshot(run: ModelRun) -> Snapshot:
    status = run.status or "UNKNOWN"
    outcome = run_outcome(run.status)
    known = run.status in RUN_OUTCOMES
    note = "" if known else f" (unknown status; known: {', '.join(RUN_STATUSES)})"
    failed = outcome in (Outcome.FAILED, Outcome.CANCELLED)
    why = f" ({run.error_message})" if failed and run.error_message else ""
    return Snapshot(
        outcome=outcome,
        status=status,
        # Short: the operator, sensor and trigger logs already say which run this is.
        summary=f"{status}{why}{note}",
        data=run.to_json(exclude=BULKY_RUN_FIELDS),
        reason=(run.error_message or f"run is {status}") if failed else None,
        unknown_status=not known,
    )
