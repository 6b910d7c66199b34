"""Typed errors shared by every integration.

They carry what a user needs to act on a failure (HTTP status, the service's error name or code,
its error instance id and parameters, and which request failed) and never any header or token.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A remote service answered with an error, or could not be reached within the retry budget."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str = "",
        path: str = "",
        error_name: str | None = None,
        error_code: str | int | None = None,
        error_instance_id: str | None = None,
        parameters: dict[str, Any] | None = None,
        service: str = "",
    ) -> None:
        self.message = message
        self.status = status
        self.method = method
        self.path = path
        self.error_name = error_name
        self.error_code = error_code
        self.error_instance_id = error_instance_id
        self.parameters = dict(parameters or {})
        self.service = service
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.service:
            parts.append(f"{self.service}:")
        if self.method or self.path:
            parts.append(f"{self.method} {self.path}".strip())
        if self.status is not None:
            parts.append(f"-> HTTP {self.status}")
        head = " ".join(parts)
        detail = []
        if self.error_name and str(self.error_name) != self.message:
            detail.append(str(self.error_name))
        if self.error_code is not None and str(self.error_code) != str(self.error_name):
            detail.append(f"code={self.error_code}")
        if self.parameters:
            detail.append(f"parameters={self.parameters}")
        if self.error_instance_id:
            detail.append(f"errorInstanceId={self.error_instance_id}")
        text = f"{head}: {self.message}" if head else self.message
        if detail:
            text += f" ({', '.join(detail)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for trigger events and XCom."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "status": self.status,
            "method": self.method,
            "path": self.path,
            "error_name": self.error_name,
            "error_code": self.error_code,
            "error_instance_id": self.error_instance_id,
            "parameters": self.parameters,
            "service": self.service,
        }

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> ApiError:
        """The error :meth:`to_dict` described, as the same class with the same fields (after a deferral)."""
        cls = API_ERRORS.get(str(raw.get("type")), ApiError)
        return cls(
            str(raw.get("message") or ""),
            status=raw.get("status"),
            method=str(raw.get("method") or ""),
            path=str(raw.get("path") or ""),
            error_name=raw.get("error_name"),
            error_code=raw.get("error_code"),
            error_instance_id=raw.get("error_instance_id"),
            parameters=raw.get("parameters") or {},
            service=str(raw.get("service") or ""),
        )


class InvalidArgumentError(ApiError):
    """HTTP 400 (and 413/422): the request was rejected as invalid."""


class UnauthorizedError(ApiError):
    """HTTP 401: the credentials are missing, wrong or expired."""


class PermissionDeniedError(ApiError):
    """HTTP 403: the credentials are valid but lack the permission."""


class NotFoundError(ApiError):
    """HTTP 404: the resource does not exist (or is not visible to these credentials)."""


class ConflictError(ApiError):
    """HTTP 409."""


class RateLimitedError(ApiError):
    """HTTP 429 still answered after the retry budget was spent."""


class ServerError(ApiError):
    """HTTP 5xx, or an answer that could not be decoded, after the retry budget was spent."""


class TransportError(ApiError):
    """The service could not be reached (connection refused, reset or timed out) within the retry budget."""


class InvalidRequestError(ApiError):
    """The request could not be sent as built (a header value HTTP does not allow, a bad URL): neither
    a retry nor a later poll can help, so it is not a transient error."""


class AmbiguousRequestError(TransportError):
    """A request that creates something may or may not have reached the service.

    Raised instead of retrying blindly, so that the caller can look for what may have been created
    before deciding to send the request again.
    """


# Every ApiError class by name, to rebuild one from a trigger event (never a class outside this module).
API_ERRORS: dict[str, type[ApiError]] = {
    cls.__name__: cls
    for cls in (
        ApiError,
        InvalidArgumentError,
        UnauthorizedError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RateLimitedError,
        ServerError,
        TransportError,
        AmbiguousRequestError,
        InvalidRequestError,
    )
}


class OutcomeUnknownError(AmbiguousRequestError):
    """A create's outcome stayed unknown: nothing it may have made was found within the adoption
    window. ``asked_at`` (epoch seconds) tells a later try where to look before creating again."""

    def __init__(self, message: str, *, asked_at: float = 0.0, **kwargs: Any) -> None:
        self.asked_at = asked_at
        super().__init__(message, **kwargs)


API_ERRORS[OutcomeUnknownError.__name__] = OutcomeUnknownError

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidArgumentError,
    401: UnauthorizedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidArgumentError,
    422: InvalidArgumentError,
    429: RateLimitedError,
}


def error_class_for_status(status: int) -> type[ApiError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return ApiError


class JobFailedError(Exception):
    """The remote job ended in a state that is not success (failed, cancelled, tests failed, timed out)."""


class JobTimeoutError(JobFailedError):
    """The wait's deadline passed before the remote job ended."""

    def __init__(self, message: str, *, snapshot: Any = None) -> None:
        super().__init__(message)
        self.snapshot = snapshot
