"""Sugar Web Logic Hook bodies, Sugar 8 to 14 shapes (``../shared/reference/sugarcrm.md``).

Sugar sends REST-formatted values: strings for most fields, arrays for ``email``, and it adds
fields freely between versions, so every model keeps unknown fields (``extra="allow"``) and only
the fields the connector reads are declared.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from shared.models.ids import SUGAR_ID_OR_EMPTY_PATTERN, SUGAR_ID_PATTERN


class SugarEmail(BaseModel):
    model_config = ConfigDict(extra="allow")

    email_address: str = Field(max_length=255)
    primary_address: bool = False
    invalid_email: bool = False
    opt_out: bool = False


class SugarRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=50, pattern=SUGAR_ID_PATTERN,
                    description="Sugar record id (becomes Xero ContactNumber)")
    date_modified: str | None = None
    deleted: bool | int | str | None = False
    email: list[SugarEmail] | None = None
    email1: str | None = None
    currency_id: str | None = None
    currency_name: str | None = None


class SugarAccount(SugarRecord):
    name: str = Field(min_length=1, max_length=20_000)  # longer than Xero's 255: cut, with a warning
    account_type: str | None = None
    phone_office: str | None = None
    phone_fax: str | None = None
    phone_alternate: str | None = None
    website: str | None = None
    billing_address_street: str | None = None
    billing_address_city: str | None = None
    billing_address_state: str | None = None
    billing_address_postalcode: str | None = None
    billing_address_country: str | None = None
    shipping_address_street: str | None = None
    shipping_address_city: str | None = None
    shipping_address_state: str | None = None
    shipping_address_postalcode: str | None = None
    shipping_address_country: str | None = None


class SugarContact(SugarRecord):
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str = Field(min_length=1, max_length=255)
    account_id: str | None = Field(default=None, pattern=SUGAR_ID_OR_EMPTY_PATTERN)
    account_name: str | None = None
    title: str | None = None
    phone_work: str | None = None
    phone_mobile: str | None = None
    phone_fax: str | None = None
    primary_address_street: str | None = None
    primary_address_city: str | None = None
    primary_address_state: str | None = None
    primary_address_postalcode: str | None = None
    primary_address_country: str | None = None


SugarEvent = Literal[
    "after_save", "after_delete", "after_relationship_add", "after_relationship_delete",
]


class SugarHookBase(BaseModel):
    """Fields common to every Web Logic Hook body (Sugar 8 adds ``isUpdate``; 12 drops it)."""

    model_config = ConfigDict(extra="allow")

    bean: str = Field(description="Sugar's PHP class name: Account, Contact, Quote, ProductTemplate")
    event: SugarEvent
    isUpdate: bool | None = None  # noqa: N815 - Sugar's own field name
    dataChanges: dict[str, Any] | list[Any] | None = None  # noqa: N815
    # Relationship events (Sugar 8) name the other side.
    related_id: str | None = None
    related_module: str | None = None
    link: str | None = None


class AccountHook(SugarHookBase):
    bean: Literal["Account"]
    data: SugarAccount


class ContactHook(SugarHookBase):
    bean: Literal["Contact"]
    data: SugarContact


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _an_amount_xero_keeps(value: Decimal | None) -> Decimal | None:
    if value is not None and (not value.is_finite() or abs(value) >= AMOUNT_LIMIT):
        raise ValueError(f"must be a finite amount below {AMOUNT_LIMIT:,.0f}")
    return value


AMOUNT_LIMIT = Decimal("1e15")  # beyond what any invoice holds, and within what Decimal arithmetic keeps exact
SugarAmount = Annotated[Decimal | None, BeforeValidator(_blank_is_none), AfterValidator(_an_amount_xero_keeps)]
"""Sugar sends amounts as 6-decimal strings ("1170.000000"), or "" when the field is empty."""


class SugarProductTemplate(SugarRecord):
    """A catalogue entry (module ProductTemplates)."""

    name: str = Field(min_length=1, max_length=20_000)  # longer than Xero's 50: cut, with a warning
    mft_part_num: str | None = None
    vendor_part_num: str | None = None
    discount_price: SugarAmount = Field(default=None, description="the selling price")
    cost_price: SugarAmount = None
    list_price: SugarAmount = None
    tax_class: str | None = None
    description: str | None = None
    status: str | None = None


class ProductTemplateHook(SugarHookBase):
    bean: Literal["ProductTemplate"]
    data: SugarProductTemplate


class SugarQuote(SugarRecord):
    """A quote (module Quotes). Its lines are not in the hook: the worker reads them through REST."""

    name: str | None = Field(default=None, max_length=20_000)
    quote_num: int | str | None = None
    quote_stage: str = Field(min_length=1, max_length=100)
    billing_account_id: str | None = Field(default=None, max_length=50, pattern=SUGAR_ID_OR_EMPTY_PATTERN)
    billing_account_name: str | None = None
    billing_contact_id: str | None = None
    taxrate_id: str | None = None
    taxrate_value: SugarAmount = None
    subtotal: SugarAmount = None
    discount: SugarAmount = None
    new_sub: SugarAmount = None
    tax: SugarAmount = None
    shipping: SugarAmount = None
    total: SugarAmount = None
    date_quote_expected_closed: str | None = None
    purchase_order_num: str | None = Field(default=None, max_length=100)
    payment_terms: str | None = Field(default=None, max_length=100)
    assigned_user_id: str | None = None
    opportunity_id: str | None = None


class QuoteHook(SugarHookBase):
    bean: Literal["Quote"]
    data: SugarQuote
