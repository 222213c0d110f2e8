"""What the CRM must have for a configuration to work: every field the mapping configuration
and the billing rules name (with its Sugar type), and the Web Logic Hooks that call the connector.

One list, two readers: ``sugar-xero sugar-package`` installs it (a Module Loadable Package) and
``sugar-xero sugar-check`` compares a live instance with it (through ``GET /metadata``). Custom
fields (``*_c``) are the package's to install; stock fields a rule reads (``billing_account_id``)
are only checked for presence.

Types are Sugar vardef types as Studio and Module Loader create them (Sugar Developer Guide,
"Creating an Installable Package that Creates New Fields",
https://support.sugarcrm.com/documentation/sugar_developer/sugar_developer_guide_14.0/cookbook/module_loadable_packages/creating_an_installable_package_that_creates_new_fields/).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode

from shared.billing.rules import Rule, RulesFile, template_names
from shared.mapping.settings import MappingConfig, MappingFile

SugarType = Literal["varchar", "enum", "decimal", "date", "datetimecombo", "url", "text", "int", "bool"]

# The values the connector writes into the sync status field (shared/usecases/writeback.py).
SYNC_STATUSES = ("synced", "warning", "failed")
SYNC_STATUS_LIST = "xero_sync_status_list"

# Sugar reports some types under another name than the one a package asks for: a datetime made
# in Studio is a ``datetimecombo``; a currency field is also a decimal amount.
COMPATIBLE_TYPES: dict[str, frozenset[str]] = {
    "varchar": frozenset({"varchar", "name", "id", "char", "relate"}),
    "decimal": frozenset({"decimal", "currency", "float"}),
    "datetimecombo": frozenset({"datetimecombo", "datetime"}),
    "text": frozenset({"text", "longtext"}),
    "int": frozenset({"int", "integer"}),
    "enum": frozenset({"enum"}),
    "date": frozenset({"date"}),
    "url": frozenset({"url", "varchar"}),
    "bool": frozenset({"bool"}),
}

CONTACT_MODULES = ("Accounts", "Contacts")
ITEM_MODULE = "ProductTemplates"
QUOTE_MODULE = "Quotes"
# Every record the connector pushes gets these back (WRITE_BACK_VALUES in writeback.py).
RECORD_VALUES = ("xero_id", "sync_status", "last_error", "synced_at")

# Write-back value → (type, len, label). Amounts keep 2 places: Xero's money has 2.
WRITE_BACK_TYPES: dict[str, tuple[SugarType, int | None, str]] = {
    "xero_id": ("varchar", 36, "Xero ID"),
    "xero_number": ("varchar", 255, "Xero Number"),
    "status": ("varchar", 20, "Xero Status"),
    "amount_due": ("decimal", 26, "Xero Amount Due"),
    "amount_paid": ("decimal", 26, "Xero Amount Paid"),
    "amount_credited": ("decimal", 26, "Xero Amount Credited"),
    "total": ("decimal", 26, "Xero Total"),
    "paid_date": ("date", None, "Xero Paid Date"),
    "url": ("url", 255, "Xero Link"),
    "sync_status": ("enum", 20, "Xero Sync Status"),
    "last_error": ("text", None, "Xero Last Error"),
    "synced_at": ("datetimecombo", None, "Xero Synced At"),
    "payments": ("text", None, "Xero Payments"),
}

# Rule template → the type of the field receiving it (anything else is text in a varchar).
_DATE_VARIABLES = {"date", "due_date", "paid_date", "today"}
_MONEY_VARIABLES = {"total", "subtotal", "total_tax", "amount_paid", "amount_due", "amount_credited",
                    "basis_amount", "commission"}
# CONTACT values (xero_updates.contact_fields) that are money.
_MONEY_CONTACT_VALUES = {"balance_receivable", "overdue_receivable", "balance_payable", "overdue_payable"}


@dataclass(frozen=True)
class CrmField:
    """One field the configuration needs on one module."""

    module: str
    name: str
    type: SugarType | None  # None: a stock field, only its presence matters
    label: str = ""
    length: int | None = None
    options: str | None = None  # the dropdown list of an enum
    readonly: bool = False  # the connector owns it: read-only in Sugar's UI
    why: str = ""  # which setting names it, for the check's table

    @property
    def custom(self) -> bool:
        return self.name.endswith("_c")

    @property
    def precision(self) -> int | None:
        return 2 if self.type == "decimal" else None

    def accepts(self, sugar_type: str | None) -> bool:
        """Whether a field Sugar reports with ``sugar_type`` does this job."""
        if self.type is None:
            return True
        return str(sugar_type or "") in COMPATIBLE_TYPES.get(self.type, frozenset({self.type}))


@dataclass(frozen=True)
class HookSpec:
    """One Web Logic Hook: a Sugar module's event posted to a connector route."""

    module: str
    event: Literal["after_save", "after_delete"]
    route: str

    @property
    def name(self) -> str:
        return f"Xero connector: {self.module} {self.event}"

    def url(self, api_url: str, token: str) -> str:
        # Stock hooks send no header: the CRM token rides in the query (api-contract.md).
        return f"{api_url.rstrip('/')}{self.route}?{urlencode({'token': token})}"


