"""Shared polling: the waits of one event loop on one connection are served by one poller.

A triggerer holding thousands of waits must not send a request per wait per interval: the cost of
a request grows with the client's pool, and the loop saturates long before the remote side would.
Instead each trigger hands its wait to the :class:`Poller` of its loop, kind and connection, which
looks at all of them together through a :class:`PollSource` (Foundry reads 100 builds per request,
DuckLake lists every running run in a page, a live deployment is read once for all its waiters).

Rules:

* every tick polls all the poller's waits in batches; the poller ticks at the smallest poll interval
  among its waits (the smallest wins), and waits that just arrived are polled at once: as soon as
  they fill a batch, or ``ADMIT_PAUSE_S`` after the first of them (so that waits arriving together
  share their first requests too);
* each round runs as a task of its own, so a slow round holds up neither the next tick nor the
  first poll of waits arriving meanwhile; a wait is in at most one round at a time;
* each batch's answer is handed to each of its waits; a batch that failed is a missed poll for each
  of its waits, under the usual missed-poll rule (:class:`~modelops_provider.core.waiting.WaitProgress`);
* a trigger that is cancelled takes its wait out synchronously: nothing is awaited on that path;
* a poller lives on one event loop, so several triggerers (processes) each have their own; nothing
  depends on the waits sharing one: the poller is only a cheaper way of running the same looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import conf

from modelops_provider.core.waiting import Snapshot, progress_log_interval

if TYPE_CHECKING:
    from modelops_provider.core.hook import ApiHook
    from modelops_provider.core.triggers import PollingTrigger

log = logging.getLogger(__name__)

# How long a poller waits after a new wait arrived before its first poll, gathering others (unless
# they fill a batch sooner): a triggerer hands over thousands of waits in a second or two, and a
# request per few arrivals would cost more than the waits themselves.
ADMIT_PAUSE_S = 0.2
# The shortest tick, whatever poll interval a wait asked for (0 would spin).
MIN_TICK_S = 0.05


def shared_polling_enabled() -> bool:
    """``[modelops] shared_polling`` (default on); off, each trigger polls on its own."""
    return conf.getboolean("modelops", "shared_polling", fallback=True)


class LoopSettings:
    """The settings every trigger of a loop reads, read once per event loop (a triggerer reads its
    configuration at start): a configuration lookup costs more than a trigger's whole wait."""

    __slots__ = ("progress_interval", "shared")

    def __init__(self) -> None:
        self.shared = shared_polling_enabled()
        self.progress_interval = progress_log_interval()


_SETTINGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopSettings] = weakref.WeakKeyDictionary()


def loop_settings() -> LoopSettings:
    loop = asyncio.get_running_loop()
    settings = _SETTINGS.get(loop)
    if settings is None:
        settings = _SETTINGS[loop] = LoopSettings()
    return settings


Result = Snapshot | BaseException


class Waiter:
    """One trigger's wait inside a poller: the poller delivers, the trigger awaits the next result.

    A result that says nothing new (the same non-terminal summary as the last one delivered, after a
    success) does not wake the trigger: at 10,000 waits most looks change nothing. A status the
    provider does not know always does: the trigger's wait bounds how long it may last.
    """

    __slots__ = (
        "__weakref__",
        "_future",
        "_last_status",
        "_last_summary",
        "_pending",
        "busy",
        "interval",
        "state",
        "trigger",
    )

    def __init__(self, trigger: PollingTrigger) -> None:
        # Typed loosely: each source reads the fields of its own trigger class.
        self.trigger: Any = trigger
        self.interval = max(MIN_TICK_S, trigger.poll_interval)
        self.busy = False  # in a round whose answer has not come yet
        # Per-wait memory of a source (e.g. whether a DuckLake run was last seen PENDING).
        self.state: dict[str, Any] = {}
        self._future: asyncio.Future[Result] | None = None
        self._pending: Result | None = None
        self._last_summary: str | None = None
        self._last_status: str | None = None

    def unchanged(self, status: str) -> bool:
        """True when the last result handed over found ``status`` and was still waiting, so that a
        look finding it again says nothing new: a source whose summary follows from the status alone
        then skips building the result (most looks of most waits change nothing)."""
        return status == self._last_status

    def deliver(self, result: Result) -> None:
        if isinstance(result, Snapshot):
            waiting = not (result.outcome.terminal or result.unknown_status)
            self._last_status = result.status if waiting else None
            if result.summary == self._last_summary and waiting:
                return
            self._last_summary = result.summary
        else:
            # The next success must reach the trigger (it resets the misses).
            self._last_summary = self._last_status = None
        future = self._future
        if future is not None and not future.done():
            future.set_result(result)
        else:
            self._pending = result

    async def next(self) -> Result:
        """The next result worth the trigger's attention."""
        if self._pending is not None:
            result, self._pending = self._pending, None
            return result
        future = self._future = asyncio.get_running_loop().create_future()
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelled (a timeout, say) just as a result arrived: keep it for the next call.
            if future.done() and not future.cancelled():
                self._pending = future.result()
            raise
        finally:
            self._future = None


