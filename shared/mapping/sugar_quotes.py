"""A Sugar quote and its product bundles → the trade documents it stands for: a sales invoice
once it reaches the configured stage, a Xero Quote when finance wants those, a cancellation when
the quote is deleted or lost after being invoiced. Pure functions; the worker fetches the lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError

from shared.mapping.invoices import DocumentRefused
from shared.mapping.settings import MappingConfig
from shared.mapping.text import clean
from shared.models.invoices import (
    QuoteDocument,
    SalesInvoiceDocument,
    TradeDocument,
)
from shared.models.sugar import SugarQuote
from shared.money import UnreadableAmount, to_decimal

MODULE = "Quotes"
CENT = Decimal("0.01")
UNIT = Decimal("0.0001")


@dataclass(frozen=True)
class QuoteIntent:
    """What a quote at its current stage asks of Xero."""

    invoice: bool = False  # make (or keep up to date) the sales invoice
    cancel_invoice: bool = False  # end a pushed invoice (quote deleted or lost)
    xero_quote_status: str | None = None  # keep a Xero Quote in this status
    reason: str | None = None  # why nothing is to be done

    @property
    def nothing_to_do(self) -> bool:
        return not (self.invoice or self.cancel_invoice or self.xero_quote_status)


def quote_intent(quote: SugarQuote, config: MappingConfig, *, deleted: bool) -> QuoteIntent:
    rules = config.invoices
    stage = quote.quote_stage.strip()
    if deleted:
        return QuoteIntent(cancel_invoice=True, xero_quote_status="DELETED" if rules.xero_quotes else None)
    mapped = rules.quote_stages.get(stage)
    xero_quote = mapped if rules.xero_quotes else None
    if stage == rules.quote_stage:
        return QuoteIntent(invoice=True, xero_quote_status=xero_quote)
    if mapped == "DECLINED":
        return QuoteIntent(cancel_invoice=True, xero_quote_status=xero_quote)
    if xero_quote:
        return QuoteIntent(xero_quote_status=xero_quote)
    return QuoteIntent(reason=f"the quote's stage is {stage!r}; a Xero invoice is made at {rules.quote_stage!r}")


def _amount(value: Any, step: Decimal) -> Decimal:
    """A Sugar amount (6-decimal text, a JSON number, or "" for an empty field: 0) to ``step``
    places, half up; anything else is refused, never read as 0 (``shared.money``)."""
    try:
        number = to_decimal(clean(value) if isinstance(value, str) else value)
    except UnreadableAmount as error:
        raise DocumentRefused(f"{value!r} is not an amount") from error
    return (number or Decimal(0)).quantize(step, rounding=ROUND_HALF_UP)


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def _position(record: dict[str, Any]) -> tuple[int, int]:
    try:
        return 0, int(record.get("position") or 0)
    except (TypeError, ValueError):
        return 1, 0


def _currency(quote: SugarQuote, config: MappingConfig) -> str | None:
    currency_id = quote.currency_id or "-99"
    if currency_id in config.currencies:
        return config.currencies[currency_id] or None
    iso = clean((quote.model_extra or {}).get("currency_iso4217"))
    if iso and len(iso) == 3 and iso.isalpha():
        return iso.upper()
    raise DocumentRefused(f"the quote's currency {currency_id!r} ({quote.currency_name or 'no name'}) is not in the "
                          "mapping configuration's currencies: map it to its ISO code")


def _tax_for(tax_class: str | None, quote: SugarQuote, config: MappingConfig) -> tuple[str | None, Decimal]:
    """(TaxType, percent) of a quote line: taxable lines take the quote's rate, mapped to a Xero
    tax type through ``invoices.tax_rates`` (by Sugar taxrate_id or by percent)."""
    tax_class = (tax_class or "Taxable").strip()
    taxable = tax_class.lower() == "taxable"
    rate = (quote.taxrate_value or Decimal("0")) if taxable else Decimal("0")
    tax_type = None
    if taxable:
        percent = format(rate.normalize(), "f") if rate else "0"
        tax_type = config.invoices.tax_rates.get(quote.taxrate_id or "") or config.invoices.tax_rates.get(percent)
    tax_type = tax_type or config.catalogue.sales_tax_types.get(tax_class)
    if tax_type is None:
        raise DocumentRefused(f"no Xero tax type for the CRM tax class {tax_class!r}: add it to the mapping "
                              "configuration's catalogue.sales_tax_types")
    return tax_type, rate


def quote_lines(quote: SugarQuote, bundles: list[dict[str, Any]], config: MappingConfig,
                item_codes: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every priced product of every bundle, in the quote's order, plus shipping as a line of its
    own, as ``LineDocument`` fields (validated with the whole document, in one pass). Returns the
    lines and warnings (products not in Xero's catalogue)."""
    extra = quote.model_extra or {}
    tags = []
    for field in config.invoices.tracking:
        option = clean(extra.get(field.crm_field), 100)
        if option:
            tags.append({"category": field.category, "option": option})
    lines: list[dict[str, Any]] = []
    warnings: list[str] = []
    taxes: dict[str | None, tuple[str | None, Decimal]] = {}
    for bundle in sorted(bundles, key=_position):
        for product in sorted(bundle.get("products") or [], key=_position):
            if product.get("_module") not in (None, "Products"):
                continue  # ProductBundleNotes are comments, not priced lines
            # Sugar sends quantity as a JSON float (0 is valid): kept exactly; only a missing one means 1
            raw_quantity = product.get("quantity")
            quantity = _amount("1" if raw_quantity is None or raw_quantity == "" else raw_quantity, UNIT)
            if quantity < 0:
                raise DocumentRefused(f"the quote line {product.get('name')!r} has quantity {quantity}; a negative "
                                      "quantity is a credit: raise a credit note instead")
            tax_class = product.get("tax_class")
            if tax_class not in taxes:
                taxes[tax_class] = _tax_for(tax_class, quote, config)
            tax_type, rate = taxes[tax_class]
            discount = _amount(product.get("discount_amount"), CENT)
            percent = _truthy(product.get("discount_select"))
            template = str(product.get("product_template_id") or "")
            code = item_codes.get(template)
            if template and not code:
                warnings.append(f"product {product.get('name')!r} is not in Xero's catalogue yet: pushed without "
                                "an item code")
            lines.append({
                "crm_id": str(product["id"]) if product.get("id") else None,
                "description": clean(product.get("name"), 4000), "item_code": code, "quantity": quantity,
                "unit_amount": _amount(product.get("discount_price"), UNIT),
                "discount_rate": discount if percent and discount else None,
                "discount_amount": discount if not percent and discount else None,
                "tax_type": tax_type, "tax_rate": rate, "tracking": tags})
    shipping = quote.shipping or Decimal("0")
    if shipping > 0:
        tax_type, rate = _tax_for(config.invoices.shipping_tax_class, quote, config)
        lines.append({"crm_id": "shipping", "description": config.invoices.shipping_description,
                      "unit_amount": _amount(shipping, UNIT), "tax_type": tax_type, "tax_rate": rate,
                      "account_code": config.invoices.shipping_account_code, "tracking": tags})
    return lines, warnings


