"""The embedded sandbox: one FastAPI app that speaks the remote services' contracts over loopback,
plus a control API (``/_sandbox/...``) to script it, inject faults and read what it received."""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
from types import ModuleType
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from modelops_provider.sandbox.clock import Clock, check_seconds

# One module per remote service. Each defines make_state(clock), install(app) and
# connection_env(base_url) -> {"AIRFLOW_CONN_...": "..."}; its state is reachable as state.<name>.
SERVICE_NAMES = ("foundry", "ducklake", "pluto")


def service_modules() -> list[ModuleType]:
    return [importlib.import_module(f"modelops_provider.sandbox.{name}") for name in SERVICE_NAMES]


class SandboxState:
    """Everything the sandbox remembers; reset by ``POST /_sandbox/reset`` (the clock included:
    back to the wall clock)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.lock = threading.RLock()
        self.base_url = ""
        self.clock = clock or Clock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.clock.reset()
            self.requests: list[dict[str, Any]] = []
            self.faults: list[dict[str, Any]] = []
            for module in service_modules():
                setattr(self, module.__name__.rsplit(".", 1)[1], module.make_state(self.clock))

    def __getattr__(self, name: str) -> Any:  # per-service states are set dynamically in reset()
        raise AttributeError(name)

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            for rule in self.faults:
                match = rule["match"]
                if match.get("method") and match["method"].upper() != method:
                    continue
                if not path.startswith(match.get("path_prefix", "")):
                    continue
                if rule["responses"]:
                    answer: dict[str, Any] = rule["responses"].pop(0)
                    if not rule["responses"]:
                        self.faults.remove(rule)
                    return answer
            return None


LOG_ENTRY = "modelops_sandbox_log_entry"


def note_names(request: Request, names: list[str]) -> None:
    """Record in the request log which runs a batched read named (``names``): the log keeps no
    bodies, and a getBatch or a status-filtered list looks at many runs at once."""
    entry = getattr(request.state, LOG_ENTRY, None)
    if entry is not None:
        entry["names"] = names


class SandboxMiddleware:
    """Logs every service request (never its headers) and plays injected faults.

    A fault is ``{"status": ..., "kind": "drop" | "malformed", "delay_s": ..., "process": ...}``:

    - ``process`` false (the default with ``status``): the fault happens *instead of* the service.
      ``delay_s`` first waits; then ``status`` answers that status without the service acting, or,
      with no ``status`` and no ``kind``, the service acts late (``delay_s`` after the request came).
    - ``process`` true (the default with ``drop`` and ``malformed``): the service *acts first*, then,
      ``delay_s`` later, its answer is sent, or replaced by ``status``, dropped, or garbled: the cases
      where a client cannot know whether its request took effect.
    """

    def __init__(self, app: Any, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "query": dict(parse_qsl(scope.get("query_string", b"").decode())),
            "status": None,
            "time": time.time(),
            # The client's port: one per TCP connection, so tests can count connections.
            "client_port": (scope.get("client") or (None, None))[1],
        }
        with self.state.lock:
            self.state.requests.append(entry)
        # A route may say which remote objects a request named (see note_names).
        scope.setdefault("state", {})[LOG_ENTRY] = entry
        fault = self.state.take_fault(scope["method"], scope["path"])

        async def logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        if not fault:
            await self.app(scope, receive, logged)
            return
        kind = fault.get("kind")
        delay = float(fault.get("delay_s") or 0)
        process = bool(fault.get("process", kind in ("drop", "malformed")))
        # Read the whole body now, so that the service can still act after the client gave up.
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # type: ignore[no-any-return]

        if not process:
            if delay:
                await asyncio.sleep(delay)
            if not await self._fault_answer(entry, send, fault, kind):
                entry["fault"] = "late"
                entry["processed_at"] = time.time()
                await self.app(scope, replay, logged)
            return
        captured: list[dict[str, Any]] = []

        async def capture(message: dict[str, Any]) -> None:
            captured.append(message)

        await self.app(scope, replay, capture)
        entry["processed_at"] = time.time()
        if delay:
            await asyncio.sleep(delay)
        if not await self._fault_answer(entry, send, fault, kind):
            entry["fault"] = "late answer"
            for message in captured:
                await logged(message)

    async def _fault_answer(self, entry: dict[str, Any], send: Any, fault: dict[str, Any], kind: Any) -> bool:
        """Answer as the fault says (a status, a drop, a garbled body); False when it only delays."""
        if "status" in fault:
            await self._answer(entry, send, fault)
        elif kind == "drop":
            await self._drop(entry, send)
        elif kind == "malformed":
            await self._malformed(entry, send)
        else:
            return False
        return True

    @staticmethod
    async def _answer(entry: dict[str, Any], send: Any, fault: dict[str, Any]) -> None:
        entry["status"] = int(fault["status"])
        entry["fault"] = True
        body = json.dumps(fault.get("body", {})).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), str(v).encode()) for k, v in (fault.get("headers") or {}).items()]
        await send({"type": "http.response.start", "status": int(fault["status"]), "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _malformed(entry: dict[str, Any], send: Any) -> None:
        entry["fault"] = "malformed"
        entry["status"] = 200
        body = b'{"this is": not json'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drop(entry: dict[str, Any], send: Any) -> None:
        entry["fault"] = "drop"
        entry["status"] = "dropped"
        # Promise a body, then break the connection: the client sees a transport error.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
        raise ConnectionAbortedError("sandbox fault: connection dropped on purpose")


def sandbox(request: Request) -> SandboxState:
    return request.app.state.sandbox  # type: ignore[no-any-return]


Sandbox = Annotated[SandboxState, Depends(sandbox)]
control = APIRouter(prefix="/_sandbox")


@control.post("/reset")
def reset(state: Sandbox) -> dict[str, Any]:
    state.reset()
    return {"ok": True}


@control.get("/requests")
def requests(state: Sandbox) -> list[dict[str, Any]]:
    with state.lock:
        return [dict(e) for e in state.requests]


@control.get("/clock")
def clock(state: Sandbox) -> dict[str, Any]:
    return state.clock.to_json()


@control.post("/clock")
async def set_clock(request: Request, state: Sandbox) -> JSONResponse:
    """``{"mode": "manual" | "wall"}`` and/or ``{"advance_s": N}`` (the mode changes first)."""
    body = await request.json() if await request.body() else {}
    if not isinstance(body, dict) or set(body) - {"mode", "advance_s"}:
        return JSONResponse({"error": f"need {{'mode': 'manual'|'wall', 'advance_s': N}}, got {body!r}"}, 400)
    try:
        check_seconds(body.get("advance_s", 0))  # nothing changes when any of it is wrong
        if "mode" in body:
            state.clock.set_mode(body["mode"])
        if "advance_s" in body:
            state.clock.advance(body["advance_s"])
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(state.clock.to_json())


@control.post("/faults")
async def faults(request: Request, state: Sandbox) -> JSONResponse:
    body = await request.json()
    match = body.get("match") or {}
    responses = body.get("responses") or []
    if not isinstance(match, dict) or not isinstance(responses, list) or not responses:
        return JSONResponse({"error": "need {'match': {...}, 'responses': [...]}"}, status_code=400)
    with state.lock:
        state.faults.append({"match": match, "responses": list(responses)})
    return JSONResponse({"ok": True, "pending": len(responses)})


def create_app(state: SandboxState | None = None) -> FastAPI:
    state = state or SandboxState()
    app = FastAPI(title="modelops sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json")
    app.state.sandbox = state
    app.include_router(control)
    for module in service_modules():
        module.install(app)
    app.add_middleware(SandboxMiddleware, state=state)
    return app
