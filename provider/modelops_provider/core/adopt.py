"""The one create-or-adopt of the provider (Foundry launch, DuckLake trigger, Pluto create without
``externalId``).

A create whose outcome is unknown (no answer, a 5xx, an unreadable answer: an
:class:`~modelops_provider.core.errors.AmbiguousRequestError`) is never sent again blindly. Instead the
caller's ``find`` looks for what the create may have made (the service's own identity rules: our user
or principal, created since the request less a clock-skew allowance) for a bounded *adoption window*
that covers a server acting late: by default the connection's read timeout + 30 s (connection extra
``adoption_window``). Found: adopted. Not found within the window: the try fails with
:class:`OutcomeUnknownError`, and a later try passes ``unknown_since`` so that it looks once more
before creating.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from modelops_provider.core.errors import AmbiguousRequestError, ApiError, OutcomeUnknownError
from modelops_provider.core.transport import Call, Service, Sleep

log = logging.getLogger(__name__)

T = TypeVar("T")

# How far before our request a found item may say it was created (client/server clock skew).
MATCH_SKEW_S = 30.0
# Pauses between looks: quick at first (most late answers are late by a second or two), then every 5 s.
LOOK_PAUSES_S = (0.5, 1.0, 2.0, 3.0, 5.0)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_or_adopt(
    service: Service,
    *,
    what: str,
    create: Callable[[], Call[T]],
    find: Callable[[float], Call[T | None]],
    describe: Callable[[T], str],
    unknown_since: float | None = None,
    window: float | None = None,
) -> Call[T]:
    """Create once, or adopt what an ambiguous create made.

    ``create`` sends the create request (a ``Kind.CREATE`` endpoint: re-sent by the retry rule only
    when the server provably did not process it). ``find(since)`` looks for an item ours created at
    or after ``since`` (epoch seconds) and returns it or None. ``unknown_since``: an earlier try's
    create at that time had an unknown outcome; look for its item first.
    """
    if unknown_since is not None:
        since = unknown_since - MATCH_SKEW_S
        found = yield from find(since)
        if found is not None:
            log.warning(
                "%s: found %s, made by an earlier try's create of unknown outcome at %s: adopting it",
                what,
                describe(found),
                _when(unknown_since),
            )
            return found
        log.info("%s: nothing made by the earlier try's create at %s; creating", what, _when(unknown_since))
    asked_at = time.time()
    try:
        return (yield from create())
    except AmbiguousRequestError as exc:
        reason = exc
    window = service.adopt_window() if window is None else window
    log.warning(
        "%s at %s may or may not have happened (%s); looking for it for up to %.0fs before anything else",
        what,
        _when(asked_at),
        reason,
        window,
    )
    since = asked_at - MATCH_SKEW_S
    ends = time.monotonic() + window
    look = 0
    while True:
        look += 1
        try:
            found = yield from find(since)
        except ApiError as exc:
            # A look that failed finds nothing this time; the window bounds how long we keep trying.
            log.warning("%s: look %d for it failed (%s)", what, look, exc)
            found = None
        if found is not None:
            log.warning("%s: found %s (look %d): adopting it instead of creating again", what, describe(found), look)
            return found
        left = ends - time.monotonic()
        if left <= 0:
            break
        pause = min(LOOK_PAUSES_S[min(look, len(LOOK_PAUSES_S)) - 1], left)
        log.info("%s: not found yet (look %d); looking again in %.1fs", what, look, pause)
        yield Sleep(pause)
    raise OutcomeUnknownError(
        f"{what} at {_when(asked_at)}: outcome unknown, nothing found within {window:g}s "
        f"(adoption window; the next try looks again before creating). Last failure: {reason.message}",
        asked_at=asked_at,
        method=reason.method,
        path=reason.path,
        status=reason.status,
        service=reason.service,
    )
