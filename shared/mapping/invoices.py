"""Trade documents → Xero bodies (invoices, bills, quotes, purchase orders), and Xero's
arithmetic, so the connector knows the total Xero will compute before it sends anything.

Xero rounds each line to the cent, computes tax per line and rounds that to the cent, then
sums (``reference/xero-api.md``). A CRM that taxes the whole document can differ by cents; the
configured rounding policy settles the difference visibly (a rounding line or a warning), and a
difference larger than rounding can explain fails the document before anything is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared.mapping.settings import MappingConfig
from shared.models.invoices import (
    LineDocument,
    PurchaseDocument,
    QuoteDocument,
    TradeDocument,
    XeroDocumentState,
)
from shared.money import UnreadableAmount, cents, to_decimal, unit_price
from shared.money import quantity as round_quantity

HUNDRED = Decimal(100)
ROUNDING_LINE_ID = "rounding"
# Documents whose POST takes no unitdp in Xero's spec (16.1.0): unit prices are kept to the cent
TWO_DECIMAL_PRICES = frozenset({"QUOTE", "PURCHASEORDER"})


money = cents  # the names this module's callers use; the rules live in shared.money


class DocumentRefused(ValueError):
    """The document cannot be sent as it is; the message says what to change."""


@dataclass(frozen=True)
class Totals:
    sub_total: Decimal
    total_tax: Decimal
    total: Decimal


def line_amount(quantity: Decimal, unit_amount: Decimal, *, discount_rate: Decimal | None = None,
                discount_amount: Decimal | None = None) -> Decimal:
    """A line's amount as Xero computes it: quantity (4 places) × unit price (4 places, with
    unitdp=4), less the discount, rounded to the cent."""
    gross = round_quantity(quantity) * unit_price(unit_amount)
    if discount_rate is not None:
        return money(gross * (HUNDRED - discount_rate) / HUNDRED)
    if discount_amount is not None:
        return money(gross - discount_amount)
    return money(gross)


def line_tax(amount: Decimal, rate_percent: Decimal, amount_types: str) -> Decimal:
    """Tax on one line, rounded to the cent (Xero's per-line rounding)."""
    if amount_types == "NoTax" or not rate_percent:
        return Decimal("0.00")
    if amount_types == "Inclusive":
        return money(amount * rate_percent / (HUNDRED + rate_percent))
    return money(amount * rate_percent / HUNDRED)


def xero_totals(lines: list[tuple[Decimal, Decimal]], amount_types: str) -> Totals:
    """Totals of (line amount, tax percent) pairs, the way Xero adds them up."""
    line_sum = sum((amount for amount, _ in lines), Decimal("0.00"))
    tax = sum((line_tax(amount, rate, amount_types) for amount, rate in lines), Decimal("0.00"))
    if amount_types == "Inclusive":
        return Totals(sub_total=line_sum - tax, total_tax=tax, total=line_sum)
    return Totals(sub_total=line_sum, total_tax=tax, total=line_sum + tax)


@dataclass
class MappedDocument:
    """A document ready to send: the Xero collection, the body, and what the connector expects
    Xero to compute for it."""

    resource: str  # Invoices | Quotes | PurchaseOrders
    target: str  # ACCREC | ACCPAY | QUOTE | PURCHASEORDER
    body: dict[str, Any]
    line_crm_ids: list[str | None]
    totals: Totals | None  # None when a line's tax rate is unknown
    warnings: list[str] = field(default_factory=list)


def target_of(doc: TradeDocument, config: MappingConfig) -> tuple[str, str]:
    """(Xero collection, target) a document goes to."""
    if isinstance(doc, QuoteDocument):
        return "Quotes", "QUOTE"
    if isinstance(doc, PurchaseDocument):
        deliver_as = doc.deliver_as or config.invoices.purchases_as
        return ("PurchaseOrders", "PURCHASEORDER") if deliver_as == "purchase_order" else ("Invoices", "ACCPAY")
    return "Invoices", "ACCREC"


def tax_type_for(line: LineDocument, *, sales: bool, config: MappingConfig) -> str | None:
    if line.tax_type:
        return line.tax_type
    if line.tax_class is None:
        return None
    table = config.catalogue.sales_tax_types if sales else config.catalogue.purchase_tax_types
    tax_type = table.get(line.tax_class)
    if tax_type is None:
        raise DocumentRefused(f"no Xero tax type for the CRM tax class {line.tax_class!r}: add it to the mapping "
                              f"configuration's catalogue.{'sales' if sales else 'purchase'}_tax_types")
    return tax_type


def _rate(line: LineDocument, tax_type: str | None, tax_rates: Mapping[str, Decimal],
          warnings: list[str], number: int) -> Decimal | None:
    """The percent Xero will apply: the organisation's rate for the tax type when known (Xero
    uses its own), else the CRM's rate for the line; None when neither is known."""
    known = tax_rates.get(tax_type.upper()) if tax_type else None
    if known is not None and line.tax_rate is not None and known != line.tax_rate:
        warnings.append(f"line {number}: the CRM taxes it at {line.tax_rate.normalize()}% but Xero's tax type "
                        f"{tax_type} is {known.normalize()}%; Xero's rate applies")
    if known is not None:
        return known
    if line.tax_rate is not None:
        return line.tax_rate
    if tax_type is None:
        return Decimal("0")
    return None


def _line_body(line: LineDocument, *, sales: bool, config: MappingConfig, tax_type: str | None,
               line_item_id: str | None) -> dict[str, Any]:
    account = line.account_code or (config.catalogue.sales_account_code if sales
                                    else config.catalogue.purchase_account_code)
    body: dict[str, Any] = {"Quantity": line.quantity, "UnitAmount": unit_price(line.unit_amount),
                            "AccountCode": account}
    if line_item_id:
        body["LineItemID"] = line_item_id
    if line.description:
        body["Description"] = line.description
    if line.item_code:
        body["ItemCode"] = line.item_code
    if tax_type:
        body["TaxType"] = tax_type
    if line.discount_rate is not None:
        body["DiscountRate"] = line.discount_rate
    if line.discount_amount is not None:
        body["DiscountAmount"] = line.discount_amount
    if line.tracking:
        body["Tracking"] = [{"Name": tag.category, "Option": tag.option} for tag in line.tracking]
    return body


def due_date_for(doc: TradeDocument, issued: dt.date, config: MappingConfig) -> dt.date:
    if doc.due_date:
        return doc.due_date
    days = config.invoices.default_due_days
    if doc.payment_terms:
        days = config.invoices.payment_terms.get(doc.payment_terms.strip(), days)
    return issued + dt.timedelta(days=days)


def to_xero_document(doc: TradeDocument, config: MappingConfig, *, contact_id: str,
                     existing: XeroDocumentState | None = None, tax_rates: Mapping[str, Decimal] | None = None,
                     today: dt.date | None = None) -> MappedDocument:
    """The Xero body for a document (an update when ``existing`` is given: its id, and the
    LineItemIDs of lines the CRM still has, so Xero keeps them). Steps: the lines as Xero will
    compute them, the total checked against the CRM's, the header by target, then the update."""
    resource, target = target_of(doc, config)
    sales = target in ("ACCREC", "QUOTE")
    warnings: list[str] = []
    line_ids = existing.line_ids if existing else {}
    rates = {k.upper(): v for k, v in (tax_rates or {}).items()}
    lines = _Lines()
    for number, line in enumerate(doc.lines, start=1):
        lines.add(number, line, resource=resource, target=target, sales=sales, config=config, line_ids=line_ids,
                  rates=rates, warnings=warnings)
    totals = _checked_totals(doc, config, lines, line_ids, warnings)
    issued = doc.date or today or dt.date.today()
    body: dict[str, Any] = {"Contact": {"ContactID": contact_id}, "Date": issued.isoformat(),
                            "LineAmountTypes": doc.line_amount_types, "LineItems": lines.bodies}
    if doc.currency:
        body["CurrencyCode"] = doc.currency
    body.update(_header(doc, config, target, issued))
    if existing is not None:
        _as_update(body, doc, resource, existing)
    return MappedDocument(resource=resource, target=target, body=body, line_crm_ids=lines.crm_ids,
                          totals=totals, warnings=warnings)


class _Lines:
    """The document's line bodies, their CRM ids and (amount, tax rate) pairs as Xero computes them."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.crm_ids: list[str | None] = []
        self.amounts: list[tuple[Decimal, Decimal]] = []
        self.unknown_rate = False

    def add(self, number: int, line: Any, *, resource: str, target: str, sales: bool, config: MappingConfig,
            line_ids: Mapping[str, str], rates: Mapping[str, Decimal], warnings: list[str]) -> None:
        if target in TWO_DECIMAL_PRICES and cents(line.unit_amount) != line.unit_amount:
            # POST /Quotes and /PurchaseOrders take no unitdp (spec 16.1.0): Xero keeps 2 decimals
            warnings.append(f"line {number}: Xero {resource} keep unit prices to the cent: "
                            f"{line.unit_amount.normalize()} is sent as {cents(line.unit_amount)}")
            line = line.model_copy(update={"unit_amount": cents(line.unit_amount)})
        tax_type = tax_type_for(line, sales=sales, config=config)
        self.bodies.append(_line_body(line, sales=sales, config=config, tax_type=tax_type,
                                      line_item_id=line_ids.get(line.crm_id or "")))
        self.crm_ids.append(line.crm_id)
        amount = line_amount(line.quantity, line.unit_amount, discount_rate=line.discount_rate,
                             discount_amount=line.discount_amount)
        rate = _rate(line, tax_type, rates, warnings, number)
        if rate is None:
            self.unknown_rate = True
            rate = Decimal("0")
        self.amounts.append((amount, rate))


def _checked_totals(doc: TradeDocument, config: MappingConfig, lines: _Lines, line_ids: Mapping[str, str],
                    warnings: list[str]) -> Any:
    """Xero's totals for these lines, checked against the CRM's expected total: a difference
    rounding can explain becomes a rounding line (or a warning, by policy); a larger one refuses
    the document. None when a line's tax rate is unknown."""
    if lines.unknown_rate:
        if doc.expected_total is not None:
            warnings.append("the total could not be checked to the cent: a line's tax rate is unknown (give "
                            "tax_rate on the line, or let the nightly metadata refresh learn the organisation's rates)")
        return None
    totals = xero_totals(lines.amounts, doc.line_amount_types)
    if doc.expected_total is not None and totals.total != doc.expected_total:
        difference = doc.expected_total - totals.total
        rounding = config.invoices.rounding
        explain = (f"Xero's total would be {totals.total:,.2f}, the CRM's is {doc.expected_total:,.2f} "
                   f"(difference {difference:+,.2f})")
        if abs(difference) > rounding.max_difference:
            raise DocumentRefused(f"{explain}: more than rounding can explain (limit {rounding.max_difference}); "
                                  "check the CRM's lines, discounts and tax rates")
        if rounding.policy == "rounding_line":
            lines.bodies.append({"Description": rounding.description, "Quantity": Decimal("1"),
                                 "UnitAmount": difference, "AccountCode": rounding.account_code,
                                 "TaxType": rounding.tax_type,
                                 **({"LineItemID": line_ids[ROUNDING_LINE_ID]} if ROUNDING_LINE_ID in line_ids
                                    else {})})
            lines.crm_ids.append(ROUNDING_LINE_ID)
            lines.amounts.append((difference, Decimal("0")))
            totals = xero_totals(lines.amounts, doc.line_amount_types)
            warnings.append(f"{explain}: a {rounding.description} line of {difference:+,.2f} makes them equal")
        else:
            warnings.append(f"{explain}: Xero's per-line tax rounding; pushed as Xero computes it")
    if doc.expected_tax is not None and totals.total_tax != doc.expected_tax:
        warnings.append(f"Xero's tax would be {totals.total_tax:,.2f}, the CRM's is {doc.expected_tax:,.2f}")
    return totals


def _header(doc: TradeDocument, config: MappingConfig, target: str, issued: dt.date) -> dict[str, Any]:
    """The fields each target has: invoices and bills (type, due date, status, number/reference),
    quotes (capitalised amount types, status, expiry, title) and purchase orders."""
    header: dict[str, Any] = {}
    if target in ("ACCREC", "ACCPAY"):
        sales = target == "ACCREC"
        header["Type"] = target
        header["DueDate"] = due_date_for(doc, issued, config).isoformat()
        header["Status"] = doc.status or (config.invoices.sales_status if sales else config.invoices.purchase_status)
        if sales:
            if doc.reference:
                header["Reference"] = doc.reference
            if doc.number:
                header["InvoiceNumber"] = doc.number
        elif doc.number or doc.reference:
            header["InvoiceNumber"] = doc.number or doc.reference  # a bill's reference is its number
    elif target == "QUOTE":
        assert isinstance(doc, QuoteDocument)
        header["LineAmountTypes"] = doc.line_amount_types.upper()  # Quotes spell it EXCLUSIVE, INCLUSIVE, NOTAX
        header["Status"] = doc.quote_status
        if doc.expiry_date:
            header["ExpiryDate"] = doc.expiry_date.isoformat()
        if doc.title:
            header["Title"] = doc.title
        if doc.reference:
            header["Reference"] = doc.reference
        if doc.number:
            header["QuoteNumber"] = doc.number
    else:  # purchase order
        assert isinstance(doc, PurchaseDocument)
        header["Status"] = doc.status or config.invoices.purchase_status
        if doc.delivery_date:
            header["DeliveryDate"] = doc.delivery_date.isoformat()
        if doc.reference:
            header["Reference"] = doc.reference
        if doc.number:
            header["PurchaseOrderNumber"] = doc.number
    return header


def _as_update(body: dict[str, Any], doc: TradeDocument, resource: str, existing: XeroDocumentState) -> None:
    body[{"Invoices": "InvoiceID", "Quotes": "QuoteID", "PurchaseOrders": "PurchaseOrderID"}[resource]] = \
        existing.xero_id
    if existing.status not in ("DRAFT", "SUBMITTED") and body.get("Status") in ("DRAFT", "SUBMITTED"):
        body["Status"] = existing.status  # an approved document is never sent back to draft
    if doc.date is None:  # keep the dates Xero has: an update is not a re-issue
        body.pop("Date", None)
        if doc.due_date is None:
            body.pop("DueDate", None)


def cancellation(state: XeroDocumentState, *, credit_with_payments: bool) -> tuple[str, str | None]:
    """How a document is ended in Xero: ("delete" | "void" | "credit_note" | "done" | "refuse",
    why). Xero allows DELETED from DRAFT or SUBMITTED, VOIDED from AUTHORISED without payments;
    paid documents are credited (or refused, as configured)."""
    if state.status in ("DELETED", "VOIDED"):
        return "done", f"already {state.status} in Xero"
    if state.target in ("QUOTE", "PURCHASEORDER"):
        if state.status in ("INVOICED", "BILLED"):
            return "refuse", f"the Xero {state.target.lower().replace('order', ' order')} is {state.status}"
        return "delete", None
    if state.status in ("DRAFT", "SUBMITTED"):
        return "delete", None
    if state.status == "AUTHORISED" and not state.has_payments and not state.has_credit_allocated:
        return "void", None
    if credit_with_payments:
        return "credit_note", None
    applied = (f"payments of {state.amount_paid:,.2f}" if state.has_payments
               else f"credit of {state.amount_credited:,.2f} allocated")
    return "refuse", (f"Xero invoice {state.number or state.xero_id} has {applied}; "
                      "it cannot be voided. Credit it in Xero, or set invoices.cancel_with_payments to credit_note")


def credit_note_body(state: XeroDocumentState, invoice: dict[str, Any]) -> dict[str, Any]:
    """A credit note for everything the invoice charged, copying its lines (without their ids).

    ``invoice`` must be Xero's full answer (one invoice, or a list asked with ``page``) read with
    ``unitdp=4`` and parsed as Decimal: a summary without ``LineItems`` or a line whose amounts
    cannot be read is refused (``DocumentRefused``), never credited as nothing or as 0."""
    source_lines = invoice.get("LineItems")
    if not source_lines:
        raise DocumentRefused(f"Xero's answer for invoice {state.number or state.xero_id} has no line items to "
                              "credit (an invoice list without page= is a summary)")
    lines = []
    for number, line in enumerate(source_lines, start=1):
        copy = {k: line[k] for k in ("Description", "AccountCode", "TaxType", "ItemCode", "Tracking")
                if line.get(k) not in (None, "", [])}
        try:
            amounts = {k: to_decimal(line.get(k), f"line {number} {k}")
                       for k in ("Quantity", "UnitAmount", "LineAmount")}
        except UnreadableAmount as error:
            raise DocumentRefused(f"invoice {state.number or state.xero_id}: {error}") from error
        if line.get("DiscountRate") or line.get("DiscountAmount"):
            # Credit notes take no discounts: credit the discounted line amount as one unit, which
            # keeps the per-line tax, and so the total, equal to the invoice's.
            if amounts["LineAmount"] is None:
                raise DocumentRefused(f"invoice {state.number or state.xero_id}: line {number} is discounted "
                                      "but Xero's answer has no LineAmount")
            copy["Quantity"], copy["UnitAmount"] = Decimal("1"), amounts["LineAmount"]
            copy["Description"] = f"{line.get('Description') or ''} (quantity {line.get('Quantity')}, discounted)"
        else:
            for key in ("Quantity", "UnitAmount"):
                if amounts[key] is not None:
                    copy[key] = amounts[key]
        lines.append(copy)
    body: dict[str, Any] = {
        "Type": "ACCRECCREDIT" if state.target == "ACCREC" else "ACCPAYCREDIT",
        "Contact": {"ContactID": state.contact_id or (invoice.get("Contact") or {}).get("ContactID")},
        "LineAmountTypes": invoice.get("LineAmountTypes") or "Exclusive",
        "LineItems": lines, "Status": "AUTHORISED",
    }
    cancels = f"Cancels {state.number or state.xero_id}"[:255]
    if state.target == "ACCREC":
        body["Reference"] = cancels
    else:  # a supplier credit's reference is its number, as on bills
        body["CreditNoteNumber"] = cancels
    if state.currency:
        body["CurrencyCode"] = state.currency
    return body
