"""How the DuckLake platform spells an error answer (CONTRACTS.md section B, "Schemas"):
``{"code": <HTTP status as an int>, "message": str, "details"?: {str: str}}``."""

from __future__ import annotations

import httpx

from modelops_provider.core.transport import ErrorBody, error_json, generic_error_body


def ducklake_error_body(response: httpx.Response) -> ErrorBody:
    body = error_json(response)
    if body is None or "code" not in body or ("message" not in body and "details" not in body):
        return generic_error_body(response)
    return ErrorBody(
        message=str(body.get("message") or response.reason_phrase),
        error_code=body.get("code"),
        parameters=details_of(body.get("details")),
    )


def details_of(value: object) -> dict[str, object]:
    """``details`` as the error's parameters (a value of another shape is kept under its name)."""
    if isinstance(value, dict):
        return value
    return {} if value is None else {"details": value}
