"""What every Foundry route of the sandbox shares: Foundry's error JSON (raised as
:class:`FoundryError`, answered by one handler), the state of the request's sandbox, and the auth
dependency (bearer token, OAuth scope, ``preview=true``)."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from modelops_provider.sandbox.foundry import FoundryState


class FoundryError(Exception):
    """An answer in Foundry's error shape ``{errorCode, errorName, errorInstanceId, parameters}``."""

    def __init__(self, status: int, code: str, name: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.status = status
        self.code = code
        self.name = name
        self.parameters = parameters or {}

    def body(self) -> dict[str, Any]:
        return {
            "errorCode": self.code,
            "errorName": self.name,
            "errorInstanceId": str(uuid.uuid4()),
            "parameters": self.parameters,
        }


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FoundryError)
    return JSONResponse(exc.body(), status_code=exc.status)


def foundry(request: Request) -> FoundryState:
    """The Foundry state of this request's sandbox (a new one after each reset)."""
    return request.app.state.sandbox.foundry  # type: ignore[no-any-return]


if TYPE_CHECKING:
    State = Annotated[FoundryState, Depends(foundry)]
else:  # the state's module imports this one
    State = Annotated[Any, Depends(foundry)]

User = tuple[str, str]  # (user id, username)


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:] if header.startswith("Bearer ") else ""


def granted_scopes(request: Request, fs: State) -> set[str] | None:
    """The scopes an OAuth token was granted; None for a static token (all scopes)."""
    token = bearer(request)
    with fs.lock:
        granted = fs.token_scopes.get(token) if token else None
    return None if granted is None else set(granted)


def requires(scope: str | None = None, *, preview: bool = False) -> Any:
    """The auth dependency of a route: a valid token (401), holding ``scope`` (403
    ``ApiUsageDenied``), and with ``preview`` the ``preview=true`` query (400); the user."""

    def check(request: Request, fs: State) -> User:
        token = bearer(request)
        who = fs.user_of(token) if token else None
        if who is None:
            raise FoundryError(401, "UNAUTHORIZED", "MissingCredentials")
        if scope is not None and scope not in fs.scopes_of(token):
            raise FoundryError(403, "PERMISSION_DENIED", "ApiUsageDenied", {"missingScope": scope})
        if preview and request.query_params.get("preview") != "true":
            raise FoundryError(400, "INVALID_ARGUMENT", "ApiFeaturePreviewUsageOnly")
        return who

    return Depends(check)


def page_size(raw: Any, default: int, maximum: int) -> int:
    try:
        size = int(raw or default)
        if not 1 <= size <= maximum:
            raise ValueError
    except (TypeError, ValueError):
        raise FoundryError(400, "INVALID_ARGUMENT", "InvalidPageSize", {"pageSize": raw}) from None
    return size


def paged(fs: State, items: list[Any], size: int, page_token: Any) -> tuple[list[Any], str | None]:
    """One page of ``items`` from an opaque page token, and the token of the next page (if any)."""
    offset = 0
    if page_token:
        with fs.lock:
            found = fs.page_tokens.get(str(page_token))
        if found is None:
            raise FoundryError(400, "INVALID_ARGUMENT", "InvalidPageToken", {"pageToken": page_token})
        offset = found
    token = None
    if offset + size < len(items):
        # Opaque to clients, as Foundry's are.
        token = "v1." + base64.urlsafe_b64encode(secrets.token_bytes(12)).decode().rstrip("=")
        with fs.lock:
            fs.page_tokens[token] = offset + size
    return items[offset : offset + size], token
