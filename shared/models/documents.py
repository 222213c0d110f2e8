"""The connector's own documents: what custom Sugar modules and logic hooks post, and the
canonical form every Sugar hook is turned into before it is queued.

Lengths follow Xero's limits (``xero_accounting.yaml``) so a document that validates here
can always be sent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

CurrencyCode = Field(default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code enabled in Xero")


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["billing", "shipping"] = Field(
        description="billing becomes Xero's POBOX address, shipping its STREET address")
    lines: list[str] = Field(default_factory=list, max_length=4,
                             description="street lines, at most 4 of at most 500 characters")
    city: str | None = Field(default=None, max_length=255)
    region: str | None = Field(default=None, max_length=255)
    postal_code: str | None = Field(default=None, max_length=50)
    country: str | None = Field(default=None, max_length=50)


class Person(BaseModel):
    """A contact person on an organisation (Xero keeps at most 5)."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    include_in_emails: bool = False


class ContactDocument(BaseModel):
    """A customer or supplier as the connector pushes it to Xero."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "crm_module": "Accounts", "crm_id": "4f1e6a7c-2b3d-11ef-9a1c-0242ac120002",
        "name": "Harbour View Properties Pte Ltd", "email": "accounts@harbourview.example.sg",
        "addresses": [{"kind": "billing", "lines": ["10 Marina Boulevard"], "city": "Singapore",
                       "postal_code": "018983", "country": "Singapore"}],
    }]})

    crm_module: Literal["Accounts", "Contacts"] = Field(
        default="Accounts", description="Sugar module the record lives in")
    crm_id: str = Field(min_length=1, max_length=50,
                        description="CRM record id; becomes Xero's ContactNumber")
    name: str = Field(min_length=1, max_length=255, description="Xero contact name (unique in Xero)")
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    account_number: str | None = Field(default=None, max_length=50)
    tax_number: str | None = Field(default=None, max_length=50)
    company_number: str | None = Field(default=None, max_length=50)
    website: str | None = Field(default=None, max_length=2000)
    phone: str | None = Field(default=None, max_length=50)
    mobile: str | None = Field(default=None, max_length=50)
    fax: str | None = Field(default=None, max_length=50)
    addresses: list[Address] = Field(default_factory=list, max_length=2)
    persons: list[Person] = Field(default_factory=list, max_length=5)
    currency: str | None = CurrencyCode
    is_customer: bool | None = None
    is_supplier: bool | None = None
    parent_crm_id: str | None = Field(
        default=None, max_length=50,
        description="for a Sugar Contact: the Account it belongs to")
    deleted: bool = Field(default=False, description="the CRM record was deleted: archive in Xero")
    erased: list[str] = Field(
        default_factory=list, max_length=50,
        description="a Data Privacy erasure in the CRM: the personal fields it erased (Xero fields, e.g. FirstName, "
                    "EmailAddress, Phones); they are blanked in Xero, or the contact archived, as configured")
    erased_person: Person | None = Field(
        default=None, description="a Sugar Contact erased in the CRM: the person as it was before (from the hook's "
                                  "dataChanges), to find and remove it from its Account's Xero contact")
    crm_modified: str | None = Field(
        default=None, description="when the record was saved in the CRM (date_modified), ISO-8601 with its UTC "
                                  "offset; compared as an instant: the newest save wins and an older one than the "
                                  "last pushed is ignored. Left out: the time the connector received the callout")


ItemPrice = Annotated[Decimal | None, Field(default=None, max_digits=22, decimal_places=4,
                                            description="unit price, at most 4 decimals")]


class ItemDocument(BaseModel):
    """A catalogue entry as the connector pushes it to Xero (an untracked Item)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "crm_module": "ProductTemplates", "crm_id": "pt-lift-insp", "code": "SVC-LIFT-02",
        "name": "Lift inspection", "description": "Statutory six-monthly lift inspection, per lift",
        "sales_price": "1170.0000", "purchase_price": "640.0000", "tax_class": "Taxable",
    }]})

    crm_module: Literal["ProductTemplates"] = Field(
        default="ProductTemplates", description="Sugar module the record lives in")
    crm_id: str = Field(min_length=1, max_length=50, description="CRM record id")
    code: str | None = Field(
        default=None, min_length=1, max_length=30, pattern=r"\S",
        description="Xero item Code (unique in Xero); left out: derived from the name and CRM id")
    name: str = Field(min_length=1, max_length=50, description="Xero item name")
    description: str | None = Field(default=None, max_length=4000, description="sales description")
    sales_price: ItemPrice = None
    purchase_price: ItemPrice = None
    tax_class: str | None = Field(default=None, max_length=50,
                                  description="CRM tax class, turned into Xero tax types by the "
                                              "mapping configuration's catalogue section")
    is_purchased: bool | None = Field(default=None,
                                      description="left out: purchased when a purchase price is given")
    active: bool = Field(default=True, description="false: no longer sold (IsSold false in Xero)")
    deleted: bool = Field(default=False, description="the CRM record was deleted: no longer sold")
    crm_modified: str | None = Field(
        default=None, description="when the record was saved in the CRM (date_modified), ISO-8601 with its UTC "
                                  "offset; compared as an instant: the newest save wins and an older one than the "
                                  "last pushed is ignored. Left out: the time the connector received the callout")
