"""The sensor shape shared by every integration: poke, reschedule and deferrable over the same check."""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseSensorOperator, PokeReturnValue

from modelops_provider.core import triggers
from modelops_provider.core.errors import JobFailedError, JobTimeoutError
from modelops_provider.core.hook import ApiHook
from modelops_provider.core.operators import default_deferrable, resumed_line, unpack_event
from modelops_provider.core.records import RunRecorder
from modelops_provider.core.retry import MissedPolls
from modelops_provider.core.transport import Call
from modelops_provider.core.validation import poll_interval, seconds
from modelops_provider.core.waiting import (
    MAX_MISSED_POLLS,
    TRANSIENT_ERRORS,
    Outcome,
    Snapshot,
    WaitProgress,
    log_hand_over,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class PollingSensor(RunRecorder, BaseSensorOperator):
    """Wait for a remote object to reach a terminal outcome; fail fast on a failed one.

    ``poke_interval`` is the poll interval in every mode, ``timeout`` the overall limit (in deferrable
    mode it becomes the trigger's absolute deadline).
    """

    hook_class: ClassVar[type[ApiHook]]
    trigger_class: ClassVar[type[triggers.PollingTrigger]]
    what: ClassVar[str] = "remote object"
    missed_polls_key = "modelops_missed_polls"

    def __init__(self, *, deferrable: bool | None = None, **kwargs: Any) -> None:
        if "poke_interval" in kwargs:  # before Airflow's own check, which overflows on huge values
            poll_interval("poke_interval", kwargs["poke_interval"])
        super().__init__(**kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        # Airflow lets NaN and 0 through; they would busy-poll the service.
        poll_interval("poke_interval", self.poke_interval)
        seconds("timeout", self.timeout, positive=True)
        self._hook: ApiHook | None = None
        # Logs each change and the progress line; counts from the sensor's start (it launched nothing).
        self._last_summary: str | None = None
        self._progress: WaitProgress | None = None
        self._started_at: float | None = None
        self._last: Snapshot | None = None
        self._trigger: triggers.PollingTrigger | None = None
        self._missed = MissedPolls(MAX_MISSED_POLLS)

    @property
    @abstractmethod
    def conn_id(self) -> str: ...

    @abstractmethod
    def validate(self) -> None: ...

    # --- waiting, declared once by the trigger ---------------------------------------------------
    def trigger_fields(self) -> dict[str, Any]:
        """The trigger's fields: what the worker's looking trigger knows by now (it may have learned
        more on its looks), else this sensor's attributes of the same names."""
        if self._trigger is not None:
            return self._trigger.target()
        return {name: getattr(self, name) for name in self.trigger_class.fields if hasattr(self, name)}

    def make_trigger(
        self, deadline: float | None = None, fields: dict[str, Any] | None = None
    ) -> triggers.PollingTrigger:
        return self.trigger_class(
            **(self.trigger_fields() if fields is None else fields),
            conn_id=self.conn_id,
            poll_interval=float(self.poke_interval),
            deadline=deadline,
            cancel_on_kill=False,  # a sensor did not start what it waits for
            started_at=self._started_at,
        )

    @property
    def trigger(self) -> triggers.PollingTrigger:
        """The trigger that looks at the object in the worker (built once: it may keep state across pokes)."""
        if self._trigger is None:
            self._trigger = self.make_trigger()
        return self._trigger

    def check(self, hook: Any) -> Call[Snapshot]:
        return self.trigger.check(hook)

    def describe(self) -> str:
        return self.what

    def push_links(self, context: Context) -> None:
        """Push extra-link URLs (before any wait or deferral)."""

    def remote(self) -> tuple[str, str | None] | None:
        """The watched object's id and URL, for the run record."""
        return None

    def record_target(self) -> tuple[str, str | None, float | None] | None:
        remote = self.remote()
        return None if remote is None else (remote[0], remote[1], None)

    @property
    def hook(self) -> Any:
        if self._hook is None:
            self._hook = self.hook_class(self.conn_id)
        return self._hook

    def _settle(self, snap: Snapshot) -> Any:
        self._record_snap = snap
        if snap.outcome is Outcome.SUCCEEDED:
            self._record_result = snap.data
            return snap.data
        raise JobFailedError(f"{self.describe()}: {snap.reason or snap.summary}")

    def poke(self, context: Context) -> bool | PokeReturnValue:
        # The missed-poll rule of every wait: in reschedule mode each poke is a new process, so the
        # count lives in the task state store (Airflow 3.3+).
        store = context.get("task_state_store") if self.reschedule else None
        if store is not None:
            stored = store.get(self.missed_polls_key)
            self._missed.count = int(stored) if isinstance(stored, int) and not isinstance(stored, bool) else 0
        try:
            snap = self.hook.call(self.check(self.hook))
        except TRANSIENT_ERRORS as exc:
            if self._missed.missed():
                if store is not None:
                    store.delete(self.missed_polls_key)
                raise
            if store is not None:
                store.set(self.missed_polls_key, self._missed.count)
            # Not now rather than no: poke again.
            self.log.warning(
                "%s: poke failed (%s); %d more failed poke(s) allowed", self.describe(), exc, self._missed.left
            )
            return False
        self._last = snap
        if self._missed.count:
            self._missed.seen()
            if store is not None:
                store.delete(self.missed_polls_key)
        self._record_snap = snap
        if snap.unknown_status:
            # An unknown status is worth a warning: the sensor's own timeout bounds the wait on it.
            if snap.summary != self._last_summary:
                self.log.warning("%s: %s", self.describe(), snap.summary)
        else:
            if self._progress is None:
                self._progress = WaitProgress(self.describe(), None, self.log, self._started_at)
            self._progress.seen(snap)
        self._last_summary = snap.summary
        if not snap.outcome.terminal:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._settle(snap))

    def execute(self, context: Context) -> Any:
        self.validate()
        self._started_at = time.time()
        self.push_links(context)
        self.record_run(context)
        with self.recording(context):
            return self._execute(context)

    def _execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # One look first: no need to occupy the triggerer for something already settled.
        done = self.poke(context)
        if isinstance(done, PokeReturnValue):
            return done.xcom_value
        deadline = time.time() + float(self.timeout) if self.timeout is not None else None
        log_hand_over(self.log, self.describe())
        self.defer(trigger=self.make_trigger(deadline), method_name="execute_complete", timeout=None)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        with self.recording(context, resumed=True):
            try:
                snap = unpack_event(event)
            except JobTimeoutError as exc:
                # A sensor timeout, so that soft_fail and the usual sensor semantics apply.
                raise AirflowSensorTimeout(f"{self.describe()}: {exc} (timeout {float(self.timeout):g}s)") from None
            target = (event or {}).get("target")
            if isinstance(target, dict) and target:
                # What the trigger learned (a build, a config version) names the object for the read below.
                self._trigger = self.make_trigger(fields=target)
            # The event carries ids and the outcome; what else the result needs is read here.
            snap = self.hook.call(self.trigger.complete(self.hook, snap))
            self.log.info("%s: %s", self.describe(), resumed_line(snap.summary, event))
            return self._settle(snap)
