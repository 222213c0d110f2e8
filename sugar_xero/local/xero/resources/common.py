"""Shared by every resource: identifiers, the batch transaction, lookups, dates, currency."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..values import (
    BadValue,
    date_fields,
    parse_date,
    to_decimal,
    xero_to_ms,
)

if TYPE_CHECKING:
    from ..store import EmulatorStore


ZERO_ID = "00000000-0000-0000-0000-000000000000"
KINDS = ("contacts", "items", "invoices", "quotes", "payments", "credit_notes", "purchase_orders")
RESOURCE_KEYS = {
    "contacts": "Contacts",
    "items": "Items",
    "invoices": "Invoices",
    "quotes": "Quotes",
    "payments": "Payments",
    "credit_notes": "CreditNotes",
    "purchase_orders": "PurchaseOrders",
    "allocations": "Allocations",
}
ID_FIELDS = {
    "contacts": "ContactID",
    "items": "ItemID",
    "invoices": "InvoiceID",
    "quotes": "QuoteID",
    "payments": "PaymentID",
    "credit_notes": "CreditNoteID",
    "purchase_orders": "PurchaseOrderID",
    "allocations": "AllocationID",
}
LINE_AMOUNT_TYPES = ("Exclusive", "Inclusive", "NoTax")
INVOICE_CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
INVOICE_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"SUBMITTED", "DRAFT", "AUTHORISED", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "VOIDED"},
    "PAID": {"PAID"},
    "VOIDED": {"VOIDED"},
    "DELETED": {"DELETED"},
}
LOCKED_BY_ALLOCATION = "This document cannot be edited as it has a payment or credit note allocated to it."
NOT_MODIFIABLE = "{kind} not of valid status for modification"
# Fields Xero computes or owns: whatever a request says about them is not stored.
_COMPUTED = {
    "HasValidationErrors",
    "ValidationErrors",
    "Warnings",
    "StatusAttributeString",
    "UpdatedDateUTC",
    "UpdatedDateUTCString",
    "HasAttachments",
    "Attachments",
}
_CONTACT_COMPUTED = _COMPUTED | {"ContactID", "IsCustomer", "IsSupplier", "Balances", "HasValidationErrors"}
_DOCUMENT_COMPUTED = _COMPUTED | {
    "SubTotal",
    "TotalTax",
    "Total",
    "TotalDiscount",
    "AmountDue",
    "AmountPaid",
    "AmountCredited",
    "Payments",
    "CreditNotes",
    "Prepayments",
    "Overpayments",
    "FullyPaidOnDate",
    "IsDiscounted",
    "HasErrors",
    "DateString",
    "DueDateString",
    "ExpiryDateString",
    "LineItems",
    "Contact",
    "RemainingCredit",
    "Allocations",
    "AppliedAmount",
    "DeliveryDateString",
    "ExpectedArrivalDateString",
}


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Outcome:
    """What one batch element came to: the record (or the element echoed back) and its messages."""

    record: dict[str, Any]
    errors: list[str]
    warnings: list[str]
    not_found: bool = False


class _Txn:
    parent_id: str | None = None

    def __init__(self, store: EmulatorStore, tenant_id: str, method: str, path_id: str | None, unitdp: int):
        self.store = store
        self.config = store.config
        self.tenant_id = tenant_id
        self.method = method
        self.path_id = path_id
        self.unitdp = unitdp
        self._staged: dict[str, dict[str, Any]] = {}
        self.tax_rates = {
            r["TaxType"].upper(): to_decimal(r.get("EffectiveRate", r.get("DisplayTaxRate", 0)), "EffectiveRate")
            for r in self.config.tax_rates
            if r.get("Status", "ACTIVE") == "ACTIVE"
        }
        self.accounts = {str(a.get("Code", "")).upper(): a for a in self.config.accounts if a.get("Code")}
        self.accounts_by_id = {a["AccountID"]: a for a in self.config.accounts if a.get("AccountID")}
        self.currencies = {c["Code"].upper() for c in self.config.currencies}

    def today(self) -> dt.date:
        """Today in the organisation's timezone (``EmulatorConfig.timezone``)."""
        return self.config.today()

    def col(self, kind: str) -> dict[str, Any]:
        if kind not in self._staged:
            self._staged[kind] = dict(self.store._resources(self.tenant_id, kind))
        return self._staged[kind]

    def meta(self) -> dict[str, Any]:
        return self.col("_meta")

    def commit(self) -> None:
        tenant = self.store._tenants[self.tenant_id]
        for kind, records in self._staged.items():
            tenant[kind] = records


def _find(records: dict[str, Any], kind: str, key: str | None) -> dict[str, Any] | None:
    if not key:
        return None
    if key in records:
        return records[key]
    lowered = key.lower()
    alternate = {
        "contacts": "ContactNumber",
        "items": "Code",
        "invoices": "InvoiceNumber",
        "quotes": "QuoteNumber",
        "purchase_orders": "PurchaseOrderNumber",
        "credit_notes": "CreditNoteNumber",
    }.get(kind)
    for record in records.values():
        if record[ID_FIELDS[kind]].lower() == lowered:
            return record
        if alternate and str(record.get(alternate) or "").lower() == lowered:
            if kind == "invoices" and record.get("Type") != "ACCREC":
                continue
            return record
    return None


def _echo(element: dict[str, Any], id_field: str, existing: dict[str, Any] | None) -> dict[str, Any]:
    echoed = deepcopy(element)
    echoed[id_field] = existing[id_field] if existing else element.get(id_field) or ZERO_ID
    return echoed


