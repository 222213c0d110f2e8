"""Credit notes and their allocations to invoices."""

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
    Outcome,
    _check_status_change,
    _copy_fields,
    _currency,
    _document_dates,
    _document_lines,
    _echo,
    _existing_document,
    _find,
    _next_number,
    _Txn,
    new_id,
)
from .contacts import _resolve_contact
from .lines import _compute_lines

CREDIT_NOTE_TYPES = {"ACCRECCREDIT": "ACCREC", "ACCPAYCREDIT": "ACCPAY"}


def _upsert_credit_note(txn: _Txn, data: dict[str, Any]) -> Outcome:
    notes = txn.col("credit_notes")
    existing, missing = _existing_document(txn, "credit_notes", data, "CreditNoteNumber", match_number=False)
    if missing:
        return missing
    errors: list[str] = []
    warnings: list[str] = []
    note_type = _credit_note_type(data, existing, errors)
    status = data.get("Status") or (existing or {}).get("Status") or "DRAFT"
    _check_note_status(data, existing, status, errors)
    if data.get("Allocations") and existing is None:
        warnings.append("Allocations are made with PUT /CreditNotes/{CreditNoteID}/Allocations; ignored here")
    contact = None
    if "Contact" in data or existing is None:
        contact = _resolve_contact(txn, data.get("Contact"), errors)
    amount_types, old_lines, raw_lines = _document_lines(data, existing, errors)
    lines, totals = _compute_lines(txn, raw_lines, old_lines, note_type, amount_types, status, errors)
    if status in ("SUBMITTED", "AUTHORISED") and not lines:
        errors.append("A credit note must have at least one line item before it can be submitted or approved")
    dates = _document_dates(txn, data, existing, ("Date", "DueDate"), errors)
    currency = _currency(txn, data, existing, errors)
    number = data.get("CreditNoteNumber", (existing or {}).get("CreditNoteNumber"))
    taken = {
        str(n.get("CreditNoteNumber", "")).casefold()
        for n in notes.values()
        if n.get("Type") == note_type and (existing is None or n["CreditNoteID"] != existing["CreditNoteID"])
    }
    if note_type == "ACCRECCREDIT" and number and str(number).casefold() in taken:
        errors.append("Credit Note # must be unique.")
    if errors:
        echoed = _echo(data, "CreditNoteID", existing)
        if lines:
            echoed["LineItems"] = lines
        return Outcome(echoed, errors, warnings)
    if note_type == "ACCRECCREDIT" and not number:
        number = _next_number(txn, "credit_note_seq", "CN-", taken)
    record = deepcopy(existing) if existing else _new_credit_note(note_type)
    _copy_fields(record, data, ("CreditNoteID", "Type", "Status", "Date", "DueDate", "CurrencyCode", "CurrencyRate"))
    record.update(dates)
    record.update(currency)
    record.update(totals)
    record["CreditNoteNumber"] = number or ""
    record["ID"] = record["CreditNoteID"]
    record["Status"] = status
    record["LineAmountTypes"] = amount_types
    record["LineItems"] = lines
    record["RemainingCredit"] = (
        Decimal("0.00") if status in ("VOIDED", "DELETED") else money(record["Total"] - _allocated(record))
    )
    if contact:
        record["Contact"] = {"ContactID": contact["ContactID"]}
    record.update(txn.store.stamp())
    notes[record["CreditNoteID"]] = record
    return Outcome(record, [], warnings)


def _credit_note_type(data: dict[str, Any], existing: dict[str, Any] | None, errors: list[str]) -> str:
    note_type = data.get("Type") or (existing or {}).get("Type")
    if note_type not in CREDIT_NOTE_TYPES:
        errors.append(
            "Credit note Type must be ACCRECCREDIT or ACCPAYCREDIT" if note_type else "Type must be specified"
        )
        note_type = "ACCRECCREDIT"
    if existing and note_type != existing["Type"]:
        errors.append("The Type of an existing credit note cannot be changed")
    return str(note_type)


def _check_note_status(data: dict[str, Any], existing: dict[str, Any] | None, status: str,
                       errors: list[str]) -> None:
    _check_status_change(data, existing, status, errors, kind="Credit note", id_field="CreditNoteID",
                         paid_error="Credit note status cannot be set to PAID; allocate it or refund it instead",
                         transition_error=lambda old, new: f"Credit note status cannot change from {old} to {new}")


