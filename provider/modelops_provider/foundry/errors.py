"""How Foundry spells an error answer (CONTRACTS.md section A, "Error mapping"):
``{"errorCode", "errorName", "errorInstanceId", "parameters", "errorDescription"?}``.

The typed error follows the HTTP status, as the SDK's fallback does; ``errorName`` (e.g.
``ModelStudioNotFound``, ``InferenceTimeout``) stays on the error for the callers that tell names apart.
"""

from __future__ import annotations

import httpx

from modelops_provider.core.transport import ErrorBody, error_json, generic_error_body


def foundry_error_body(response: httpx.Response) -> ErrorBody:
    body = error_json(response)
    if body is None or ("errorName" not in body and "errorCode" not in body):
        # e.g. the OAuth token endpoint's {"error": "invalid_client"}, or a proxy's page.
        return generic_error_body(response)
    name = body.get("errorName")
    return ErrorBody(
        message=str(body.get("errorDescription") or name or response.reason_phrase),
        error_name=name,
        error_code=body.get("errorCode"),
        error_instance_id=body.get("errorInstanceId"),
        parameters=body.get("parameters") or {},
    )
