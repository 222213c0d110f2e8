"""Line arithmetic shared by invoices, quotes, purchase orders and credit notes."""

from __future__ import annotations

from copy import deepcopy
from decimal import Decimal
from typing import Any

from ..values import (
    BadValue,
    money,
    round_to,
    to_decimal,
)
from .common import _Txn, new_id


def _compute_lines(
    txn: _Txn,
    raw_lines: Any,
    old_lines: list[dict[str, Any]],
    doc_type: str,
    amount_types: str,
    status: str,
    errors: list[str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Xero's arithmetic: each line rounded to cents, tax per line rounded to cents, then summed."""
    if not isinstance(raw_lines, list):
        errors.append("LineItems must be a list")
        return [], {}
    old_ids = {line.get("LineItemID") for line in old_lines}
    items = txn.col("items")
    lines = []
    sub_total = total_tax = line_sum = discount_total = Decimal("0")
    for number, raw in enumerate(raw_lines, start=1):
        if not isinstance(raw, dict):
            errors.append(f"Line {number} must be an object")
            continue
        line = {k: deepcopy(v) for k, v in raw.items() if k not in ("ValidationErrors",)}
        line["LineItemID"] = raw.get("LineItemID") if raw.get("LineItemID") in old_ids else new_id()
        try:
            _fill_from_item(line, items, doc_type)
            amount, tax, discount = _line_amounts(txn, line, doc_type, amount_types)
        except BadValue as error:
            errors.append(f"Line {number}: {error}")
            continue
        account = line.get("AccountCode")
        if account and str(account).upper() not in txn.accounts:
            errors.append(f"Account code '{account}' is not a valid code for this document.")
        elif not account and status not in ("DRAFT", "") and amount != 0:
            errors.append("An account code must be specified for each line item on an approved document")
        tracking = line.get("Tracking") or []
        if len(tracking) > 2:
            errors.append("A line item can have at most 2 tracking categories")
        for tag in tracking:
            if not _tracking_known(txn, tag):
                errors.append(
                    f"The tracking category {tag.get('Name')!r} with option {tag.get('Option')!r} does not exist"
                )
        line_sum += amount
        total_tax += tax
        discount_total += discount
        lines.append(line)
    if amount_types == "Inclusive":
        sub_total = line_sum - total_tax
        total = line_sum
    else:
        sub_total = line_sum
        total = line_sum + total_tax
    totals = {"SubTotal": money(sub_total), "TotalTax": money(total_tax), "Total": money(total)}
    if discount_total:
        totals["TotalDiscount"] = money(discount_total)
    return lines, totals


SALES_DOCUMENTS = ("ACCREC", "QUOTE", "ACCRECCREDIT")
# Xero takes line discounts on sales invoices, quotes and purchase orders; bills and credit notes have none.
DISCOUNTED_DOCUMENTS = ("ACCREC", "QUOTE", "PURCHASEORDER")


def _fill_from_item(line: dict[str, Any], items: dict[str, Any], doc_type: str) -> None:
    code = line.get("ItemCode")
    if not code:
        return
    item = next((i for i in items.values() if str(i["Code"]).casefold() == str(code).casefold()), None)
    if item is None:
        raise BadValue(f"Item code '{code}' is not valid")
    sales = doc_type in SALES_DOCUMENTS
    details = item.get("SalesDetails" if sales else "PurchaseDetails") or {}
    description = item.get("Description" if sales else "PurchaseDescription")
    if "Description" not in line and (description or item.get("Name")):
        line["Description"] = description or item.get("Name")
    if "UnitAmount" not in line and details.get("UnitPrice") is not None:
        line["UnitAmount"] = details["UnitPrice"]
    for key in ("AccountCode", "TaxType"):
        if not line.get(key) and details.get(key):
            line[key] = details[key]


def _line_amounts(
    txn: _Txn, line: dict[str, Any], doc_type: str, amount_types: str
) -> tuple[Decimal, Decimal, Decimal]:
    def number(key: str) -> Decimal | None:
        return to_decimal(line[key], key) if line.get(key) is not None else None

    quantity, unit, given = number("Quantity"), number("UnitAmount"), number("LineAmount")
    rate, discount_amount = number("DiscountRate"), number("DiscountAmount")
    if (rate is not None or discount_amount is not None) and doc_type not in DISCOUNTED_DOCUMENTS:
        raise BadValue("Discounts are only supported on sales invoices (ACCREC), quotes and purchase orders")
    if rate is not None and discount_amount is not None:
        raise BadValue("Only one of DiscountRate or DiscountAmount can be given")
    if rate is not None and not 0 <= rate <= 100:
        raise BadValue("DiscountRate must be between 0 and 100")
    if unit is not None:
        unit = round_to(unit, txn.unitdp)
    if quantity is not None:
        quantity = round_to(quantity, 4)
    if quantity is None and unit is None:
        if given is None:  # a description-only line
            line["LineAmount"] = Decimal("0.00")
            line["TaxAmount"] = Decimal("0.00")
            return Decimal("0"), Decimal("0"), Decimal("0")
        quantity, unit = Decimal("1.0000"), round_to(given, txn.unitdp)
    elif quantity is None:
        quantity = round_to(given / unit, 4) if given is not None and unit else Decimal("1.0000")
    elif unit is None:
        unit = round_to(given / quantity, txn.unitdp) if given is not None and quantity else Decimal("0")
    gross = quantity * unit
    if rate is not None:
        amount = money(gross * (Decimal(100) - rate) / Decimal(100))
    elif discount_amount is not None:
        amount = money(gross - discount_amount)
    else:
        amount = money(gross)
    if (
        given is not None
        and line.get("Quantity") is not None
        and line.get("UnitAmount") is not None
        and money(given) != amount
    ):
        raise BadValue(f"The line total {money(given)} does not match the expected line total {amount}")
    tax_type, tax_rate = _line_tax(txn, line, amount_types)
    if amount_types == "Inclusive":
        tax = money(amount * tax_rate / (Decimal(100) + tax_rate))
    else:
        tax = money(amount * tax_rate / Decimal(100))
    line["Quantity"] = quantity
    line["UnitAmount"] = unit
    line["LineAmount"] = amount
    line["TaxAmount"] = tax
    if tax_type:
        line["TaxType"] = tax_type
    if rate is not None:
        line["DiscountRate"] = rate
    if discount_amount is not None:
        line["DiscountAmount"] = money(discount_amount)
    line.setdefault("Tracking", [])
    return amount, tax, money(gross) - amount


def _line_tax(txn: _Txn, line: dict[str, Any], amount_types: str) -> tuple[str, Decimal]:
    """The line's tax type (given, else its account's default) and its rate; NoTax documents
    charge none whatever the type."""
    tax_type = str(line.get("TaxType") or "").upper()
    if not tax_type and line.get("AccountCode"):
        tax_type = str(txn.accounts.get(str(line["AccountCode"]).upper(), {}).get("TaxType") or "").upper()
    if amount_types == "NoTax" or not tax_type:
        return tax_type, Decimal("0")
    if tax_type not in txn.tax_rates:
        raise BadValue(f"TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction.")
    return tax_type, txn.tax_rates[tax_type]


def _tracking_known(txn: _Txn, tag: Any) -> bool:
    if not isinstance(tag, dict):
        return False
    for category in txn.config.tracking_categories:
        if (
            tag.get("TrackingCategoryID") == category.get("TrackingCategoryID")
            or str(tag.get("Name", "")).casefold() == str(category.get("Name", "")).casefold()
        ):
            options = category.get("Options") or []
            return any(
                str(tag.get("Option", "")).casefold() == str(o.get("Name", "")).casefold()
                or tag.get("TrackingOptionID") == o.get("TrackingOptionID")
                for o in options
            )
    return False
