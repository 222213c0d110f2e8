"""Purchase orders."""

from __future__ import annotations

from copy import deepcopy
from decimal import Decimal
from typing import Any

from .common import (
    NOT_MODIFIABLE,
    Outcome,
    _copy_fields,
    _currency,
    _document_dates,
    _document_lines,
    _echo,
    _existing_document,
    _next_number,
    _Txn,
    new_id,
)
from .contacts import _resolve_contact
from .lines import _compute_lines

PURCHASE_ORDER_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED", "BILLED", "DELETED")
PURCHASE_ORDER_CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
# As Xero's app allows: approve, mark as billed (and undo it), delete anything not billed.
PURCHASE_ORDER_TRANSITIONS = {
    "DRAFT": {"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"},
    "SUBMITTED": {"SUBMITTED", "DRAFT", "AUTHORISED", "DELETED"},
    "AUTHORISED": {"AUTHORISED", "BILLED", "DELETED"},
    "BILLED": {"BILLED", "AUTHORISED"},
    "DELETED": {"DELETED"},
}


# Fields the store sets itself (from the checked values), never copied from the body as sent.
_SET_BY_THE_STORE = ("PurchaseOrderID", "Type", "Status", "Date", "DeliveryDate", "ExpectedArrivalDate",
                     "CurrencyCode", "CurrencyRate", "SentToContact")


def _check_order_status(data: dict[str, Any], existing: dict[str, Any] | None, status: str,
                        errors: list[str]) -> None:
    """A known status; one a new order may start in, or a transition Xero allows; billed and
    deleted orders are locked."""
    if status not in PURCHASE_ORDER_STATUSES:
        errors.append(f"Purchase order status must be one of {', '.join(PURCHASE_ORDER_STATUSES)}")
    elif existing is None and status not in PURCHASE_ORDER_CREATE_STATUSES:
        errors.append(
            f"A purchase order cannot be created with status {status}; use one of "
            f"{', '.join(PURCHASE_ORDER_CREATE_STATUSES)}"
        )
    elif existing is not None:
        old_status = existing.get("Status")
        changes = set(data) - {"PurchaseOrderID", "Status", "SentToContact"}
        if status not in PURCHASE_ORDER_TRANSITIONS.get(old_status, set()):
            errors.append(f"Purchase order status cannot change from {old_status} to {status}")
        elif old_status in ("BILLED", "DELETED") and changes:
            errors.append(NOT_MODIFIABLE.format(kind="Purchase order"))


def _upsert_purchase_order(txn: _Txn, data: dict[str, Any]) -> Outcome:
    orders = txn.col("purchase_orders")
    existing, missing = _existing_document(txn, "purchase_orders", data, "PurchaseOrderNumber", match_number=True)
    if missing:
        return missing
    errors: list[str] = []
    warnings: list[str] = []
    status = data.get("Status") or (existing or {}).get("Status") or "DRAFT"
    _check_order_status(data, existing, status, errors)
    if "SentToContact" in data and status not in ("AUTHORISED", "BILLED"):
        # Xero's own example answers this as a warning, not an error, and ignores the flag
        warnings.append("Only AUTHORISED and BILLED purchase orders may have SentToContact updated.")
    contact = None
    if "Contact" in data or existing is None:
        contact = _resolve_contact(txn, data.get("Contact"), errors)
    amount_types, old_lines, raw_lines = _document_lines(data, existing, errors)
    # account codes are optional on purchase orders, whatever the status: "DRAFT" skips that rule
    lines, totals = _compute_lines(txn, raw_lines, old_lines, "PURCHASEORDER", amount_types, "DRAFT", errors)
    if status in ("SUBMITTED", "AUTHORISED") and not lines:
        errors.append("A purchase order must have at least one line item before it can be submitted or approved")
    dates = _document_dates(txn, data, existing, ("Date", "DeliveryDate", "ExpectedArrivalDate"), errors)
    currency = _currency(txn, data, existing, errors)
    number = data.get("PurchaseOrderNumber", (existing or {}).get("PurchaseOrderNumber"))
    taken = {str(o.get("PurchaseOrderNumber", "")).casefold() for o in orders.values()
             if existing is None or o["PurchaseOrderID"] != existing["PurchaseOrderID"]}
    if number and str(number).casefold() in taken:
        errors.append("Order number must be unique")
    if len(str(data.get("DeliveryInstructions") or "")) > 500:
        errors.append("DeliveryInstructions must be 500 characters or fewer")
    if errors:
        echoed = _echo(data, "PurchaseOrderID", existing)
        if lines:
            echoed["LineItems"] = lines
        return Outcome(echoed, errors, warnings)
    record = deepcopy(existing) if existing else {"PurchaseOrderID": new_id(), "Type": "PURCHASEORDER",
                                                  "HasAttachments": False, "HasErrors": False, "SentToContact": False}
    _copy_fields(record, data, _SET_BY_THE_STORE)
    if "SentToContact" in data and not warnings:
        record["SentToContact"] = bool(data["SentToContact"])
    record.update(dates)
    record.update(currency)
    record["TotalDiscount"] = Decimal("0.00")
    record.update(totals)
    record["IsDiscounted"] = bool(record["TotalDiscount"])
    record["PurchaseOrderNumber"] = number or _next_number(txn, "purchase_order_seq", "PO-", taken)
    record["Status"] = status
    record["LineAmountTypes"] = amount_types
    record["LineItems"] = lines
    if contact:
        record["Contact"] = {"ContactID": contact["ContactID"]}
    record.update(txn.store.stamp())
    orders[record["PurchaseOrderID"]] = record
    return Outcome(record, [], warnings)
