"""Sugar Web Logic Hook bodies, Sugar 8 to 14 shapes (``../shared/reference/sugarcrm.md``).

Sugar sends REST-formatted values: strings for most fields, arrays for ``email``, and it adds
fields freely between versions, so every model keeps unknown fields (``extra="allow"``) and only
the fields the connector reads are declared.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from shared.models.ids import SUGAR_ID_OR_EMPTY_PATTERN, SUGAR_ID_PATTERN


class SugarEmail(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    email_address: str = Field(max_length=255)
    primary_address: bool = False
    invalid_email: bool = False
    opt_out: bool = False


class SugarRecord(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    id: str = Field(min_length=1, max_length=50, pattern=SUGAR_ID_PATTERN,
                    description="Sugar record id (becomes Xero ContactNumber)")
    date_modified: str | None = None
    deleted: bool | int | str | None = False
    email: list[SugarEmail] | None = None
    email1: str | None = None
    currency_id: str | None = None
    currency_name: str | None = None


class SugarAccount(SugarRecord):
    # Required in Sugar, so absent only when a Data Privacy erasure emptied it (see ``erased_fields``);
    # longer than Xero's 255 is cut, with a warning
    name: str | None = Field(default=None, min_length=1, max_length=20_000)  # "" is no name at all: 422
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

    @model_validator(mode="after")
    def _name_absent_or_given(self) -> SugarAccount:
        # absent: a Data Privacy erasure; present but blank: nothing Xero could take
        if "name" in self.model_fields_set and not (self.name or "").strip():
            raise ValueError("name is empty: an Account needs a name (an erasure leaves it out instead)")
        return self


class SugarContact(SugarRecord):
    first_name: str | None = Field(default=None, max_length=255)
    # Required in Sugar, so absent only when a Data Privacy erasure emptied it (see ``erased_fields``)
    last_name: str | None = Field(default=None, min_length=1, max_length=255)
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

    @model_validator(mode="after")
    def _last_name_absent_or_given(self) -> SugarContact:
        # absent: a Data Privacy erasure; present but blank: nothing Xero could take
        if "last_name" in self.model_fields_set and not (self.last_name or "").strip():
            raise ValueError("last_name is empty: a Contact needs one (an erasure leaves it out instead)")
        return self


# Sugar's core bean classes and their modules. A hook's ``bean`` is the PHP class name, so a core
# bean overridden as Sugar's developer guide documents ("Extending core beans": class CustomAccount
# extends Account, registered in custom/Extension/application/Ext/Include) arrives as CustomAccount.
CORE_BEAN_MODULES = {"Account": "Accounts", "Contact": "Contacts", "Quote": "Quotes",
                     "ProductTemplate": "ProductTemplates", "Product": "Products"}
MODULE_CORE_BEANS = {module: bean for bean, module in CORE_BEAN_MODULES.items()}


def bean_module(bean: Any, configured: dict[str, str] | None = None) -> str | None:
    """The module of a hook's bean class: configured classes first (mapping ``sugar_beans``), then
    the core classes and their ``Custom<Class>`` overrides; None when unknown."""
    name = str(bean or "")
    if configured and name in configured:
        return configured[name]
    if name in CORE_BEAN_MODULES:
        return CORE_BEAN_MODULES[name]
    if name.startswith("Custom") and name[len("Custom"):] in CORE_BEAN_MODULES:
        return CORE_BEAN_MODULES[name[len("Custom"):]]
    return None


def core_bean(bean: Any, configured: dict[str, str] | None = None) -> str | None:
    """The core class a hook's bean stands for (``CustomAccount`` → ``Account``)."""
    module = bean_module(bean, configured)
    return MODULE_CORE_BEANS.get(module) if module else None


def _configured_beans() -> dict[str, str]:
    from shared.mapping.settings import mapping_file

    return mapping_file().defaults.sugar_beans


def _as_core_bean(value: Any) -> Any:
    return core_bean(value, _configured_beans()) or value


SugarEvent = Literal[
    "after_save", "after_delete", "after_relationship_add", "after_relationship_delete",
]


class SugarHookBase(BaseModel):
    """Fields common to every Web Logic Hook body. ``after_save`` adds ``isUpdate`` (still sent by
    Sugar 13.0.3's WebLogicHook) and ``dataChanges``; relationship events add ``related_id``,
    ``related_module``, ``link``. Hook data has no ``_module`` or ``_acl`` (the REST API adds those)."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    bean: str = Field(description="Sugar's PHP class name: Account, Contact, Quote, ProductTemplate")
    event: SugarEvent
    isUpdate: bool | None = None  # noqa: N815 - Sugar's own field name
    dataChanges: dict[str, Any] | list[Any] | None = None  # noqa: N815
    # Relationship events (Sugar 8) name the other side.
    related_id: str | None = None
    related_module: str | None = None
    link: str | None = None


class AccountHook(SugarHookBase):
    bean: Annotated[Literal["Account"], BeforeValidator(_as_core_bean)]
    data: SugarAccount


class ContactHook(SugarHookBase):
    bean: Annotated[Literal["Contact"], BeforeValidator(_as_core_bean)]
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
    bean: Annotated[Literal["ProductTemplate"], BeforeValidator(_as_core_bean)]
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
    bean: Annotated[Literal["Quote"], BeforeValidator(_as_core_bean)]
    data: SugarQuote
