"""Timestamps as the services write them (ISO 8601, ``Z`` or an offset; naive ones taken as UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_timestamp(value: str | None) -> float | None:
    """Epoch seconds, or None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
