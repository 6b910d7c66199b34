"""The keep-alive trigger: heartbeats for a Pluto run while its DAG run works.

Pluto's stale-run monitor marks a RUNNING run FAILED when it hears nothing: 150 s after the last
heartbeat, or (for a run that never pinged) 30 minutes after its last metric or status change
(CONTRACTS.md section F). One trigger per tracked DAG run pings ``POST {url_py}/api/runs/trigger``
every ``interval`` seconds from the triggerer, and stops when

- the ping answers a final status (the finish task closed the run, the monitor reaped it, or a stop
  was requested in Pluto: CANCELLED), or
- every other task of the DAG run has finished (so a finish task that could not close the run does
  not leave the DAG run waiting on its keep-alive forever), or
- the optional absolute deadline passes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from modelops_provider.core.errors import ApiError
from modelops_provider.core.waiting import TRANSIENT_ERRORS

# Event payload "status" values.
CLOSED = "closed"  # the ping answered a final status
DAG_RUN_DONE = "dag_run_done"  # every other task of the DAG run finished
TIMEOUT = "timeout"
ERROR = "error"
INLINE = "inline"  # run inline by dag.test(): no other task can run meanwhile

# Task states after which a task does no more work in this DAG run.
FINISHED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
# How often the DAG run's task states are read. The read goes through the triggerer's supervisor and
# can take seconds on a busy triggerer, so it runs beside the pings, never between them.
TASK_STATES_EVERY_S = 30.0


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
        keep_alive_task_ids: list[str],
        interval: float = 30.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.run_id = int(run_id)
        self.dag_id = dag_id
        self.dag_run_id = dag_run_id
        self.keep_alive_task_ids = list(keep_alive_task_ids)
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
                "keep_alive_task_ids": self.keep_alive_task_ids,
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
        # Not awaited on the way out (a cancelled trigger must await nothing): cancelled in finally.
        watcher = asyncio.ensure_future(self._watch_other_tasks())
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
                if watcher.done() and not watcher.cancelled() and watcher.result():
                    yield self._event(DAG_RUN_DONE, plutoStatus=status or None, pings=pings)
                    return
                await asyncio.sleep(self.interval)
        except ApiError as exc:
            yield self._event(ERROR, message=str(exc), error=exc.to_dict(), pings=pings)
        except Exception as exc:  # a bad connection, say: report it rather than crash the trigger
            self.log.exception("Keep-alive of Pluto run %s broke down", self.run_id)
            yield self._event(ERROR, message=f"{type(exc).__name__}: {exc}", pings=pings)
        finally:
            watcher.cancel()

    async def _watch_other_tasks(self) -> bool:
        """True once every other task of the DAG run has finished; False if the states cannot be read."""
        first = True
        while True:
            if not first:
                await asyncio.sleep(max(self.interval, TASK_STATES_EVERY_S))
            first = False
            try:
                if await self._other_tasks_finished():
                    return True
            except Exception as exc:  # an Airflow without task-state access from triggers
                self.log.warning("Cannot read the DAG run's task states (%s); relying on the ping", exc)
                return False

    async def _other_tasks_finished(self) -> bool:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async

        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(dag_id=self.dag_id, run_ids=[self.dag_run_id])
        others = {
            key: state
            for key, state in (states.get(self.dag_run_id) or {}).items()
            # Mapped instances are reported as "<task_id>_<map_index>".
            if key not in self.keep_alive_task_ids and re.sub(r"_\d+$", "", key) not in self.keep_alive_task_ids
        }
        return bool(others) and all(state in FINISHED_STATES for state in others.values())
