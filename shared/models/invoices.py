"""The connector's trade documents: sales invoices, purchases (bills, purchase orders, commission
bills) and quotes, as custom Sugar modules and logic hooks post them and as every Sugar quote is
turned into before it is queued.

One shape for all of them (``TradeDocument``), with ``kind`` saying what it becomes in Xero:
``sales`` → ACCREC invoice, ``purchase`` → ACCPAY bill (or a purchase order when configured),
``quote`` → Xero Quote. Lengths and decimals follow Xero's spec, so a document that validates
here can be sent.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.mapping.text import fit
from shared.models.documents import TEXT_ACCEPTED, ContactDocument, CrmModified, Truncated
from shared.models.ids import DOCUMENT_KEY_PATTERN, SUGAR_ID_PATTERN, SUGAR_MODULE_PATTERN


def _places(places: int, *, largest: Decimal = Decimal("1e15")) -> AfterValidator:
    """At most ``places`` decimals (trailing zeros do not count: Sugar sends "650.000000"), finite
    and of a size Xero keeps. Checked in Python: pydantic's max_digits/decimal_places cost several
    times more per field, and documents carry many amounts."""
    step = Decimal(1).scaleb(-places)

    def check(value: Decimal) -> Decimal:
        if not value.is_finite() or not -largest < value < largest:
            raise ValueError("must be a finite number of a size Xero keeps")
        if value.quantize(step) != value:
            raise ValueError(f"at most {places} decimal places")
        return value

    return AfterValidator(check)


UnitAmount = Annotated[Decimal, _places(4), Field(description="unit price, at most 4 decimals")]
Quantity = Annotated[Decimal, Field(ge=0, description="at most 4 decimals; 0 is a line Xero keeps at 0.00"),
                     _places(4)]
Money = Annotated[Decimal, _places(2), Field(description="an amount to the cent")]
Percent = Annotated[Decimal, Field(ge=0, le=100), _places(6)]
CRM_MODULE = SUGAR_MODULE_PATTERN
DocumentKind = Literal["sales", "purchase", "quote"]
SALES_KINDS: frozenset[str] = frozenset({"sales", "quote"})


class Strict(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")


class TrackingTag(Strict):
    """A tracking category option on a line (Xero allows two active categories)."""

    category: str = Field(min_length=1, max_length=100, description="Xero tracking category name")
    option: str = Field(min_length=1, max_length=100, description="option within that category")


class LineDocument(Strict):
    crm_id: str | None = Field(default=None, max_length=100,
                               description="the CRM line's id: an update keeps Xero's LineItemID for it")
    description: str | None = Field(default=None, max_length=TEXT_ACCEPTED,
                                    description="longer than Xero's 4,000: cut, with a warning")
    item_code: str | None = Field(default=None, min_length=1, max_length=30,
                                  description="Xero item Code (the catalogue's code for the product)")
    quantity: Quantity = Decimal("1")
    unit_amount: UnitAmount = Field(description="unit price before discount, at most 4 decimals")
    discount_rate: Percent | None = Field(default=None, description="percent off the line (sales and quotes only)")
    discount_amount: Money | None = Field(default=None, ge=0,
                                          description="amount off the line total (sales and quotes only)")
    account_code: str | None = Field(default=None, min_length=1, max_length=10,
                                     description="left out: the configured sales or purchase account")
    tax_type: str | None = Field(default=None, min_length=1, max_length=50, description="Xero TaxType")
    tax_class: str | None = Field(default=None, max_length=50,
                                  description="CRM tax class (Taxable, Non-Taxable): the TaxType comes from "
                                              "the mapping configuration when tax_type is left out")
    tax_rate: Percent | None = Field(default=None,
                                     description="the CRM's tax percent for this line, for the to-the-cent check")
    tracking: list[TrackingTag] = Field(default_factory=list, max_length=2)

    @model_validator(mode="after")
    def _one_discount(self) -> LineDocument:
        if self.discount_rate is not None and self.discount_amount is not None:
            raise ValueError("give discount_rate or discount_amount, not both")
        return self


class ContactRef(Strict):
    """Who the document is for: a CRM record the connector maps (pushed first when it has no Xero
    contact yet; inline ``contact`` says what to push) or a Xero contact id."""

    crm_module: Literal["Accounts", "Contacts"] = "Accounts"
    crm_id: str | None = Field(default=None, min_length=1, max_length=50, pattern=SUGAR_ID_PATTERN)
    contact: ContactDocument | None = Field(default=None,
                                            description="the contact itself, pushed first when not in Xero")
    xero_contact_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{36}$")

    @model_validator(mode="after")
    def _identified(self) -> ContactRef:
        if not (self.crm_id or self.contact or self.xero_contact_id):
            raise ValueError("the contact needs crm_id, an inline contact or xero_contact_id")
        if self.contact and self.crm_id and self.contact.crm_id != self.crm_id:
            raise ValueError("contact.crm_id differs from crm_id")
        return self

    @property
    def key(self) -> tuple[str, str] | None:
        crm_id = self.crm_id or (self.contact.crm_id if self.contact else None)
        module = self.contact.crm_module if self.contact else self.crm_module
        return (module, crm_id) if crm_id else None


class TradeDocument(Strict):
    """What every trade document carries."""

    kind: DocumentKind
    crm_module: str = Field(pattern=CRM_MODULE, description="the CRM module of the record (Quotes, a custom module)")
    crm_id: str = Field(min_length=1, max_length=100, pattern=DOCUMENT_KEY_PATTERN,
                        description="the CRM record's id (a Sugar id whenever write_back is on)")
    contact: ContactRef
    lines: list[LineDocument] = Field(min_length=1, max_length=500)
    number: str | None = Field(default=None, min_length=1, max_length=255,
                               description="document number; left out: Xero numbers it")
    reference: str | None = Field(default=None, max_length=TEXT_ACCEPTED,
                                  description="longer than Xero's 255: cut, with a warning")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$",
                                 description="ISO 4217 code enabled in Xero; left out: the base currency")
    date: dt.date | None = Field(default=None, description="left out: today")
    due_date: dt.date | None = Field(default=None, description="left out: from payment_terms or the configured default")
    payment_terms: str | None = Field(default=None, max_length=100,
                                      description="CRM payment terms, turned into days by the configuration")
    status: Literal["DRAFT", "SUBMITTED", "AUTHORISED"] | None = Field(
        default=None, description="left out: the configured status for this kind")
    line_amount_types: Literal["Exclusive", "Inclusive", "NoTax"] = "Exclusive"
    expected_total: Money | None = Field(default=None, description="the CRM's total: checked to the cent")
    expected_tax: Money | None = Field(default=None, description="the CRM's tax total: checked to the cent")
    cancelled: bool = Field(default=False, description="cancelled or deleted in the CRM: end it in Xero")
    write_back: bool = Field(default=True, description="write the Xero result onto the CRM record")
    crm_modified: CrmModified = None
    truncated: Truncated

    @model_validator(mode="after")
    def _fit_xero(self) -> TradeDocument:
        notes: list[str] = []
        self.reference = fit(self.reference, 255, "the reference", notes)
        for number, line in enumerate(self.lines, start=1):
            line.description = fit(line.description, 4000, f"line {number}'s description", notes)
        if notes:
            self.truncated = [*self.truncated, *(n for n in notes if n not in self.truncated)]
        return self

    @model_validator(mode="after")
    def _written_back_to_a_record(self) -> TradeDocument:
        # Write-back puts crm_id into a Sugar URL: it must be an id, not merely a key.
        if self.write_back and not re.match(SUGAR_ID_PATTERN, self.crm_id):
            raise ValueError("crm_id is not a Sugar record id (up to 36 letters, digits, '_', '-', '.'; "
                             "not starting with '.'), which write_back needs")
        return self

    @model_validator(mode="after")
    def _dates(self) -> TradeDocument:
        if self.date and self.due_date and self.due_date < self.date:
            raise ValueError("due_date is before date")
        return self


class SalesInvoiceDocument(TradeDocument):
    """A sales invoice (Xero ACCREC)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", json_schema_extra={"examples": [{
        "kind": "sales", "crm_module": "Memberships", "crm_id": "m-2027-0042",
        "contact": {"crm_id": "4f1e6a7c-2b3d-11ef-9a1c-0242ac120002"},
        "reference": "Membership 2027", "currency": "SGD", "date": "2027-01-01", "due_date": "2027-01-31",
        "lines": [{"description": "Annual membership", "quantity": "1", "unit_amount": "480.00",
                   "tax_class": "Taxable", "tax_rate": "9"}],
        "expected_total": "523.20",
    }]})

    kind: Literal["sales"] = "sales"