class PollSource(ABC):
    """How the waits of one kind share requests: which waits form a batch, and one poll of a batch."""

    # How many new waits fill a first poll: the poller polls arrivals once this many are in, or
    # ADMIT_PAUSE_S after the first, whichever comes first.
    fill: ClassVar[int] = 100

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def split(self, waiters: list[Waiter]) -> list[list[Waiter]]:
        """The batches of one round (by default one wait per batch)."""
        return [[w] for w in waiters]

    @abstractmethod
    async def poll(self, batch: list[Waiter]) -> dict[Waiter, Result]:
        """Look at a batch; a result per wait (an exception for a wait whose own look failed). An
        exception raised here fails the whole batch."""

    async def look(self, waiter: Waiter) -> Result:
        """A wait's own look (the trigger's :meth:`check`), its failure as the result."""
        try:
            return await self.hook.acall(waiter.trigger.check(self.hook))
        except Exception as exc:
            return exc


_Key = tuple[type[PollSource], str]
_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, Poller]] = weakref.WeakKeyDictionary()


def poller_for(trigger: PollingTrigger) -> Poller:
    """The poller of the running loop for this trigger's kind and connection."""
    source = trigger.poll_source
    if source is None:
        raise TypeError(f"{type(trigger).__name__} has no poll_source")
    per_loop = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    key = (source, trigger.conn_id)
    poller = per_loop.get(key)
    if poller is None:
        poller = per_loop[key] = Poller(source, trigger.hook_class(trigger.conn_id), per_loop, key)
    return poller


class Poller:
    """Polls the waits of one loop, kind and connection together (see the module's rules).

    Each round runs as a task of its own: a slow round (a tick of thousands of waits, a service that
    answers slowly) delays neither the first poll of waits arriving meanwhile nor the next tick; a
    wait is in at most one round at a time."""

    admit_pause_s: ClassVar[float] = ADMIT_PAUSE_S

    def __init__(self, source: type[PollSource], hook: ApiHook, registry: dict[_Key, Poller], key: _Key) -> None:
        self.hook = hook
        self.source = source(hook)
        self.waiters: dict[Waiter, None] = {}  # insertion-ordered set
        self._fresh: list[Waiter] = []  # arrived, not polled yet
        self._fresh_since = 0.0  # when the first of them arrived (loop time)
        self._registry = registry
        self._key = key
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._next_tick = math.inf
        self.rounds = 0

    def watch(self, trigger: PollingTrigger) -> Waiter:
        waiter = Waiter(trigger)
        self.waiters[waiter] = None
        self._fresh.append(waiter)
        if len(self._fresh) == 1:
            self._fresh_since = asyncio.get_running_loop().time()
            self._wake.set()
        elif len(self._fresh) == self.source.fill:
            self._wake.set()
        if self._task is None or self._task.done():
            self._registry[self._key] = self
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"modelops poller {self._key}")
        return waiter

    def discard(self, waiter: Waiter) -> None:
        """Take a wait out. Synchronous: safe on a trigger's cancellation path."""
        self.waiters.pop(waiter, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self.hook.aget_conn()
        except Exception as exc:  # a missing or bad connection: every wait hears it
            for waiter in list(self.waiters):
                waiter.deliver(exc)
            self._drop()
            return
        try:
            while self.waiters:
                if self._fresh:
                    # Gather the waits arriving together (a triggerer hands over many at once) into
                    # full batches, then poll them at once rather than at the next tick.
                    left = self._fresh_since + self.admit_pause_s - loop.time()
                    if left > 0 and len(self._fresh) < self.source.fill:
                        await self._sleep(left)
                        continue
                    fresh, self._fresh = self._fresh, []
                    round_ = [w for w in fresh if w in self.waiters]
                    if round_:
                        self._next_tick = min(self._next_tick, loop.time() + min(w.interval for w in round_))
                        self._start(round_)
                    continue
                now = loop.time()
                if now >= self._next_tick:
                    self._next_tick = now + min(w.interval for w in self.waiters)
                    self._start([w for w in self.waiters if not w.busy])
                    continue
                await self._sleep(self._next_tick - now)
        finally:
            self._drop()

    async def _sleep(self, seconds: float) -> None:
        """Until ``seconds`` passed or a wait arrived that needs the poller sooner."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _start(self, round_: list[Waiter]) -> None:
        if not round_:
            return
        for waiter in round_:
            waiter.busy = True
        task = asyncio.get_running_loop().create_task(self._round(round_))
        self._rounds.add(task)  # a strong reference until it is done
        task.add_done_callback(self._rounds.discard)

    async def _round(self, round_: list[Waiter]) -> None:
        try:
            await self._poll(round_)
        finally:
            for waiter in round_:
                waiter.busy = False

    def _drop(self) -> None:
        if self._registry.get(self._key) is self:
            del self._registry[self._key]

    async def _poll(self, waiters: list[Waiter]) -> None:
        self.rounds += 1
        try:
            batches = self.source.split(waiters)
        except Exception as exc:
            for waiter in waiters:
                waiter.deliver(exc)
            return
        await asyncio.gather(*(self._poll_batch(batch) for batch in batches))

    async def _poll_batch(self, batch: list[Waiter]) -> None:
        try:
            results = await self.source.poll(batch)
        except Exception as exc:
            # A failed batch is a missed poll for each of its waits (or their error, if not transient).
            log.debug("Batch of %d wait(s) failed: %s", len(batch), exc)
            for waiter in batch:
                waiter.deliver(exc)
            return
        for waiter, result in results.items():
            waiter.deliver(result)