def _next_number(txn: _Txn, counter: str, prefix: str, taken: set[str]) -> str:
    meta = txn.meta()
    value = meta.get(counter, 0)
    while True:
        value += 1
        candidate = f"{prefix}{value:04d}"
        if candidate.casefold() not in taken:
            meta[counter] = value
            return candidate


def _document_lines(data: dict[str, Any], existing: dict[str, Any] | None, errors: list[str]
                    ) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """A document's LineAmountTypes (kept from the stored document when not sent; Exclusive by
    default), its stored lines, and the lines to compute: the sent ones, or the stored ones."""
    amount_types = data.get("LineAmountTypes") or (existing or {}).get("LineAmountTypes") or "Exclusive"
    if amount_types not in LINE_AMOUNT_TYPES:
        errors.append(f"LineAmountTypes must be one of {', '.join(LINE_AMOUNT_TYPES)}")
        amount_types = "Exclusive"
    old_lines = (existing or {}).get("LineItems") or []
    return amount_types, old_lines, (data["LineItems"] if "LineItems" in data else old_lines)


def _document_dates(
    txn: _Txn, data: dict[str, Any], existing: dict[str, Any] | None, names: tuple[str, ...], errors: list[str]
) -> dict[str, str]:
    """Dates given, parsed; a new document without ``Date`` is dated today in the organisation's
    timezone (spec, Invoice.Date: "the current date based on the timezone setting of the
    organisation")."""
    fields: dict[str, str] = {}
    for name in names:
        if data.get(name):
            try:
                fields.update(date_fields(name, parse_date(data[name], name)))
            except BadValue as error:
                errors.append(str(error))
        elif existing is None and name == "Date":
            fields.update(date_fields("Date", txn.today()))
    return fields


def _currency(txn: _Txn, data: dict[str, Any], existing: dict[str, Any] | None, errors: list[str]) -> dict:
    code = str(data.get("CurrencyCode") or (existing or {}).get("CurrencyCode") or txn.config.base_currency)
    if code.upper() not in txn.currencies:
        errors.append(f"The currency {code} is not enabled for this organisation")
    if code.upper() == txn.config.base_currency.upper():
        rate = Decimal("1")
    else:
        try:
            rate = to_decimal(data.get("CurrencyRate") or (existing or {}).get("CurrencyRate") or 1, "CurrencyRate")
        except BadValue as error:
            errors.append(str(error))
            rate = Decimal("1")
    return {"CurrencyCode": code.upper(), "CurrencyRate": rate}


def _has_allocations(record: dict[str, Any]) -> bool:
    """Whether payments or credit (notes, prepayments, overpayments) are applied: Xero then locks it."""
    return any(record.get(key) for key in ("Payments", "CreditNotes", "Prepayments", "Overpayments", "Allocations"))


def _check_status_change(data: dict[str, Any], existing: dict[str, Any] | None, status: str, errors: list[str], *,
                         kind: str, id_field: str, paid_error: str,
                         transition_error: Callable[[str | None, str], str]) -> None:
    """The rules invoices and credit notes share: a new one starts in DRAFT, SUBMITTED or
    AUTHORISED; PAID is reached by payments or allocations, never set; other moves follow
    INVOICE_TRANSITIONS; one with allocations, or voided or deleted, is locked."""
    if existing is None:
        if status not in INVOICE_CREATE_STATUSES:
            article = "An" if kind[0].lower() in "aeiou" else "A"
            errors.append(f"{article} {kind.lower()} cannot be created with status {status}; "
                          f"use one of {', '.join(INVOICE_CREATE_STATUSES)}")
        return
    old_status = existing.get("Status")
    changes = {k for k in data if k not in (id_field, "Status", "Type")}
    if status == "PAID" and old_status != "PAID":
        errors.append(paid_error)
    elif status not in INVOICE_TRANSITIONS.get(old_status, set()):
        errors.append(transition_error(old_status, status))
    if _has_allocations(existing) and (changes or status != old_status):
        errors.append(LOCKED_BY_ALLOCATION)
    elif old_status in ("VOIDED", "DELETED") and (changes or status != old_status):
        errors.append(NOT_MODIFIABLE.format(kind=kind))


def _existing_document(
    txn: _Txn, kind: str, data: dict[str, Any], number_field: str, *, match_number: bool
) -> tuple[dict[str, Any] | None, Outcome | None]:
    """The record an element updates: by path id or ID, else (POST only) by its number."""
    records = txn.col(kind)
    id_field = ID_FIELDS[kind]
    record_id = txn.path_id or data.get(id_field)
    if record_id:
        existing = records.get(record_id) or (_find(records, kind, record_id) if txn.path_id else None)
        if existing is None:
            label = {"purchase_orders": "Purchase order", "credit_notes": "Credit note"}[kind]
            message = (
                "An existing Credit Note with the specified CreditNoteID could not be found"
                if kind == "credit_notes"
                else f"{label} with {id_field} {record_id} was not found"
            )
            return None, Outcome(_echo(data, id_field, None), [message], [], not_found=bool(txn.path_id))
        return existing, None
    if match_number and data.get(number_field) and txn.method == "POST":
        number = str(data[number_field]).casefold()
        found = next((r for r in records.values() if str(r.get(number_field) or "").casefold() == number), None)
        return found, None
    return None, None


def _copy_fields(record: dict[str, Any], data: dict[str, Any], own: tuple[str, ...]) -> None:
    for key, value in data.items():
        if key not in _DOCUMENT_COMPUTED and key not in own:
            record[key] = deepcopy(value)


def updated_ms(record: dict[str, Any]) -> int:
    return xero_to_ms(record.get("UpdatedDateUTC")) or 0
