"""The connector's own documents: what custom Sugar modules and logic hooks post, and the
canonical form every Sugar hook is turned into before it is queued.

Lengths follow Xero's limits (``xero_accounting.yaml``) so a document that validates here
can always be sent.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.mapping.text import fit
from shared.models.ids import SUGAR_ID_OR_EMPTY_PATTERN, SUGAR_ID_PATTERN

# Text longer than Xero takes is accepted up to this and cut to Xero's limit with a warning:
# refusing it would leave the CRM record out of Xero with nobody told (Sugar shows no hook error).
TEXT_ACCEPTED = 20_000

# Fields every CRM document carries, described once (they are in the connector's OpenAPI).
CrmModified = Annotated[str | None, Field(
    default=None, description="when the record was saved in the CRM (date_modified), ISO-8601 with its UTC "
                              "offset; compared as an instant: the newest save wins and an older one than the "
                              "last pushed is ignored. Left out: the time the connector received the callout")]
Truncated = Annotated[list[str], Field(default_factory=list, description=(
    "filled in by the connector: what it cut to fit Xero's limits (becomes the job's warnings)"))]

CurrencyCode = Field(default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code enabled in Xero")


class Address(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid")

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

    model_config = ConfigDict(defer_build=True, extra="forbid")

    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    include_in_emails: bool = False


class ContactDocument(BaseModel):
    """A customer or supplier as the connector pushes it to Xero."""

    model_config = ConfigDict(defer_build=True, extra="forbid", json_schema_extra={"examples": [{
        "crm_module": "Accounts", "crm_id": "4f1e6a7c-2b3d-11ef-9a1c-0242ac120002",
        "name": "Harbour View Properties Pte Ltd", "email": "accounts@harbourview.example.sg",
        "addresses": [{"kind": "billing", "lines": ["10 Marina Boulevard"], "city": "Singapore",
                       "postal_code": "018983", "country": "Singapore"}],
    }]})

    crm_module: Literal["Accounts", "Contacts"] = Field(
        default="Accounts", description="Sugar module the record lives in")
    crm_id: str = Field(min_length=1, max_length=50, pattern=SUGAR_ID_PATTERN,
                        description="CRM record id; becomes Xero's ContactNumber")
    name: str = Field(min_length=1, max_length=TEXT_ACCEPTED, pattern=r"\S",
                      description="Xero contact name (unique in Xero); longer than 255: cut, with a warning")
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
        default=None, max_length=50, pattern=SUGAR_ID_OR_EMPTY_PATTERN,
        description="for a Sugar Contact: the Account it belongs to")
    deleted: bool = Field(default=False, description="the CRM record was deleted: archive in Xero")
    erased: list[str] = Field(
        default_factory=list, max_length=50,
        description="a Data Privacy erasure in the CRM: the personal fields it erased (Xero fields, e.g. FirstName, "
                    "EmailAddress, Phones); they are blanked in Xero, or the contact archived, as configured")
    erased_person: Person | None = Field(
        default=None, description="a Sugar Contact erased in the CRM: the person as it was before (from the hook's "
                                  "dataChanges), to find and remove it from its Account's Xero contact")
    crm_modified: CrmModified = None
    truncated: Truncated

    @model_validator(mode="after")
    def _fit_xero(self) -> ContactDocument:
        notes: list[str] = []
        self.name = fit(self.name, 255, "the name", notes) or self.name
        if notes:
            self.truncated = [*self.truncated, *(n for n in notes if n not in self.truncated)]
        return self


ItemPrice = Annotated[Decimal | None, Field(default=None, max_digits=22, decimal_places=4,
                                            description="unit price, at most 4 decimals")]


class ItemDocument(BaseModel):
    """A catalogue entry as the connector pushes it to Xero (an untracked Item)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", json_schema_extra={"examples": [{
        "crm_module": "ProductTemplates", "crm_id": "pt-lift-insp", "code": "SVC-LIFT-02",
        "name": "Lift inspection", "description": "Statutory six-monthly lift inspection, per lift",
        "sales_price": "1170.0000", "purchase_price": "640.0000", "tax_class": "Taxable",
    }]})

    crm_module: Literal["ProductTemplates"] = Field(
        default="ProductTemplates", description="Sugar module the record lives in")
    crm_id: str = Field(min_length=1, max_length=50, pattern=SUGAR_ID_PATTERN, description="CRM record id")
    code: str | None = Field(
        default=None, min_length=1, max_length=TEXT_ACCEPTED, pattern=r"\S",
        description="Xero item Code (unique in Xero); left out: derived from the name and CRM id; longer "
                    "than 30: a code derived from it and the CRM id, with a warning")
    name: str = Field(min_length=1, max_length=TEXT_ACCEPTED, pattern=r"\S",
                      description="Xero item name; longer than 50: cut, with a warning")
    description: str | None = Field(default=None, max_length=TEXT_ACCEPTED,
                                    description="sales description; longer than 4,000: cut, with a warning")
    sales_price: ItemPrice = None
    purchase_price: ItemPrice = None
    tax_class: str | None = Field(default=None, max_length=50,
                                  description="CRM tax class, turned into Xero tax types by the "
                                              "mapping configuration's catalogue section")
    is_purchased: bool | None = Field(default=None,
                                      description="left out: purchased when a purchase price is given")
    active: bool = Field(default=True, description="false: no longer sold (IsSold false in Xero)")
    deleted: bool = Field(default=False, description="the CRM record was deleted: no longer sold")
    crm_modified: CrmModified = None
    truncated: Truncated

    @model_validator(mode="after")
    def _fit_xero(self) -> ItemDocument:
        from shared.mapping.items import fallback_code  # the item mapping imports this module

        notes: list[str] = []
        self.name = fit(self.name, 50, "the name", notes) or self.name
        self.description = fit(self.description, 4000, "the description", notes)
        if self.code is not None and len(self.code) > 30:
            derived = fallback_code(self.code, self.crm_id)
            notes.append(f"the code {self.code[:40]!r} is longer than Xero's 30 characters; pushed as {derived}")
            self.code = derived
        if notes:
            self.truncated = [*self.truncated, *(n for n in notes if n not in self.truncated)]
        return self
