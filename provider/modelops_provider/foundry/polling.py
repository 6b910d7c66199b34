"""How Foundry waits share requests in a triggerer (see :mod:`modelops_provider.core.poller`)."""

from __future__ import annotations

import asyncio

from modelops_provider.core.poller import PollSource, Result, Waiter
from modelops_provider.foundry.api import BUILDS_BATCH_MAX
from modelops_provider.foundry.models import Build
from modelops_provider.foundry.status import build_outcome, build_snapshot, run_snapshot


class ModelStudioRunSource(PollSource):
    """Builds of waited-for runs through ``builds/getBatch``, up to 100 per request; the runs
    themselves (for ``resolvedOutputs``) only once their builds have ended, through one walk of the
    runs list per studio and config version for all that ended in a tick. A build getBatch does not
    return, and a wait that knows only its run id yet (a sensor's), get the run's own look."""

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
        # Ended builds: their runs are read for the outputs, one list walk per studio and config version.
        ended: dict[tuple[str, int | None], list[tuple[Waiter, Build]]] = {}
        unknown: list[Waiter] = []
        for waiter in batch:
            trigger = waiter.trigger
            build = builds.get(trigger.build_rid)
            if build is None:  # not returned (unknown, or not visible): the run's own look says why
                unknown.append(waiter)
            elif build_outcome(build.status).terminal:
                ended.setdefault((trigger.model_studio_rid, trigger.config_version), []).append((waiter, build))
            else:
                results[waiter] = build_snapshot(trigger.run_id, build)
        grouped, own = await asyncio.gather(
            asyncio.gather(*(self._ended(studio, version, group) for (studio, version), group in ended.items())),
            asyncio.gather(*(self.look(waiter) for waiter in unknown)),
        )
        for looked in grouped:
            results.update(looked)
        results.update(zip(unknown, own, strict=True))
        return results

    async def _ended(
        self, studio: str, config_version: int | None, group: list[tuple[Waiter, Build]]
    ) -> dict[Waiter, Result]:
        api = self.hook.api
        try:
            runs = await self.hook.acall(
                api.find_model_studio_runs(studio, [w.trigger.run_id for w, _ in group], config_version)
            )
        except Exception as exc:
            return {waiter: exc for waiter, _ in group}
        results: dict[Waiter, Result] = {}
        for waiter, build in group:
            run = runs.get(waiter.trigger.run_id)
            # A run its studio does not list: its own look raises the not-found error.
            results[waiter] = run_snapshot(run, build.status, source="build") if run else await self.look(waiter)
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
