"""The run record: one small JSON document per task instance, in XCom under :data:`RECORD_KEY`, saying
which remote run the task started or watched and how it went. The "Model runs" page and the task's
"Remote run" tab (``modelops_provider.ui``) read it.

Why XCom: in Airflow 3 a worker reaches the metadata database only through the Task Execution API,
so XCom (and the task state store) are the only places a task can write; XCom is also what the
API server already authorizes per DAG, is cleared with the task instance (a cleared task forgets its
old run), and a record is readable with SQL JSON functions (see ``ui/query.py``).

The record is written when the run is launched or first watched, and again when the task ends
(succeeded, failed, timed out, deferred or rescheduled). It holds ids, statuses and a few words; the
full remote answer stays in the task's ``return_value``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from modelops_provider.core.errors import JobTimeoutError
from modelops_provider.core.waiting import duration

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from modelops_provider.core.waiting import Snapshot

RECORD_KEY = "modelops_run"
# What only the task's "Remote run" tab shows (DuckLake steps and test results), kept out of the
# record so that the list page reads small values.
DETAIL_KEY = "modelops_run_detail"
# A task that closes a run another task of its DAG run opened (the Pluto finish task) notes the
# opener's task id here; the list then shows the run once, as it ended.
CLOSES_KEY = "modelops_run_closes"
VERSION = 1

# The outcomes a record can have (the page's status filter).
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed out"
OUTCOMES = (RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)

MAX_EVENTS = 20
MAX_TEXT = 300
MAX_METRICS = 30


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def small_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float] | None:
    """At most :data:`MAX_METRICS` numeric metrics (booleans and non-numbers left out)."""
    if not metrics:
        return None
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(name)[:100]] = value
        if len(out) >= MAX_METRICS:
            break
    return out or None


def build_record(
    previous: Mapping[str, Any] | None,
    *,
    service: str,
    kind: str,
    remote_id: str,
    url: str | None,
    outcome: str,
    status: str | None,
    started_at: float | None = None,
    now: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record after this change: the previous one's start and events carried over (for the same
    remote run), an event added when the status or outcome changed."""
    now = time.time() if now is None else now
    same_run = bool(previous) and previous.get("remote_id") == remote_id  # type: ignore[union-attr]
    prev = dict(previous) if same_run and previous else {}
    events: list[list[Any]] = [list(e) for e in prev.get("events") or []]
    start = prev.get("started_at") or started_at or now
    if not events and outcome != RUNNING and start < now:
        # A task that records its run only when it ends (a promotion, a metrics gate): the timeline
        # still starts when the work did.
        events.append([round(float(start), 3), "STARTED", RUNNING])
    label = status or (outcome.upper() if events else "STARTED")
    if not events or events[-1][1] != label or prev.get("outcome") != outcome:
        events.append([round(now, 3), label, outcome])
    events = events[-MAX_EVENTS:]
    record: dict[str, Any] = {
        "v": VERSION,
        "service": service,
        "kind": kind,
        "remote_id": str(remote_id),
        "url": url or prev.get("url"),
        "outcome": outcome,
        "status": _text(status),
        "started_at": round(float(start), 3),
        "ended_at": None if outcome == RUNNING else round(now, 3),
        "events": events,
    }
    details = dict(details or {})
    record["model_version"] = _text(details.get("model_version")) or prev.get("model_version")
    record["project"] = _text(details.get("project")) or prev.get("project")
    record["verdict"] = _text(details.get("verdict"))
    record["passed"] = details.get("passed") if isinstance(details.get("passed"), bool) else None
    record["metrics"] = small_metrics(details.get("metrics")) or prev.get("metrics")
    record["message"] = _text(details.get("message"))
    if details.get("closes"):
        # This record ends the run another task of the DAG run opened: the page shows this one only.
        record["closes"] = str(details["closes"])
    return record


def error_status(error: BaseException | None) -> str | None:
    """The remote's word for an error that ended a task before any status was seen: the service's
    error name (``ModelVersionNotFound``), else its HTTP status."""
    name = getattr(error, "error_name", None)
    if name:
        return str(name)
    code = getattr(error, "status", None)
    return f"HTTP {code}" if isinstance(code, int) else None


def outcome_of(error: BaseException | None, snap: Snapshot | None) -> str:
    """The record's outcome for a task that ended: from the error that ended it, else from the run."""
    if error is None:
        return SUCCEEDED
    if isinstance(error, JobTimeoutError) or type(error).__name__ == "AirflowSensorTimeout":
        return TIMED_OUT
    if snap is not None and snap.outcome.value == CANCELLED:
        return CANCELLED
    return FAILED


# Exceptions that end a try without ending the wait: the run is still running.
_STILL_RUNNING = ("TaskDeferred", "AirflowRescheduleException")


