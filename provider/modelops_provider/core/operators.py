"""The launch-and-wait operator shape shared by every integration.

A subclass says how to submit its job, how to look at it (a call returning a :class:`Snapshot`), how
to cancel it, which trigger waits for it, and what to return when it succeeded. This base owns the
rest once: re-attaching on retry (Airflow 3.3 task state store), XCom and links before any wait,
sync or deferred waiting against one absolute deadline, cancelling on timeout and on kill, and turning
trigger events into results or errors.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, ResumableJobMixin, conf

from modelops_provider.core import triggers, validation
from modelops_provider.core.errors import (
    API_ERRORS,
    ApiError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    OutcomeUnknownError,
)
from modelops_provider.core.hook import ApiHook
from modelops_provider.core.links import XComLink
from modelops_provider.core.records import RunRecorder
from modelops_provider.core.results import JobResultArg
from modelops_provider.core.transport import Call, new_sync_client, run_sync, within
from modelops_provider.core.validation import seconds
from modelops_provider.core.waiting import Outcome, Snapshot, duration, log_hand_over, poll_until_terminal

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


# Time a cancel may take (a timeout, a kill, the last try breaking down), retries included: inside
# Airflow's 30 s [triggerer] on_kill_timeout, and short of a worker's kill grace.
CANCEL_BUDGET_S = 25.0


def default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def unpack_event(event: dict[str, Any] | None) -> Snapshot:
    """Turn a trigger event into the final snapshot, or raise what the trigger met as sync mode would:
    the same :class:`ApiError` subclass with the same fields, a :class:`JobTimeoutError` with the last
    snapshot; anything else as an AirflowException with the trigger's message."""
    if not event or "status" not in event:
        raise AirflowException(f"unexpected trigger event: {event!r}")
    if event["status"] == triggers.ERROR:
        error = event.get("error")
        if isinstance(error, dict) and error.get("type") in API_ERRORS:
            raise ApiError.from_dict(error)
        raise AirflowException(event.get("message") or "the trigger reported an error")
    if event["status"] == triggers.TIMEOUT:
        last = event.get("snapshot")
        raise JobTimeoutError(
            event.get("message") or "timed out",
            snapshot=Snapshot.from_dict(last) if isinstance(last, dict) else None,
        )
    return Snapshot.from_dict(event["snapshot"])


def resumed_line(summary: str, event: dict[str, Any] | None) -> str:
    """How a task resuming from a trigger states the end it met (the trigger does not log it): the
    summary and the elapsed time the event carries."""
    elapsed = (event or {}).get("elapsed")
    if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool):
        return f"{summary} ({duration(elapsed)} elapsed)"
    return summary


def first_try_since_clear(context: Context, retries: int | None) -> bool:
    """True on a task instance's first try and on the first try after a user cleared it; False on a
    retry. Airflow's ``clear_task_instances`` sets ``max_tries = try_number + retries`` (the try
    number of the cleared try), just as a new task instance starts with ``max_tries = retries``, so
    the tries since the last clear number ``try_number - (max_tries - retries)``."""
    ti = context.get("ti")
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    if not isinstance(try_number, int) or not isinstance(max_tries, int):
        return False  # unknown: keep the mixin's behaviour (re-attach)
    return try_number - (max_tries - int(retries or 0)) <= 1


