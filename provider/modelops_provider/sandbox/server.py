"""Run the sandbox: in a background thread (tests, the demo) or in the foreground (CLI)."""

from __future__ import annotations

import functools
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from modelops_provider.core.transport import tls_context
from modelops_provider.sandbox.app import SandboxState, create_app, service_modules

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_host(host: str) -> str:
    if host not in LOOPBACK and not host.startswith("127."):
        raise ValueError(f"the sandbox binds to loopback only (127.0.0.0/8, ::1); got host {host!r}")
    return host


def connection_env(base_url: str) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` values pointing Airflow's default connections at this sandbox."""
    env: dict[str, str] = {}
    for module in service_modules():
        env.update(module.connection_env(base_url))
    return env


class SandboxServer:
    """The sandbox on a loopback port (0 = a free one), served by uvicorn in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning") -> None:
        self.host = check_host(host)
        self.state = SandboxState()
        self.app = create_app(self.state)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self.state.base_url = self.url
        config = uvicorn.Config(self.app, log_level=log_level, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self.serve_forever, name="modelops-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.02)
        return self

    def wait(self) -> None:
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def stop(self) -> None:
        control = self.__dict__.pop("control", None)
        if control is not None:
            control.close()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @functools.cached_property
    def control(self) -> SandboxControl:
        """One control client per server (its connections are closed by :meth:`stop`)."""
        return SandboxControl(self.url)

    def connection_env(self) -> dict[str, str]:
        return connection_env(self.url)


class SandboxControl:
    """A small client for the sandbox's control API (``/_sandbox/...``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = httpx.Client(base_url=url, timeout=10, verify=tls_context(True))

    def close(self) -> None:
        self._client.close()

    def post(self, path: str, body: Any = None) -> Any:
        """POST a control request (``/_sandbox/...``) and return its JSON answer."""
        return self._post(path, body)

    def get(self, path: str) -> Any:
        response = self._client.get(path)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: Any = None) -> Any:
        response = self._client.post(path, json=body if body is not None else {})
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._post("/_sandbox/reset")

    def requests(self, *, path_prefix: str = "", method: str | None = None) -> list[dict[str, Any]]:
        response = self._client.get("/_sandbox/requests")
        response.raise_for_status()
        return [
            r
            for r in response.json()
            if r["path"].startswith(path_prefix) and (method is None or r["method"] == method.upper())
        ]

    def fault(self, responses: list[dict[str, Any]], *, method: str | None = None, path_prefix: str = "") -> None:
        match: dict[str, Any] = {"path_prefix": path_prefix}
        if method:
            match["method"] = method.upper()
        self._post("/_sandbox/faults", {"match": match, "responses": responses})

    def clock(self, *, mode: str | None = None, advance_s: float | None = None) -> dict[str, Any]:
        """Read the sandbox clock, or set its mode (``"manual"``: time stands still; ``"wall"``) and/or
        move it forward; answers ``{"mode", "now", "offset_s"}``."""
        body: dict[str, Any] = {}
        if mode is not None:
            body["mode"] = mode
        if advance_s is not None:
            body["advance_s"] = advance_s
        return self._post("/_sandbox/clock", body) if body else self.get("/_sandbox/clock")  # type: ignore[no-any-return]

    def advance(self, seconds: float) -> float:
        """Move sandbox time forward by ``seconds``; the new sandbox time (epoch seconds)."""
        return float(self.clock(advance_s=seconds)["now"])

    def foundry_studio(self, rid: str, **settings: Any) -> dict[str, Any]:
        return self._post("/_sandbox/foundry/studios", {"rid": rid, **settings})  # type: ignore[no-any-return]

    def foundry_oauth(self, **settings: Any) -> dict[str, Any]:
        return self._post("/_sandbox/foundry/oauth", settings)  # type: ignore[no-any-return]

    def pluto_runs(self) -> list[dict[str, Any]]:
        """Pluto runs stored by the sandbox, with status, config, tags and metrics (see sandbox.pluto)."""
        return self.get("/_sandbox/pluto/runs")  # type: ignore[no-any-return]

    def pluto_key(self, key: str, state: str = "active") -> dict[str, Any]:
        """Register a Pluto API key as ``active``, ``revoked`` or ``expired``."""
        return self._post("/_sandbox/pluto/keys", {"key": key, "state": state})  # type: ignore[no-any-return]

    def pluto_settings(self, **settings: float) -> dict[str, Any]:
        """Pluto's monitor timings: ``heartbeat_grace_s``, ``stale_grace_s``, ``monitor_interval_s``,
        ``heartbeat_coalesce_s`` (real defaults 150, 1800, 60, 30)."""
        return self._post("/_sandbox/pluto/settings", settings)  # type: ignore[no-any-return]

    def pluto_cancel(self, run_id: int) -> dict[str, Any]:
        """Request a stop of a Pluto run, as its UI does: the next heartbeat answers CANCELLED."""
        return self._post("/_sandbox/pluto/cancel", {"runId": run_id})  # type: ignore[no-any-return]

    def ducklake_model(self, name: str, *, project: str = "analytics", **settings: Any) -> dict[str, Any]:
        """Script a DuckLake model: ``outcome``, ``duration_s``, ``rows_affected``, ``tests`` (see sandbox.ducklake)."""
        return self._post("/_sandbox/ducklake/models", {"project": project, "name": name, **settings})  # type: ignore[no-any-return]
