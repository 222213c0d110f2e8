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
    Outcome,
    _check_status_change,
    _currency,
    _document_dates,
    _document_lines,
    _echo,
    _find,
    _next_number,
    _Txn,
    new_id,
)
from .contacts import _resolve_contact
from .lines import _compute_lines

INVOICE_TYPES = ("ACCREC", "ACCPAY")


def _upsert_invoice(txn: _Txn, data: dict[str, Any]) -> Outcome:
    """Steps: find the invoice a write names, check what may change, compute lines and totals,
    then either answer the errors or store the record."""
    invoices = txn.col("invoices")
    existing, missing = _existing_invoice(txn, data)
    if missing:
        return missing
    errors: list[str] = []
    invoice_type = _invoice_type(data, existing, errors)
    old_status = (existing or {}).get("Status")
    status = data.get("Status") or old_status or "DRAFT"
    _check_status(data, existing, status, errors)
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
    taken = _numbers_taken(invoices, invoice_type, existing)
    if number and str(number).casefold() in taken:
        errors.append("Invoice # must be unique.")
    if number is not None and len(str(number)) > 255:
        errors.append("InvoiceNumber must be 255 characters or fewer")
    warnings = [
        f"{key} {data[key]} does not match the computed {key} {totals[key]}; the computed amount was used"
        for key in ("SubTotal", "TotalTax", "Total")
        if key in data and totals and _differs(data[key], totals[key])
    ]
    if errors:
        echoed = _echo(data, "InvoiceID", existing)
        if lines:
            echoed["LineItems"] = lines
        return Outcome(echoed, errors, [])
    if invoice_type == "ACCREC" and not number:
        number = _next_number(txn, "invoice_seq", "INV-", taken)
    record = deepcopy(existing) if existing else _new_invoice(invoice_type)
    for key, value in data.items():
        if key not in _DOCUMENT_COMPUTED and key not in _SET_BY_THE_STORE:
            record[key] = deepcopy(value)
    record.update(dates)
    record.update(currency)
    record.update(totals)
    record.update(InvoiceNumber=number or "", Status=status, LineAmountTypes=amount_types, LineItems=lines)
    chosen = contact or existing_contact
    record["Contact"] = {"ContactID": chosen["ContactID"]} if chosen else record.get("Contact", {})
    record["AmountDue"] = money(record["Total"] - record["AmountPaid"] - record["AmountCredited"])
    if status == "VOIDED":
        record["AmountDue"] = Decimal("0.00")
    record.update(txn.store.stamp())
    invoices[record["InvoiceID"]] = record
    if chosen:
        _flag_contact(txn, chosen, "IsCustomer" if invoice_type == "ACCREC" else "IsSupplier")
    return Outcome(record, [], warnings)


# Fields the store sets itself (from the checked values above), never copied from the body as sent.
_SET_BY_THE_STORE = ("InvoiceID", "Type", "Status", "Date", "DueDate", "CurrencyCode", "CurrencyRate")


def _existing_invoice(txn: _Txn, data: dict[str, Any]) -> tuple[dict[str, Any] | None, Outcome | None]:
    """The invoice this write updates: by InvoiceID (path or body), or a sales invoice by its
    InvoiceNumber on POST. Returns (None, answer) when a named InvoiceID does not exist."""
    invoices = txn.col("invoices")
    invoice_id = txn.path_id or data.get("InvoiceID")
    if invoice_id:
        existing = invoices.get(invoice_id) or (_find(invoices, "invoices", invoice_id) if txn.path_id else None)
        if existing is None:
            missing = Outcome(_echo(data, "InvoiceID", None), [f"Invoice with InvoiceID {invoice_id} was not found"],
                              [], not_found=bool(txn.path_id))
            return None, missing
        return existing, None
    if data.get("InvoiceNumber") and txn.method == "POST" and data.get("Type", "ACCREC") == "ACCREC":
        sales = {k: v for k, v in invoices.items() if v.get("Type") == "ACCREC"}
        return _find(sales, "invoices", str(data["InvoiceNumber"])), None
    return None, None


def _invoice_type(data: dict[str, Any], existing: dict[str, Any] | None, errors: list[str]) -> str:
    invoice_type = data.get("Type") or (existing or {}).get("Type")
    if invoice_type not in INVOICE_TYPES:
        errors.append("Invoice Type must be ACCREC or ACCPAY" if invoice_type else "Invoice Type must be specified")
        invoice_type = invoice_type or "ACCREC"
    if existing and invoice_type != existing["Type"]:
        errors.append("The Type of an existing invoice cannot be changed")
    return str(invoice_type)


def _check_status(data: dict[str, Any], existing: dict[str, Any] | None, status: str, errors: list[str]) -> None:
    _check_status_change(data, existing, status, errors, kind="Invoice", id_field="InvoiceID",
                         paid_error="Invoice status cannot be set to PAID; apply payments instead",
                         transition_error=_invoice_transition_error)


def _invoice_transition_error(old_status: str | None, status: str) -> str:
    if status == "DELETED":
        return (f"Only DRAFT or SUBMITTED invoices can be deleted; this one is {old_status} "
                "(void an AUTHORISED invoice instead)")
    if status == "VOIDED":
        return (f"Only AUTHORISED invoices can be voided; this one is {old_status} "
                "(delete a DRAFT or SUBMITTED invoice instead)")
    return f"Invoice status cannot change from {old_status} to {status}"


def _numbers_taken(invoices: dict[str, Any], invoice_type: str, existing: dict[str, Any] | None) -> set[str]:
    """Sales invoice numbers are unique (case-insensitively); bill numbers are not."""
    if invoice_type != "ACCREC":
        return set()
    return {
        str(i.get("InvoiceNumber", "")).casefold()
        for i in invoices.values()
        if i.get("Type") == "ACCREC" and (existing is None or i["InvoiceID"] != existing["InvoiceID"])
    }


def _new_invoice(invoice_type: str) -> dict[str, Any]:
    return {
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


def _flag_contact(txn: _Txn, contact: dict[str, Any], flag: str) -> None:
    """Xero marks a contact IsCustomer / IsSupplier once a sales invoice / bill names it."""
    if not contact.get(flag):
        txn.col("contacts")[contact["ContactID"]] = {**contact, flag: True}


def _differs(sent: Any, computed: Decimal) -> bool:
    try:
        return money(to_decimal(sent, "total")) != computed
    except BadValue:
        return True