class PurchaseDocument(TradeDocument):
    """A purchase: a bill (Xero ACCPAY) or, when configured, a purchase order. Commission bills
    are purchases whose contact is the agent's supplier contact."""

    model_config = ConfigDict(defer_build=True, extra="forbid", json_schema_extra={"examples": [{
        "kind": "purchase", "crm_module": "Property_Sales", "crm_id": "ps-1187",
        "contact": {"contact": {"crm_module": "Accounts", "crm_id": "agent-77", "name": "Tan Realty Agency",
                                "is_supplier": True}},
        "reference": "Commission 14 Harbour Road", "date": "2026-11-27", "due_date": "2026-12-27",
        "lines": [{"description": "Commission 2% on 1,250,000.00", "unit_amount": "25000.00",
                   "account_code": "310", "tax_class": "Taxable", "tax_rate": "9"}],
        "write_back": False,
    }]})

    kind: Literal["purchase"] = "purchase"
    deliver_as: Literal["bill", "purchase_order"] | None = Field(
        default=None, description="left out: the configured default (a bill)")
    delivery_date: dt.date | None = Field(default=None, description="purchase orders: expected delivery")

    @model_validator(mode="after")
    def _no_discounts(self) -> PurchaseDocument:
        if any(line.discount_rate is not None or line.discount_amount is not None for line in self.lines):
            raise ValueError("Xero takes discounts on sales documents only; put the net price on the bill")
        return self


