"""Input checks that run before any request is sent. Each error names the parameter and the value."""

from __future__ import annotations

import math
import re
import uuid
from datetime import timedelta
from typing import Any, Literal, overload

# Foundry's resource identifier: ri.<service>.<instance>.<type>.<locator> (same pattern as Foundry's SDK).
# Matched with fullmatch: ``$`` alone would let a trailing newline through.
RID_PATTERN = re.compile(r"ri\.[a-z][a-z0-9-]*\.([a-z0-9][a-z0-9\-]*)?\.[a-z][a-z0-9-]*\.[a-zA-Z0-9._-]+")


def require_rid(name: str, value: Any, *, kind: str | None = None) -> str:
    """Return ``value`` if it is a Foundry RID (optionally of resource type ``kind``), else raise ValueError."""
    if not isinstance(value, str) or not RID_PATTERN.fullmatch(value):
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
    """Non-empty text without surrounding whitespace or control characters (a trailing newline)."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or value != value.strip()
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        raise ValueError(
            f"{name} must be a non-empty string without surrounding whitespace or control characters, got {value!r}"
        )
    return value


# Bounds of the duration arguments (seconds), documented in the README.
MIN_POLL_INTERVAL_S = 0.1
MAX_POLL_INTERVAL_S = 24 * 3600.0
MAX_DURATION_S = 30 * 24 * 3600.0


def seconds(
    name: str,
    value: Any,
    *,
    allow_none: bool = False,
    minimum: float = 0.0,
    maximum: float = MAX_DURATION_S,
    positive: bool = False,
) -> float | None:
    """Seconds as a finite number or a timedelta within bounds; booleans, NaN and infinities refused."""
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    low = f"> {minimum:g}" if positive else f">= {minimum:g}"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
        or (positive and value == minimum)
        or value > maximum
    ):
        raise ValueError(f"{name} must be a number of seconds {low} and <= {maximum:g} (or a timedelta), got {value!r}")
    return float(value)


def poll_interval(name: str, value: Any) -> float:
    """A poll interval: at least 0.1 s (0 or NaN would busy-poll the service), at most a day."""
    result = seconds(name, value, minimum=MIN_POLL_INTERVAL_S, maximum=MAX_POLL_INTERVAL_S)
    assert result is not None
    return result


def require_name(name: str, value: Any, *, max_length: int = 255) -> str:
    """A name the service forbids whitespace in: non-empty, no whitespace anywhere (a trailing
    newline included), at most ``max_length`` characters."""
    if not isinstance(value, str) or not value or len(value) > max_length or any(c.isspace() for c in value):
        raise ValueError(
            f"{name} must be a non-empty name without whitespace (at most {max_length} characters), got {value!r}"
        )
    return value


def clean_secret(conn_id: str, what: str, value: Any) -> str:
    """A credential from a connection: surrounding whitespace (a pasted line break) stripped; refused,
    without echoing it, when what is left holds a control or non-ASCII character, which cannot travel
    in an HTTP header (and would end up quoted in the HTTP library's error text)."""
    text = "" if value is None else str(value).strip()
    bad = [c for c in text if ord(c) < 0x20 or ord(c) == 0x7F or not c.isascii()]
    if bad:
        kinds = sorted({"a control character" if c.isascii() else "a non-ASCII character" for c in bad})
        raise ValueError(
            f"connection {conn_id!r}: the {what} holds {' and '.join(kinds)} ({len(text)} characters; not shown); "
            "paste it again without line breaks or special characters"
        )
    return text


MAX_JSON_DEPTH = 64


def json_depth_ok(value: Any, *, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``value`` nests dicts/lists at most ``limit`` deep (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


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