def quote_documents(quote: SugarQuote, bundles: list[dict[str, Any]], config: MappingConfig, *,
                    deleted: bool, item_codes: Mapping[str, str]) -> tuple[list[TradeDocument], list[str]]:
    """The documents a quote stands for now, and warnings for its record. Raises DocumentRefused
    with a message for the CRM admin when the quote cannot be mapped."""
    intent = quote_intent(quote, config, deleted=deleted)
    if intent.nothing_to_do:
        return [], []
    if not quote.billing_account_id:
        raise DocumentRefused("the quote has no billing account: set one, the Xero contact comes from it")
    lines, warnings = quote_lines(quote, bundles, config, item_codes)
    if not lines and not (deleted or intent.cancel_invoice):
        raise DocumentRefused("the quote has no product lines")
    if not lines:  # a cancellation needs no lines, but the document model wants one
        lines = [{"description": "cancelled", "unit_amount": Decimal("0")}]
    number = clean(quote.quote_num)
    po = clean(quote.purchase_order_num)
    reference = " / ".join(part for part in (f"Quote {number}" if number else None,
                                             po) if part) or None
    common: dict[str, Any] = {
        "crm_module": MODULE, "crm_id": quote.id,
        "contact": {"crm_module": "Accounts", "crm_id": quote.billing_account_id},
        "lines": lines, "reference": reference, "currency": _currency(quote, config),
        "payment_terms": clean(quote.payment_terms, 100), "crm_modified": quote.date_modified,
    }
    documents: list[TradeDocument] = []
    try:
        if intent.invoice or intent.cancel_invoice:
            documents.append(SalesInvoiceDocument.model_validate({
                **common, "cancelled": intent.cancel_invoice,
                "expected_total": quote.total.quantize(CENT) if quote.total is not None else None,
                "expected_tax": quote.tax.quantize(CENT) if quote.tax is not None else None}))
        if intent.xero_quote_status:
            expiry = clean(quote.date_quote_expected_closed)
            documents.append(QuoteDocument.model_validate({
                **common, "quote_status": intent.xero_quote_status, "title": clean(quote.name, 100),
                "expiry_date": expiry[:10] if expiry else None, "cancelled": intent.xero_quote_status == "DELETED",
                "expected_total": quote.total.quantize(CENT) if quote.total is not None else None}))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:3])
        raise DocumentRefused(f"the quote cannot be mapped: {problems}") from error
    return documents, warnings