class QuoteDocument(TradeDocument):
    """A CRM quote as a Xero Quote, following its stage."""

    kind: Literal["quote"] = "quote"
    quote_status: Literal["DRAFT", "SENT", "ACCEPTED", "DECLINED", "DELETED"] = "SENT"
    expiry_date: dt.date | None = None
    title: str | None = Field(default=None, max_length=100)


AnyTradeDocument = Annotated[SalesInvoiceDocument | PurchaseDocument | QuoteDocument, Field(discriminator="kind")]


# ---- the Xero side of a pushed document ------------------------------------------------------
XeroTarget = Literal["ACCREC", "ACCPAY", "QUOTE", "PURCHASEORDER", "ACCRECCREDIT", "ACCPAYCREDIT"]
ZERO = Decimal("0.00")


class PaymentSummary(BaseModel):
    model_config = ConfigDict(defer_build=True)

    payment_id: str | None = None
    date: dt.date | None = None
    amount: Decimal = ZERO
    reference: str | None = None
    status: str | None = None


class XeroDocumentState(BaseModel):
    """What Xero last said about one document: the stored truth that write-back, billing rules and
    the drift report read. ``updated_utc`` (Xero's UpdatedDateUTC, ISO-8601) orders states: an
    older state never replaces a newer one."""

    model_config = ConfigDict(defer_build=True)

    target: XeroTarget
    xero_id: str
    number: str | None = None
    reference: str | None = None
    status: str
    contact_id: str | None = None
    currency: str | None = None
    date: dt.date | None = None
    due_date: dt.date | None = None
    fully_paid_on: dt.date | None = None
    total: Decimal = ZERO
    total_tax: Decimal = ZERO
    amount_due: Decimal = ZERO
    amount_paid: Decimal = ZERO
    amount_credited: Decimal = ZERO
    payments: list[PaymentSummary] = Field(default_factory=list)
    url: str | None = Field(default=None, description="online invoice URL when known, else the Xero app link")
    updated_utc: str | None = None
    line_ids: dict[str, str] = Field(default_factory=dict, description="CRM line id → Xero LineItemID")

    @property
    def has_payments(self) -> bool:
        return self.amount_paid > 0 or any((p.status or "AUTHORISED") != "DELETED" for p in self.payments)

    @property
    def has_credit_allocated(self) -> bool:
        """A credit note (or prepayment, overpayment) is allocated: Xero then refuses edits and
        voiding ("has a payment or credit note allocated") just as for a payment."""
        return self.amount_credited > 0

    @property
    def locked(self) -> bool:
        """Xero no longer takes edits: payments or credit applied, paid, voided or deleted."""
        return self.has_payments or self.has_credit_allocated or self.status in {"PAID", "VOIDED", "DELETED",
                                                                                 "INVOICED"}


class DocumentChange(BaseModel):
    """A pushed document whose Xero state moved (from a webhook, a reconcile pass or a push):
    what billing rules and write-back act on. ``before`` is None the first time it is seen."""

    model_config = ConfigDict(defer_build=True)

    tenant_id: str
    crm_module: str
    crm_id: str
    before: XeroDocumentState | None = None
    after: XeroDocumentState
