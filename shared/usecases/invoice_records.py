"""Every Xero invoice, bill and credit note as a record of the CRM's Xero Invoices module
(``shared.sugar.invoice_module``), whoever made it: the connector's pushes, the finance team in
Xero, or history from before the connector.

Filled from the documents Xero's GET answers, wherever the connector reads them: the webhook
worker and the reconcile's "changed since" pass (both through ``apply_documents``) and the
history import (``sugar-xero backfill --from-xero``). Each record is upserted by its Xero id
(Sugar's ``PATCH /v11_10/<Module>/sync_key/<key>``, inside ``/bulk``), so writing one twice
changes nothing and a crash between calls leaves nothing half-made. The values are the state
Xero answered when asked (a GET after the news, never the event itself); two workers racing may
write two reads in either order, and ``xero_updated_utc`` on the record says which one it holds;
the next change or reconcile pass writes the newest again.

Relations: the Account through the contact mapping (the Xero contact the connector made for an
Account), the originating CRM record (``parent_type``/``parent_id``) through the document
mapping when the connector made the document, and optionally an Opportunity and a Case read
from fields of that originating record (``xero_invoices.related_fields``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared.mapping.settings import MappingConfig
from shared.mapping.xero_documents import ID_FIELDS, document_state, money
from shared.observability import logger
from shared.state.records import Mapping
from shared.sugar.client import BulkRequest

INVOICE_RESOURCES = frozenset({"Invoices", "CreditNotes"})
BULK_CHUNK = 20


@dataclass
class FillReport:
    written: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)  # not an invoice (e.g. a draft with no contact)
    pending: dict[str, str] = field(default_factory=dict)  # retryable: write again later
    failed: dict[str, str] = field(default_factory=dict)  # Sugar refused for good

    @property
    def writes(self) -> int:
        return len(self.written) + len(self.failed)


def _text(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def lines_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"description": line.get("Description") or "", "item_code": line.get("ItemCode") or "",
             "quantity": str(line.get("Quantity") if line.get("Quantity") is not None else ""),
             "unit_amount": str(line.get("UnitAmount") if line.get("UnitAmount") is not None else ""),
             "tax_type": line.get("TaxType") or "", "tax_amount": _text(money(line.get("TaxAmount"))),
             "line_amount": _text(money(line.get("LineAmount"))), "account_code": line.get("AccountCode") or ""}
            for line in document.get("LineItems") or []]


def invoice_record(resource: str, document: dict[str, Any], *, tenant_id: str) -> dict[str, Any]:
    """The module's fields for one Xero document (without its relations)."""
    state = document_state(resource, document)
    contact = (document.get("Contact") or {}).get("Name") or ""
    number = state.number or ""
    return {
        "name": (" ".join(p for p in (number or "(no number)", contact) if p))[:255],
        "invoice_number": number, "document_type": state.target, "status": state.status,
        "reference": (state.reference or "")[:255], "invoice_date": state.date.isoformat() if state.date else "",
        "due_date": state.due_date.isoformat() if state.due_date else "",
        "currency_code": state.currency or "", "sub_total": _text(money(document.get("SubTotal"))),
        "total_tax": _text(state.total_tax), "total": _text(state.total), "amount_due": _text(state.amount_due),
        "amount_paid": _text(state.amount_paid), "amount_credited": _text(state.amount_credited),
        "fully_paid_on": state.fully_paid_on.isoformat() if state.fully_paid_on else "",
        "online_url": state.url or "", "xero_id": state.xero_id, "xero_tenant_id": tenant_id,
        "xero_updated_utc": str(state.updated_utc or ""),
        "contact_name": contact[:255], "lines_json": json.dumps(lines_of(document), separators=(",", ":")),
    }


def _find(mappings: Any, tenant_id: str, xero_ids: list[str]) -> dict[str, list[Mapping]]:
    from shared.usecases.xero_updates import find_mappings

    return find_mappings(mappings, tenant_id, xero_ids) if xero_ids and mappings is not None else {}


def fill_invoice_records(resource: str, documents: list[dict[str, Any]], *, tenant_id: str, crm: Any,
                         mappings: Any, config: MappingConfig) -> FillReport:
    """Upsert one record per document of ``resource`` (Invoices or CreditNotes, as Xero's GET
    answers them) into ``config.xero_invoices.module``. Never raises for Sugar's answers: what
    could not be written is ``pending`` (try again) or ``failed``."""
    report = FillReport()
    settings = config.xero_invoices
    if resource not in INVOICE_RESOURCES or not documents or crm is None:
        return report
    id_field = ID_FIELDS[resource]
    newest: dict[str, dict[str, Any]] = {}
    for document in documents:
        xero_id = str(document.get(id_field) or "")
        if xero_id:
            newest[xero_id] = document  # Xero answers one state per id; the last read wins
    contact_ids = sorted({str((d.get("Contact") or {}).get("ContactID")) for d in newest.values()
                          if (d.get("Contact") or {}).get("ContactID")})
    contacts = _find(mappings, tenant_id, contact_ids)
    origins = _find(mappings, tenant_id, list(newest))
    requests: list[tuple[str, BulkRequest]] = []
    for xero_id, document in newest.items():
        record = invoice_record(resource, document, tenant_id=tenant_id)
        contact_id = str((document.get("Contact") or {}).get("ContactID") or "")
        account = next((m for m in contacts.get(contact_id, []) if m.module == "Accounts"), None)
        if account is not None:
            record["account_id"] = account.crm_id
        origin = next((m for m in origins.get(xero_id, []) if "#" in m.module), None)
        if origin is not None:
            record["parent_type"] = origin.module.split("#", 1)[0]
            record["parent_id"] = origin.crm_id
            record.update(_related(crm, record["parent_type"], origin.crm_id, settings.related_fields))
        requests.append((xero_id, BulkRequest.upsert(settings.module, xero_id, record)))
    for start in range(0, len(requests), BULK_CHUNK):
        chunk = requests[start:start + BULK_CHUNK]
        try:
            results = crm.bulk([request for _, request in chunk])
        except Exception as error:  # noqa: BLE001 - Sugar down: the same news is applied again later
            for xero_id, _ in chunk:
                report.pending[xero_id] = str(error)
            continue
        for (xero_id, _), result in zip(chunk, results, strict=True):
            if result.ok:
                report.written.add(xero_id)
            elif result.status in (408, 429) or result.status >= 500:
                report.pending[xero_id] = f"Sugar answered {result.status}"
            else:
                report.failed[xero_id] = f"Sugar answered {result.status} {result.label or ''}".strip()
    if report.failed:
        logger.error("Xero Invoices records refused by the CRM", extra={
            "module": settings.module, "failed": dict(list(report.failed.items())[:10])})
    return report


def _related(crm: Any, module: str, record_id: str, related_fields: dict[str, str]) -> dict[str, str]:
    """The Opportunity and Case ids the originating record names, when configured."""
    if not related_fields:
        return {}
    try:
        record = crm.get_record(module, record_id, fields=sorted(set(related_fields.values())))
    except Exception as error:  # noqa: BLE001 - the relation is a nicety: the invoice is written without it
        logger.warning("could not read the originating record for its relations",
                       extra={"crm_module": module, "crm_id": record_id, "error": str(error)})
        return {}
    return {name: str(record.get(crm_field) or "") for name, crm_field in related_fields.items()
            if record.get(crm_field)}
