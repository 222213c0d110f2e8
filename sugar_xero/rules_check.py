"""`sugar-xero rules-check [FILE] [--dry-run --invoice INVOICE.json ...]`: validate a billing
rules file, and show what it would do for one Xero invoice without touching anything."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.billing.rules import (
    BillingRulesError,
    CommissionBill,
    RecordRevenue,
    RulesFile,
    SetFields,
    Skip,
    evaluate,
    fired_rules,
    load_rules_file,
    rules_path,
)
from shared.mapping.xero_documents import document_state
from shared.models.invoices import DocumentChange, XeroDocumentState


class InputError(ValueError):
    pass


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as error:
        raise InputError(f"cannot read {what} {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise InputError(f"{what} {path} is not valid JSON: {error}") from error


def invoice_state(path: str, what: str) -> XeroDocumentState:
    """A Xero invoice as GET /Invoices answers it (``{"Invoices": [...]}``, first one) or bare."""
    body = _read_json(path, what)
    if isinstance(body, dict) and isinstance(body.get("Invoices"), list):
        if not body["Invoices"]:
            raise InputError(f"{what} {path} holds no invoice")
        body = body["Invoices"][0]
    if not isinstance(body, dict) or not body.get("InvoiceID"):
        raise InputError(f"{what} {path} is not a Xero invoice (no InvoiceID)")
    return document_state("Invoices", body)


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError("a date is YYYY-MM-DD") from error


def _summary(rules: RulesFile, out: TextIO) -> None:
    print(f"  {len(rules.rules)} rule(s)" + (":" if rules.rules else ""), file=out)
    for rule in rules.rules:
        actions = [name for name in ("set_fields", "commission_bill", "revenue") if getattr(rule, name)]
        when = ", ".join(f"overdue {rule.overdue_days} days" if e == "overdue" else e for e in rule.when)
        scope = f" on {', '.join(rule.modules)}" if rule.modules else ""
        off = " (disabled)" if not rule.enabled else ""
        print(f"  - {rule.name}: when {when} ({'/'.join(rule.invoice_types)}{scope}) → {', '.join(actions)}{off}",
              file=out)
    for tenant_id, tenant in rules.tenants.items():
        print(f"  organisation {tenant_id}: {len(tenant.rules)} own rule(s), disabled {tenant.disable or 'none'}",
              file=out)


def _describe(action: Any) -> str:
    if isinstance(action, SetFields):
        values = ", ".join(f"{k} = {json.dumps(v)}" for k, v in action.values.items())
        return f"set {action.module} {action.record_id}: {values}"
    if isinstance(action, CommissionBill):
        agent = (f"{action.contact_module} {action.agent_record_id}" if action.agent_record_id else
                 f"the {action.contact_module} record named in Users {action.agent_user_id}.{action.user_field} "
                 "(read when it runs)")
        tax = f", tax type {action.tax_type}" if action.tax_type else ""
        return (f"raise commission bill {action.bill_id}: {action.amount} {action.currency or ''}".rstrip()
                + f" ({action.rate}% of {action.basis} {action.basis_amount}) to {agent}, account "
                  f"{action.account_code}{tax}, amounts {action.amounts_are}; \"{action.description}\" "
                  f"(once per invoice and rule: not again if already raised)")
    if isinstance(action, RecordRevenue):
        return (f"revenue: this invoice counts {action.amount} towards {action.module} {action.record_id}."
                f"{action.field} (written as the total received over that record's invoices)")
    if isinstance(action, Skip):
        return f"skip {action.action}: {action.reason}"
    return repr(action)


def _dry_run(rules: RulesFile, args: argparse.Namespace, out: TextIO) -> int:
    after = invoice_state(args.invoice, "the invoice")
    before = invoice_state(args.before, "the earlier invoice") if args.before else None
    record: dict[str, Any] = _read_json(args.record, "the CRM record") if args.record else {}
    if not isinstance(record, dict):
        raise InputError(f"the CRM record {args.record} is not a JSON object of fields")
    module = args.module or str(record.get("_module") or "Quotes")
    crm_id = args.crm_id or str(record.get("id") or "CRM-RECORD-ID")
    tenant_id = args.tenant or ""
    change = DocumentChange(tenant_id=tenant_id, crm_module=module, crm_id=crm_id, before=before, after=after)
    today = args.today or dt.date.today()
    tenant_rules = rules.for_tenant(tenant_id)
    print(f"dry run, {today.isoformat()}: {module} {crm_id}, invoice {after.number or after.xero_id} "
          f"{before.status + ' → ' if before else ''}{after.status}, paid {after.amount_paid} of {after.total}, "
          f"due {after.amount_due}" + (f" (due date {after.due_date})" if after.due_date else ""), file=out)
    fired = fired_rules(tenant_rules, change, today)
    if not fired:
        print("no rule fires: nothing would be done", file=out)
        return 0
    actions = evaluate(tenant_rules, change, record, today)
    for rule, event in fired:
        once = " (once per invoice)" if event == "overdue" else ""
        print(f"rule {rule.name} fires on {event}{once}:", file=out)
        for action in actions:
            if action.rule == rule.name:
                print(f"  {_describe(action)}", file=out)
    if args.json:
        print(json.dumps([a.model_dump(mode="json") for a in actions], indent=2), file=out)
    print("nothing was changed (dry run)", file=out)
    return 0


def run(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="sugar-xero rules-check",
        description="Validate a billing rules file (default: $BILLING_RULES, else the shipped rules). "
                    "Exit 0 when it can be used, 1 with what to change when not. With --dry-run, print "
                    "what the rules would do for one Xero invoice, touching nothing.")
    parser.add_argument("file", nargs="?", default=None, help="the YAML or JSON rules file to check")
    parser.add_argument("--dry-run", action="store_true", help="evaluate the rules for --invoice")
    parser.add_argument("--invoice", metavar="XERO_INVOICE.json",
                        help="the invoice as Xero sends it (GET /Invoices/{id} answer, or one invoice)")
    parser.add_argument("--before", metavar="XERO_INVOICE.json",
                        help="the same invoice as it was before (left out: first seen)")
    parser.add_argument("--record", metavar="CRM_RECORD.json",
                        help="the CRM fields of the document's record (ids the rules follow)")
    parser.add_argument("--module", help="the CRM module of the document (default: the record's _module, else Quotes)")
    parser.add_argument("--crm-id", help="the CRM id of the document (default: the record's id)")
    parser.add_argument("--tenant", help="the Xero tenant id, for per-organisation rules")
    parser.add_argument("--today", type=_day, default=None, help="evaluate as of this day (YYYY-MM-DD)")
    parser.add_argument("--json", action="store_true", help="also print the actions as JSON")
    args = parser.parse_args(argv)
    if args.dry_run and not args.invoice:
        parser.error("--dry-run needs --invoice XERO_INVOICE.json")
    if not args.dry_run and (args.invoice or args.before or args.record):
        parser.error("--invoice, --before and --record go with --dry-run")
    path = rules_path(args.file)
    try:
        rules = load_rules_file(path)
    except BillingRulesError as error:
        print(f"not usable: {error.path}", file=out)
        for problem in error.problems:
            print(f"  {problem}", file=out)
        return 1
    print(f"ok: {path}", file=out)
    _summary(rules, out)
    if not args.dry_run:
        return 0
    try:
        return _dry_run(rules, args, out)
    except InputError as error:
        print(f"cannot dry-run: {error}", file=out)
        return 1
