"""Xero webhook deliveries: accepted in the request, deduplicated and recorded by the worker.

The request side only queues (Xero disables a webhook that does not answer within 5 seconds,
and any Xero or CRM call could take that long): one queue message per organisation in a
delivery, so that a 50-event delivery costs one SQS send. The worker drops the events it has
seen already (Xero redelivers for up to 24 hours, and out of order) and leaves one "pending
refresh" item per changed resource; the same worker then re-reads those resources from Xero
(``shared.usecases.xero_updates.refresh_pending``) and marks each item refreshed once applied.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from shared.chunking import chunks_by_json_size
from shared.observability import logger
from shared.ports import WorkQueue
from shared.usecases.work import BatchResult, WorkItem
from shared.xero.webhooks import WebhookEvent, parse_payload

KIND = "xero.webhook"
# SQS takes 256 KiB a message; the envelope and JSON escaping need far less than the headroom.
MAX_EVENTS_BYTES = 200_000


EventId = tuple[str, str, str]  # (tenant id, resource id, normalised eventDateUtc)


class WebhookEventStore(Protocol):
    def seen_events(self, events: list[EventId]) -> set[EventId]:
        """The events among ``events`` already recorded as worked."""

    def mark_events(self, events: list[EventId]) -> None: ...

    def record_pending(self, *, tenant_id: str, category: str, resource_id: str, event_date_utc: str,
                       event_type: str, resource_url: str) -> bool:
        """False when an item for the same or a newer event is already there."""


# ---- request side ---------------------------------------------------------------------------
@dataclass
class Delivery:
    readable: bool = True
    events: int = 0
    rejected_events: int = 0
    messages: int = 0


def enqueue_delivery(raw_body: bytes, *, queue: WorkQueue) -> Delivery:
    """Queue the events of a delivery whose signature has been verified already.

    Intent-to-Receive deliveries (no events) queue nothing. Events missing a field the
    connector needs are counted and left out; the others still go.
    """
    try:
        payload = parse_payload(raw_body)
    except ValueError:
        return Delivery(readable=False)
    events, rejected = payload.valid_events()
    # Every event readable (the usual delivery): the queue carries them exactly as Xero sent them,
    # without dumping each model again.
    as_sent = payload.events if not rejected else [event.as_sent() for event in events]
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for event, sent in zip(events, as_sent, strict=True):
        by_tenant.setdefault(event.tenant_id, []).append(sent)
    # A delivery this small cannot encode past the message limit whatever it holds (JSON escapes
    # at most triple a UTF-8 byte; six is a wide margin): no encoding just to measure it.
    small = len(raw_body) * 6 <= MAX_EVENTS_BYTES
    # Named after the bytes Xero signed: a redelivered delivery carries the same id.
    delivery_id = hashlib.sha256(raw_body).hexdigest()[:32]
    messages = 0
    for tenant_id, tenant_events in by_tenant.items():
        for part in [tenant_events] if small else chunks_by_json_size(tenant_events, MAX_EVENTS_BYTES):
            queue.send({"job_id": f"xero-webhook-{delivery_id}-{messages}", "kind": KIND,
                        "document": {"tenant_id": tenant_id, "events": part,
                                     "first_event_sequence": payload.first_event_sequence,
                                     "last_event_sequence": payload.last_event_sequence}})
            messages += 1
    return Delivery(events=len(events), rejected_events=rejected, messages=messages)


# ---- worker side ----------------------------------------------------------------------------
@dataclass
class Recorded:
    """What one batch did, for metrics and tests."""

    result: BatchResult = field(default_factory=BatchResult)
    fresh: int = 0
    duplicates: int = 0
    pending_written: int = 0
    superseded: int = 0
    invalid: int = 0


def record_events(items: list[WorkItem], *, store: WebhookEventStore) -> Recorded:
    """Drop redelivered events, then ask for one refresh per changed resource.

    Order matters for a crash between steps: the "seen" markers are written last, so an
    interrupted batch is simply worked again (the pending write is idempotent and never goes
    back in time), and no event is marked seen before its refresh was asked for. Reading the
    markers first (one BatchGetItem per 100 events) instead of one conditional put per event
    is what makes that order possible; two workers racing on the same redelivery both write
    the same pending item, which has the effect of one.
    """
    recorded = Recorded()
    sources: dict[EventId, set[str]] = {}  # event -> ids of the messages that carry it
    events: dict[EventId, WebhookEvent] = {}
    for item in items:
        for raw in (item.document or {}).get("events") or []:
            try:
                event = WebhookEvent.model_validate(raw)
            except ValidationError:
                # Checked in the request already; a message that still fails cannot get better.
                recorded.invalid += 1
                logger.error("unreadable webhook event in queue message",
                             extra={"message_id": item.message_id})
                continue
            event_id = (event.tenant_id, event.resource_id, event.event_date_normalised)
            events.setdefault(event_id, event)
            sources.setdefault(event_id, set()).add(item.message_id)
    if not events:
        return recorded
    try:
        seen = store.seen_events(list(events))
    except Exception as error:
        logger.warning("webhook dedupe read failed; batch will be retried", extra={"error": str(error)})
        recorded.result.retry.update(item.message_id for item in items)
        return recorded
    fresh = {event_id: event for event_id, event in events.items() if event_id not in seen}
    recorded.duplicates = len(events) - len(fresh)
    recorded.fresh = len(fresh)

    newest: dict[tuple[str, str, str], WebhookEvent] = {}  # (tenant, category, resource id)
    for event in fresh.values():
        resource = (event.tenant_id, event.event_category, event.resource_id)
        if resource not in newest or event.event_date_normalised > newest[resource].event_date_normalised:
            newest[resource] = event
    failed_resources: set[tuple[str, str, str]] = set()
    for resource, event in newest.items():
        try:
            written = store.record_pending(
                tenant_id=event.tenant_id, category=event.event_category, resource_id=event.resource_id,
                event_date_utc=event.event_date_normalised, event_type=event.event_type,
                resource_url=event.resource_url)
        except Exception as error:
            logger.warning("pending refresh not recorded; its messages will be retried",
                           extra={"resource_id": event.resource_id, "error": str(error)})
            failed_resources.add(resource)
            continue
        if written:
            recorded.pending_written += 1
        else:
            recorded.superseded += 1

    done = [event_id for event_id, event in fresh.items()
            if (event.tenant_id, event.event_category, event.resource_id) not in failed_resources]
    for event_id in set(fresh) - set(done):
        recorded.result.retry.update(sources[event_id])
    try:
        if done:
            store.mark_events(done)
    except Exception as error:
        # Safe to work again: the pending items are already there and never go back in time.
        logger.warning("webhook dedupe markers not written; batch will be retried",
                       extra={"error": str(error)})
        for event_id in done:
            recorded.result.retry.update(sources[event_id])
    return recorded
