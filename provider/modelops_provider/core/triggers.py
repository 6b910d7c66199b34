"""The one polling trigger. Subclasses only declare what differs: which hook, what to watch, how to
look at it, and (optionally) how to cancel it."""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from modelops_provider.core.errors import ApiError
from modelops_provider.core.hook import ApiHook
from modelops_provider.core.transport import Call
from modelops_provider.core.waiting import Snapshot

# Event payload "status" values.
DONE = "done"
TIMEOUT = "timeout"
ERROR = "error"


class PollingTrigger(BaseTrigger):
    """Poll a remote job until it is terminal or an absolute deadline passes; yield exactly one event.

    Kwargs are JSON values only (they are stored in Airflow's database) and never hold a secret:
    the connection is resolved by id inside :meth:`run`.
    """

    hook_class: ClassVar[type[ApiHook]]

    def __init__(
        self,
        *,
        conn_id: str,
        poll_interval: float = 30.0,
        deadline: float | None = None,
        cancel_on_kill: bool = False,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill
        self._hook: ApiHook | None = None

    @abstractmethod
    def target(self) -> dict[str, Any]:
        """JSON kwargs naming what is watched (they are also sent back in every event)."""

    @abstractmethod
    def check(self, hook: Any) -> Call[Snapshot]:
        """One look at the remote job."""

    def cancel(self, hook: Any) -> Call[Any] | None:
        """The call that stops the remote job, when this trigger may stop it."""
        return None

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
            },
        )

    def _event(self, status: str, **payload: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "target": self.target(), **payload})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook = self.hook_class(self.conn_id)
        last: str | None = None
        try:
            await hook.aget_conn()
            while True:
                snap = await hook.acall(self.check(hook))
                if snap.summary != last:
                    self.log.info("%s", snap.summary)
                    last = snap.summary
                if snap.outcome.terminal:
                    yield self._event(DONE, snapshot=snap.to_dict())
                    return
                now = time.time()
                if self.deadline is not None and now >= self.deadline:
                    yield self._event(
                        TIMEOUT,
                        snapshot=snap.to_dict(),
                        message=f"still {snap.status} when the timeout expired ({snap.summary})",
                    )
                    return
                pause = self.poll_interval
                if self.deadline is not None:
                    pause = max(0.0, min(pause, self.deadline - now))
                await asyncio.sleep(pause)
        except ApiError as exc:
            yield self._event(ERROR, message=str(exc), error=exc.to_dict())
        except Exception as exc:  # a bad connection, say: report it rather than crash the trigger
            yield self._event(ERROR, message=f"{type(exc).__name__}: {exc}")
        # asyncio.CancelledError is deliberately not caught: nothing may be awaited on that path, or
        # Airflow's on_kill may be lost (see AIRFLOW-NOTES).

    async def on_kill(self) -> None:
        """Airflow 3.3: the user marked the deferred task failed/success or cleared it."""
        hook = self._hook
        if not self.cancel_on_kill or hook is None or hook._service is None:
            return
        call = self.cancel(hook)
        if call is None:
            return
        self.log.info("Task was killed by a user; cancelling %s", self.target())
        await hook.acall(call)
