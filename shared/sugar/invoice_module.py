"""The Xero Invoices CRM module: one record per Xero invoice, bill and credit note, whoever made
it, so Sugar reports can sum billing per account, opportunity, case or rep.

One definition, three readers: the package (``sugar_xero.sugar_package.invoices_module`` writes
the module as Sugar's Module Builder exports one), ``sugar-check`` (its fields through
``/metadata``) and the fill (``shared.usecases.invoice_records``), which writes exactly these
fields. The module name follows Module Builder's ``<package key>_<module>`` convention.
"""

from __future__ import annotations

from dataclasses import dataclass

MODULE = "xero_Invoices"
TABLE = "xero_invoices"
TYPE_LIST = "xero_invoice_type_list"
STATUS_LIST = "xero_invoice_status_list"
DOCUMENT_TYPES = {"ACCREC": "Sales invoice", "ACCPAY": "Bill", "ACCRECCREDIT": "Sales credit note",
                  "ACCPAYCREDIT": "Supplier credit note"}
STATUSES = {"DRAFT": "Draft", "SUBMITTED": "Awaiting approval", "AUTHORISED": "Awaiting payment",
            "PAID": "Paid", "VOIDED": "Voided", "DELETED": "Deleted"}


@dataclass(frozen=True)
class ModuleField:
    name: str
    type: str  # Sugar vardef type
    label: str
    length: int | None = None
    options: str | None = None
    extra: tuple[tuple[str, str], ...] = ()  # more vardef keys (link, module, id_name, ...)


# The record's own fields (Basic's id, name, dates, assigned user and team come from the template).
FIELDS: tuple[ModuleField, ...] = (
    ModuleField("invoice_number", "varchar", "Number", 255),
    ModuleField("document_type", "enum", "Type", 20, TYPE_LIST),
    ModuleField("status", "enum", "Status", 20, STATUS_LIST),
    ModuleField("reference", "varchar", "Reference", 255),
    ModuleField("invoice_date", "date", "Date"),
    ModuleField("due_date", "date", "Due Date"),
    ModuleField("currency_code", "varchar", "Currency", 3),
    ModuleField("sub_total", "decimal", "Subtotal", 26),
    ModuleField("total_tax", "decimal", "Tax", 26),
    ModuleField("total", "decimal", "Total", 26),
    ModuleField("amount_due", "decimal", "Amount Due", 26),
    ModuleField("amount_paid", "decimal", "Amount Paid", 26),
    ModuleField("amount_credited", "decimal", "Amount Credited", 26),
    ModuleField("fully_paid_on", "date", "Paid Date"),
    ModuleField("online_url", "url", "Online Invoice", 255),
    ModuleField("xero_id", "varchar", "Xero ID", 36),
    ModuleField("xero_tenant_id", "varchar", "Xero Organisation", 36),
    ModuleField("xero_updated_utc", "datetime", "Updated in Xero"),
    ModuleField("contact_name", "varchar", "Xero Contact", 255),
    ModuleField("lines_json", "text", "Lines (JSON: description, item_code, quantity, unit_amount, tax_type, "
                                      "tax_amount, line_amount)"),
)

# Relations: (id field, name field, link, related module, relationship, label)
RELATIONS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("account_id", "account_name", "accounts", "Accounts", "accounts_xero_invoices", "Account"),
    ("opportunity_id", "opportunity_name", "opportunities", "Opportunities", "opportunities_xero_invoices",
     "Opportunity"),
    ("case_id", "case_name", "cases", "Cases", "cases_xero_invoices", "Case"),
)
# The originating CRM record (a Quote, a custom module's record): Sugar's flex relate.
PARENT_FIELDS = ("parent_type", "parent_id")


def check_types() -> dict[str, str]:
    """Field → the type ``/metadata`` reports once installed (what sugar-check compares)."""
    types = {f.name: f.type for f in FIELDS}
    types.update({id_field: "id" for id_field, *_ in RELATIONS})
    types.update({"parent_type": "parent_type", "parent_id": "id", "sync_key": "varchar"})
    return types


def installed_vardefs(module: str = MODULE) -> dict[str, dict[str, dict[str, str]]]:
    """The module's fields as ``/metadata`` reports them once the package is installed."""
    return {module: {name: {"type": kind} for name, kind in check_types().items()}}
