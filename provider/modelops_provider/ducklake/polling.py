"""How DuckLake waits share requests in a triggerer (see :mod:`modelops_provider.core.poller`)."""

from __future__ import annotations

import asyncio

from modelops_provider.core.poller import PollSource, Result, Waiter
from modelops_provider.core.waiting import Snapshot
from modelops_provider.ducklake.status import run_snapshot

# The status a wait is assumed in before it was first seen: a new run is PENDING.
UNSEEN = "PENDING"


class DuckLakeRunSource(PollSource):
    """Every waited-for run through the status-filtered runs list (RUNNING, and PENDING while any
    wait's run may be pending), in pages of 1,000; a run that is in neither list (it ended, most
    likely) is read by itself, once."""

    def split(self, waiters: list[Waiter]) -> list[list[Waiter]]:
        return [waiters] if waiters else []

    async def poll(self, batch: list[Waiter]) -> dict[Waiter, Result]:
        api = self.hook.api
        statuses = ["RUNNING"]
        if any(w.state.get("status", UNSEEN) == "PENDING" for w in batch):
            statuses.append("PENDING")
        listed = {
            (run.id or "").lower(): run
            for runs in await asyncio.gather(*(self.hook.acall(api.runs_with_status(s)) for s in statuses))
            for run in runs
        }
        results: dict[Waiter, Result] = {}
        gone: list[Waiter] = []
        for waiter in batch:
            run = listed.get(waiter.trigger.run_id.lower())
            if run is None:
                gone.append(waiter)
            else:
                results[waiter] = run_snapshot(run)
        results.update(zip(gone, await asyncio.gather(*(self.look(w) for w in gone)), strict=True))
        for waiter, result in results.items():
            if isinstance(result, Snapshot):
                waiter.state["status"] = result.status
        return results
