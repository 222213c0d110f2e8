"""Billing rules: the file's validation, and the pure evaluation of a document change."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import yaml

from shared.billing.rules import (
    DEFAULT_PATH,
    BillingRulesError,
    CommissionBill,
    RecordRevenue,
    SetFields,
    Skip,
    commission_bill_id,
    evaluate,
    load_rules_file,
    parse_rules,
    record_fields,
    render,
)
from shared.models.invoices import DocumentChange, XeroDocumentState

TODAY = dt.date(2027, 2, 1)
QUOTE = {"id": "q-1", "billing_account_id": "acc-9", "assigned_user_id": "user-3", "opportunity_id": "opp-5",
         "commission_account_id_c": "agent-77"}

RULES = """
version: 1
rules:
  - name: membership-active
    when: paid
    modules: [Quotes]
    set_fields:
      - module: Accounts
        id_field: billing_account_id
        values: {membership_status_c: Active, membership_paid_on_c: "{paid_date}", note_c: "{{x}} {number}"}
      - values: {payment_note_c: "Paid {amount_paid} {currency}", paid_c: true, paid_count_c: 1}
  - name: membership-lapsed
    when: [overdue, voided]
    overdue_days: 14
    set_fields: {module: Accounts, id_field: billing_account_id, values: {membership_status_c: Lapsed}}
  - name: rep-commission
    when: paid
    commission_bill:
      rate: 2.5
      basis: subtotal
      agent: {record_field: commission_account_id_c}
      account_code: "310"
      tax_type: INPUT
      due_days: 30
  - name: revenue
    when: [paid, part_paid, voided]
    revenue:
      to:
        - {module: Opportunities, id_field: opportunity_id, field: revenue_received_c}
        - {module: Users, id_field: assigned_user_id, field: revenue_received_c}
"""


def rules(text: str = RULES, tenant: str | None = None):
    return parse_rules(text, path=DEFAULT_PATH.with_name("test.yaml")).for_tenant(tenant)


def state(status="AUTHORISED", paid="0.00", due=None, total="1090.00", tax="90.00", updated="2027-01-20T10:00:00.000",
          due_date=dt.date(2027, 1, 15), target="ACCREC", paid_on=None) -> XeroDocumentState:
    total_d = Decimal(total)
    due_d = Decimal(due) if due is not None else total_d - Decimal(paid)
    return XeroDocumentState(target=target, xero_id="inv-1", number="INV-0042", status=status, currency="SGD",
                             total=total_d, total_tax=Decimal(tax), amount_paid=Decimal(paid), amount_due=due_d,
                             due_date=due_date, date=dt.date(2026, 12, 16), fully_paid_on=paid_on,
                             updated_utc=updated)


def change(before, after, module="Quotes") -> DocumentChange:
    return DocumentChange(tenant_id="t-1", crm_module=module, crm_id="q-1", before=before, after=after)


def kinds(actions):
    return [(a.rule, a.kind) for a in actions]


# ---- the file -----------------------------------------------------------------------------------
def test_the_shipped_file_is_valid_and_empty():
    assert load_rules_file(DEFAULT_PATH).rules == []


def test_the_shipped_file_documents_every_kind_in_valid_comments():
    """The commented example in billing.yaml, uncommented, is a valid file with every action kind."""
    lines = DEFAULT_PATH.read_text().splitlines()
    start = lines.index("# rules:")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("# Per Xero organisation"))
    text = "\n".join(line[2:] for line in lines[start:end])
    example = parse_rules(f"version: 1\n{text}", path=DEFAULT_PATH)
    assert {r.name for r in example.rules} >= {"membership-active", "membership-lapsed", "rep-commission",
                                                "revenue-received"}
    assert all(any(getattr(r, k) for r in example.rules) for k in ("set_fields", "commission_bill", "revenue"))
    assert {e for r in example.rules for e in r.when} == {"paid", "part_paid", "overdue", "voided",
                                                          "payment_removed"}


def test_json_and_the_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(yaml.safe_load(RULES)))
    monkeypatch.setenv("BILLING_RULES", str(path))
    assert [r.name for r in load_rules_file().rules][:2] == ["membership-active", "membership-lapsed"]


def test_tenant_overrides_replace_add_and_disable():
    text = RULES + """
