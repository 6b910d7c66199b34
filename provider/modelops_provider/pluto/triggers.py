"""The keep-alive trigger: heartbeats for a Pluto run while its DAG run works.

Pluto's stale-run monitor marks a RUNNING run FAILED when it hears nothing: 150 s after the last
heartbeat, or (for a run that never pinged) 30 minutes after its last metric or status change
(CONTRACTS.md section F). One trigger per tracked DAG run pings ``POST {url_py}/api/runs/trigger``
every ``interval`` seconds from the triggerer, and stops when

- the ping answers a final status (the finish task closed the run, the monitor reaped it, or a stop
  was requested in Pluto: CANCELLED), or
- the optional absolute deadline passes.

It does not watch the DAG run's other tasks: reading task states from a trigger
(``RuntimeTaskInstance.get_task_states``) stalled the triggerer's pings for minutes in the deployment
tier, so a finish task that could not close the run leaves the keep-alive pinging until its
``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from modelops_provider.core.errors import ApiError
from modelops_provider.core.waiting import TRANSIENT_ERRORS

# Event payload "status" values.
CLOSED = "closed"  # the ping answered a final status
TIMEOUT = "timeout"
ERROR = "error"
INLINE = "inline"  # run inline by dag.test(): no other task can run meanwhile


class PlutoKeepAliveTrigger(BaseTrigger):
    """Ping a Pluto run until it is closed or its DAG run's other tasks have finished.

    Kwargs are JSON values and name the connection by id (no secret is stored).
    """

    def __init__(
        self,
        *,
        conn_id: str,
        run_id: int,
        dag_id: str,
        dag_run_id: str,
        interval: float = 30.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.run_id = int(run_id)
        self.dag_id = dag_id
        self.dag_run_id = dag_run_id
        self.interval = float(interval)
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return (
            f"{cls.__module__}.{cls.__qualname__}",
            {
                "conn_id": self.conn_id,
                "run_id": self.run_id,
                "dag_id": self.dag_id,
                "dag_run_id": self.dag_run_id,
                "interval": self.interval,
                "deadline": self.deadline,
            },
        )

    def _event(self, status: str, **payload: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "runId": self.run_id, **payload})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.task_instance is None:
            # dag.test() / `airflow dags test` run a deferred task's trigger inline, one task at a
            # time: no other task works while this one would ping, and a single ping would put the
            # run under the 150 s heartbeat grace instead of the 30 min stale grace. Do nothing.
            yield self._event(INLINE)
            return
        from modelops_provider.pluto.hooks import PlutoHook

        hook = PlutoHook(self.conn_id)
        pings = 0
        last_answer = time.time()
        status = ""
        try:
            await hook.aget_conn()
            while True:
                try:
                    beat = await hook.acall(hook.api.heartbeat(self.run_id))
                except TRANSIENT_ERRORS as exc:
                    # A missed heartbeat is not the end of tracking: keep trying, loudly. Pluto reaps
                    # the run only after 150 s without one.
                    self.log.warning(
                        "Heartbeat for Pluto run %s failed (%s); last answer %.0fs ago, trying again in %.0fs",
                        self.run_id,
                        exc,
                        time.time() - last_answer,
                        self.interval,
                    )
                else:
                    pings += 1
                    last_answer = time.time()
                    if beat.status != status:
                        self.log.info("Pluto run %s is %s (heartbeat %d)", self.run_id, beat.status, pings)
                        status = beat.status
                    if beat.status != "RUNNING":
                        yield self._event(CLOSED, plutoStatus=beat.status, pings=pings)
                        return
                if self.deadline is not None and time.time() >= self.deadline:
                    yield self._event(TIMEOUT, plutoStatus=status or None, pings=pings)
                    return
                await asyncio.sleep(self.interval)
        except ApiError as exc:
            yield self._event(ERROR, message=str(exc), error=exc.to_dict(), pings=pings)
        except Exception as exc:  # a bad connection, say: report it rather than crash the trigger
            self.log.exception("Keep-alive of Pluto run %s broke down", self.run_id)
            yield self._event(ERROR, message=f"{type(exc).__name__}: {exc}", pings=pings)