HOOK_ROUTES = {"Accounts": "/crm/contacts", "Contacts": "/crm/contacts", "ProductTemplates": "/crm/products",
               "Quotes": "/crm/quotes"}
HOOKS = tuple(HookSpec(module, event, route) for module, route in HOOK_ROUTES.items()  # type: ignore[arg-type]
              for event in ("after_save", "after_delete"))


def mask_token(url: str) -> str:
    """A hook URL as it may be shown: the token replaced."""
    head, sep, query = url.partition("?")
    if not sep:
        return url
    parts = ["token=***" if p.startswith("token=") else p for p in query.split("&")]
    return head + "?" + "&".join(parts)


@dataclass
class _Collector:
    fields: dict[tuple[str, str], CrmField] = field(default_factory=dict)

    def add(self, item: CrmField) -> None:
        key = (item.module, item.name)
        known = self.fields.get(key)
        if known is None or (known.type is None and item.type is not None):
            self.fields[key] = item
        elif known.type != item.type and item.type is not None:
            # Two settings disagree: keep the wider (text) so neither loses a value.
            wider = "text" if "text" in (known.type, item.type) else "varchar"
            self.fields[key] = CrmField(item.module, item.name, wider, known.label, 255 if wider == "varchar"
                                        else None, None, known.readonly and item.readonly,
                                        f"{known.why}; {item.why}")


def _label(name: str) -> str:
    return " ".join(part.capitalize() for part in name.removesuffix("_c").split("_"))


def _config_fields(config: MappingConfig, out: _Collector, document_modules: Iterable[str]) -> None:
    wb = config.write_back.fields
    if config.write_back.enabled:
        record_modules = [*CONTACT_MODULES, ITEM_MODULE]
        for value, crm_field in wb.items():
            kind, length, label = WRITE_BACK_TYPES[value]
            options = SYNC_STATUS_LIST if kind == "enum" else None
            targets = [*document_modules] + (record_modules if value in RECORD_VALUES else [])
            for module in targets:
                out.add(CrmField(module, crm_field, kind, label, length, options, True,
                                 f"write_back.fields.{value}"))
    for setting in ("account_number_field", "tax_number_field"):
        crm_field = getattr(config.contacts, setting)
        if crm_field:
            for module in CONTACT_MODULES:
                out.add(CrmField(module, crm_field, "varchar", _label(crm_field), 50, why=f"contacts.{setting}"))
    for value, crm_field in config.xero_updates.contact_fields.items():
        kind: SugarType = "decimal" if value in _MONEY_CONTACT_VALUES or value.startswith("Balances.") \
            else "varchar"
        for module in CONTACT_MODULES:
            out.add(CrmField(module, crm_field, kind, _label(crm_field), 26 if kind == "decimal" else 255,
                             readonly=True, why=f"xero_updates.contact_fields.{value}"))
    for tracking in config.invoices.tracking:
        out.add(CrmField(QUOTE_MODULE, tracking.crm_field, None if not tracking.crm_field.endswith("_c")
                         else "varchar", _label(tracking.crm_field), 100, why="invoices.tracking"))


