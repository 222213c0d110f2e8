"""Retry timing shared by the Xero and Sugar adapters: reading ``Retry-After`` and the jittered
exponential backoff, so both services are waited for the same way."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BASE_SECONDS = 0.25
CAP_SECONDS = 8.0


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds, from either of its forms (delta-seconds or an HTTP date)."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """How long to wait before attempt ``attempt + 1``.

    Never sooner than the service asked; otherwise 0.25 s doubling up to 8 s. Both get a little
    random extra so parallel workers do not come back in step."""
    if retry_after is not None:
        return retry_after + random.uniform(0, min(1.0, 0.1 * retry_after))
    wait = min(CAP_SECONDS, BASE_SECONDS * 2 ** (attempt - 1))
    return wait + random.uniform(0, 0.25 * wait)
