"""Billing rules as data: a versioned YAML or JSON file (``billing.yaml`` beside this module, or
the file named by ``BILLING_RULES``), validated when a function starts so that a CRM admin's
mistake is refused with where it is and what to change.

A rule says *when* (an invoice became ``paid``, ``part_paid``, ``overdue`` by N days or
``voided``, or had a payment removed: ``payment_removed``; optionally only for documents of
some CRM modules) and *what* (``set_fields`` on a CRM record, a ``commission_bill`` for the rep
or agent, ``revenue`` received on an opportunity or user). ``evaluate`` turns one document
change into the actions to take; it is pure, so the dry-run command and the worker share it.
Templates in values are ``{name}`` over a fixed set of
variables (``TEMPLATE_VARIABLES``); nothing is ever evaluated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.models.invoices import (
    CRM_MODULE,
    ContactRef,
    DocumentChange,
    LineDocument,
    PurchaseDocument,
    XeroDocumentState,
)

DEFAULT_PATH = Path(__file__).with_name("billing.yaml")
CRM_FIELD = r"^[a-z][a-z0-9_]*$"
RULE_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"
CENT = Decimal("0.01")

Event = Literal["paid", "part_paid", "overdue", "voided", "payment_removed"]
InvoiceType = Literal["ACCREC", "ACCPAY"]
# Fields Sugar keeps for itself: a rule writing them would corrupt the record.
PROTECTED_FIELDS = frozenset({"id", "deleted", "date_entered", "date_modified", "created_by",
                              "modified_user_id", "modified_by_name", "created_by_name"})

DOCUMENT_VARIABLES: dict[str, str] = {
    "number": "the Xero invoice number", "reference": "the invoice's reference",
    "xero_id": "Xero's InvoiceID", "status": "the invoice's Xero status", "currency": "ISO currency code",
    "total": "invoice total", "subtotal": "total before tax", "total_tax": "tax",
    "amount_paid": "paid so far", "amount_due": "still due", "amount_credited": "credited",
    "date": "invoice date", "due_date": "due date", "paid_date": "the date it was fully paid",
    "today": "the day the rule runs", "days_overdue": "days past the due date (0 when not due)",
    "crm_module": "CRM module of the document", "crm_id": "CRM id of the document",
    "url": "the invoice's online or Xero link", "rule": "the rule's name", "event": "what happened",
}
COMMISSION_VARIABLES: dict[str, str] = {
    "rate": "the commission rate in percent", "basis": "subtotal or total",
    "basis_amount": "the amount the rate applies to", "commission": "the commission amount",
}
TEMPLATE_VARIABLES = {**DOCUMENT_VARIABLES, **COMMISSION_VARIABLES}
_TEMPLATE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def template_names(text: str) -> list[str]:
    return [m.group(1).strip() for m in _TEMPLATE.finditer(text) if m.group(1) is not None]


def render(text: str, variables: dict[str, str]) -> str:
    """``{name}`` → the variable's text; ``{{`` and ``}}`` are literal braces. Names were checked
    when the file was loaded; an unknown one (a programming error) renders empty."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        return variables.get(match.group(1).strip(), "")
    return _TEMPLATE.sub(one, text)


def _check_template(text: str, allowed: dict[str, str]) -> str:
    unknown = [name for name in template_names(text) if name not in allowed]
    if unknown:
        raise ValueError(f"unknown template variable(s) {unknown} in {text!r}; known: {sorted(allowed)}")
    return text


