"""Waiting for remote work: the outcome vocabulary, what one look at the remote side yields, and the
sync wait loop. The deferrable path (:mod:`modelops_provider.core.triggers`) reuses the same pieces."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from airflow.providers.common.compat.sdk import conf

from modelops_provider.core.errors import (
    JobFailedError,
    JobTimeoutError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from modelops_provider.core.retry import MissedPolls
from modelops_provider.core.transport import Call, Sleep


class Outcome(StrEnum):
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self is not Outcome.WAITING


@dataclass
class Snapshot:
    """One look at a remote job: its outcome, the raw status, a one-line summary and its JSON-able data."""

    outcome: Outcome
    status: str
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    # Why it failed, in words for the task's exception (set for FAILED/CANCELLED, and for fail-fast states).
    reason: str | None = None
    # The service answered a status this provider does not know (see WaitProgress for the rule).
    unknown_status: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "status": self.status,
            "summary": self.summary,
            "data": self.data,
            "reason": self.reason,
            "unknown_status": self.unknown_status,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Snapshot:
        return cls(
            outcome=Outcome(raw["outcome"]),
            status=raw["status"],
            summary=raw["summary"],
            data=raw.get("data") or {},
            reason=raw.get("reason"),
            unknown_status=bool(raw.get("unknown_status")),
        )


def deadline_from(timeout: float | None, *, now: float | None = None) -> float | None:
    """An absolute deadline (epoch seconds): survives a triggerer restart, unlike a relative timeout."""
    if timeout is None:
        return None
    return (time.time() if now is None else now) + timeout


# Errors that say "not now" rather than "no": a poll that ends in one of them (after the request's
# own retries) is a missed poll, and the wait goes on until this many polls in a row have missed.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (ServerError, TransportError, RateLimitedError)
MAX_MISSED_POLLS = 5
# How long a wait goes on while the service answers a status this provider does not know: long
# enough for a new intermediate status (say, a queue) to pass, short enough not to wait forever on
# a new final one.
UNKNOWN_STATUS_GRACE_S = 600.0


class UnknownStatusError(JobFailedError):
    """The service kept answering a status this provider does not know."""


# Default of ``[modelops] progress_log_interval``: a wait that changes nothing still logs a line this often.
PROGRESS_LOG_INTERVAL_S = 300.0


def progress_log_interval() -> float:
    """``[modelops] progress_log_interval`` (seconds, default 300): how often a wait whose state does
    not change says it is still waiting. 0 or less turns the progress line off."""
    value = conf.getfloat("modelops", "progress_log_interval", fallback=PROGRESS_LOG_INTERVAL_S)
    return value if value > 0 else float("inf")


def log_hand_over(log: logging.Logger | Any, what: str) -> None:
    """The task's last line before it defers: what the triggerer's lines that follow are about."""
    interval = progress_log_interval()
    every = "" if math.isinf(interval) else f", and every {duration(interval)} while it does not"
    log.info("%s: waiting in the triggerer; a line follows when its status changes%s", what, every)


def duration(seconds: float) -> str:
    """``45s``, ``12m05s``, ``2h03m``: short enough for a log line."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


