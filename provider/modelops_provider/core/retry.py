"""The one retry rule of the provider: what to do after a failed attempt, and how long to wait.

:func:`decide` is pure (no I/O, no clock unless none is given): from the failed attempt's reply
(an HTTP answer, an exception, or a 2xx whose body could not be read), the attempt number, the
endpoint's :class:`Kind` and the :class:`RetryPolicy`, it says *retry after N seconds*, *ambiguous*
(a create may have been processed: look before creating again) or *fail*. The sync and async
drivers in :mod:`modelops_provider.core.transport` carry out what it decides. :class:`MissedPolls`
is the one rule for a wait (operator, sensor in every mode, trigger) that rides out failed polls.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import httpx


class Kind(StrEnum):
    """How safe it is to send a request again."""

    # GETs: nothing changes on the server.
    READ = "read"
    # Sending it twice leaves the same state as once: cancels, Pluto status/tags/config updates,
    # a Pluto create that names an externalId, a token request.
    IDEMPOTENT = "idempotent"
    # Sending it twice appends twice, which is tolerated (at-least-once), e.g. a metrics batch.
    APPEND = "append"
    # Sending it twice creates two things: re-sent only when the server provably did not process it.
    CREATE = "create"


# Answers that say "not processed, come back later": retried for every kind.
NOT_PROCESSED_STATUSES = frozenset({429, 503})
# Answers after which the server may or may not have processed the request.
MAYBE_PROCESSED_STATUSES = frozenset({500, 502, 504})
RETRY_STATUSES: dict[Kind, frozenset[int]] = {
    Kind.READ: NOT_PROCESSED_STATUSES | MAYBE_PROCESSED_STATUSES,
    Kind.IDEMPOTENT: NOT_PROCESSED_STATUSES | MAYBE_PROCESSED_STATUSES,
    # A 500 on an append usually means the batch was rejected as a whole; not worth a duplicate.
    Kind.APPEND: NOT_PROCESSED_STATUSES | {502, 504},
    Kind.CREATE: NOT_PROCESSED_STATUSES,
}

# Bounds of every retry setting (connection extras ``retry_*``), checked when the connection is read.
RETRY_BOUNDS: dict[str, tuple[str, float, float]] = {
    # field: (extra key, minimum, maximum)
    "max_attempts": ("retry_max_attempts", 1, 100),
    "max_elapsed": ("retry_max_elapsed", 0, 3600),
    "base_delay": ("retry_base_delay", 0, 60),
    "max_delay": ("retry_max_delay", 0, 600),
    "retry_after_cap": ("retry_after_cap", 0, 3600),
}


def bounded_number(
    key: str, raw: Any, *, minimum: float, maximum: float, integer: bool = False, exclusive_minimum: bool = False
) -> float:
    """A connection extra (or argument) as a finite number within bounds; the error names ``key``."""
    what = "an integer" if integer else "a number"
    low = f"> {minimum:g}" if exclusive_minimum else f">= {minimum:g}"
    problem = f"{key} must be {what} {low} and <= {maximum:g}, got {raw!r}"
    if isinstance(raw, bool):
        raise ValueError(problem)
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise ValueError(problem) from None
    if not math.isfinite(value) or value > maximum or value < minimum or (exclusive_minimum and value == minimum):
        raise ValueError(problem)
    if integer and value != int(value):
        raise ValueError(problem)
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring ``Retry-After``, bounded by attempts and total time."""

    max_attempts: int = 6
    max_elapsed: float = 120.0
    base_delay: float = 0.5
    max_delay: float = 20.0
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        for name, (_, low, high) in RETRY_BOUNDS.items():
            bounded_number(name, getattr(self, name), minimum=low, maximum=high, integer=name == "max_attempts")

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> RetryPolicy:
        """Build the policy from a connection's extra (keys ``retry_max_attempts``, ``retry_max_elapsed``...);
        an error names the extra key and its value."""
        kwargs: dict[str, Any] = {}
        for name, (key, low, high) in RETRY_BOUNDS.items():
            raw = extra.get(key)
            if raw is None or raw == "":
                continue
            value = bounded_number(
                f"connection extra {key!r}", raw, minimum=low, maximum=high, integer=name == "max_attempts"
            )
            kwargs[name] = int(value) if name == "max_attempts" else value
        return cls(**kwargs)

    def limited(self, max_elapsed: float) -> RetryPolicy:
        """The same policy within a smaller total budget (e.g. a cancel from ``on_kill``)."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            max_elapsed=min(self.max_elapsed, max_elapsed),
            base_delay=self.base_delay,
            max_delay=min(self.max_delay, max_elapsed),
            retry_after_cap=min(self.retry_after_cap, max_elapsed),
        )

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given (1-based) failed attempt."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(attempt - 1, 60)))
        return random.uniform(ceiling / 2, ceiling)


class Action(StrEnum):
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"
    FAIL = "fail"


@dataclass(frozen=True)
class MalformedBody:
    """A 2xx answer whose body could not be read (not JSON, or not the expected schema)."""

    status: int


Failure = httpx.Response | BaseException | MalformedBody


@dataclass(frozen=True)
class Decision:
    action: Action
    # Seconds to wait before the next attempt (RETRY only).
    wait: float = 0.0
    # What the server asked in Retry-After (seconds), and whether the wait was capped below it.
    retry_after: float | None = None
    capped: bool = False
    # Why a retry would not help, or why it stopped: "budget" (attempts or time spent), "unsent",
    # "rule" (not retryable by kind).
    why: str = ""


def decide(
    failure: Failure,
    *,
    attempt: int,
    kind: Kind,
    policy: RetryPolicy,
    started: float,
    now: float | None = None,
    wall_now: float | None = None,
) -> Decision:
    """The one retry rule. ``attempt`` is the 1-based number of the attempt that just failed,
    ``started`` the monotonic time of the first attempt."""
    retry_after: float | None = None
    if isinstance(failure, BaseException):
        if is_unsendable(failure):
            return Decision(Action.FAIL, why="unsendable")
        if not isinstance(failure, httpx.TransportError):
            return Decision(Action.FAIL, why="rule")
        if not is_unsent(failure) and kind is Kind.CREATE:
            return Decision(Action.AMBIGUOUS, why="rule")
    elif isinstance(failure, MalformedBody):
        if kind is Kind.CREATE:
            return Decision(Action.AMBIGUOUS, why="rule")
    else:
        status = failure.status_code
        if status not in RETRY_STATUSES[kind]:
            if kind is Kind.CREATE and status in MAYBE_PROCESSED_STATUSES:
                return Decision(Action.AMBIGUOUS, why="rule")
            return Decision(Action.FAIL, why="rule")
        retry_after = parse_retry_after(failure.headers.get("Retry-After"), now=wall_now)
    if attempt >= policy.max_attempts:
        return Decision(Action.FAIL, retry_after=retry_after, why="budget")
    capped = retry_after is not None and retry_after > policy.retry_after_cap
    wait = min(retry_after, policy.retry_after_cap) if retry_after is not None else policy.backoff(attempt)
    now = time.monotonic() if now is None else now
    if now - started + wait > policy.max_elapsed:
        return Decision(Action.FAIL, retry_after=retry_after, capped=capped, why="budget")
    return Decision(Action.RETRY, wait=wait, retry_after=retry_after, capped=capped)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date. None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def is_unsent(exc: BaseException) -> bool:
    """True when the request provably never reached the server."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)) or is_unsendable(exc)


