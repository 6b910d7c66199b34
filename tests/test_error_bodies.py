"""Each service's error-body parser, as pure functions over the bodies CONTRACTS.md quotes (no sandbox).

One table per service: the body the service really sends, and what the typed error must carry. The
sandbox tests (test_*_hook.py, test_pluto_liveness.py) show the same parsers wired into each hook.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from modelops_provider.core import errors
from modelops_provider.core.transport import ErrorBody, generic_error_body
from modelops_provider.ducklake.errors import ducklake_error_body
from modelops_provider.foundry.errors import foundry_error_body
from modelops_provider.pluto.errors import api_error_body, ingest_error_body


def answer(status: int, body: Any = None, *, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text)
    return httpx.Response(status, content=b"" if body is None else json.dumps(body).encode())


def said(parsed: ErrorBody) -> tuple[Any, ...]:
    return (
        parsed.message,
        parsed.error_name,
        parsed.error_code,
        parsed.error_instance_id,
        dict(parsed.parameters),
        parsed.error_class,
    )


# --- Foundry (section A "Error mapping", section E "Errors used below") ---------------------------
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            404,
            {
                "errorCode": "NOT_FOUND",
                "errorName": "ModelStudioNotFound",
                "errorInstanceId": "0a1b2c3d-0000-4000-8000-000000000001",
                "parameters": {"studioRid": "ri.models.main.model-studio.1"},
            },
            (
                "ModelStudioNotFound",
                "ModelStudioNotFound",
                "NOT_FOUND",
                "0a1b2c3d-0000-4000-8000-000000000001",
                {"studioRid": "ri.models.main.model-studio.1"},
                None,
            ),
        ),
        (
            400,
            {
                "errorCode": "INVALID_ARGUMENT",
                "errorName": "InferenceInvalidInput",
                "errorInstanceId": "i",
                "parameters": {},
                "errorDescription": "df_in is missing",
            },
            ("df_in is missing", "InferenceInvalidInput", "INVALID_ARGUMENT", "i", {}, None),
        ),
        # The OAuth token endpoint answers in OAuth's shape, not Foundry's.
        (401, {"error": "invalid_client"}, ("invalid_client", None, None, None, {}, None)),
        # 404 with an empty body (the SDK's rule 1): the status speaks.
        (404, None, ("Not Found", None, None, None, {}, None)),
        (502, "<html>Bad gateway</html>", ("<html>Bad gateway</html>", None, None, None, {}, None)),
    ],
)
def test_foundry_error_bodies(status, body, expected):
    response = answer(status, text=body) if isinstance(body, str) else answer(status, body)
    assert said(foundry_error_body(response)) == expected


# --- DuckLake (section B "Schemas", "Auth", "429", "Run lifecycle") -------------------------------
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {"code": 401, "message": "unauthorized: provide a valid JWT Bearer token or API key"},
            ("unauthorized: provide a valid JWT Bearer token or API key", None, 401, None, {}, None),
        ),
        (
            400,
            {"code": 400, "message": "run 7 cannot cancel run in status SUCCESS"},
            ("run 7 cannot cancel run in status SUCCESS", None, 400, None, {}, None),
        ),
        (429, {"code": 429, "message": "rate limit exceeded"}, ("rate limit exceeded", None, 429, None, {}, None)),
        (
            400,
            {"code": 400, "message": "invalid", "details": {"field": "max_results"}},
            ("invalid", None, 400, None, {"field": "max_results"}, None),
        ),
        # Not the platform's shape (a proxy in front of it): the generic fallback.
        (503, {"detail": "upstream down"}, ("upstream down", None, None, None, {}, None)),
    ],
)
def test_ducklake_error_bodies(status, body, expected):
    assert said(ducklake_error_body(answer(status, body))) == expected


# --- Pluto API service (section C "Auth", "Endpoints"; section F "Status precedence") -------------
@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": "Unauthorized"}, ("Unauthorized", None, None, None, {}, None)),
        (
            401,
            {"error": "Unauthorized", "message": "API key has been revoked"},
            ("Unauthorized: API key has been revoked", None, None, None, {}, None),
        ),
        (404, {"error": "Run not found"}, ("Run not found", None, None, None, {}, None)),
        (
            400,
            {
                "success": False,
                "error": {
                    "name": "ZodError",
                    "issues": [
                        {"path": ["status"], "message": "Invalid enum value"},
                        {"path": [], "message": "Required"},
                    ],
                },
            },
            ("status: Invalid enum value; (body): Required", "ZodError", None, None, {}, None),
        ),
        # FastAPI's shape (the py service) read by the same service's parser through the fallback.
        (404, {"detail": "Run not found"}, ("Run not found", None, None, None, {}, None)),
    ],
)
def test_pluto_api_error_bodies(status, body, expected):
    assert said(api_error_body(answer(status, body))) == expected


# --- Pluto ingest service (section F "Ingest error bodies") ---------------------------------------
WRAPPED = "Failed to process metrics stream: "


@pytest.mark.parametrize(
    ("message", "cls", "name", "number", "category", "inner"),
    [
        ("InvalidToken (1002 - Authentication Error): Invalid API key", errors.UnauthorizedError, "InvalidToken", 1002,
         "Authentication Error", "Invalid API key"),
        ("InvalidToken (1002 - Authentication Error): API key has expired", errors.UnauthorizedError, "InvalidToken",
         1002, "Authentication Error", "API key has expired"),
        ("MissingToken (1003 - Authentication Error): Missing Authorization header", errors.UnauthorizedError,
         "MissingToken", 1003, "Authentication Error", "Missing Authorization header"),
        ("InvalidBearerFormat (1007 - Authentication Error): Authorization header must start with 'Bearer '",
         errors.UnauthorizedError, "InvalidBearerFormat", 1007, "Authentication Error",
         "Authorization header must start with 'Bearer '"),
        ("InvalidHeaderFormat (2004 - Validation Error): Missing required header: X-Run-Id",
         errors.InvalidArgumentError, "InvalidHeaderFormat", 2004, "Validation Error",
         "Missing required header: X-Run-Id"),
        ("StreamDecodingError (3004 - Processing Error): Failed to parse JSON line (bytes): 'x': expected value",
         errors.InvalidArgumentError, "StreamDecodingError", 3004, "Processing Error",
         "Failed to parse JSON line (bytes): 'x': expected value"),
        ("InvalidMetricFormat (2005 - Validation Error): 'data' field cannot be empty", errors.InvalidArgumentError,
         "InvalidMetricFormat", 2005, "Validation Error", "'data' field cannot be empty"),
        ("DatabaseError (4001 - Database Error): Failed to validate API key", errors.ServerError, "DatabaseError",
         4001, "Database Error", "Failed to validate API key"),
        # Not quoted in section F; the number ranges it documents (1xxx 401/403, 5xxx 500/503/429):
        ("Forbidden (1010 - Authorization Error): not your run", errors.PermissionDeniedError, "Forbidden", 1010,
         "Authorization Error", "not your run"),
        ("RateLimitExceeded (5003 - Internal Error): slow down", errors.RateLimitedError, "RateLimitExceeded", 5003,
         "Internal Error", "slow down"),
    ],
)  # fmt: skip
def test_pluto_ingest_422_is_typed_by_its_cause(message, cls, name, number, category, inner):
    body = {"code": "PROCESSING_FAILED", "message": WRAPPED + message}
    assert said(ingest_error_body(answer(422, body))) == (
        inner,
        name,
        "PROCESSING_FAILED",
        None,
        {"code": number, "category": category},
        cls,
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # /files and /step answer their errors unwrapped: the status decides the type.
        (401, {"code": "INVALID_TOKEN", "message": "Invalid API key"}, ("Invalid API key", None, "INVALID_TOKEN")),
        (
            400,
            {"code": "INVALID_HEADER_FORMAT", "message": "Missing required header: X-Run-Id"},
            ("Missing required header: X-Run-Id", None, "INVALID_HEADER_FORMAT"),
        ),
        # A PROCESSING_FAILED whose message is not the wrapping stays as it is.
        (422, {"code": "PROCESSING_FAILED", "message": "something else"},
         ("something else", None, "PROCESSING_FAILED")),
        # The wrapping under another code is not read as a cause.
        (422, {"code": "OTHER", "message": WRAPPED + "InvalidToken (1002 - Authentication Error): x"},
         (WRAPPED + "InvalidToken (1002 - Authentication Error): x", None, "OTHER")),
    ],
)  # fmt: skip
def test_pluto_ingest_other_bodies_keep_their_status(status, body, expected):
    parsed = ingest_error_body(answer(status, body))
    assert (parsed.message, parsed.error_name, parsed.error_code) == expected
    assert parsed.error_class is None and dict(parsed.parameters) == {}


# --- the generic fallback (core), which the Pluto py service's FastAPI bodies use ------------------
@pytest.mark.parametrize(
    ("response", "message"),
    [
        (answer(404, {"detail": "Run not found"}), "Run not found"),
        (answer(401, {"detail": "Invalid or expired API key for this run"}), "Invalid or expired API key for this run"),
        (
            answer(422, {"detail": [{"type": "missing", "loc": ["body", "runId"], "msg": "Field required"}]}),
            "[{'type': 'missing', 'loc': ['body', 'runId'], 'msg': 'Field required'}]",
        ),
        (answer(500, text="Internal Server Error"), "Internal Server Error"),
        (answer(502, text="   "), "Bad Gateway"),
        (answer(500, ["not", "an", "object"]), "['not', 'an', 'object']"),
        (answer(418, {"unknown": "shape"}), "I'm a teapot"),
    ],
)
def test_generic_fallback(response, message):
    assert said(generic_error_body(response)) == (message, None, None, None, {}, None)


def test_a_service_specific_shape_is_not_read_by_the_generic_fallback():
    # Core knows no service: Foundry's and DuckLake's fields are left to their packages.
    foundry = answer(404, {"errorCode": "NOT_FOUND", "errorName": "BuildNotFound", "parameters": {"buildRid": "r"}})
    assert said(generic_error_body(foundry)) == ("Not Found", None, None, None, {}, None)
    ducklake = answer(429, {"code": 429, "message": "rate limit exceeded"})
    assert generic_error_body(ducklake).error_code is None
