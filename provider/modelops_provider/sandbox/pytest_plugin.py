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


@pytest.fixture
def modelops_sandbox_clock(modelops_sandbox: Sandbox) -> Iterator[SandboxClock]:
    clock = SandboxClock(modelops_sandbox.control)
    clock.manual()
    yield clock
    modelops_sandbox.control.reset()  # the next test starts from the wall clock and a fresh state