class RemoteJobOperator(RunRecorder, ResumableJobMixin, BaseOperator):  # type: ignore[misc]
    """Launch a remote job, then (optionally) wait for it in the worker or deferred in the triggerer."""

    hook_class: ClassVar[type[ApiHook]]
    trigger_class: ClassVar[type[triggers.PollingTrigger]]
    external_id_key = "remote_job"
    # Which identifier of the job names it in the run record (see core/records.py).
    remote_id_key: ClassVar[str] = "run_id"
    # Links to push before waiting: each class's URL comes from :meth:`link_urls`.
    what: ClassVar[str] = "remote job"

    def __init__(
        self,
        *,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = 30.0,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = validation.poll_interval("poll_interval", poll_interval)
        self.timeout = seconds("timeout", timeout, allow_none=True, positive=True)
        self._job: dict[str, Any] | None = None
        self._job_url: str | None = None
        self._hook: ApiHook | None = None
        # When an earlier try's create had an unknown outcome (epoch seconds), else None.
        self.unknown_since: float | None = None

    # --- what a subclass declares ---------------------------------------------------------------
    @property
    @abstractmethod
    def conn_id(self) -> str: ...

    @abstractmethod
    def validate(self) -> None:
        """Check every (rendered) argument; raise ValueError naming the parameter and value."""

    @abstractmethod
    def submit(self, hook: Any, context: Context) -> dict[str, Any]:
        """Start the remote job; return the JSON identifiers needed to find it again, named as the
        fields of ``trigger_class``."""

    # --- waiting, declared once by the trigger ---------------------------------------------------
    def make_trigger(self, job: dict[str, Any], deadline: float | None = None) -> triggers.PollingTrigger:
        """The trigger that waits for ``job`` (its keys named as the trigger's fields). It is also what
        looks at the job and stops it in the worker, so each is written once."""
        fields = self.trigger_class.fields
        return self.trigger_class(
            **{key: value for key, value in job.items() if key in fields},
            conn_id=self.conn_id,
            poll_interval=self.poll_interval or 0.0,
            deadline=deadline,
            cancel_on_kill=True,
            started_at=job.get("started_at"),
        )

    def check(self, hook: Any, job: dict[str, Any]) -> Call[Snapshot]:
        """One look at the job."""
        return self.make_trigger(job).check(hook)

    def cancel(self, hook: Any, job: dict[str, Any]) -> Call[Any] | None:
        """Stop the job (a no-op on a job that already finished); None when there is nothing to stop."""
        return self.make_trigger(job).cancel(hook)

    def link_urls(self, hook: Any, job: dict[str, Any]) -> dict[type[XComLink], str]:
        return {}

    def describe(self, job: dict[str, Any]) -> str:
        return f"{self.what} {job}"

    def on_success(self, hook: Any, job: dict[str, Any], snap: Snapshot, context: Context) -> Any:
        """The task's return value for a succeeded job (raise to fail the task on other grounds)."""
        return snap.data

    def failure_message(self, hook: Any, job: dict[str, Any], snap: Snapshot) -> str:
        return f"{self.describe(job)} ended {snap.status}: {snap.reason or snap.summary}"

    # --- the shared flow -------------------------------------------------------------------------
    @property
    def hook(self) -> Any:
        if self._hook is None:
            self._hook = self.hook_class(self.conn_id)
        return self._hook

    @property
    def output(self) -> Any:
        # Downstream tasks reading the result get a clear error when there is none (marked success).
        return JobResultArg(operator=self)

    def execute(self, context: Context) -> Any:
        self.validate()
        with self.recording(context):
            if first_try_since_clear(context, self.retries):
                self._replace_earlier_job(context)
            return self.execute_resumable(context)

    def record_target(self) -> tuple[str, str | None, float | None] | None:
        job = self._job
        if not job or job.get(self.remote_id_key) is None:
            return None
        return str(job[self.remote_id_key]), self._job_url, job.get("started_at")

    def _stored_job(self, context: Context) -> dict[str, Any] | None:
        store = context.get("task_state_store") if self.durable else None
        stored = store.get(self.external_id_key) if store is not None else None
        return dict(stored) if isinstance(stored, dict) else None

    def _replace_earlier_job(self, context: Context) -> None:
        """A user cleared the task: they want a new job, not the one an earlier try left running.

        The earlier try's trigger cancels its job too (its ``on_kill``), but only ~2 s after this try
        has started; cancelling here first means this try never re-attaches to a job about to die."""
        job = self._stored_job(context)
        if job is None:
            return
        try:
            running = self.hook.call(self.check(self.hook, job)).outcome is Outcome.WAITING
        except NotFoundError:
            running = False
        except Exception:
            self.log.exception("Could not look at %s; cancelling it to be sure", self.describe(job))
            running = True
        if running:
            self.log.warning(
                "The task was cleared: cancelling %s that an earlier try started, and starting a new one",
                self.describe(job),
            )
            self._cancel(job)
        self._forget_job(context)

    # ResumableJobMixin contract. The status strings it sees are our Outcome values.
    def submit_job(self, context: Context) -> dict[str, Any]:
        # An earlier try's create of unknown outcome: the subclass's submit looks for it first.
        store = context.get("task_state_store") if self.durable else None
        key = f"{self.external_id_key}_unknown_since"
        stored = store.get(key) if store is not None else None
        self.unknown_since = float(stored) if isinstance(stored, (int, float)) and stored else None
        try:
            job = self.submit(self.hook, context)
        except OutcomeUnknownError as exc:
            if store is not None:
                store.set(key, min(exc.asked_at, self.unknown_since or exc.asked_at))
            raise
        if store is not None and self.unknown_since is not None:
            store.delete(key)
        self.log.info("Started %s", self.describe(job))
        return {**job, "started_at": time.time()}

    def get_job_status(self, external_id: Any, context: Context) -> str:
        job = dict(external_id)
        # Finding the earlier try's job is waiting too: if that breaks down on the last try, stop it.
        with self._stop_job_if_waiting_fails(job, context):
            try:
                return self.hook.call(self.check(self.hook, job)).outcome.value  # type: ignore[no-any-return]
            except NotFoundError:
                # The job an earlier try started is gone (deleted, expired): start a new one.
                self.log.warning("%s no longer exists; starting a new one", self.describe(job))
                return Outcome.FAILED.value

    def is_job_active(self, status: str) -> bool:
        return status == Outcome.WAITING.value

    def is_job_succeeded(self, status: str) -> bool:
        return status == Outcome.SUCCEEDED.value

    def _publish(self, job: dict[str, Any], context: Context) -> None:
        """Push the job's identifiers to XCom and its links (before any wait or deferral)."""
        ti = context["ti"]
        for key, value in job.items():
            if key != "started_at":
                ti.xcom_push(key=key, value=value)
        for link, url in self.link_urls(self.hook, job).items():
            link.push(context, url)
            self.log.info("%s: %s", link.name, url)
            self._job_url = self._job_url or url
        self._job = job
        self.record_run(context)

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        job = self._job = dict(external_id)
        hook = self.hook
        self._publish(job, context)
        if not self.wait_for_completion:
            return job
        # The deadline counts from the launch, so a retry that re-attaches does not restart the clock.
        deadline = None if self.timeout is None else float(job.get("started_at", time.time())) + self.timeout
        if self.deferrable:
            log_hand_over(self.log, self.describe(job))
            self.defer(
                trigger=self.make_trigger(job, deadline),
                method_name="execute_complete",
                timeout=None,  # the trigger's own deadline decides, so the remote job is cancelled too
            )
        with self._stop_job_if_waiting_fails(job, context):
            snap = hook.call(
                poll_until_terminal(
                    lambda: self.check(hook, job),
                    what=self.describe(job),
                    poll_interval=self.poll_interval or 0.0,
                    deadline=deadline,
                    log=self.log,
                    started_at=job.get("started_at"),
                )
            )
        return self._finish(job, snap, context)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        job = dict(external_id)
        if self._job != job:
            # A retry found that the job an earlier try started already succeeded: that try's XComs
            # were cleared, so publish the identifiers and links again.
            self._job = job
            self._publish(job, context)
        if not self.wait_for_completion:
            return job
        if self._job == job and getattr(self, "_result_ready", False):
            return self._result
        snap = self.hook.call(self.check(self.hook, job))
        return self._finish(job, snap, context)

    def _finish(self, job: dict[str, Any], snap: Snapshot, context: Context) -> Any:
        self._record_snap = snap
        try:
            if snap.outcome is not Outcome.SUCCEEDED:
                raise JobFailedError(self.failure_message(self.hook, job, snap))
            self._result = self._record_result = self.on_success(self.hook, job, snap, context)
        except JobFailedError:
            # The job's verdict is final (it failed, or its result failed a gate): a retry, or
            # clearing the task, must start a new job rather than re-read this one.
            self._forget_job(context)
            raise
        self._result_ready = True
        # Done: clearing the task later means "run it again", not "return that result again".
        self._forget_job(context)
        return self._result

    def _forget_job(self, context: Context) -> None:
        store = context.get("task_state_store") if self.durable else None
        if store is not None:
            store.delete(self.external_id_key)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        job = dict((event or {}).get("target") or {})
        current = self._stored_job(context)
        if job and current is not None and self.make_trigger(current, None).target() != job:
            # An earlier try's trigger answered: after a clear it may still fire, and on SQLite the new
            # try's trigger can reuse its id, so Airflow hands its event to this try. Not our job: wait
            # for the one this try started.
            self.log.warning(
                "Ignoring a trigger event about %s (an earlier try's); waiting for %s",
                self.describe(job),
                self.describe(current),
            )
            with self.recording(context, resumed=True):
                return self.poll_until_complete(current, context)
        self._job = job
        with self.recording(context, resumed=True):
            with self._stop_job_if_waiting_fails(job, context):
                snap = unpack_event(event)
                if job:
                    # The event carries ids and the outcome; what else the result needs is read here.
                    snap = self.hook.call(self.make_trigger(job).complete(self.hook, snap))
            self.log.info("%s: %s", self.describe(job), resumed_line(snap.summary, event))
            return self._finish(job, snap, context)

    def _cancel(self, job: dict[str, Any]) -> None:
        try:
            call = self.cancel(self.hook, job)
            if call is None:
                return
            self.log.warning("Cancelling %s", self.describe(job))
            # A client of its own, every timeout within the cancel budget: on_kill runs from a signal
            # handler (the hook's client may be mid-request), and Airflow kills a task that lingers.
            bounded = within(call, CANCEL_BUDGET_S, what=f"cancel of {self.describe(job)}")
            with new_sync_client(self.hook.service, max_timeout=CANCEL_BUDGET_S) as client:
                run_sync(client, bounded)
            self.log.info("Cancel of %s accepted", self.describe(job))
        except Exception as exc:
            self.log.warning("Cancel of %s not accepted: %s", self.describe(job), exc)

    @contextmanager
    def _stop_job_if_waiting_fails(self, job: dict[str, Any], context: Context) -> Iterator[None]:
        """A timeout cancels the job. Any other breakdown of the wait (not of the job) cancels it only
        on the last try: a retry would re-attach, but after the last try nobody would wait for the job
        any more, and a job nobody waits for is a leak."""
        try:
            yield
        except JobTimeoutError as exc:
            self._cancel(job)
            if self.timeout is not None:
                raise JobTimeoutError(
                    f"{exc} (timeout {self.timeout:g}s from the launch)", snapshot=exc.snapshot
                ) from None
            raise
        except Exception:
            if int(getattr(context["ti"], "try_number", 1) or 1) > int(self.retries or 0):
                self._cancel(job)
            raise

    def on_kill(self) -> None:
        # Runs for a task killed while waiting in the worker; a deferred task is cancelled by the
        # trigger's on_kill instead.
        if self._job is not None and not getattr(self, "_result_ready", False):
            self._cancel(self._job)
