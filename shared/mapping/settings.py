"""The mapping configuration: one documented YAML file (``shared/mapping/mapping.yaml`` by
default, or the file named by ``MAPPING_CONFIG``), with per-tenant overrides, validated when a
function starts so a CRM admin's mistake is refused with a message they can act on.

Ownership: the CRM owns identity and addresses (it is where customers are entered); Xero owns
financial fields (status, amounts, payments), which only ever flow back to the CRM.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.models.ids import STOCK_MODULES, SUGAR_MODULE_PATTERN

DEFAULT_PATH = Path(__file__).with_name("mapping.yaml")
CRM_FIELD = r"^[a-z][a-z0-9_]*$"


class Strict(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class ContactRules(Strict):
    name_conflict: Literal["link_or_disambiguate", "fail"] = Field(
        default="link_or_disambiguate",
        description="a name taken by another active Xero contact: link when email or number confirms "
                    "it is the same party, else push under a deterministic disambiguated name; or fail")
    archived_contact: Literal["restore", "report"] = "restore"
    on_crm_delete: Literal["archive", "ignore"] = "archive"
    sugar_contacts_as: Literal["contact_persons", "own_contacts"] = Field(
        default="contact_persons",
        description="a Sugar Contact with an Account becomes a contact person on the Account's Xero "
                    "contact (Xero keeps at most 5), or a Xero contact of its own")
    account_number_field: str | None = Field(default=None, pattern=CRM_FIELD,
                                             description="CRM field holding the Xero account number")
    tax_number_field: str | None = Field(default=None, pattern=CRM_FIELD)
    on_erasure: Literal["blank", "archive"] = Field(
        default="blank",
        description="a Data Privacy erasure in the CRM: blank the personal fields the CRM owns on the Xero "
                    "contact (name parts, email, phones), keeping its financial history; or also archive it")


class CatalogueRules(Strict):
    sales_account_code: str = Field(default="200", min_length=1, max_length=10)
    purchase_account_code: str = Field(default="300", min_length=1, max_length=10)
    sales_tax_types: dict[str, str] = Field(
        default_factory=lambda: {"Taxable": "OUTPUT", "Non-Taxable": "EXEMPTOUTPUT"},
        description="Sugar tax_class → Xero TaxType on sales")
    purchase_tax_types: dict[str, str] = Field(
        default_factory=lambda: {"Taxable": "INPUT", "Non-Taxable": "EXEMPTINPUT"})


SugarQuoteStage = str
XeroQuoteStatus = Literal["DRAFT", "SENT", "ACCEPTED", "DECLINED", "DELETED"]
DocumentStatus = Literal["DRAFT", "SUBMITTED", "AUTHORISED"]


class TrackingField(Strict):
    category: str = Field(min_length=1, max_length=100, description="Xero tracking category name")
    crm_field: str = Field(pattern=CRM_FIELD, description="CRM field on the quote whose value is the option")


class RoundingRules(Strict):
    policy: Literal["rounding_line", "warn"] = Field(
        default="rounding_line",
        description="Xero's per-line tax rounding makes its total differ from the CRM's: add a line "
                    "that brings it to the CRM's total, or push as is with a warning on the record")
    account_code: str = Field(default="860", min_length=1, max_length=10,
                              description="account for rounding lines (Xero's default chart: 860 Rounding)")
    description: str = Field(default="Rounding", min_length=1, max_length=100)
    tax_type: str = Field(default="NONE", min_length=1, max_length=50, description="rounding lines carry no tax")
    max_difference: Decimal = Field(
        default=Decimal("1.00"), ge=0, decimal_places=2,
        description="a larger difference is not rounding: the job fails and nothing is sent")


class InvoiceRules(Strict):
    quote_stage: SugarQuoteStage = Field(default="Closed Accepted",
                                         description="the quote stage that makes a sales invoice")
    sales_status: DocumentStatus = "AUTHORISED"
    purchase_status: DocumentStatus = Field(default="SUBMITTED",
                                            description="bills wait for approval in Xero by default")
    purchases_as: Literal["bill", "purchase_order"] = "bill"
    tax_rates: dict[str, str] = Field(
        default_factory=dict,
        description="for taxable quote lines: the quote's tax rate (Sugar taxrate_id, or the percent as "
                    "'9') → Xero TaxType; left out: the catalogue's tax type for the line's tax class")
    payment_terms: dict[str, int] = Field(
        default_factory=lambda: {"Due on Receipt": 0, "Net 7": 7, "Net 15": 15, "Net 30": 30, "Net 45": 45,
                                 "Net 60": 60},
        description="CRM payment terms → days from the invoice date to its due date")
    default_due_days: int = Field(default=30, ge=0, le=3650)
    tracking: list[TrackingField] = Field(default_factory=list, max_length=2)
    shipping_description: str = Field(default="Shipping", min_length=1, max_length=100)
    shipping_account_code: str | None = Field(default=None, max_length=10,
                                              description="left out: the catalogue's sales account")
    shipping_tax_class: str = Field(default="Non-Taxable", max_length=50)
    rounding: RoundingRules = RoundingRules()
    cancel_with_payments: Literal["credit_note", "report"] = Field(
        default="credit_note",
        description="a cancelled CRM document whose Xero invoice has payments: raise a credit note for "
                    "what was invoiced, or only report it on the record")
    xero_quotes: bool = Field(default=False, description="also keep a Xero Quote for each CRM quote sent")
    quote_stages: dict[SugarQuoteStage, XeroQuoteStatus | None] = Field(
        default_factory=lambda: {"Draft": None, "Negotiation": "SENT", "Delivered": "SENT", "On Hold": "SENT",
                                 "Confirmed": "SENT", "Closed Accepted": "ACCEPTED", "Closed Lost": "DECLINED",
                                 "Closed Dead": "DECLINED"},
        description="CRM quote stage → Xero Quote status (null: not in Xero yet)")


class XeroUpdates(Strict):
    unknown_documents: Literal["ignore", "import"] = Field(
        default="ignore", description="invoices the connector did not create: ignore, or import into import_module")
    import_module: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
                                      description="custom CRM module receiving imported invoices")
    contact_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Xero-owned contact values written to the CRM record on CONTACT events "
                    "(e.g. {balance_receivable: xero_balance_c}); empty: CONTACT events change nothing")


class XeroInvoiceRecords(Strict):
    """Every Xero invoice, bill and credit note as a record of the package's Xero Invoices module."""

    enabled: bool = Field(default=False, description="fill the Xero Invoices module (install the package first)")
    module: str = Field(default="xero_Invoices", pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
                        description="the CRM module (the package's is xero_Invoices)")
    related_fields: dict[Literal["opportunity_id", "case_id"], str] = Field(
        default_factory=dict,
        description="relate the record to an Opportunity or a Case: the field of the originating CRM record "
                    "holding its id, e.g. {opportunity_id: opportunity_id, case_id: case_id_c}")

    @field_validator("related_fields")
    @classmethod
    def _fields(cls, fields: dict[str, str]) -> dict[str, str]:
        import re

        for name, crm_field in fields.items():
            if not re.match(CRM_FIELD, crm_field):
                raise ValueError(f"{name} → {crm_field!r} is not a CRM field name (lower case, digits, _)")
        return fields