class Strict(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


# ---- the rules file ---------------------------------------------------------------------------
FieldValue = str | bool | int | None


class SetFieldsSpec(Strict):
    """Fields to set on one CRM record: the document's own record, or one it points to."""

    module: str | None = Field(default=None, pattern=CRM_MODULE,
                               description="module of the record to change; left out: the document's record")
    id_field: str | None = Field(default=None, pattern=CRM_FIELD,
                                 description="field of the document's record holding that record's id, "
                                             "e.g. billing_account_id")
    values: dict[str, FieldValue] = Field(min_length=1, description="CRM field → value or {template}")

    @field_validator("values", mode="before")
    @classmethod
    def _no_floats(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for field, value in values.items():
                if isinstance(value, float):
                    raise ValueError(f"{field}: write decimal values in quotes ({str(value)!r}) so that no "
                                     "rounding happens on the way")
        return values

    @field_validator("values")
    @classmethod
    def _fields_and_templates(cls, values: dict[str, FieldValue]) -> dict[str, FieldValue]:
        for field, value in values.items():
            if not re.match(CRM_FIELD, field):
                raise ValueError(f"{field!r} is not a CRM field name (lower case, digits, _)")
            if field in PROTECTED_FIELDS:
                raise ValueError(f"{field} is kept by Sugar itself; rules may not set it")
            if isinstance(value, str):
                _check_template(value, DOCUMENT_VARIABLES)
        return values

    @model_validator(mode="after")
    def _target(self) -> SetFieldsSpec:
        if (self.module is None) != (self.id_field is None):
            raise ValueError("give module and id_field together (the record the field points to), "
                             "or neither (the document's own record)")
        return self


class AgentSpec(Strict):
    """Whose commission: the agent's supplier contact in the CRM, found one of three ways."""

    record_field: str | None = Field(default=None, pattern=CRM_FIELD,
                                     description="field of the document's record holding the agent's "
                                                 "supplier record id, e.g. commission_account_id_c")
    user_field: str | None = Field(default=None, pattern=CRM_FIELD,
                                   description="field of the owning user's Users record holding it")
    by_user: dict[str, str] = Field(default_factory=dict,
                                    description="static map: owning user id → the agent's supplier record id")
    user_id_field: str = Field(default="assigned_user_id", pattern=CRM_FIELD,
                               description="field of the document's record naming the owning user")
    contact_module: Literal["Accounts", "Contacts"] = "Accounts"

    @model_validator(mode="after")
    def _one_way(self) -> AgentSpec:
        ways = [name for name in ("record_field", "user_field", "by_user") if getattr(self, name)]
        if len(ways) != 1:
            raise ValueError("say how to find the agent with exactly one of record_field, user_field or by_user"
                             + (f" (got {ways})" if ways else ""))
        return self


class CommissionSpec(Strict):
    rate: Decimal = Field(gt=0, le=100, max_digits=9, decimal_places=4, description="percent")
    basis: Literal["subtotal", "total"] = Field(default="subtotal",
                                                description="the invoice amount the rate applies to")
    agent: AgentSpec
    account_code: str = Field(min_length=1, max_length=10, description="Xero expense account for commissions")
    tax_type: str | None = Field(default=None, min_length=1, max_length=50,
                                 description="Xero TaxType of the bill line; left out: the configured default")
    amounts_are: Literal["Exclusive", "Inclusive", "NoTax"] = Field(
        default="Exclusive", description="whether the commission is before tax, includes it, or has none")
    description: str = Field(default="Commission {rate}% of {basis} {basis_amount} on invoice {number}",
                             min_length=1, max_length=4000)
    reference: str = Field(default="Commission {number}", max_length=255)
    due_days: int | None = Field(default=None, ge=0, le=3650,
                                 description="days from the bill date; left out: the configured default")

    @field_validator("rate", mode="before")
    @classmethod
    def _rate_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, float) else value  # 2.5 in YAML means "2.5", not 2.4999…

    @field_validator("description", "reference")
    @classmethod
    def _templates(cls, text: str) -> str:
        return _check_template(text, TEMPLATE_VARIABLES)


class RevenueTarget(Strict):
    module: str = Field(pattern=CRM_MODULE, description="Opportunities, Users or another module")
    id_field: str = Field(pattern=CRM_FIELD, description="field of the document's record holding its id, "
                                                         "e.g. opportunity_id or assigned_user_id")
    field: str = Field(pattern=CRM_FIELD, description="the field receiving the total received")

    @field_validator("field")
    @classmethod
    def _not_protected(cls, field: str) -> str:
        if field in PROTECTED_FIELDS:
            raise ValueError(f"{field} is kept by Sugar itself; rules may not set it")
        return field


class RevenueSpec(Strict):
    amount: Literal["amount_paid", "amount_paid_ex_tax"] = Field(
        default="amount_paid", description="what counts as received per invoice")
    to: list[RevenueTarget] = Field(min_length=1)


class Rule(Strict):
    name: str = Field(pattern=RULE_NAME, description="unique; part of the commission bill's id, so never rename "
                                                     "a rule that has raised bills")
    when: list[Event] = Field(min_length=1, description="paid | part_paid | overdue | voided | payment_removed, "
                                                        "or a list")
    overdue_days: int | None = Field(default=None, ge=0, le=3650,
                                     description="with overdue: days past the due date")
    modules: list[Annotated[str, Field(pattern=CRM_MODULE)]] | None = Field(
        default=None, description="only documents of these CRM modules; left out: all")
    invoice_types: list[InvoiceType] = Field(default_factory=lambda: ["ACCREC"], min_length=1)
    enabled: bool = True
    set_fields: list[SetFieldsSpec] = Field(default_factory=list)
    commission_bill: CommissionSpec | None = None
    revenue: RevenueSpec | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("set_fields", mode="before")
    @classmethod
    def _one_or_many_targets(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if not (self.set_fields or self.commission_bill or self.revenue):
            raise ValueError("the rule does nothing: give set_fields, commission_bill and/or revenue")
        if ("overdue" in self.when) != (self.overdue_days is not None):
            raise ValueError("overdue_days goes with `when: overdue` (and only with it): how many days past "
                             "the due date")
        if self.commission_bill and "ACCPAY" in self.invoice_types:
            raise ValueError("commission_bill on bills (ACCPAY) would raise bills for bills; keep "
                             "invoice_types: [ACCREC] for commission rules")
        if len(set(self.when)) != len(self.when):
            raise ValueError("an event is listed twice in when")
        return self


class TenantRules(Strict):
    rules: list[Rule] = Field(default_factory=list,
                              description="added to the file's rules; one with the same name replaces it")
    disable: list[str] = Field(default_factory=list, description="names of the file's rules not used here")


class RulesFile(Strict):
    version: Literal[1] = 1
    rules: list[Rule] = Field(default_factory=list)
    tenants: dict[str, TenantRules] = Field(default_factory=dict, description="per Xero tenant id")

    @model_validator(mode="after")
    def _names(self) -> RulesFile:
        _unique(self.rules, "rules")
        known = {rule.name for rule in self.rules}
        for tenant_id, tenant in self.tenants.items():
            _unique(tenant.rules, f"tenants.{tenant_id}.rules")
            unknown = sorted(set(tenant.disable) - known)
            if unknown:
                raise ValueError(f"tenants.{tenant_id}.disable names no rule of the file: {unknown}")
        return self

    def for_tenant(self, tenant_id: str | None) -> list[Rule]:
        tenant = self.tenants.get(tenant_id or "")
        if tenant is None:
            return [rule for rule in self.rules if rule.enabled]
        own = {rule.name: rule for rule in tenant.rules}
        merged = [own.pop(rule.name, rule) for rule in self.rules if rule.name not in tenant.disable]
        return [rule for rule in [*merged, *own.values()] if rule.enabled]


def _unique(rules: list[Rule], where: str) -> None:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"{where}: two rules are named {rule.name!r}; names must be unique")
        seen.add(rule.name)


class BillingRulesError(ValueError):
    """The rules file cannot be used; ``problems`` say where and what to change."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a person reads it: rules[1] "membership-lapsed".when."""
    text, node = "", data
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                text += f" ({node['name']})"
        else:
            text += ("." if text else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text or "(top level)"


def parse_rules(text: str, *, path: Path) -> RulesFile:
    """The rules in ``text`` (JSON when ``path`` ends .json, else YAML), validated."""
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise BillingRulesError(path, [f"not valid JSON: {error}"]) from error
    except yaml.YAMLError as error:
        raise BillingRulesError(path, [f"not valid YAML: {error}"]) from error
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise BillingRulesError(path, ["the file must hold a mapping with version and rules"])
    try:
        return RulesFile.model_validate(data)
    except ValidationError as error:
        problems = [f"{_where(data, tuple(e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                    for e in error.errors()]
        raise BillingRulesError(path, problems) from error


def rules_path(path: Path | str | None = None) -> Path:
    return Path(path or os.environ.get("BILLING_RULES") or DEFAULT_PATH)


def load_rules_file(path: Path | str | None = None) -> RulesFile:
    path = rules_path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise BillingRulesError(path, [f"cannot read the billing rules file: {error.strerror}"]) from error
    return parse_rules(text, path=path)


@lru_cache(maxsize=1)
def rules_file() -> RulesFile:
    return load_rules_file()


# ---- actions ----------------------------------------------------------------------------------
class ActionBase(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True)

    rule: str
    event: Event
    xero_id: str = Field(description="the invoice the action comes from")


class SetFields(ActionBase):
    kind: Literal["set_fields"] = "set_fields"
    module: str
    record_id: str
    values: dict[str, FieldValue]


class CommissionBill(ActionBase):
    """A commission bill to raise once per invoice and rule. The agent is known
    (``agent_record_id``) or is read from the owning user's record (``agent_user_id``,
    ``user_field``) before the bill is built."""

    kind: Literal["commission_bill"] = "commission_bill"
    bill_id: str = Field(description="the purchase document's crm_id: one per invoice and rule, ever")
    crm_module: str
    rate: Decimal
    basis: str
    basis_amount: Decimal
    amount: Decimal
    agent_record_id: str | None = None
    agent_user_id: str | None = None
    user_field: str | None = None
    contact_module: Literal["Accounts", "Contacts"] = "Accounts"
    description: str
    reference: str
    account_code: str
    tax_type: str | None = None
    amounts_are: Literal["Exclusive", "Inclusive", "NoTax"] = "Exclusive"
    currency: str | None = None
    date: dt.date
    due_date: dt.date | None = None

    def document(self, agent_record_id: str | None = None) -> PurchaseDocument:
        agent = agent_record_id or self.agent_record_id
        if not agent:
            raise ValueError("the agent's supplier record is not known yet")
        return PurchaseDocument(
            crm_module=self.crm_module, crm_id=self.bill_id,
            contact=ContactRef(crm_module=self.contact_module, crm_id=agent),
            lines=[LineDocument(description=self.description, quantity=Decimal("1"), unit_amount=self.amount,
                                account_code=self.account_code, tax_type=self.tax_type)],
            reference=self.reference or None, currency=self.currency, date=self.date, due_date=self.due_date,
            line_amount_types=self.amounts_are, deliver_as="bill", write_back=False)


class RecordRevenue(ActionBase):
    """Revenue received from one invoice, for one record's total: written as an absolute value
    (the sum over the record's invoices kept in the ledger), never as an increment."""

    kind: Literal["revenue"] = "revenue"
    module: str
    record_id: str
    field: str
    amount: Decimal = Field(description="received on this invoice so far (absolute)")
    invoice_updated_utc: str | None = None


class Skip(ActionBase):
    """A rule fired but one of its actions cannot be done from this record (said why)."""

    kind: Literal["skip"] = "skip"
    action: str
    reason: str


Action = SetFields | CommissionBill | RecordRevenue | Skip


# ---- evaluation (pure) --------------------------------------------------------------------------
def is_stale(change: DocumentChange) -> bool:
    """An older state arriving after a newer one: it never triggers anything."""
    before, after = change.before, change.after
    return bool(before and before.updated_utc and after.updated_utc and after.updated_utc < before.updated_utc)


def happened(event: Event, rule: Rule, before: XeroDocumentState | None, after: XeroDocumentState,
             today: dt.date) -> bool:
    """Whether ``event`` is what the change from ``before`` to ``after`` is. Transitions only,
    except ``overdue``, which holds while the invoice is overdue (the ledger fires it once)."""
    if event == "paid":
        return after.status == "PAID" and (before is None or before.status != "PAID")
    if event == "part_paid":
        paid_before = before.amount_paid if before else Decimal("0")
        return after.status == "AUTHORISED" and after.amount_due > 0 and after.amount_paid > paid_before
    if event == "overdue":
        return (after.status == "AUTHORISED" and after.amount_due > 0 and after.due_date is not None
                and after.due_date + dt.timedelta(days=rule.overdue_days or 0) <= today)
    if event == "voided":
        return after.status in {"VOIDED", "DELETED"} and before is not None and before.status == "AUTHORISED"
    if event == "payment_removed":  # a payment deleted or reversed in Xero: revenue goes back down
        return before is not None and after.amount_paid < before.amount_paid
    return False


def fired_rules(rules: list[Rule], change: DocumentChange, today: dt.date) -> list[tuple[Rule, Event]]:
    """The rules this change fires, each with the event that fired it (at most one per rule)."""
    if is_stale(change) or change.after.target not in ("ACCREC", "ACCPAY"):
        return []
    fired: list[tuple[Rule, Event]] = []
    for rule in rules:
        if not rule.enabled or change.after.target not in rule.invoice_types:
            continue
        if rule.modules is not None and change.crm_module not in rule.modules:
            continue
        event = next((e for e in rule.when if happened(e, rule, change.before, change.after, today)), None)
        if event:
            fired.append((rule, event))
    return fired


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def subtotal(state: XeroDocumentState) -> Decimal:
    return state.total - state.total_tax


def variables(change: DocumentChange, today: dt.date, rule: str, event: str) -> dict[str, str]:
    after = change.after
    overdue = (today - after.due_date).days if after.due_date and after.amount_due > 0 else 0
    values: dict[str, Any] = {
        "number": after.number, "reference": after.reference, "xero_id": after.xero_id, "status": after.status,
        "currency": after.currency, "total": after.total, "subtotal": subtotal(after),
        "total_tax": after.total_tax, "amount_paid": after.amount_paid, "amount_due": after.amount_due,
        "amount_credited": after.amount_credited, "date": after.date, "due_date": after.due_date,
        "paid_date": after.fully_paid_on, "today": today, "days_overdue": max(overdue, 0),
        "crm_module": change.crm_module, "crm_id": change.crm_id, "url": after.url, "rule": rule, "event": event,
    }
    return {name: _text(value) for name, value in values.items()}


def _record_value(record: dict[str, Any], field: str) -> str | None:
    value = record.get(field)
    if isinstance(value, dict):  # a relate field sent as {"id": ..., "name": ...}
        value = value.get("id")
    text = str(value).strip() if value is not None else ""
    return text or None


def commission_bill_id(crm_id: str, rule: str) -> str:
    """The commission bill's crm_id: the same for an invoice and rule on every run, so that the
    purchase path dedupes it (within TradeDocument's 100 characters)."""
    bill_id = f"{crm_id}:commission:{rule}"
    if len(bill_id) <= 100:
        return bill_id
    return f"{hashlib.sha256(crm_id.encode()).hexdigest()[:40]}:commission:{rule}"


def revenue_amount(state: XeroDocumentState, how: str) -> Decimal:
    if how == "amount_paid_ex_tax" and state.total > 0:
        return (state.amount_paid * subtotal(state) / state.total).quantize(CENT, rounding=ROUND_HALF_UP)
    return state.amount_paid


def _commission(rule: Rule, event: Event, change: DocumentChange, record: dict[str, Any],
                today: dt.date, base: dict[str, str]) -> Action:
    spec = rule.commission_bill
    assert spec is not None
    after = change.after
    common = {"rule": rule.name, "event": event, "xero_id": after.xero_id}
    basis_amount = subtotal(after) if spec.basis == "subtotal" else after.total
    amount = (basis_amount * spec.rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    if amount <= 0:
        return Skip(**common, action="commission_bill", reason=f"the commission on {spec.basis} "
                                                                f"{basis_amount} is {amount}")
    agent = spec.agent
    agent_record_id = agent_user_id = None
    if agent.record_field:
        agent_record_id = _record_value(record, agent.record_field)
        if not agent_record_id:
            return Skip(**common, action="commission_bill",
                        reason=f"{change.crm_module} {change.crm_id} has no {agent.record_field}")
    else:
        agent_user_id = _record_value(record, agent.user_id_field)
        if not agent_user_id:
            return Skip(**common, action="commission_bill",
                        reason=f"{change.crm_module} {change.crm_id} has no {agent.user_id_field}")
        if agent.by_user:
            agent_record_id = agent.by_user.get(agent_user_id)
            if not agent_record_id:
                return Skip(**common, action="commission_bill",
                            reason=f"user {agent_user_id} is not in the rule's by_user map")
            agent_user_id = None
    rate_text = format(spec.rate.normalize(), "f")
    names = {**base, "rate": rate_text, "basis": spec.basis, "basis_amount": _text(basis_amount),
             "commission": _text(amount)}
    return CommissionBill(
        **common, bill_id=commission_bill_id(change.crm_id, rule.name), crm_module=change.crm_module,
        rate=spec.rate, basis=spec.basis, basis_amount=basis_amount, amount=amount,
        agent_record_id=agent_record_id, agent_user_id=agent_user_id,
        user_field=agent.user_field if agent_user_id else None, contact_module=agent.contact_module,
        description=render(spec.description, names)[:4000], reference=render(spec.reference, names)[:255],
        account_code=spec.account_code, tax_type=spec.tax_type, amounts_are=spec.amounts_are,
        currency=after.currency, date=today,
        due_date=today + dt.timedelta(days=spec.due_days) if spec.due_days is not None else None)


def evaluate(rules: list[Rule], change: DocumentChange, record: dict[str, Any], today: dt.date) -> list[Action]:
    """What the rules do for one document change. ``record`` holds the CRM fields of the
    document's record (the ids that set_fields, commission and revenue follow)."""
    actions: list[Action] = []
    for rule, event in fired_rules(rules, change, today):
        base = variables(change, today, rule.name, event)
        common = {"rule": rule.name, "event": event, "xero_id": change.after.xero_id}
        for spec in rule.set_fields:
            if spec.module is None:
                module, record_id = change.crm_module, change.crm_id
            else:
                module, record_id = spec.module, _record_value(record, spec.id_field or "")
            if not record_id:
                actions.append(Skip(**common, action="set_fields",
                                    reason=f"{change.crm_module} {change.crm_id} has no {spec.id_field}"))
                continue
            values = {field: render(value, base) if isinstance(value, str) else value
                      for field, value in spec.values.items()}
            actions.append(SetFields(**common, module=module, record_id=record_id, values=values))
        if rule.commission_bill:
            actions.append(_commission(rule, event, change, record, today, base))
        if rule.revenue:
            amount = revenue_amount(change.after, rule.revenue.amount)
            for target in rule.revenue.to:
                record_id = _record_value(record, target.id_field)
                if not record_id:
                    actions.append(Skip(**common, action="revenue",
                                        reason=f"{change.crm_module} {change.crm_id} has no {target.id_field}"))
                    continue
                actions.append(RecordRevenue(**common, module=target.module, record_id=record_id,
                                             field=target.field, amount=amount,
                                             invoice_updated_utc=change.after.updated_utc))
    return actions


def record_fields(rules: list[Rule]) -> list[str]:
    """The fields of a document's record that the rules read (what the use case fetches)."""
    fields: set[str] = set()
    for rule in rules:
        fields.update(spec.id_field for spec in rule.set_fields if spec.id_field)
        if rule.commission_bill:
            agent = rule.commission_bill.agent
            fields.add(agent.record_field or agent.user_id_field)
        if rule.revenue:
            fields.update(target.id_field for target in rule.revenue.to)
    return sorted(fields)
