"""Time as the diary keeps it: timezone-aware UTC, written as RFC 3339 with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(value: datetime) -> str:
    """`2026-12-02T06:40:35.123456Z`: how the API, the original contract and exports write times."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