class WriteBack(Strict):
    enabled: bool = True
    modules: list[str] = Field(default_factory=list, description=(
        "custom CRM modules whose records may post the connector's own documents and receive its "
        "write-back; Accounts, Contacts, ProductTemplates and Quotes are always allowed"))
    fields: dict[str, str] = Field(default_factory=lambda: {
        "xero_id": "xero_id_c", "xero_number": "xero_number_c", "status": "xero_status_c",
        "amount_due": "xero_amount_due_c", "amount_paid": "xero_amount_paid_c",
        "paid_date": "xero_paid_date_c", "url": "xero_url_c", "sync_status": "xero_sync_status_c",
        "last_error": "xero_last_error_c", "synced_at": "xero_synced_at_c", "total": "xero_total_c",
        "amount_credited": "xero_amount_credited_c", "payments": "xero_payments_c",
    }, description="what the connector writes → the CRM field it goes into")

    @field_validator("modules")
    @classmethod
    def _module_names(cls, modules: list[str]) -> list[str]:
        for module in modules:
            if not re.match(SUGAR_MODULE_PATTERN, module):
                raise ValueError(f"{module!r} is not a CRM module name")
        return modules

    @field_validator("fields")
    @classmethod
    def _known_and_custom(cls, fields: dict[str, str]) -> dict[str, str]:
        known = {"xero_id", "xero_number", "status", "amount_due", "amount_paid", "paid_date", "url",
                 "sync_status", "last_error", "synced_at", "total", "amount_credited", "payments"}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown write-back values {unknown}; known: {sorted(known)}")
        for value, field in fields.items():
            if not field.endswith("_c"):
                raise ValueError(f"{value} → {field}: the connector only writes custom fields (ending _c)")
        return fields


