"""`sugar-xero rules-check`: validation exit codes and messages, and the dry run's account of
what the rules would do for a Xero invoice (touching nothing: no AWS, no Sugar)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from sugar_xero import rules_check
from sugar_xero.cli import main

RULES = """version: 1
rules:
  - name: membership-active
    when: paid
    modules: [Quotes]
    set_fields:
      module: Accounts
      id_field: billing_account_id
      values: {membership_status_c: Active, membership_paid_on_c: "{paid_date}"}
  - name: membership-lapsed
    when: overdue
    overdue_days: 14
    set_fields: {module: Accounts, id_field: billing_account_id, values: {membership_status_c: Lapsed}}
  - name: rep-commission
    when: paid
    commission_bill:
      rate: "5"
      agent: {record_field: commission_account_id_c}
      account_code: "310"
      tax_type: INPUT
  - name: rep-revenue
    when: [paid, part_paid]
    revenue: {to: [{module: Users, id_field: assigned_user_id, field: revenue_received_c}]}
"""

INVOICE_ID = "8c3e9a2b-5f7d-4c1e-9b0a-2d4e6f8a1c3b"


def xero_invoice(status: str, paid: str, due: str, updated_ms: int) -> dict:
    return {"Invoices": [{
        "Type": "ACCREC", "InvoiceID": INVOICE_ID, "InvoiceNumber": "INV-0042", "Status": status,
        "CurrencyCode": "SGD", "DateString": "2027-01-01T00:00:00", "DueDateString": "2027-01-31T00:00:00",
        "SubTotal": 1000.00, "TotalTax": 90.00, "Total": 1090.00, "AmountPaid": float(paid), "AmountDue": float(due),
        "FullyPaidOnDate": "/Date(1801180800000+0000)/" if status == "PAID" else None,
        "UpdatedDateUTC": f"/Date({updated_ms}+0000)/",
        "Contact": {"ContactID": "c0ffee00-0000-4000-8000-000000000001"},
        "Payments": [],
    }]}


@pytest.fixture
def files(tmp_path):
    rules = tmp_path / "billing.yaml"
    rules.write_text(RULES)
    before = tmp_path / "before.json"
    before.write_text(json.dumps(xero_invoice("AUTHORISED", "0", "1090", 1800000000000)))
    after = tmp_path / "after.json"
    after.write_text(json.dumps(xero_invoice("PAID", "1090", "0", 1801180800000)))
    record = tmp_path / "quote.json"
    record.write_text(json.dumps({"id": "q-1", "_module": "Quotes", "billing_account_id": "acc-9",
                                  "assigned_user_id": "user-3", "commission_account_id_c": "agent-77"}))
    return {"rules": rules, "before": before, "after": after, "record": record, "dir": tmp_path}


def check(*argv) -> tuple[int, str]:
    out = io.StringIO()
    return rules_check.run([str(a) for a in argv], out=out), out.getvalue()


def test_a_valid_file_is_summarised_and_exits_0(files):
    code, text = check(files["rules"])
    assert code == 0
    assert f"ok: {files['rules']}" in text and "4 rule(s)" in text
    assert "membership-lapsed: when overdue 14 days (ACCREC) → set_fields" in text


def test_an_invalid_file_exits_1_naming_file_where_and_what(files):
    bad = files["dir"] / "bad.yaml"
    bad.write_text(RULES.replace("when: overdue\n", "when: overdu\n").replace('rate: "5"', "rate: 500"))
    code, text = check(bad)
    assert code == 1 and f"not usable: {bad}" in text
    assert "rules[1] (membership-lapsed).when[0]" in text
    assert "rules[2] (rep-commission).commission_bill.rate" in text


def test_dry_run_of_a_payment_prints_fields_bill_and_revenue(files):
    code, text = check(files["rules"], "--dry-run", "--invoice", files["after"], "--before", files["before"],
                       "--record", files["record"], "--today", "2027-02-01")
    assert code == 0, text
    assert "AUTHORISED → PAID" in text
    assert 'set Accounts acc-9: membership_status_c = "Active", membership_paid_on_c = "2027-01-29"' in text
    assert ("raise commission bill q-1:commission:rep-commission: 50.00 SGD (5% of subtotal 1000.00) "
            "to Accounts agent-77, account 310, tax type INPUT") in text
    assert "revenue: this invoice counts 1090.00 towards Users user-3.revenue_received_c" in text
    assert "membership-lapsed" not in text.split("4 rule(s)")[1].split("dry run")[1]
    assert text.rstrip().endswith("nothing was changed (dry run)")


def test_dry_run_when_nothing_changes_and_when_overdue(files):
    code, text = check(files["rules"], "--dry-run", "--invoice", files["after"], "--before", files["after"],
                       "--record", files["record"])
    assert code == 0 and "no rule fires: nothing would be done" in text
    code, text = check(files["rules"], "--dry-run", "--invoice", files["before"], "--before", files["before"],
                       "--record", files["record"], "--today", "2027-02-14", "--json")
    assert code == 0 and "rule membership-lapsed fires on overdue (once per invoice)" in text
    assert '"membership_status_c": "Lapsed"' in text


def test_dry_run_without_a_record_says_what_it_cannot_follow(files):
    code, text = check(files["rules"], "--dry-run", "--invoice", files["after"], "--before", files["before"],
                       "--today", "2027-02-01")
    assert code == 0 and "skip set_fields: Quotes CRM-RECORD-ID has no billing_account_id" in text


def test_dry_run_input_mistakes(files):
    code, text = check(files["rules"], "--dry-run", "--invoice", files["dir"] / "absent.json")
    assert code == 1 and "cannot read the invoice" in text
    not_invoice = files["dir"] / "x.json"
    not_invoice.write_text('{"Contacts": []}')
    code, text = check(files["rules"], "--dry-run", "--invoice", not_invoice)
    assert code == 1 and "is not a Xero invoice" in text
    with pytest.raises(SystemExit):
        check(files["rules"], "--dry-run")
    with pytest.raises(SystemExit):
        check(files["rules"], "--invoice", files["after"])


def test_through_the_sugar_xero_command(files, monkeypatch):
    monkeypatch.setenv("BILLING_RULES", str(files["rules"]))
    assert main(["rules-check"]) == 0
    answer = subprocess.run([sys.executable, "-m", "sugar_xero.cli", "rules-check", str(files["rules"]),
                             "--dry-run", "--invoice", str(files["after"]), "--before", str(files["before"]),
                             "--record", str(files["record"]), "--today", "2027-02-01"],
                            capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert "raise commission bill" in answer.stdout
