"""Xero's invoices, credit notes, quotes and purchase orders as the connector keeps them
(``XeroDocumentState``), and the CRM write-back values they give. Pure functions."""

from __future__ import annotations

from datetime import date
from typing import Any

from shared.models.invoices import PaymentSummary, XeroDocumentState
from shared.money import xero_amount
from shared.xero.dates import parse_xero_date

ID_FIELDS = {"Invoices": "InvoiceID", "CreditNotes": "CreditNoteID", "Quotes": "QuoteID",
             "PurchaseOrders": "PurchaseOrderID"}
NUMBER_FIELDS = {"Invoices": "InvoiceNumber", "CreditNotes": "CreditNoteNumber", "Quotes": "QuoteNumber",
                 "PurchaseOrders": "PurchaseOrderNumber"}
APP_LINKS = {
    "ACCREC": "https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={id}",
    "ACCPAY": "https://go.xero.com/AccountsPayable/View.aspx?InvoiceID={id}",
    "ACCRECCREDIT": "https://go.xero.com/AccountsReceivable/ViewCreditNote.aspx?creditNoteID={id}",
    "ACCPAYCREDIT": "https://go.xero.com/AccountsPayable/ViewCreditNote.aspx?creditNoteID={id}",
    "QUOTE": "https://go.xero.com/Accounts/Receivable/Quotes/View/{id}",
    "PURCHASEORDER": "https://go.xero.com/Accounts/Payable/PurchaseOrders/View/{id}",
}


# Xero's amounts, to the cent; an unreadable one raises (shared.money), never reads as 0.00.
money = xero_amount


def _day(value: Any) -> date | None:
    if not value:
        return None
    text = str(value)
    if text.startswith("/Date("):
        moment = parse_xero_date(text)
        return moment.date() if moment else None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def updated_iso(document: dict[str, Any]) -> str | None:
    """Xero's UpdatedDateUTC as sortable ISO-8601 text (milliseconds kept)."""
    moment = parse_xero_date(document.get("UpdatedDateUTC"))
    return moment.isoformat(timespec="milliseconds") if moment else None


def document_state(resource: str, document: dict[str, Any], *, line_crm_ids: list[str | None] | None = None,
                   online_url: str | None = None) -> XeroDocumentState:
    """One Xero document (as a GET or an upsert answers it) as the connector keeps it.

    ``resource`` is the API collection (Invoices, CreditNotes, Quotes, PurchaseOrders);
    ``line_crm_ids`` are the CRM line ids in the order the lines were sent, to remember which
    LineItemID belongs to which CRM line."""
    if resource == "Quotes":
        target = "QUOTE"
    elif resource == "PurchaseOrders":
        target = "PURCHASEORDER"
    else:
        target = str(document.get("Type") or ("ACCRECCREDIT" if resource == "CreditNotes" else "ACCREC"))
    xero_id = str(document.get(ID_FIELDS[resource]) or "")
    line_ids: dict[str, str] = {}
    for crm_id, line in zip(line_crm_ids or [], document.get("LineItems") or [], strict=False):
        if crm_id and line.get("LineItemID"):
            line_ids[crm_id] = str(line["LineItemID"])
    payments = [PaymentSummary(payment_id=p.get("PaymentID"), date=_day(p.get("Date")), amount=money(p.get("Amount")),
                               reference=p.get("Reference"), status=p.get("Status"))
                for p in document.get("Payments") or []]
    return XeroDocumentState(
        target=target, xero_id=xero_id, number=document.get(NUMBER_FIELDS[resource]) or None,
        reference=document.get("Reference") or None, status=str(document.get("Status") or "DRAFT"),
        contact_id=(document.get("Contact") or {}).get("ContactID"), currency=document.get("CurrencyCode"),
        date=_day(document.get("DateString") or document.get("Date")),
        due_date=_day(document.get("DueDateString") or document.get("DueDate") or document.get("ExpiryDate")),
        fully_paid_on=_day(document.get("FullyPaidOnDate")),
        total=money(document.get("Total")), total_tax=money(document.get("TotalTax")),
        amount_due=money(document.get("AmountDue") if "AmountDue" in document else document.get("RemainingCredit")),
        amount_paid=money(document.get("AmountPaid")), amount_credited=money(document.get("AmountCredited")),
        payments=payments, url=online_url or APP_LINKS[target].format(id=xero_id),
        updated_utc=updated_iso(document), line_ids=line_ids,
    )


def is_newer(candidate: XeroDocumentState, stored: XeroDocumentState | None) -> bool:
    """Whether ``candidate`` may replace ``stored``: never move a record backwards. A state with
    no timestamp only replaces another without one."""
    if stored is None:
        return True
    if candidate.updated_utc is None or stored.updated_utc is None:
        return stored.updated_utc is None
    return candidate.updated_utc >= stored.updated_utc


def payments_summary(state: XeroDocumentState) -> str:
    """A short human line for the CRM, e.g. ``2026-12-01 1,000.00; 2026-12-15 561.08``."""
    live = [p for p in state.payments if (p.status or "AUTHORISED") != "DELETED"]
    return "; ".join(f"{p.date.isoformat() if p.date else '?'} {p.amount:,.2f}" for p in live)[:255]


def write_back_values(state: XeroDocumentState) -> dict[str, Any]:
    """The write-back values (names of ``WriteBack.fields``) a document state gives."""
    values: dict[str, Any] = {
        "xero_id": state.xero_id, "xero_number": state.number or "", "status": state.status,
        "total": str(state.total), "amount_due": str(state.amount_due), "amount_paid": str(state.amount_paid),
        "amount_credited": str(state.amount_credited), "url": state.url or "",
        "paid_date": state.fully_paid_on.isoformat() if state.fully_paid_on else "",
        "payments": payments_summary(state),
    }
    return values
