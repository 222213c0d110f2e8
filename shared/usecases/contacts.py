"""CRM customers → Xero contacts, in batches of up to 50 per call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from shared.errors import ConnectionNotReady, XeroError
from shared.mapping.xero_contacts import to_xero_contact
from shared.models.documents import ContactDocument
from shared.observability import logger
from shared.ports import JobStore, MappingStore, XeroApi
from shared.state.records import Mapping
from shared.usecases.work import BatchResult, WorkItem, content_hash, finish, requeue, retry_after_for
from shared.xero.client import validation_messages

KIND = "contact.upsert"


def _chunks(values: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _newest_per_record(items: list[tuple[WorkItem, ContactDocument]]
                       ) -> dict[tuple[str, str], list[tuple[WorkItem, ContactDocument]]]:
    """Group by CRM record, newest save first: one Xero write per record per batch."""
    groups: dict[tuple[str, str], list[tuple[WorkItem, ContactDocument]]] = {}
    for item, doc in items:
        groups.setdefault((doc.crm_module, doc.crm_id), []).append((item, doc))
    for group in groups.values():
        group.sort(key=lambda pair: pair[1].crm_modified or "", reverse=True)
    return groups


def sync_contacts(items: list[WorkItem], *, xero: XeroApi, jobs: JobStore, mappings: MappingStore,
                  batch_size: int = 50) -> BatchResult:
    result = BatchResult()
    parsed: list[tuple[WorkItem, ContactDocument]] = []
    for item in items:
        jobs.start_attempt(item.job_id)
        try:
            parsed.append((item, ContactDocument.model_validate(item.document)))
        except ValidationError as error:
            finish(jobs, item.job_id, "failed", error=f"unreadable document: {error.errors()[:3]}")

    groups = _newest_per_record(parsed)
    known: dict[tuple[str, str], Mapping] = {}
    for module in {module for module, _ in groups}:
        ids = [crm_id for (m, crm_id) in groups if m == module]
        for crm_id, mapping in mappings.get_mappings(xero.tenant_id, module, ids).items():
            known[(module, crm_id)] = mapping

    to_send: list[tuple[tuple[str, str], dict[str, Any], str]] = []
    for key, group in groups.items():
        doc = group[0][1]
        body = to_xero_contact(doc)
        digest = content_hash(body)
        mapping = known.get(key)
        if mapping and mapping.payload_hash == digest:
            for item, _ in group:
                finish(jobs, item.job_id, "succeeded", xero={"contact_id": mapping.xero_id},
                       warnings=["unchanged since the last push: nothing sent to Xero"])
            continue
        if mapping:
            body = to_xero_contact(doc, xero_contact_id=mapping.xero_id)
        to_send.append((key, body, digest))

    for chunk in _chunks(to_send, batch_size):
        bodies = [body for _, body, _ in chunk]
        chunk_items = [item for key, _, _ in chunk for item, _ in groups[key]]
        try:
            answers = xero.upsert_batch("Contacts", bodies,
                                        idempotency_key=f"contacts-{content_hash(bodies)}")
        except (XeroError, ConnectionNotReady) as error:
            if isinstance(error, ConnectionNotReady) or error.retryable:
                logger.warning("Xero batch deferred", extra={"size": len(bodies), "error": str(error)})
                requeue(jobs, [i.job_id for i in chunk_items], error)
                result.defer([i.message_id for i in chunk_items], retry_after_for(error))
            else:
                for item in chunk_items:
                    finish(jobs, item.job_id, "failed", error=str(error))
            continue
        for (key, _, digest), answer in zip(chunk, answers, strict=True):
            _record_answer(key, groups[key], answer, digest, xero.tenant_id, jobs, mappings)
    return result


def _record_answer(key: tuple[str, str], group: list[tuple[WorkItem, ContactDocument]],
                   answer: dict[str, Any], digest: str, tenant_id: str, jobs: JobStore,
                   mappings: MappingStore) -> None:
    status = (answer.get("StatusAttributeString") or "OK").upper()
    errors = validation_messages(answer)
    contact_id = answer.get("ContactID")
    if status == "ERROR" or answer.get("HasValidationErrors") or not contact_id:
        message = "; ".join(errors) or "Xero refused the contact without a reason"
        for item, _ in group:
            finish(jobs, item.job_id, "failed", error=f"Xero: {message}")
        return
    module, crm_id = key
    doc = group[0][1]
    mappings.put_mapping(Mapping(tenant_id=tenant_id, module=module, crm_id=crm_id,
                                 xero_id=contact_id, payload_hash=digest,
                                 crm_modified=doc.crm_modified,
                                 xero_updated=answer.get("UpdatedDateUTC")))
    warnings = [w.get("Message", "") for w in answer.get("Warnings") or [] if w.get("Message")]
    for index, (item, _) in enumerate(group):
        note = [] if index == 0 else ["a newer save of the same record in this batch was pushed"]
        finish(jobs, item.job_id, "succeeded", xero={"contact_id": contact_id},
               warnings=warnings + note)