class WaitProgress:
    """The rules of one wait, kept once for every loop that waits (the worker's call below and the
    triggers' shared poller): log each change with the elapsed time, ride out up to
    ``MAX_MISSED_POLLS - 1`` consecutive transient failures, and stop at an absolute deadline.

    The elapsed time counts from ``started_at`` (epoch seconds: the launch) when given, so a retry
    that re-attaches or a trigger taken over by another triggerer does not count from zero again.

    A wait ``handed_over`` by a task (a trigger) logs neither its first look nor its end, only what
    happens in between: changes, progress lines and warnings. The task said what it handed over in
    its last line before deferring (:func:`log_hand_over`), and logs the end once when it resumes,
    from the event (with the elapsed time the event carries). A triggerer is handed thousands of
    waits in a second or two, and the first look's line alone cost it ~0.15 ms of CPU per wait and
    ~0.35 s more before the last of 2,000 waits was first polled (benchmarks/triggerer_scale.py)."""

    def __init__(
        self,
        what: str,
        deadline: float | None,
        log: logging.Logger | Any,
        started_at: float | None = None,
        progress_interval: float | None = None,
        handed_over: bool = False,
    ) -> None:
        self.what = what
        self.deadline = deadline
        self.log = log
        self.started = time.time() if started_at is None else float(started_at)
        self.last: Snapshot | None = None
        self.missed = MissedPolls(MAX_MISSED_POLLS)
        self.unknown_since: float | None = None
        self.progress_interval = progress_log_interval() if progress_interval is None else progress_interval
        self.last_line = time.time()
        self.handed_over = handed_over

    def elapsed(self, now: float | None = None) -> str:
        return duration((time.time() if now is None else now) - self.started)

    def seen(self, snap: Snapshot) -> bool:
        """A look succeeded; True when the job is terminal. An unknown status is logged once as a
        warning, waited on for at most ``UNKNOWN_STATUS_GRACE_S``, then raised as
        :class:`UnknownStatusError`."""
        self.missed.seen()
        if not snap.unknown_status:
            self.unknown_since = None
        elif self.unknown_since is None:
            self.unknown_since = time.monotonic()
            self.log.warning(
                "%s: status %r is not one this provider knows; waiting at most %.0fs for a known one",
                self.what,
                snap.status,
                UNKNOWN_STATUS_GRACE_S,
            )
        elif time.monotonic() - self.unknown_since >= UNKNOWN_STATUS_GRACE_S:
            raise UnknownStatusError(
                f"{self.what}: status {snap.status!r} for {time.monotonic() - self.unknown_since:.0f}s, a status "
                f"this provider does not know ({snap.summary}); giving up the wait"
            )
        if self.last is None or snap.summary != self.last.summary:
            now = time.time()
            if not (self.handed_over and (self.last is None or snap.outcome.terminal)):
                self.log.info("%s: %s (%s elapsed)", self.what, snap.summary, self.elapsed(now))
            self.last_line = now
            self.last = snap
        else:
            self.last = snap
            self.tick()
        return snap.outcome.terminal

    def next_line_in(self, now: float | None = None) -> float:
        """Seconds until the next progress line is due."""
        return self.progress_interval - ((time.time() if now is None else now) - self.last_line)

    def tick(self, now: float | None = None) -> None:
        """Log the progress line if one is due (nothing changed for ``progress_interval``)."""
        now = time.time() if now is None else now
        if self.last is None or self.next_line_in(now) > 0:
            return
        self.log.info("%s: still %s (%s elapsed)", self.what, self.last.summary, self.elapsed(now))
        self.last_line = now

    def failed(self, exc: BaseException) -> None:
        """A look failed: a transient failure is a missed poll (until too many in a row); anything
        else, and the last allowed miss, is raised."""
        if not isinstance(exc, TRANSIENT_ERRORS):
            raise exc
        if self.missed.missed():
            raise exc
        self.log.warning("%s: poll failed (%s); %d more failed poll(s) allowed", self.what, exc, self.missed.left)

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds until the deadline (None: no deadline; 0 or less: it passed)."""
        if self.deadline is None:
            return None
        return self.deadline - (time.time() if now is None else now)

    def expired(self) -> None:
        snap = self.last
        state = f"still {snap.status} ({snap.summary})" if snap else "not seen"
        at = (
            ""
            if self.deadline is None
            else datetime.fromtimestamp(self.deadline, UTC).strftime(" (deadline %Y-%m-%dT%H:%M:%SZ)")
        )
        raise JobTimeoutError(f"{self.what}: {state} when the timeout expired{at}", snapshot=snap)


def poll_until_terminal(
    check: Callable[[], Call[Snapshot]],
    *,
    what: str,
    poll_interval: float,
    deadline: float | None,
    log: logging.Logger | Any,
    started_at: float | None = None,
    progress_interval: float | None = None,
    handed_over: bool = False,
) -> Call[Snapshot]:
    """The one wait loop, as a call: run by a worker (``hook.call``) or a trigger (``hook.acall``).

    Polls until the job is terminal under the rules of :class:`WaitProgress`; raises
    :class:`JobTimeoutError` (with the last snapshot) at the deadline, leaving it to the caller what
    to cancel.
    """
    progress = WaitProgress(what, deadline, log, started_at, progress_interval, handed_over)
    while True:
        try:
            snap = yield from check()
        except TRANSIENT_ERRORS as exc:
            progress.failed(exc)
        else:
            if progress.seen(snap):
                return snap
        left = progress.remaining()
        if left is not None and left <= 0:
            progress.expired()
        yield Sleep(poll_interval if left is None else min(poll_interval, left))