def _new_credit_note(note_type: str) -> dict[str, Any]:
    return {
        "CreditNoteID": new_id(),
        "Type": note_type,
        "Allocations": [],
        "Payments": [],
        "HasAttachments": False,
        "HasErrors": False,
        "SentToContact": False,
    }


def _allocated(note: dict[str, Any]) -> Decimal:
    applied = sum((a["Amount"] for a in note.get("Allocations") or []), Decimal("0"))
    paid = sum((p["Amount"] for p in note.get("Payments") or []), Decimal("0"))
    return applied + paid


def _allocate_credit_note(txn: _Txn, data: dict[str, Any]) -> Outcome:
    """One allocation of the credit note ``txn.parent_id`` to an invoice of the same contact:
    check the note, the invoice and the amount; then move the credit from the note to the invoice."""
    notes = txn.col("credit_notes")
    note = notes.get(txn.parent_id) or _find(notes, "credit_notes", txn.parent_id)
    if note is None:
        return Outcome(
            _echo(data, "AllocationID", None),
            ["An existing Credit Note with the specified CreditNoteID could not be found"],
            [],
            not_found=True,
        )
    errors: list[str] = []
    if note["Status"] != "AUTHORISED":
        errors.append(f"Only AUTHORISED credit notes can be allocated; this one is {note['Status']}")
    invoice = _allocation_invoice(txn, note, data, errors)
    amount = _allocation_amount(note, invoice, data, errors)
    day = data.get("Date") or txn.today().isoformat()
    dates = _document_dates(txn, {"Date": day}, None, ("Date",), errors)
    if errors:
        return Outcome(_echo(data, "AllocationID", None), errors, [])
    assert invoice is not None and amount is not None
    stamp = txn.store.stamp()
    allocation_id = new_id()
    _credit_the_note(txn, note, invoice, allocation_id, amount, dates["Date"], stamp)
    _credit_the_invoice(txn, note, invoice, allocation_id, amount, dates["Date"], stamp)
    answer = {
        "AllocationID": allocation_id,
        "Amount": amount,
        "Date": dates["Date"],
        "Invoice": {"InvoiceID": invoice["InvoiceID"]},
        "CreditNote": {"CreditNoteID": note["CreditNoteID"], "ID": note["CreditNoteID"]},
    }
    return Outcome(answer, [], [])


def _allocation_invoice(txn: _Txn, note: dict[str, Any], data: dict[str, Any], errors: list[str]
                        ) -> dict[str, Any] | None:
    """The invoice an allocation names (by InvoiceID or InvoiceNumber), checked against the note."""
    invoices = txn.col("invoices")
    reference = data.get("Invoice") if isinstance(data.get("Invoice"), dict) else {}
    invoice = None
    if reference.get("InvoiceID"):
        invoice = invoices.get(reference["InvoiceID"])
    elif reference.get("InvoiceNumber"):
        invoice = _find(invoices, "invoices", str(reference["InvoiceNumber"]))
    if invoice is None:
        errors.append("The Invoice of an allocation must be given by an existing InvoiceID or InvoiceNumber")
        return None
    if invoice["Type"] != CREDIT_NOTE_TYPES[note["Type"]]:
        wanted = CREDIT_NOTE_TYPES[note["Type"]]
        errors.append(f"A {note['Type']} credit note can only be allocated to {wanted} invoices")
    if invoice["Status"] != "AUTHORISED":
        errors.append(
            "The invoice you are trying to allocate to has already been paid off"
            if invoice["Status"] == "PAID"
            else f"Credit can only be allocated to AUTHORISED invoices; this one is {invoice['Status']}"
        )
    if invoice.get("Contact", {}).get("ContactID") != note.get("Contact", {}).get("ContactID"):
        errors.append("The credit note and the invoice must belong to the same contact")
    if invoice.get("CurrencyCode") != note.get("CurrencyCode"):
        errors.append("The credit note and the invoice must be in the same currency")
    return invoice


def _allocation_amount(note: dict[str, Any], invoice: dict[str, Any] | None, data: dict[str, Any],
                       errors: list[str]) -> Decimal | None:
    """The amount: given, positive, within the note's remaining credit and the invoice's amount due."""
    amount = None
    try:
        if data.get("Amount") is None:
            errors.append("The allocation Amount must be specified")
        else:
            amount = money(to_decimal(data["Amount"], "Amount"))
    except BadValue as error:
        errors.append(str(error))
    if amount is not None:
        if amount <= 0:
            errors.append("The allocation Amount must be greater than zero")
        elif amount > note["RemainingCredit"]:
            errors.append("The amount allocated is greater than the remaining credit on this credit note")
        elif invoice is not None and invoice["Status"] == "AUTHORISED" and amount > invoice["AmountDue"]:
            errors.append("Credit note cannot be allocated as amount is greater than amount outstanding")
    return amount


