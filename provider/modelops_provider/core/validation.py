"""Input checks that run before any request is sent. Each error names the parameter and the value."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any, Literal, overload

# Foundry's resource identifier: ri.<service>.<instance>.<type>.<locator> (same pattern as Foundry's SDK).
RID_PATTERN = re.compile(r"^ri\.[a-z][a-z0-9-]*\.([a-z0-9][a-z0-9\-]*)?\.[a-z][a-z0-9-]*\.[a-zA-Z0-9._-]+$")


def require_rid(name: str, value: Any, *, kind: str | None = None) -> str:
    """Return ``value`` if it is a Foundry RID (optionally of resource type ``kind``), else raise ValueError."""
    if not isinstance(value, str) or not RID_PATTERN.match(value):
        raise ValueError(f"{name} must be a Foundry RID like 'ri.<service>.<instance>.<type>.<locator>', got {value!r}")
    if kind is not None and value.split(".")[3] != kind:
        raise ValueError(f"{name} must be a RID of type {kind!r}, got {value!r}")
    return value


def require_uuid(name: str, value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) and len(value) == 36 else _bad_uuid(name, value)
    except ValueError:
        return _bad_uuid(name, value)


def _bad_uuid(name: str, value: Any) -> str:
    raise ValueError(f"{name} must be a UUID like '123e4567-e89b-12d3-a456-426614174000', got {value!r}")


def require_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def seconds(name: str, value: Any, *, allow_none: bool = False, minimum: float = 0.0) -> float | None:
    """Accept seconds as a number or a timedelta; reject negatives, booleans and anything else."""
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{name} must be a number of seconds >= {minimum:g} (or a timedelta), got {value!r}")
    return float(value)


@overload
def require_bool(name: str, value: Any) -> bool: ...
@overload
def require_bool(name: str, value: Any, *, allow_none: Literal[True]) -> bool | None: ...
def require_bool(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """A boolean; the strings 'true'/'false' (what a rendered template gives) are accepted too."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{name} must be a boolean, got {value!r}")


@overload
def require_count(name: str, value: Any, *, minimum: int = 0) -> int: ...
@overload
def require_count(name: str, value: Any, *, minimum: int = 0, allow_none: Literal[True]) -> int | None: ...
def require_count(name: str, value: Any, *, minimum: int = 0, allow_none: bool = False) -> int | None:
    """A whole number >= ``minimum`` (a bool is not a number here)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
