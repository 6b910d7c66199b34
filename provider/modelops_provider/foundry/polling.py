"""How Foundry waits share requests in a triggerer (see :mod:`modelops_provider.core.poller`)."""

from __future__ import annotations

import asyncio

from modelops_provider.core.poller import PollSource, Result, Waiter
from modelops_provider.foundry.api import BUILDS_BATCH_MAX
from modelops_provider.foundry.status import build_snapshot


class ModelStudioRunSource(PollSource):
    """Builds of waited-for runs through ``builds/getBatch``, up to 100 per request: a build's status
    is the run's outcome, so that is all the triggerer reads, ended or not. The run itself (for
    ``resolvedOutputs``) is read by the worker on resume (:meth:`PollingTrigger.complete`), one
    request per finished run there rather than in the triggerer. A build getBatch does not return,
    and a wait that knows only its run id yet (a sensor's), get the run's own look."""

    fill = BUILDS_BATCH_MAX

    def split(self, waiters: list[Waiter]) -> list[list[Waiter]]:
        by_build: dict[str, list[Waiter]] = {}
        alone: list[list[Waiter]] = []
        for waiter in waiters:
            rid = waiter.trigger.build_rid
            if rid:
                by_build.setdefault(rid, []).append(waiter)
            else:
                alone.append([waiter])
        rids = list(by_build)
        chunks = (rids[i : i + BUILDS_BATCH_MAX] for i in range(0, len(rids), BUILDS_BATCH_MAX))
        return [[w for rid in chunk for w in by_build[rid]] for chunk in chunks] + alone

    async def poll(self, batch: list[Waiter]) -> dict[Waiter, Result]:
        if not batch[0].trigger.build_rid:
            return {batch[0]: await self.look(batch[0])}
        api = self.hook.api
        builds = await self.hook.acall(api.get_builds(list(dict.fromkeys(w.trigger.build_rid for w in batch))))
        results: dict[Waiter, Result] = {}
        unknown: list[Waiter] = []
        for waiter in batch:
            build = builds.get(waiter.trigger.build_rid)
            if build is None:  # not returned (unknown, or not visible): the run's own look says why
                unknown.append(waiter)
            elif not waiter.unchanged(build.status):
                results[waiter] = build_snapshot(waiter.trigger.run_id, build)
        if unknown:
            results.update(zip(unknown, await asyncio.gather(*(self.look(w) for w in unknown)), strict=True))
        return results


class LiveDeploymentSource(PollSource):
    """One GET per live deployment per tick, however many waits watch it; each judges it its own way."""

    def split(self, waiters: list[Waiter]) -> list[list[Waiter]]:
        by_rid: dict[str, list[Waiter]] = {}
        for waiter in waiters:
            by_rid.setdefault(waiter.trigger.live_deployment_rid, []).append(waiter)
        return list(by_rid.values())

    async def poll(self, batch: list[Waiter]) -> dict[Waiter, Result]:
        deployment = await self.hook.acall(self.hook.api.get_live_deployment(batch[0].trigger.live_deployment_rid))
        return {waiter: waiter.trigger.watch.evaluate(deployment) for waiter in batch}
