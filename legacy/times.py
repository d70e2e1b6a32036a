"""Timestamps as the legacy systems stored them: local-time strings without a zone, ISO
strings with one, Unix seconds, or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


class BadTime(ValueError):
    pass


def parse_time(value: object, zone: tzinfo) -> datetime | None:
    """An aware datetime, or None for an empty value. A time without a zone is read in
    ZONE (the old server's local time); digits are Unix seconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_unix(value)
    text = str(value).strip()
    if not text:
        return None
    if text.lstrip("-").replace(".", "", 1).isdigit():
        return _from_unix(float(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(f"unreadable time {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _from_unix(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise BadTime(f"Unix time {seconds} is out of range") from None
