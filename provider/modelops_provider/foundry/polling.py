"""How Foundry waits share requests in a triggerer (see :mod:`modelops_provider.core.poller`)."""

from __future__ import annotations

import asyncio
from typing import Any

from modelops_provider.core.poller import PollSource, Result, Waiter
from modelops_provider.foundry.api import BUILDS_BATCH_MAX
from modelops_provider.foundry.status import build_outcome, build_snapshot


class ModelStudioRunSource(PollSource):
    """Builds of waited-for runs through ``builds/getBatch``, up to 100 per request; the run itself
    (for ``resolvedOutputs``) only once its build is terminal, or when getBatch does not return the
    build. A wait that knows only its run id yet (a sensor's) looks at the run by itself first."""

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
        finished: list[tuple[Waiter, Any]] = []
        for waiter in batch:
            build = builds.get(waiter.trigger.build_rid)
            if build is not None and not build_outcome(build.status).terminal:
                results[waiter] = build_snapshot(waiter.trigger.run_id, build)
            else:
                finished.append((waiter, build))
        looks = await asyncio.gather(*(self._finished(waiter, build) for waiter, build in finished))
        results.update(zip((w for w, _ in finished), looks, strict=True))
        return results

    async def _finished(self, waiter: Waiter, build: Any) -> Result:
        if build is None:  # not returned (unknown, or not visible): the run's own look says why
            return await self.look(waiter)
        trigger = waiter.trigger
        try:
            return await self.hook.acall(
                self.hook.api.finished_run_snapshot(
                    trigger.model_studio_rid, trigger.run_id, trigger.config_version, build
                )
            )
        except Exception as exc:
            return exc


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
