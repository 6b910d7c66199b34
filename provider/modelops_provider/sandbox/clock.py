"""The sandbox's clock: what "now" is for every service's state transitions.

Runs and builds finish, deployments roll out, versions appear, Pluto reaps, tokens expire and the
rate limiter refills by this clock, never by ``time.time()`` directly. It runs in one of two modes:

- ``wall`` (the default, for the demo and the deployment tier): real time, plus any offset the
  control API added with ``advance`` (a jump forward; time still flows).
- ``manual`` (tests): time stands still unless advanced (``POST /_sandbox/clock {"advance_s": 30}``).

Switching modes keeps the current reading, so sandbox time never goes backwards (except on reset).
The provider's own timings (poll intervals, read timeouts, adoption windows, deadlines) are real
time on the client side; this clock does not and must not fake them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

MODES = ("wall", "manual")


def check_seconds(seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise ValueError(f"advance_s must be a non-negative number of seconds, got {seconds!r}")
    return float(seconds)


class Clock:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen: float | None = None  # the reading while manual

    @property
    def mode(self) -> str:
        return "wall" if self._frozen is None else "manual"

    def now(self) -> float:
        """Sandbox time, in epoch seconds."""
        with self._lock:
            return self._frozen if self._frozen is not None else self._wall() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (in either mode); the new reading."""
        seconds = check_seconds(seconds)
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
                return self._frozen
            self._offset += seconds
            return self._wall() + self._offset

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        with self._lock:
            if mode == "manual" and self._frozen is None:
                self._frozen = self._wall() + self._offset
            elif mode == "wall" and self._frozen is not None:
                # Flow on from the frozen reading: no jump either way.
                self._offset = self._frozen - self._wall()
                self._frozen = None

    def reset(self) -> None:
        """Back to the wall clock with no offset."""
        with self._lock:
            self._offset = 0.0
            self._frozen = None

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            now = self._frozen if self._frozen is not None else self._wall() + self._offset
            return {"mode": self.mode, "now": now, "offset_s": now - self._wall()}