def _value_type(value: object) -> tuple[SugarType, int | None]:
    if isinstance(value, bool):
        return "bool", None
    if isinstance(value, int):
        return "int", None
    names = template_names(value) if isinstance(value, str) else []
    if isinstance(value, str) and len(names) == 1 and value.strip() == "{" + names[0] + "}":
        if names[0] in _DATE_VARIABLES:
            return "date", None
        if names[0] in _MONEY_VARIABLES:
            return "decimal", 26
        if names[0] == "url":
            return "url", 255
        if names[0] == "days_overdue":
            return "int", None
    return "varchar", 255


def _read_field(module: str, name: str, why: str) -> CrmField:
    """A field a rule reads an id from: a custom one holds a Sugar id (36 characters)."""
    return CrmField(module, name, "varchar" if name.endswith("_c") else None, _label(name), 36, why=why)


def _rule_fields(rule: Rule, out: _Collector) -> None:
    doc_modules = rule.modules or [QUOTE_MODULE]
    where = f"billing rule {rule.name}"
    for spec in rule.set_fields:
        targets = [spec.module] if spec.module else doc_modules
        if spec.id_field:
            for module in doc_modules:
                out.add(_read_field(module, spec.id_field, where))
        for name, value in spec.values.items():
            kind, length = _value_type(value)
            for module in targets:
                out.add(CrmField(module, name, kind if name.endswith("_c") else None, _label(name), length,
                                 why=where))
    if rule.revenue:
        for target in rule.revenue.to:
            for module in doc_modules:
                out.add(_read_field(module, target.id_field, where))
            out.add(CrmField(target.module, target.field, "decimal" if target.field.endswith("_c") else None,
                             _label(target.field), 26, readonly=True, why=where))
    if rule.commission_bill:
        agent = rule.commission_bill.agent
        for module in doc_modules:
            if agent.record_field:
                out.add(_read_field(module, agent.record_field, where))
            else:
                out.add(_read_field(module, agent.user_id_field, where))
        if agent.user_field:
            out.add(_read_field("Users", agent.user_field, where))


def required_fields(mapping: MappingFile, rules: RulesFile | None = None) -> list[CrmField]:
    """Every field the configuration (all tenants' overrides too) and the rules name, sorted by
    module and name."""
    out = _Collector()
    all_rules: list[Rule] = []
    if rules is not None:
        all_rules = [*rules.rules, *(r for tenant in rules.tenants.values() for r in tenant.rules)]
    configs = [mapping.defaults, *(mapping.for_tenant(tenant_id) for tenant_id in mapping.tenants)]
    # Documents come from Quotes, from the modules the rules name, and (imports) the import module.
    imports = {c.xero_updates.import_module for c in configs
               if c.xero_updates.unknown_documents == "import" and c.xero_updates.import_module}
    named = {m for rule in all_rules for m in rule.modules or [] if m not in CONTACT_MODULES} | imports
    document_modules = [QUOTE_MODULE, *sorted(named - {QUOTE_MODULE})]
    for config in configs:
        _config_fields(config, out, document_modules)
    for rule in all_rules:
        _rule_fields(rule, out)
    for config in configs:
        if config.xero_invoices.enabled:  # the package's Xero Invoices module, filled by the connector
            from shared.sugar.invoice_module import check_types

            for name, kind in check_types().items():
                out.add(CrmField(config.xero_invoices.module, name, kind, why="xero_invoices"))  # type: ignore[arg-type]
    return sorted(out.fields.values(), key=lambda f: (f.module, f.name))


def custom_fields(fields: Iterable[CrmField]) -> list[CrmField]:
    """The fields a package installs: custom ones with a type."""
    return [f for f in fields if f.custom and f.type is not None]


def as_vardefs(fields: Iterable[CrmField]) -> dict[str, dict[str, dict[str, object]]]:
    """The custom fields as Sugar's metadata reports them once installed: ``{module: {name: vardef}}``."""
    out: dict[str, dict[str, dict[str, object]]] = {}
    for item in custom_fields(fields):
        vardef: dict[str, object] = {"type": item.type}
        if item.length:
            vardef["len"] = item.length
        if item.options:
            vardef["options"] = item.options
        out.setdefault(item.module, {})[item.name] = vardef
    return out