def _credit_the_note(txn: _Txn, note: dict[str, Any], invoice: dict[str, Any], allocation_id: str,
                     amount: Decimal, day: str, stamp: dict[str, Any]) -> None:
    updated_note = deepcopy(note)
    updated_note["Allocations"] = [
        *note.get("Allocations", []),
        {
            "AllocationID": allocation_id,
            "Amount": amount,
            "Date": day,
            "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice.get("InvoiceNumber", "")},
        },
    ]
    updated_note["RemainingCredit"] = money(note["Total"] - _allocated(updated_note))
    if updated_note["RemainingCredit"] == 0:
        updated_note["Status"] = "PAID"
        updated_note["FullyPaidOnDate"] = day
    updated_note.update(stamp)
    txn.col("credit_notes")[note["CreditNoteID"]] = updated_note


def _credit_the_invoice(txn: _Txn, note: dict[str, Any], invoice: dict[str, Any], allocation_id: str,
                        amount: Decimal, day: str, stamp: dict[str, Any]) -> None:
    updated_invoice = deepcopy(invoice)
    updated_invoice["AmountCredited"] = money(invoice["AmountCredited"] + amount)
    updated_invoice["AmountDue"] = money(invoice["Total"] - invoice["AmountPaid"] - updated_invoice["AmountCredited"])
    updated_invoice["CreditNotes"] = [
        *invoice.get("CreditNotes", []),
        {
            "CreditNoteID": note["CreditNoteID"],
            "ID": note["CreditNoteID"],
            "CreditNoteNumber": note.get("CreditNoteNumber", ""),
            "AllocationID": allocation_id,
            "AppliedAmount": amount,
            "Date": day,
            "Total": note["Total"],
            "HasErrors": False,
            "LineItems": [],
        },
    ]
    if updated_invoice["AmountDue"] == 0:
        updated_invoice["Status"] = "PAID"
        updated_invoice["FullyPaidOnDate"] = day
    updated_invoice.update(stamp)
    txn.col("invoices")[invoice["InvoiceID"]] = updated_invoice


def _delete_allocation(txn: _Txn, note_id: str, allocation_id: str) -> dict[str, Any] | None:
    """Undo one allocation: the credit returns to the note and the invoice is due again."""
    notes = txn.col("credit_notes")
    invoices = txn.col("invoices")
    note = notes.get(note_id) or _find(notes, "credit_notes", note_id)
    if note is None:
        return None
    allocation = next((a for a in note.get("Allocations") or [] if a["AllocationID"] == allocation_id), None)
    if allocation is None:
        return None
    stamp = txn.store.stamp()
    updated_note = deepcopy(note)
    updated_note["Allocations"] = [a for a in note["Allocations"] if a["AllocationID"] != allocation_id]
    updated_note["RemainingCredit"] = money(note["Total"] - _allocated(updated_note))
    if note["Status"] == "PAID":
        updated_note["Status"] = "AUTHORISED"
        updated_note.pop("FullyPaidOnDate", None)
    updated_note.update(stamp)
    notes[note["CreditNoteID"]] = updated_note
    invoice = invoices.get(allocation["Invoice"]["InvoiceID"])
    if invoice is not None:
        updated = deepcopy(invoice)
        updated["AmountCredited"] = money(invoice["AmountCredited"] - allocation["Amount"])
        updated["AmountDue"] = money(invoice["Total"] - invoice["AmountPaid"] - updated["AmountCredited"])
        updated["CreditNotes"] = [c for c in invoice.get("CreditNotes", []) if c.get("AllocationID") != allocation_id]
        if invoice["Status"] == "PAID" and updated["AmountDue"] > 0:
            updated["Status"] = "AUTHORISED"
            updated.pop("FullyPaidOnDate", None)
        updated.update(stamp)
        invoices[invoice["InvoiceID"]] = updated
    return {
        "AllocationID": allocation_id,
        "Amount": allocation["Amount"],
        "Date": allocation["Date"],
        "Invoice": {"InvoiceID": allocation["Invoice"]["InvoiceID"]},
        "IsDeleted": True,
    }
