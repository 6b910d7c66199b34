"""pytest plugin (``pytest11`` entry point): the ``modelops_sandbox`` fixture.

It starts the sandbox on a free loopback port once per test session, resets it before each test,
and points ``AIRFLOW_CONN_FOUNDRY_DEFAULT`` (and the other default connections) at it, so that a
user's own DAG tests run offline::

    def test_my_dag(modelops_sandbox):
        modelops_sandbox.control.foundry_studio("ri.models.main.model-studio.x", outcome="FAILED")
        ...
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
