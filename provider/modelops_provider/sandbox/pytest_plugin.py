"""pytest plugin (``pytest11`` entry point): the ``modelops_sandbox`` fixture.

It starts the sandbox on a free loopback port once per test session, resets it before each test,
and points ``AIRFLOW_CONN_FOUNDRY_DEFAULT`` (and the other default connections) at it, so that a
user's own DAG tests run offline::

    def test_my_dag(modelops_sandbox):
        modelops_sandbox.control.foundry_studio("ri.models.main.model-studio.x", outcome="FAILED")
        ...

``modelops_sandbox_clock`` puts the sandbox clock in manual mode for one test: sandbox time stands
still (runs stay RUNNING, Pluto never reaps) until the test moves it::

    def test_reaped(modelops_sandbox, modelops_sandbox_clock):
        ...
        modelops_sandbox_clock.advance(1800)  # the stale window passes, no sleeping
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from modelops_provider.sandbox.server import SandboxControl, SandboxServer


@dataclass
class Sandbox:
    url: str
    control: SandboxControl
    server: SandboxServer


@pytest.fixture(scope="session")
def _modelops_sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def modelops_sandbox(_modelops_sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    server = _modelops_sandbox_server
    server.control.reset()
    for name, value in server.connection_env().items():
        monkeypatch.setenv(name, value)
    return Sandbox(url=server.url, control=server.control, server=server)


class SandboxClock:
    """The sandbox clock, seen from a test (see ``modelops_sandbox_clock``)."""

    def __init__(self, control: SandboxControl) -> None:
        self._control = control

    def now(self) -> float:
        """Sandbox time (epoch seconds)."""
        return float(self._control.clock()["now"])

    def advance(self, seconds: float) -> float:
        """Move sandbox time forward by ``seconds``; the new sandbox time."""
        return self._control.advance(seconds)

    def manual(self) -> None:
        self._control.clock(mode="manual")

    def wall(self) -> None:
        """Let time flow again, from where it stands."""
        self._control.clock(mode="wall")

    @contextlib.contextmanager
    def advancing(
        self,
        seconds: float,
        *,
        after: int = 1,
        path_prefix: str | tuple[str, ...] = "",
        method: str | None = None,
        timeout: float = 60,
    ) -> Iterator[None]:
        """Advance the clock by ``seconds`` once the sandbox has received ``after`` more requests
        under ``path_prefix`` (one or several prefixes; ``method``: of that method), counted from
        entering the block, from a background thread: the block can be a ``dag.test()`` or an
        ``asyncio.run()`` that waits meanwhile::

            with modelops_sandbox_clock.advancing(1800, after=2, path_prefix="/api/v2/orchestration"):
                run_dag(dag)  # polls twice while RUNNING, then the run has ended

        Leaving the block fails the test if those requests did not come within ``timeout`` seconds
        (the clock is advanced then anyway, so that nothing waits forever)."""
        prefixes = (path_prefix,) if isinstance(path_prefix, str) else path_prefix

        def count(control: SandboxControl) -> int:
            return sum(1 for r in control.requests(method=method) if r["path"].startswith(prefixes))

        before = count(self._control)
        on_time, stop = threading.Event(), threading.Event()

        def watch() -> None:
            # A client of its own: the control client is not shared across threads.
            control = SandboxControl(self._control.url)
            deadline = time.monotonic() + timeout
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    if count(control) - before >= after:
                        on_time.set()
                        break
                    stop.wait(0.02)
                if not stop.is_set():
                    control.advance(seconds)
            finally:
                control.close()

        watcher = threading.Thread(target=watch, name="sandbox-clock", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(timeout=10)
        if not on_time.is_set():
            raise AssertionError(f"the sandbox clock was not advanced: fewer than {after} requests to {prefixes} came")


@pytest.fixture
def modelops_sandbox_clock(modelops_sandbox: Sandbox) -> Iterator[SandboxClock]:
    clock = SandboxClock(modelops_sandbox.control)
    clock.manual()
    yield clock
    modelops_sandbox.control.reset()  # the next test starts from the wall clock and a fresh state
