"""How Pluto's three services spell an error answer (CONTRACTS.md sections C and F).

- API service (``url_api``): ``{"error": "Unauthorized", "message"?: "Key not found"}``, or zod's
  ``{"success": false, "error": {"name": "ZodError", "issues": [...]}}`` for a malformed body.
- Ingest service (``url_ingest``): ``{"code": "<SCREAMING_SNAKE variant>", "message", "details"?}``;
  on ``/ingest/*`` every error, a bad key included, is ``422 PROCESSING_FAILED`` with the cause in the
  message, which :func:`ingest_error_body` turns into the typed error it means.
- Py service (``url_py``, FastAPI): ``{"detail": ...}``, which the generic parser reads.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from modelops_provider.core import errors
from modelops_provider.core.transport import ErrorBody, error_json, generic_error_body


def api_error_body(response: httpx.Response) -> ErrorBody:
    body = error_json(response)
    if body is None or "error" not in body:
        return generic_error_body(response)
    error = body["error"]
    if isinstance(error, dict):
        issues = error.get("issues")
        if isinstance(issues, list) and issues and not error.get("message"):
            text = "; ".join(
                f"{'.'.join(str(p) for p in i.get('path') or ()) or '(body)'}: {i.get('message')}"
                for i in issues
                if isinstance(i, dict)
            )
            return ErrorBody(text or str(error), error_name=error.get("name"))
        return ErrorBody(str(error.get("message") or error), error_name=error.get("name"))
    message = body.get("message")
    return ErrorBody(f"{error}: {message}" if message else str(error))


# "Failed to process metrics stream: InvalidToken (1002 - Authentication Error): Invalid API key"
_PROCESSING_FAILED = re.compile(r"^Failed to process \w+ stream: (\w+) \((\d+) - ([^)]*)\): (.*)$", re.DOTALL)


def _cause_class(variant: str, number: int, category: str) -> type[errors.ApiError]:
    """The cause's number says what it is: 1xxx authentication, 2xxx validation, 3xxx processing,
    4xxx an unavailable dependency (e.g. its database), 5xxx internal."""
    if number // 1000 == 1:
        return errors.PermissionDeniedError if "authoriz" in category.lower() else errors.UnauthorizedError
    if number // 1000 in (2, 3):
        return errors.InvalidArgumentError
    if variant == "RateLimitExceeded":
        return errors.RateLimitedError
    return errors.ServerError


def ingest_error_body(response: httpx.Response) -> ErrorBody:
    body = error_json(response)
    if body is None or "code" not in body or ("message" not in body and "details" not in body):
        return generic_error_body(response)
    code, message = body.get("code"), str(body.get("message") or response.reason_phrase)
    m = _PROCESSING_FAILED.match(message) if code == "PROCESSING_FAILED" else None
    if m is None:
        details: Any = body.get("details")
        parameters = details if isinstance(details, dict) else {} if details is None else {"details": details}
        return ErrorBody(message, error_code=code, parameters=parameters)
    variant, number, category, inner = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    return ErrorBody(
        inner,
        error_name=variant,
        error_code=code,
        parameters={"code": number, "category": category},
        error_class=_cause_class(variant, number, category),
    )