class RunRecorder:
    """Mixin for the provider's operators and sensors: the one place that writes the run record.

    A class declares :attr:`service` and :attr:`kind` and may add :meth:`record_details`; the shared
    operator and sensor flows call :meth:`record_run` when a run is known, and wrap ``execute`` and
    ``execute_complete`` in :meth:`recording`, which writes the final record.
    """

    service: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    log: Any  # the operator's logger

    _record: dict[str, Any] | None = None
    _record_snap: Snapshot | None = None
    _record_result: Any = None
    _record_resumed = False
    # (remote id, url, started_at, details) as set by :meth:`record_known`.
    _record_known: tuple[str, str | None, float, dict[str, Any]] | None = None

    def record_known(self, remote_id: str, url: str | None, details: dict[str, Any]) -> None:
        """For a task whose work is one step (no run to wait on): what it works on is known from
        now on, with the details it fills in as it goes (the same dict: later changes count)."""
        self._record_known = (remote_id, url, time.time(), details)

    def record_details(self, snap: Snapshot | None, result: Any, error: BaseException | None) -> dict[str, Any]:
        """``model_version``, ``verdict``, ``passed``, ``metrics``, ``project``, ``detail`` (for the
        task's tab only) and ``closes`` (the task id of the opener this task closes), all optional."""
        return self._record_known[3] if self._record_known else {}

    def record_target(self) -> tuple[str, str | None, float | None] | None:
        """``(remote id, url, started_at)`` of the run, once known."""
        return self._record_known[:3] if self._record_known else None

    def record_run(
        self,
        context: Context,
        outcome: str = RUNNING,
        *,
        snap: Snapshot | None = None,
        result: Any = None,
        error: BaseException | None = None,
        status: str | None = None,
    ) -> None:
        """Write the record (never fails the task: a record that cannot be written is logged)."""
        target = self.record_target()
        if target is None:
            return
        try:
            ti = context["ti"]
            previous = self._record
            if previous is None and self._record_resumed:
                # A task resumed after deferral is a new operator object: read what the first half wrote.
                previous = ti.xcom_pull(task_ids=ti.task_id, key=RECORD_KEY, map_indexes=ti.map_index)
            details = dict(self.record_details(snap, result, error))
            detail = details.pop("detail", None)
            if error is not None and "message" not in details:
                details["message"] = str(error).splitlines()[0] if str(error) else type(error).__name__
            if error is not None and "verdict" not in details and snap is not None and snap.reason:
                details["verdict"] = snap.reason
            remote_id, url, started_at = target
            record = build_record(
                previous if isinstance(previous, Mapping) else None,
                service=self.service,
                kind=self.kind,
                remote_id=remote_id,
                url=url,
                outcome=outcome,
                status=snap.status if snap is not None else status or error_status(error),
                started_at=started_at,
                details=details,
            )
            ti.xcom_push(key=RECORD_KEY, value=record)
            self._record = record
            if detail:
                ti.xcom_push(key=DETAIL_KEY, value=detail)
            if record.get("closes"):
                ti.xcom_push(key=CLOSES_KEY, value={"task_id": record["closes"]})
        except Exception:
            self.log.warning("Could not write the run record", exc_info=True)

    @contextmanager
    def recording(self, context: Context, *, resumed: bool = False) -> Iterator[None]:
        """Around ``execute`` (and, with ``resumed``, ``execute_complete``): the final record when the
        task ends (a deferral or reschedule leaves the run running)."""
        self._record_snap = None
        self._record_resumed = resumed
        try:
            yield
        except BaseException as exc:
            if type(exc).__name__ in _STILL_RUNNING:
                self.record_run(context, RUNNING, snap=self._record_snap)
            elif isinstance(exc, Exception):
                snap = self._record_snap or getattr(exc, "snapshot", None)
                self.record_run(context, outcome_of(exc, snap), snap=snap, error=exc)
                self.log_run_summary()
            raise
        else:
            self.record_run(context, SUCCEEDED, snap=self._record_snap, result=self._record_result)
            self.log_run_summary()

    def log_run_summary(self) -> None:
        """The task's last word on its run, from the record: one line with the outcome, how long the
        run took since its launch, the model version, the verdict and the link."""
        record = self._record
        if not record or record.get("outcome") == RUNNING:
            return
        outcome = str(record["outcome"])
        status = record.get("status")
        parts = [outcome if not status or status.lower() == outcome else f"{outcome} ({status})"]
        if record.get("started_at") and record.get("ended_at"):
            parts[0] += f" after {duration(float(record['ended_at']) - float(record['started_at']))}"
        if record.get("model_version"):
            parts.append(f"model version {record['model_version']}")
        if record.get("verdict"):
            parts.append(str(record["verdict"]))
        if record.get("url"):
            parts.append(str(record["url"]))
        self.log.info("%s %s %s: %s", record["service"], record["kind"], record["remote_id"], "; ".join(parts))
