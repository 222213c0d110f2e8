"""Queue side of a handler: SQS batches in, partial batch failures out (Powertools Batch).

Workers need the whole batch at once (to group up to 50 documents into one Xero call), so the
batch is worked first and Powertools then reports each record that must be retried.

Every handler imports this module before anything else (``functions/*/app.py``): Powertools
Batch, imported while pydantic is not loaded yet, leaves out the Parser models it would
otherwise build for its type hints (a feature the connector does not use), tens of
milliseconds of every cold start. ``tests/unit/test_cold_imports.py`` holds it there."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from shared.backoff import deadline_of
from shared.errors import ConnectionNotReady
from shared.observability import MetricNames, logger, metrics
from shared.queue import DOCUMENT_STORED
from shared.usecases.work import CONNECTION_RETRY_SECONDS, BatchResult, WorkItem

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


class RetryLater(Exception):
    """Marks a record for SQS to deliver again."""


def is_sqs_event(event: dict[str, Any]) -> bool:
    records = event.get("Records") or []
    return bool(records) and records[0].get("eventSource") == "aws:sqs"


def _job_reference(item: WorkItem) -> dict[str, Any]:
    """job id, kind and the CRM record a queued document is about, where it says."""
    document = item.document
    record = document.get("quote") if isinstance(document.get("quote"), dict) else document
    reference = {"job_id": item.job_id, "kind": item.kind}
    crm_id = record.get("crm_id") or (record.get("id") if record is not document else None)
    if crm_id:
        reference["crm_id"] = str(crm_id)
    if record.get("crm_module"):
        reference["crm_module"] = str(record["crm_module"])
    return reference


def _stored_document(job_id: str) -> dict[str, Any]:
    """The document of a job too large for its message (``shared.queue.DOCUMENT_STORED``)."""
    from shared import wiring

    payload = wiring.job_store().get_job_payload(job_id)
    if not isinstance(payload, dict):
        raise KeyError(job_id)
    return payload


def _receive_count(record: dict[str, Any]) -> int:
    try:
        return max(1, int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1))
    except (TypeError, ValueError):
        return 1


def run_batch(event: dict[str, Any], context: Any, work: Callable[[list[WorkItem]], BatchResult],
              *, defer: Callable[[str, int], None] | None = None,
              load_document: Callable[[str], dict[str, Any]] = _stored_document) -> dict[str, Any]:
    items: list[WorkItem] = []
    unreadable: set[str] = set()
    for record in event["Records"]:
        try:
            body = json.loads(record["body"])
            document = body.get("document") or {}
            if body.get(DOCUMENT_STORED) and not document:
                document = load_document(body["job_id"])
            items.append(WorkItem(message_id=record["messageId"], job_id=body["job_id"],
                                  kind=body.get("kind", ""), document=document,
                                  tenant_id=body.get("tenant_id") or None,
                                  receive_count=_receive_count(record)))
        except (ValueError, KeyError, TypeError):
            # Never silently dropped: it fails until the queue's redrive moves it to the DLQ.
            logger.error("unreadable queue message", extra={"message_id": record.get("messageId")})
            unreadable.add(record["messageId"])
    if items:
        # One line per batch: which jobs, for which CRM records ("job finished" adds the Xero ids).
        logger.info("batch received", extra={"jobs": [_job_reference(item) for item in items]})
    try:
        with deadline_of(context):  # the adapters plan their retries and timeouts against it
            result = work(items) if items else BatchResult()
    except ConnectionNotReady as error:
        # Raised while building the Xero client (no tenant, no token): nothing was sent, so the
        # whole batch waits for the operator rather than being failed or dropped.
        logger.error("Xero connection not ready; batch deferred", extra={"error": str(error)})
        metrics.add_metric(name=MetricNames.BATCHES_DEFERRED_NO_CONNECTION, unit="Count", value=1)
        result = BatchResult()
        result.defer([item.message_id for item in items], CONNECTION_RETRY_SECONDS)
    if defer and result.retry and result.retry_after:
        receipts = {r["messageId"]: r["receiptHandle"] for r in event["Records"]}
        for message_id in result.retry:
            defer(receipts[message_id], int(min(result.retry_after, 43000)) + 1)
    failed = result.retry | unreadable

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in failed:
            raise RetryLater(record.message_id)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler,
                                    processor=processor, context=context)
