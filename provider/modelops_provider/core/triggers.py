"""The one polling trigger. Subclasses only declare what differs: which hook, what to watch, how to
look at it, and (optionally) how to cancel it."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from modelops_provider.core import poller
from modelops_provider.core.errors import ApiError, JobTimeoutError
from modelops_provider.core.hook import ApiHook
from modelops_provider.core.transport import Call, within
from modelops_provider.core.waiting import Snapshot, WaitProgress, poll_until_terminal

# Time for the cancel when a user kills the task, inside Airflow's [triggerer] on_kill_timeout (30 s);
# the same budget as every other cancel (core.operators.CANCEL_BUDGET_S).
ON_KILL_BUDGET_S = 25.0
# How long a trigger past its deadline still waits for its first look.
FIRST_LOOK_GRACE_S = 10.0

# Event payload "status" values.
DONE = "done"
TIMEOUT = "timeout"
ERROR = "error"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class PollingTrigger(BaseTrigger):
    """Poll a remote job until it is terminal or an absolute deadline passes; yield exactly one event.

    A subclass declares what it watches as annotated class attributes (a default, or none for a
    required field): they are its keyword arguments, its serialized kwargs and the event's ``target``,
    declared once. It also says how to look at the job (:meth:`check`) and how to stop it
    (:meth:`cancel`); operators and sensors build the trigger and use those same two, so each job's
    look and cancel are written once.

    Kwargs are JSON values only (they are stored in Airflow's database) and never hold a secret:
    the connection is resolved by id inside :meth:`run`.
    """

    hook_class: ClassVar[type[ApiHook]]
    # How the waits of this kind are polled together (None: each trigger polls on its own).
    poll_source: ClassVar[type[poller.PollSource] | None] = None
    # Field name -> default (REQUIRED for none), gathered from the annotations of each subclass.
    fields: ClassVar[dict[str, Any]] = {}
    # How the log names what is watched: "<what> <value of name_field>" (once per line).
    what: ClassVar[str] = ""
    name_field: ClassVar[str] = ""
    # Which keys of a snapshot's data an event carries, besides the verdict (outcome, status, summary,
    # reason): none by default, the worker reads the rest on resume (:meth:`complete`), so the
    # triggerer's cost stays per batch and events stay small. None: all of it, for a trigger whose
    # data is the small evidence of its own verdict (the worker then reads nothing again).
    event_data: ClassVar[tuple[str, ...] | None] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = {
            name: cls.__dict__.get(name, REQUIRED)
            for name, annotation in inspect.get_annotations(cls).items()
            if not name.startswith("_") and "ClassVar" not in str(annotation)
        }
        cls.fields = {**cls.fields, **own}

    def __init__(
        self,
        *,
        conn_id: str,
        poll_interval: float = 30.0,
        deadline: float | None = None,
        cancel_on_kill: bool = False,
        started_at: float | None = None,
        **target: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(target) - set(self.fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) {unknown}")
        for name, default in self.fields.items():
            if name not in target and default is REQUIRED:
                raise TypeError(f"{type(self).__name__} needs the keyword argument {name!r}")
            setattr(self, name, target.get(name, default))
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill
        self.started_at = started_at  # the launch (epoch s): elapsed time in the log counts from it
        self._hook: ApiHook | None = None

    def target(self) -> dict[str, Any]:
        """The declared fields: what is watched (also sent back in every event)."""
        return {name: getattr(self, name) for name in self.fields}

    @abstractmethod
    def check(self, hook: Any) -> Call[Snapshot]:
        """One look at the remote job."""

    def cancel(self, hook: Any) -> Call[Any] | None:
        """The call that stops the remote job (a no-op on a job that already ended), or None when
        there is nothing to stop. The trigger itself calls it on kill only with ``cancel_on_kill``."""
        return None

    def brief(self, snap: Snapshot) -> dict[str, Any]:
        """A snapshot as an event carries it: the verdict, and of the data what :attr:`event_data`
        names (ids and outcome; no remote payload)."""
        keep = self.event_data
        data = snap.data if keep is None else {key: snap.data[key] for key in keep if key in snap.data}
        brief: dict[str, Any] = {"outcome": snap.outcome.value, "status": snap.status, "summary": snap.summary}
        if data:
            brief["data"] = data
        if snap.reason is not None:
            brief["reason"] = snap.reason
        if snap.unknown_status:
            brief["unknown_status"] = True
        return brief

    def complete(self, hook: Any, snap: Snapshot) -> Call[Snapshot]:
        """In the worker, on resume: the final snapshot an event describes, with all its data.

        When the event left data out (:attr:`event_data`), the job is read once more through
        :meth:`check`. The trigger's verdict stands (a job that ended does not start again); a fresh
        look that disagrees is logged as a warning."""
        if self.event_data is None or not snap.outcome.terminal:
            return snap
        fresh = yield from self.check(hook)
        if fresh.status != snap.status:
            self.log.warning(
                "%s: the trigger saw %s, a fresh look now sees %s; keeping the trigger's verdict (%s)",
                self.describe(),
                snap.status,
                fresh.status,
                snap.outcome.value,
            )
        return dataclasses.replace(snap, data=fresh.data)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return (
            f"{cls.__module__}.{cls.__qualname__}",
            {
                **self.target(),
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
                "started_at": self.started_at,
            },
        )

    def _event(self, status: str, **payload: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "target": self.target(), **payload})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        began = time.time() if self.started_at is None else self.started_at
        try:
            settings = poller.loop_settings()
            if self.poll_source is not None and settings.shared:
                snap = await self._wait_shared(settings.progress_interval)
            else:
                hook = self._hook = self.hook_class(self.conn_id)
                await hook.aget_conn()
                snap = await hook.acall(
                    poll_until_terminal(
                        lambda: self.check(hook),
                        what=self.describe(),
                        poll_interval=self.poll_interval,
                        deadline=self.deadline,
                        log=self.log,
                        started_at=self.started_at,
                        progress_interval=settings.progress_interval,
                        handed_over=True,
                    )
                )
            # The task logs the end when it resumes: the event says how long the job took.
            yield self._event(DONE, snapshot=self.brief(snap), elapsed=round(time.time() - began, 1))
        except JobTimeoutError as exc:
            last = self.brief(exc.snapshot) if exc.snapshot is not None else None
            yield self._event(TIMEOUT, snapshot=last, message=str(exc))
        except ApiError as exc:
            yield self._event(ERROR, message=str(exc), error=exc.to_dict())
        except Exception as exc:  # a bad connection, say: report it rather than crash the trigger
            # The event carries one line; the traceback goes to the trigger's log first.
            self.log.exception("%s: the wait broke down", self.describe())
            yield self._event(ERROR, message=f"{type(exc).__name__}: {exc}")
        # asyncio.CancelledError is deliberately not caught: nothing may be awaited on that path, or
        # Airflow's on_kill may be lost (see AIRFLOW-NOTES).

    async def _wait_shared(self, progress_interval: float) -> Snapshot:
        """Wait through the loop's poller for this kind and connection, under the same rules."""
        progress = WaitProgress(
            self.describe(), self.deadline, self.log, self.started_at, progress_interval, handed_over=True
        )
        shared = poller.poller_for(self)
        waiter = shared.watch(self)
        try:
            while True:
                left = progress.remaining()
                if progress.last is not None and left is not None and left <= 0:
                    progress.expired()
                if progress.last is None and left is not None:
                    # Past the deadline (a triggerer restart, say), still look once: the event then
                    # says what state the job was left in.
                    left = max(left, FIRST_LOOK_GRACE_S)
                # Wake for the deadline, or for the progress line when nothing changes (the poller
                # hands over only changes).
                wake = progress.next_line_in()
                try:
                    async with asyncio.timeout(max(0.0, wake if left is None else min(left, wake))):
                        result = await waiter.next()
                except TimeoutError:
                    if left is not None and left <= wake:
                        progress.expired()
                    progress.tick()
                    continue
                if isinstance(result, BaseException):
                    progress.failed(result)
                elif progress.seen(result):
                    return result
        finally:
            shared.discard(waiter)  # synchronous: also on cancellation, where nothing may be awaited

    def describe(self) -> str:
        if self.what and self.name_field:
            return f"{self.what} {getattr(self, self.name_field)}"
        return f"{type(self).__name__} {self.target()}"

    async def on_kill(self) -> None:
        """Airflow 3.3: the user marked the deferred task failed/success or cleared it.

        Airflow allows ``[triggerer] on_kill_timeout`` (30 s) for this, so the cancel gets a budget
        inside it rather than the full retry policy.
        """
        if not self.cancel_on_kill:
            return
        hook = self._hook or self.hook_class(self.conn_id)
        self.log.info("Task was killed by a user; cancelling %s", self.describe())
        try:
            await asyncio.wait_for(self._cancel(hook), timeout=ON_KILL_BUDGET_S)
        except TimeoutError:
            self.log.warning("Cancel of %s not answered within %.0f s", self.describe(), ON_KILL_BUDGET_S)
        except Exception as exc:
            self.log.warning("Cancel of %s not accepted: %s", self.describe(), exc)
        else:
            self.log.info("Cancel of %s accepted", self.describe())

    async def _cancel(self, hook: ApiHook) -> None:
        await hook.aget_conn()  # normally resolved by run() already
        call = self.cancel(hook)
        if call is not None:
            await hook.acall(within(call, ON_KILL_BUDGET_S, what=f"cancel of {self.describe()}"))
