"""The mapping configuration: one documented YAML file (``shared/mapping/mapping.yaml`` by
default, or the file named by ``MAPPING_CONFIG``), with per-tenant overrides, validated when a
function starts so a CRM admin's mistake is refused with a message they can act on.

Ownership: the CRM owns identity and addresses (it is where customers are entered); Xero owns
financial fields (status, amounts, payments), which only ever flow back to the CRM.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_PATH = Path(__file__).with_name("mapping.yaml")
CRM_FIELD = r"^[a-z][a-z0-9_]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class CatalogueRules(Strict):
    sales_account_code: str = Field(default="200", min_length=1, max_length=10)
    purchase_account_code: str = Field(default="300", min_length=1, max_length=10)
    sales_tax_types: dict[str, str] = Field(
        default_factory=lambda: {"Taxable": "OUTPUT", "Non-Taxable": "EXEMPTOUTPUT"},
        description="Sugar tax_class → Xero TaxType on sales")
    purchase_tax_types: dict[str, str] = Field(
        default_factory=lambda: {"Taxable": "INPUT", "Non-Taxable": "EXEMPTINPUT"})


class WriteBack(Strict):
    enabled: bool = True
    fields: dict[str, str] = Field(default_factory=lambda: {
        "xero_id": "xero_id_c", "xero_number": "xero_number_c", "status": "xero_status_c",
        "amount_due": "xero_amount_due_c", "amount_paid": "xero_amount_paid_c",
        "paid_date": "xero_paid_date_c", "url": "xero_url_c", "sync_status": "xero_sync_status_c",
        "last_error": "xero_last_error_c", "synced_at": "xero_synced_at_c",
    }, description="what the connector writes → the CRM field it goes into")

    @field_validator("fields")
    @classmethod
    def _known_and_custom(cls, fields: dict[str, str]) -> dict[str, str]:
        known = {"xero_id", "xero_number", "status", "amount_due", "amount_paid", "paid_date", "url",
                 "sync_status", "last_error", "synced_at"}
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
    write_back: WriteBack = WriteBack()
    currencies: dict[str, str] = Field(
        default_factory=lambda: {"-99": ""},
        description="Sugar currency_id → ISO code; '' means the organisation's base currency")


class MappingFile(Strict):
    version: Literal[1] = 1
    defaults: MappingConfig = MappingConfig()
    tenants: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="per Xero tenant id: overrides of defaults")

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


def load_mapping_file(path: Path | str | None = None) -> MappingFile:
    path = Path(path or os.environ.get("MAPPING_CONFIG") or DEFAULT_PATH)
    try:
        data = yaml.safe_load(path.read_text()) or {}
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