tenants:
  t-2:
    disable: [rep-commission]
    rules:
      - {name: membership-active, when: paid, set_fields: {values: {x_c: "y"}}}
      - {name: extra, when: voided, set_fields: {values: {void_c: "{number}"}}}
"""
    names = [r.name for r in rules(text, "t-2")]
    assert names == ["membership-active", "membership-lapsed", "revenue", "extra"]
    assert rules(text, "t-2")[0].set_fields[0].values == {"x_c": "y"}
    assert [r.name for r in rules(text, "t-1")] == ["membership-active", "membership-lapsed", "rep-commission",
                                                     "revenue"]


@pytest.mark.parametrize(("text", "says"), [
    ("version: 2\n", "version"),
    ("rules: [{name: a, when: paied, set_fields: {values: {x_c: y}}}]\n", "rules[0] (a).when[0]"),
    ("rules: [{name: a, when: paid}]\n", "the rule does nothing"),
    ("rules: [{name: a, when: overdue, set_fields: {values: {x_c: y}}}]\n", "overdue_days"),
    ("rules: [{name: a, when: paid, overdue_days: 3, set_fields: {values: {x_c: y}}}]\n", "overdue_days"),
    ("rules: [{name: a, when: paid, set_fields: {values: {x_c: '{secret}'}}}]\n", "unknown template variable"),
    ("rules: [{name: a, when: paid, set_fields: {values: {x_c: '{number.__class__}'}}}]\n",
     "unknown template variable"),
    ("rules: [{name: a, when: paid, set_fields: {values: {x_c: 1.5}}}]\n", "in quotes"),
    ("rules: [{name: a, when: paid, set_fields: {values: {id: y}}}]\n", "kept by Sugar"),
    ("rules: [{name: a, when: paid, set_fields: {module: Accounts, values: {x_c: y}}}]\n",
     "module and id_field together"),
    ("rules: [{name: A B, when: paid, set_fields: {values: {x_c: y}}}]\n", "rules[0] (A B).name"),
    ("rules: [{name: a, when: paid, set_fields: {values: {x_c: y}}},"
     " {name: a, when: paid, set_fields: {values: {x_c: y}}}]\n", "named 'a'"),
    ("rules: [{name: c, when: paid, commission_bill: {rate: 5, account_code: '310', agent: {}}}]\n",
     "exactly one of record_field, user_field or by_user"),
    ("rules: [{name: c, when: paid, commission_bill: {rate: 0, account_code: '310', "
     "agent: {record_field: a_c}}}]\n", "rules[0] (c).commission_bill.rate"),
    ("rules: [{name: c, when: paid, invoice_types: [ACCPAY], commission_bill: {rate: 5, account_code: '310', "
     "agent: {record_field: a_c}}}]\n", "bills for bills"),
    ("rules: [{name: c, when: paid, commission_bill: {rate: 5, account_code: '310', "
     "agent: {record_field: a_c}, description: '{colour}'}}]\n", "unknown template variable"),
    ("rules: [{name: r, when: paid, revenue: {to: []}}]\n", "rules[0] (r).revenue.to"),
    ("tenants: {t-9: {disable: [nope]}}\n", "names no rule"),
    ("rules: [\n", "not valid YAML"),
    ("- a\n", "must hold a mapping"),
])
def test_mistakes_are_refused_with_file_where_and_what(tmp_path, text, says):
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(BillingRulesError) as refused:
        load_rules_file(path)
    assert says in str(refused.value) and str(path) in str(refused.value)


def test_bad_json_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text("{rules: }")
    with pytest.raises(BillingRulesError, match="not valid JSON"):
        load_rules_file(bad)
    with pytest.raises(BillingRulesError, match="cannot read the billing rules file"):
        load_rules_file(tmp_path / "absent.yaml")


def test_templates_replace_only_known_names_and_keep_escaped_braces():
    assert render("{number} {{literal}} {missing}", {"number": "INV-1"}) == "INV-1 {literal} "


# ---- triggers -----------------------------------------------------------------------------------
def test_paid_fires_on_the_transition_only():
    paid = state("PAID", paid="1090.00", paid_on=dt.date(2027, 1, 31), updated="2027-01-31T09:00:00.000")
    actions = evaluate(rules(), change(state(), paid), QUOTE, TODAY)
    assert kinds(actions) == [("membership-active", "set_fields"), ("membership-active", "set_fields"),
                              ("rep-commission", "commission_bill"), ("revenue", "revenue"), ("revenue", "revenue")]
    assert evaluate(rules(), change(paid, paid), QUOTE, TODAY) == []


def test_paid_first_seen_fires():
    paid = state("PAID", paid="1090.00")
    assert ("membership-active", "set_fields") in kinds(evaluate(rules(), change(None, paid), QUOTE, TODAY))


def test_set_fields_follow_the_id_field_and_render_templates():
    paid = state("PAID", paid="1090.00", paid_on=dt.date(2027, 1, 31))
    account, own = [a for a in evaluate(rules(), change(state(), paid), QUOTE, TODAY) if isinstance(a, SetFields)]
    assert (account.module, account.record_id) == ("Accounts", "acc-9")
    assert account.values == {"membership_status_c": "Active", "membership_paid_on_c": "2027-01-31",
                              "note_c": "{x} INV-0042"}
    assert (own.module, own.record_id) == ("Quotes", "q-1")
    assert own.values == {"payment_note_c": "Paid 1090.00 SGD", "paid_c": True, "paid_count_c": 1}


def test_part_paid_fires_when_the_amount_paid_grows_and_something_is_due():
    first = state(paid="500.00", updated="2027-01-21T00:00:00.000", due_date=dt.date(2027, 2, 15))
    assert kinds(evaluate(rules(), change(state(), first), QUOTE, TODAY)) == [("revenue", "revenue")] * 2
    second = state(paid="600.00", updated="2027-01-22T00:00:00.000", due_date=dt.date(2027, 2, 15))
    revenue = evaluate(rules(), change(first, second), QUOTE, TODAY)
    assert [a.amount for a in revenue] == [Decimal("600.00")] * 2  # absolute, not the 100.00 step
    assert evaluate(rules(), change(second, second), QUOTE, TODAY) == []


def test_overdue_fires_from_n_days_after_the_due_date_while_unpaid():
    open_invoice = state(due_date=dt.date(2027, 1, 18))
    assert evaluate(rules(), change(open_invoice, open_invoice), QUOTE, dt.date(2027, 1, 31)) == []
    lapsed = evaluate(rules(), change(open_invoice, open_invoice), QUOTE, dt.date(2027, 2, 1))
    assert [(a.rule, a.event, a.values) for a in lapsed] == [
        ("membership-lapsed", "overdue", {"membership_status_c": "Lapsed"})]
    paid = state("PAID", paid="1090.00", due_date=dt.date(2027, 1, 1))
    assert "membership-lapsed" not in {a.rule for a in evaluate(rules(), change(paid, paid), QUOTE, TODAY)}
    draft = state("DRAFT", due_date=dt.date(2027, 1, 1))
    assert evaluate(rules(), change(draft, draft), QUOTE, TODAY) == []


def test_voided_fires_after_authorised_only():
    voided = state("VOIDED", total="1090.00", due="0.00", updated="2027-01-25T00:00:00.000")
    fired = kinds(evaluate(rules(), change(state(), voided), QUOTE, TODAY))
    assert ("membership-lapsed", "set_fields") in fired and ("revenue", "revenue") in fired
    deleted = state("DELETED", due="0.00")
    assert ("membership-lapsed", "set_fields") in kinds(evaluate(rules(), change(state(), deleted), QUOTE, TODAY))
    assert evaluate(rules(), change(state("DRAFT"), deleted), QUOTE, TODAY) == []
    assert evaluate(rules(), change(None, voided), QUOTE, TODAY) == []


def test_payment_removed_fires_when_the_amount_paid_goes_down():
    text = """rules: [{name: r, when: payment_removed,
                       revenue: {to: [{module: Users, id_field: assigned_user_id, field: revenue_received_c}]}}]"""
    paid = state("PAID", paid="1090.00", updated="2027-01-31T09:00:00.000")
    reversed_ = state(paid="90.00", updated="2027-02-01T09:00:00.000")
    [revenue] = evaluate(rules(text), change(paid, reversed_), QUOTE, TODAY)
    assert revenue.event == "payment_removed" and revenue.amount == Decimal("90.00")
    assert evaluate(rules(text), change(reversed_, paid), QUOTE, TODAY) == []
    assert evaluate(rules(text), change(None, reversed_), QUOTE, TODAY) == []


def test_an_older_state_never_triggers():
    paid = state("PAID", paid="1090.00", updated="2027-01-31T09:00:00.000")
    older = state(updated="2027-01-20T10:00:00.000")
    assert evaluate(rules(), change(paid, older), QUOTE, TODAY) == []


def test_module_and_invoice_type_filters():
    paid = state("PAID", paid="1090.00")
    other_module = kinds(evaluate(rules(), change(state(), paid, module="Memberships"), QUOTE, TODAY))
    assert "membership-active" not in {rule for rule, _ in other_module}
    bill_paid = state("PAID", paid="1090.00", target="ACCPAY")
    assert evaluate(rules(), change(state(target="ACCPAY"), bill_paid), QUOTE, TODAY) == []
    text = "rules: [{name: bills, when: paid, invoice_types: [ACCPAY], set_fields: {values: {b_c: '{number}'}}}]"
    assert kinds(evaluate(rules(text), change(state(target="ACCPAY"), bill_paid), QUOTE, TODAY)) == [
        ("bills", "set_fields")]
    credit = state("PAID", target="ACCRECCREDIT")
    assert evaluate(rules(), change(None, credit), QUOTE, TODAY) == []


# ---- actions ------------------------------------------------------------------------------------
def test_commission_bill_amount_document_and_deterministic_id():
    paid = state("PAID", paid="1090.00", total="1090.00", tax="90.00")
    bill = next(a for a in evaluate(rules(), change(state(), paid), QUOTE, TODAY) if isinstance(a, CommissionBill))
    assert bill.amount == Decimal("25.00") and bill.basis_amount == Decimal("1000.00")  # 2.5% of the subtotal
    assert bill.bill_id == "q-1:commission:rep-commission"
    document = bill.document()
    assert document.kind == "purchase" and document.crm_id == bill.bill_id and document.crm_module == "Quotes"
    assert document.contact.crm_id == "agent-77" and document.contact.crm_module == "Accounts"
    line = document.lines[0]
    assert (line.unit_amount, line.account_code, line.tax_type) == (Decimal("25.00"), "310", "INPUT")
    assert line.description == "Commission 2.5% of subtotal 1000.00 on invoice INV-0042"
    assert document.reference == "Commission INV-0042" and document.currency == "SGD"
    assert document.due_date == TODAY + dt.timedelta(days=30) and document.write_back is False
    # the same invoice and rule give the same bill, whatever else changes
    again = next(a for a in evaluate(rules(), change(None, paid), QUOTE, TODAY) if isinstance(a, CommissionBill))
    assert again.document() == document


def test_commission_rounds_half_up_to_the_cent_on_the_total_basis():
    text = """rules: [{name: c, when: paid, commission_bill: {rate: "3.3333", basis: total, account_code: "310",
               agent: {by_user: {user-3: agent-1}}}}]"""
    paid = state("PAID", paid="100.05", total="100.05", tax="0.00")
    bill = evaluate(rules(text), change(state(total="100.05", tax="0.00"), paid), QUOTE, TODAY)[0]
    assert bill.amount == Decimal("3.33") and bill.document().contact.crm_id == "agent-1"
    paid = state("PAID", paid="15.00", total="15.00", tax="0.00")
    bill = evaluate(rules(text.replace('"3.3333"', '"10"')), change(state(total="15.00", tax="0.00"), paid),
                    QUOTE, TODAY)[0]
    assert bill.amount == Decimal("1.50")


def test_commission_agent_from_the_owning_user_is_looked_up_later():
    text = """rules: [{name: c, when: paid, commission_bill: {rate: 5, account_code: "310",
               agent: {user_field: commission_account_id_c, contact_module: Contacts}}}]"""
    bill = evaluate(rules(text), change(state(), state("PAID", paid="1090.00")), QUOTE, TODAY)[0]
    assert (bill.agent_record_id, bill.agent_user_id, bill.user_field) == (None, "user-3", "commission_account_id_c")
    assert bill.document("agent-2").contact.crm_module == "Contacts"
    assert record_fields(rules(text)) == ["assigned_user_id"]


def test_commission_skips_say_why():
    paid = state("PAID", paid="1090.00")
    no_agent = evaluate(rules(), change(state(), paid), {**QUOTE, "commission_account_id_c": ""}, TODAY)
    skip = next(a for a in no_agent if isinstance(a, Skip))
    assert skip.action == "commission_bill" and "commission_account_id_c" in skip.reason
    text = """rules: [{name: c, when: paid, commission_bill: {rate: 5, account_code: "310",
               agent: {by_user: {someone-else: agent-1}}}}]"""
    assert "not in the rule's by_user map" in evaluate(rules(text), change(state(), paid), QUOTE, TODAY)[0].reason
    zero = state("PAID", paid="0.00", total="0.00", tax="0.00", due="0.00")
    assert isinstance(evaluate(rules(), change(state(total="0.00", tax="0.00"), zero), QUOTE, TODAY)[2], Skip)


def test_long_crm_ids_keep_the_bill_id_within_100_characters():
    assert len(commission_bill_id("x" * 90, "rep-commission")) <= 100
    assert commission_bill_id("x" * 90, "a") != commission_bill_id("y" * 90, "a")


def test_revenue_targets_and_ex_tax_amounts():
    part = state(paid="545.00", total="1090.00", tax="90.00")
    actions = evaluate(rules(), change(state(), part), QUOTE, TODAY)
    assert [(a.module, a.record_id, a.field, a.amount) for a in actions if isinstance(a, RecordRevenue)] == [
        ("Opportunities", "opp-5", "revenue_received_c", Decimal("545.00")),
        ("Users", "user-3", "revenue_received_c", Decimal("545.00"))]
    text = RULES.replace("    revenue:\n      to:", "    revenue:\n      amount: amount_paid_ex_tax\n      to:")
    ex_tax = [a for a in evaluate(rules(text), change(state(), part), QUOTE, TODAY) if isinstance(a, RecordRevenue)]
    assert ex_tax[0].amount == Decimal("500.00")
    missing = evaluate(rules(), change(state(), part), {"assigned_user_id": "user-3"}, TODAY)
    assert [a.reason for a in missing if isinstance(a, Skip) and a.action == "revenue"] == [
        "Quotes q-1 has no opportunity_id"]


def test_a_disabled_rule_does_nothing():
    text = "rules: [{name: a, enabled: false, when: paid, set_fields: {values: {x_c: y}}}]"
    assert evaluate(rules(text), change(state(), state("PAID", paid="1090.00")), QUOTE, TODAY) == []
