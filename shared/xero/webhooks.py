"""Xero webhook deliveries: the signature check and the payload's shape.

Xero signs the exact bytes it sends: ``x-xero-signature`` is base64(HMAC-SHA256(body, webhook
key)). The check therefore runs on the raw body, before anything parses it, and compares in
constant time. The payload models are lenient where Xero is known to grow (new event categories,
extra fields such as a credit note's ``data``) and where the published spec is wrong (sequences
are 0 in Intent-to-Receive deliveries although the spec says minimum 1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

SIGNATURE_HEADER = "x-xero-signature"

_XERO_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")


def webhook_signature(raw_body: bytes, webhook_key: str) -> str:
    """What Xero sends in ``x-xero-signature`` for this body."""
    digest = hmac.new(webhook_key.encode("utf-8"), raw_body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_is_valid(raw_body: bytes, presented: str | None, webhook_key: str) -> bool:
    if not presented or not webhook_key:
        return False
    expected = webhook_signature(raw_body, webhook_key).encode("ascii")
    return hmac.compare_digest(presented.strip().encode("utf-8", "replace"), expected)


def header(headers: Mapping[str, Any] | None, multi_value: Mapping[str, Any] | None, name: str) -> str | None:
    """A request header by case-insensitive name, from API Gateway's single- or multi-value map."""
    for key, value in (headers or {}).items():
        if key.lower() == name and value is not None:
            return str(value)
    for key, values in (multi_value or {}).items():
        if key.lower() == name and values:
            return str(values[0])
    return None


def normalise_event_date(value: str) -> str:
    """Xero's ``eventDateUtc`` ("2026-11-26T11:20:05.123", no zone, 0-7 fraction digits) as a
    fixed-width UTC string, so that dates compare correctly as strings in DynamoDB conditions."""
    match = _XERO_DATE.match(value.strip())
    if not match:
        raise ValueError(f"not a Xero date-time: {value!r}")
    seconds, fraction, zone = match.groups()
    text = f"{seconds}.{(fraction or '0')[:6].ljust(6, '0')}"
    moment = datetime.fromisoformat(text + ("" if zone in (None, "Z") else zone))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_event_date(value: str) -> None:
    """Raises ValueError exactly when ``normalise_event_date`` would, at a fraction of its cost
    for the form Xero sends (no zone): a delivery checks 50 of them while Xero waits."""
    match = _XERO_DATE.match(value.strip())
    if not match:
        raise ValueError(f"not a Xero date-time: {value!r}")
    seconds, _, zone = match.groups()
    if zone in (None, "Z"):
        datetime.fromisoformat(seconds)  # the date and the time of day in range; the fraction is digits
    else:
        normalise_event_date(value)


class WebhookEvent(BaseModel):
    """One change notice. Events are thin: the resource itself must be fetched from Xero."""

    model_config = ConfigDict(defer_build=True, extra="allow", populate_by_name=True)

    resource_url: str = Field(alias="resourceUrl", max_length=2048)
    resource_id: str = Field(alias="resourceId", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")
    event_date_utc: str = Field(alias="eventDateUtc")
    event_type: str = Field(alias="eventType", min_length=1, max_length=50)
    # Kept open: Xero adds categories (PREPAYMENT, OVERPAYMENT) without notice.
    event_category: str = Field(alias="eventCategory", min_length=1, max_length=50,
                                pattern=r"^[A-Z_]+$")
    tenant_id: str = Field(alias="tenantId", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")
    tenant_type: str = Field(alias="tenantType", min_length=1, max_length=50)

    @field_validator("event_date_utc")
    @classmethod
    def _readable_date(cls, value: str) -> str:
        check_event_date(value)
        return value

    @property
    def event_date_normalised(self) -> str:
        return normalise_event_date(self.event_date_utc)

    def as_sent(self) -> dict[str, Any]:
        """The event as Xero sent it (extra fields included), for the work queue."""
        return self.model_dump(by_alias=True, mode="json")


class WebhookPayload(BaseModel):
    """A delivery. ``events`` is empty for Intent-to-Receive checks. Events are kept as sent
    and validated one by one, so that one odd event does not cost the others."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    events: list[dict[str, Any]]
    first_event_sequence: int | None = Field(default=None, alias="firstEventSequence", ge=0)
    last_event_sequence: int | None = Field(default=None, alias="lastEventSequence", ge=0)
    entropy: str | None = None

    def valid_events(self) -> tuple[list[WebhookEvent], int]:
        """The events that have the fields the connector needs, and how many did not."""
        try:  # one pass for the usual delivery, every event readable
            return _event_list().validate_python(self.events), 0
        except ValidationError:
            pass
        events: list[WebhookEvent] = []
        rejected = 0
        for raw in self.events:
            try:
                events.append(WebhookEvent.model_validate(raw))
            except ValidationError:
                rejected += 1
        return events, rejected


@cache
def _event_list() -> TypeAdapter[list[WebhookEvent]]:
    """Built on first use, like the models: a container that never sees a delivery never pays for it."""
    return TypeAdapter(list[WebhookEvent])


def parse_payload(raw_body: bytes) -> WebhookPayload:
    """Raises ValueError when the body is not a delivery (not JSON, or no ``events`` list)."""
    try:  # parsed and validated in one pass (pydantic's own JSON reader)
        return WebhookPayload.model_validate_json(raw_body)
    except (ValidationError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a Xero webhook delivery: {type(error).__name__}") from error
