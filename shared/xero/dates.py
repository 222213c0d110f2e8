"""Xero's date formats: ``/Date(1551399321043+0000)/`` in JSON bodies, ISO-8601 in the
``*String`` twins, and the UTC timestamp ``If-Modified-Since`` takes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_xero_date(value: str | None) -> datetime | None:
    """A timezone-aware UTC datetime from either of Xero's forms; None for empty values.

    The offset in ``/Date(ms+hhmm)/`` describes the organisation's zone; the milliseconds are
    already UTC, so the offset does not move the instant."""
    if not value:
        return None
    text = value.strip()
    match = _MS_DATE.match(text)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def if_modified_since(moment: datetime, *, overlap: timedelta = timedelta(0)) -> str:
    """The ``If-Modified-Since`` header value for changes after ``moment`` (minus an overlap,
    since not every change moves UpdatedDateUTC at the same instant)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - overlap).strftime("%Y-%m-%dT%H:%M:%S")