def is_unsendable(exc: BaseException) -> bool:
    """True when the request could not even be written (an illegal header value, a bad URL): sending
    it again cannot help, and the library's message may quote the offending header (a credential)."""
    return isinstance(exc, (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL))


def describe_failure(exc: BaseException) -> str:
    """Words for a transport failure that never quote the HTTP library's text where that text can
    hold a header value (h11's "Illegal header value b'Bearer ...'")."""
    name = type(exc).__name__
    if isinstance(exc, httpx.LocalProtocolError):
        return (
            f"{name}: the request could not be sent (a header value is not allowed; check the connection's "
            "credentials for spaces, line breaks or non-ASCII characters)"
        )
    if isinstance(exc, httpx.ProtocolError):
        # A remote protocol error may quote what the server sent, headers included.
        return f"{name}: the server broke the HTTP protocol (e.g. closed the connection mid-answer)"
    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError)):
        text = str(exc)
        # OS-level messages ("[Errno 111] Connection refused", "timed out"); nothing from a header.
        return f"{name}: {text}" if text and "\\n" not in text and "'" not in text else name
    return name


@dataclass
class MissedPolls:
    """The one missed-poll rule of a wait: a poll that still failed with a transient error after its
    own retries is a missed poll, and the wait goes on until ``limit`` polls in a row have missed."""

    limit: int
    count: int = 0

    def missed(self) -> bool:
        """Count one missed poll; True when the wait must give up."""
        self.count += 1
        return self.count >= self.limit

    def seen(self) -> None:
        self.count = 0

    @property
    def left(self) -> int:
        return max(0, self.limit - 1 - self.count)
