"""Invoices (ACCREC sales invoices and ACCPAY bills)."""

from __future__ import annotations

from copy import deepcopy
from decimal import Decimal
from typing import Any

from ..values import (
    BadValue,
    money,
    to_decimal,
)
from .common import (
    _DOCUMENT_COMPUTED,
    INVOICE_CREATE_STATUSES,
    INVOICE_TRANSITIONS,
    LOCKED_BY_ALLOCATION,
    NOT_MODIFIABLE,
    Outcome,
    _currency,
    _document_dates,
    _document_lines,
    _echo,
    _find,
    _has_allocations,
    _next_number,
    _Txn,
    new_id,
)
from .contacts import _resolve_contact
from .lines import _compute_lines

INVOICE_TYPES = ("ACCREC", "ACCPAY")


def _upsert_invoice(txn: _Txn, data: dict[str, Any]) -> Outcome:
    invoices = txn.col("invoices")
    errors: list[str] = []
    warnings: list[str] = []
    existing = None
    invoice_id = txn.path_id or data.get("InvoiceID")
    if invoice_id:
        existing = invoices.get(invoice_id) or (_find(invoices, "invoices", invoice_id) if txn.path_id else None)
        if existing is None:
            return Outcome(
                _echo(data, "InvoiceID", None),
                [f"Invoice with InvoiceID {invoice_id} was not found"],
                [],
                not_found=bool(txn.path_id),
            )
    elif data.get("InvoiceNumber") and txn.method == "POST" and data.get("Type", "ACCREC") == "ACCREC":
        existing = _find(
            {k: v for k, v in invoices.items() if v.get("Type") == "ACCREC"},
            "invoices",
            str(data["InvoiceNumber"]),
        )
    invoice_type = data.get("Type") or (existing or {}).get("Type")
    if invoice_type not in INVOICE_TYPES:
        errors.append("Invoice Type must be ACCREC or ACCPAY" if invoice_type else "Invoice Type must be specified")
        invoice_type = invoice_type or "ACCREC"
    if existing and invoice_type != existing["Type"]:
        errors.append("The Type of an existing invoice cannot be changed")
    old_status = (existing or {}).get("Status")
    status = data.get("Status") or old_status or "DRAFT"
    if existing is None:
        if status not in INVOICE_CREATE_STATUSES:
            errors.append(
                f"An invoice cannot be created with status {status}; use one of {', '.join(INVOICE_CREATE_STATUSES)}"
            )
    else:
        changes = {k for k in data if k not in ("InvoiceID", "Status", "Type")}
        if status == "PAID" and old_status != "PAID":
            errors.append("Invoice status cannot be set to PAID; apply payments instead")
        elif status not in INVOICE_TRANSITIONS.get(old_status, set()):
            if status == "DELETED":
                errors.append(
                    f"Only DRAFT or SUBMITTED invoices can be deleted; this one is {old_status} "
                    "(void an AUTHORISED invoice instead)"
                )
            elif status == "VOIDED":
                errors.append(
                    f"Only AUTHORISED invoices can be voided; this one is {old_status} "
                    "(delete a DRAFT or SUBMITTED invoice instead)"
                )
            else:
                errors.append(f"Invoice status cannot change from {old_status} to {status}")
        if _has_allocations(existing) and (changes or status != old_status):
            errors.append(LOCKED_BY_ALLOCATION)
        elif old_status in ("VOIDED", "DELETED") and (changes or status != old_status):
            errors.append(NOT_MODIFIABLE.format(kind="Invoice"))
    contact = existing_contact = None
    if "Contact" in data or existing is None:
        contact = _resolve_contact(txn, data.get("Contact"), errors)
    else:
        existing_contact = txn.col("contacts").get(existing["Contact"]["ContactID"])
    amount_types, old_lines, raw_lines = _document_lines(data, existing, errors)
    lines, totals = _compute_lines(txn, raw_lines, old_lines, invoice_type, amount_types, status, errors)
    if status in ("SUBMITTED", "AUTHORISED") and not lines:
        errors.append("An invoice must have at least one line item before it can be submitted or approved")
    dates = _document_dates(txn, data, existing, ("Date", "DueDate"), errors)
    currency = _currency(txn, data, existing, errors)
    number = data.get("InvoiceNumber", (existing or {}).get("InvoiceNumber"))
    if invoice_type == "ACCREC":
        taken = {
            str(i.get("InvoiceNumber", "")).casefold()
            for i in invoices.values()
            if i.get("Type") == "ACCREC" and (existing is None or i["InvoiceID"] != existing["InvoiceID"])
        }
        if number and str(number).casefold() in taken:
            errors.append("Invoice # must be unique.")
    if number is not None and len(str(number)) > 255:
        errors.append("InvoiceNumber must be 255 characters or fewer")
    for key in ("SubTotal", "TotalTax", "Total"):
        if key in data and totals and _differs(data[key], totals[key]):
            warnings.append(
                f"{key} {data[key]} does not match the computed {key} {totals[key]}; the computed amount was used"
            )
    if errors:
        echoed = _echo(data, "InvoiceID", existing)
        if lines:
            echoed["LineItems"] = lines
        return Outcome(echoed, errors, [])
    if invoice_type == "ACCREC" and not number:
        number = _next_number(txn, "invoice_seq", "INV-", taken)
    record = (
        deepcopy(existing)
        if existing
        else {
            "InvoiceID": new_id(),
            "Type": invoice_type,
            "Payments": [],
            "CreditNotes": [],
            "Prepayments": [],
            "Overpayments": [],
            "AmountPaid": Decimal("0.00"),
            "AmountCredited": Decimal("0.00"),
            "HasAttachments": False,
            "HasErrors": False,
            "SentToContact": False,
            "IsDiscounted": False,
        }
    )
    for key, value in data.items():
        if key not in _DOCUMENT_COMPUTED and key not in (
            "InvoiceID",
            "Type",
            "Status",
            "Date",
            "DueDate",
            "CurrencyCode",
            "CurrencyRate",
        ):
            record[key] = deepcopy(value)
    record.update(dates)
    record.update(currency)
    record.update(totals)
    record["InvoiceNumber"] = number or ""
    record["Status"] = status
    record["LineAmountTypes"] = amount_types
    record["LineItems"] = lines
    chosen = contact or existing_contact
    record["Contact"] = {"ContactID": chosen["ContactID"]} if chosen else record.get("Contact", {})
    record["AmountDue"] = money(record["Total"] - record["AmountPaid"] - record["AmountCredited"])
    if status == "VOIDED":
        record["AmountDue"] = Decimal("0.00")
    record.update(txn.store.stamp())
    invoices[record["InvoiceID"]] = record
    if chosen:
        flag = "IsCustomer" if invoice_type == "ACCREC" else "IsSupplier"
        if not chosen.get(flag):
            updated = dict(chosen)
            updated[flag] = True
            txn.col("contacts")[chosen["ContactID"]] = updated
    return Outcome(record, [], warnings)


def _differs(sent: Any, computed: Decimal) -> bool:
    try:
        return money(to_decimal(sent, "total")) != computed
    except BadValue:
        return True