class MappingConfig(Strict):
    contacts: ContactRules = ContactRules()
    catalogue: CatalogueRules = CatalogueRules()
    invoices: InvoiceRules = InvoiceRules()
    xero_updates: XeroUpdates = XeroUpdates()
    xero_invoices: XeroInvoiceRecords = XeroInvoiceRecords()
    write_back: WriteBack = WriteBack()
    currencies: dict[str, str] = Field(
        default_factory=lambda: {"-99": ""},
        description="Sugar currency_id → ISO code; '' means the organisation's base currency")
    sugar_beans: dict[str, str] = Field(
        default_factory=dict,
        description="Sugar bean class (a hook's 'bean') → module, for classes overridden beyond the core "
                    "Custom<Class> ones known by default (e.g. {'AcmeAccount': 'Accounts'})")


class Organisations(Strict):
    """One CRM, several Xero organisations: each document goes to the organisation its CRM field
    says (an Account's country, a team, a custom ``company_c``), else to the default."""

    names: dict[str, str] = Field(min_length=1, description="organisation name → Xero tenant id (each onboarded "
                                                            "with `sugar-xero connect`)")
    default: str = Field(description="the organisation (a name) documents go to when no route matches")
    route_by: str | None = Field(
        default=None, pattern=r"^(account\.)?[a-z][a-z0-9_]*$",
        description="the CRM field deciding: a field of the document's record (team_id, company_c) or of its "
                    "Account (account.billing_address_country)")
    routes: dict[str, str] = Field(default_factory=dict,
                                   description="value of route_by → organisation name (compared without case)")

    @model_validator(mode="after")
    def _known_names(self) -> Organisations:
        unknown = sorted({self.default, *self.routes.values()} - set(self.names))
        if unknown:
            raise ValueError(f"organisations {unknown} are not in names {sorted(self.names)}")
        if len(set(self.names.values())) != len(self.names):
            raise ValueError("two organisation names have the same Xero tenant id")
        return self

    def tenant_for(self, value: Any) -> str:
        """The tenant id for a CRM value (None or unrouted: the default organisation's)."""
        wanted = str(value or "").strip().casefold()
        for key, name in self.routes.items():
            if key.strip().casefold() == wanted and wanted:
                return self.names[name]
        return self.names[self.default]

    def name_of(self, tenant_id: str) -> str | None:
        return next((name for name, tid in self.names.items() if tid == tenant_id), None)


class MappingFile(Strict):
    version: Literal[1] = 1
    defaults: MappingConfig = MappingConfig()
    tenants: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="per Xero tenant id: overrides of defaults")
    organisations: Organisations | None = Field(
        default=None, description="several Xero organisations from one CRM; left out: one organisation")

    def allowed_modules(self) -> frozenset[str]:
        """Every CRM module a document may name: Sugar's stock ones and those the configuration
        names (write-back modules and the import module, in the defaults or any organisation)."""
        configs = [self.defaults, *(self.for_tenant(tenant) for tenant in self.tenants)]
        named = {module for config in configs for module in config.write_back.modules}
        named |= {config.xero_updates.import_module for config in configs if config.xero_updates.import_module}
        return STOCK_MODULES | named

    def for_tenant(self, tenant_id: str | None) -> MappingConfig:
        overrides = self.tenants.get(tenant_id or "", {})
        if not overrides:
            return self.defaults
        return MappingConfig.model_validate(_deep_merge(self.defaults.model_dump(), overrides))


class MappingConfigError(ValueError):
    """The mapping file cannot be used; the message says where and what to change."""


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _deep_merge(base[key], value) if isinstance(value, dict) and isinstance(
            base.get(key), dict) else value
    return merged


# libyaml's safe loader where PyYAML was built with it: the same documents, read several times
# faster than the pure-Python one, which weighs on every cold start (the first event reads this file).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_mapping_file(path: Path | str | None = None) -> MappingFile:
    path = Path(path or os.environ.get("MAPPING_CONFIG") or DEFAULT_PATH)
    try:
        data = yaml.load(path.read_text(), Loader=_SAFE_LOADER) or {}  # noqa: S506 - a safe loader
    except OSError as error:
        raise MappingConfigError(f"cannot read the mapping file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise MappingConfigError(f"{path} is not valid YAML: {error}") from error
    try:
        mapping = MappingFile.model_validate(data)
        for tenant_id in mapping.tenants:  # an override must validate too, found now not later
            mapping.for_tenant(tenant_id)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise MappingConfigError(f"{path}: {problems}") from error
    return mapping


@lru_cache(maxsize=1)
def mapping_file() -> MappingFile:
    return load_mapping_file()
