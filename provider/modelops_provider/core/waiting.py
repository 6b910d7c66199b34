"""Waiting for remote work: the outcome vocabulary, what one look at the remote side yields, and the
sync wait loop. The deferrable path (:mod:`modelops_provider.core.triggers`) reuses the same pieces."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelops_provider.core.errors import JobTimeoutError, RateLimitedError, ServerError, TransportError
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "status": self.status,
            "summary": self.summary,
            "data": self.data,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Snapshot:
        return cls(
            outcome=Outcome(raw["outcome"]),
            status=raw["status"],
            summary=raw["summary"],
            data=raw.get("data") or {},
            reason=raw.get("reason"),
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


def poll_until_terminal(
    check: Callable[[], Call[Snapshot]],
    *,
    what: str,
    poll_interval: float,
    deadline: float | None,
    log: logging.Logger | Any,
) -> Call[Snapshot]:
    """The one wait loop, as a call: run by a worker (``hook.call``) or a trigger (``hook.acall``).

    Polls until the job is terminal, logging each change with the elapsed time; rides out up to
    ``MAX_MISSED_POLLS - 1`` consecutive transient failures; raises :class:`JobTimeoutError` (with the
    last snapshot) at the deadline, leaving it to the caller what to cancel.
    """
    started = time.monotonic()
    last: str | None = None
    snap: Snapshot | None = None
    missed = 0
    while True:
        try:
            snap = yield from check()
        except TRANSIENT_ERRORS as exc:
            missed += 1
            if missed >= MAX_MISSED_POLLS:
                raise
            log.warning(
                "%s: poll failed (%s); %d more failed poll(s) allowed", what, exc, MAX_MISSED_POLLS - 1 - missed
            )
        else:
            missed = 0
            if snap.summary != last:
                log.info("%s: %s (%.0fs elapsed)", what, snap.summary, time.monotonic() - started)
                last = snap.summary
            if snap.outcome.terminal:
                return snap
        now = time.time()
        if deadline is not None and now >= deadline:
            state = f"still {snap.status} ({snap.summary})" if snap else "not seen"
            raise JobTimeoutError(f"{what}: {state} when the timeout expired", snapshot=snap)
        yield Sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - now)))
