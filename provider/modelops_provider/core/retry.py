"""The one retry rule of the provider: which failures are retried, and how long to wait before the next try.

Pure functions and data only; the sync and async drivers in :mod:`modelops_provider.core.transport`
perform the wait this module computes.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# A request that creates something is only re-sent on answers that say it was not processed.
CREATE_SAFE_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring ``Retry-After``, bounded by attempts and total time."""

    max_attempts: int = 6
    max_elapsed: float = 120.0
    base_delay: float = 0.5
    max_delay: float = 20.0
    retry_after_cap: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("max_elapsed", "base_delay", "max_delay", "retry_after_cap"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> RetryPolicy:
        """Build the policy from a connection's extra (keys ``retry_max_attempts``, ``retry_max_elapsed``...)."""
        kwargs: dict[str, Any] = {}
        for field, key, conv in (
            ("max_attempts", "retry_max_attempts", int),
            ("max_elapsed", "retry_max_elapsed", float),
            ("base_delay", "retry_base_delay", float),
            ("max_delay", "retry_max_delay", float),
            ("retry_after_cap", "retry_after_cap", float),
        ):
            raw = extra.get(key)
            if raw in (None, ""):
                continue
            try:
                kwargs[field] = conv(raw)
            except (TypeError, ValueError):
                raise ValueError(f"connection extra {key!r} must be a number, got {raw!r}") from None
        return cls(**kwargs)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given (1-based) failed attempt."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def wait_before_next(
        self, attempt: int, started: float, *, retry_after: float | None, now: float | None = None
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when the budget is spent."""
        if attempt >= self.max_attempts:
            return None
        wait = min(retry_after, self.retry_after_cap) if retry_after is not None else self.backoff(attempt)
        now = time.monotonic() if now is None else now
        if now - started + wait > self.max_elapsed:
            return None
        return wait


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date. None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def is_unsent(exc: BaseException) -> bool:
    """True when the request provably never reached the server."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def is_retryable_exception(exc: BaseException, *, creates: bool) -> bool:
    if is_unsent(exc):
        return True
    if creates:
        return False
    return isinstance(exc, httpx.TransportError)


def is_retryable_status(status: int, *, creates: bool) -> bool:
    return status in (CREATE_SAFE_STATUSES if creates else RETRYABLE_STATUSES)
