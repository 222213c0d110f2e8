"""The CRM side against a running local stack, through the command line: `sugar-xero sugar-check`
passes on the stack's Sugar double (the package's fields and hooks installed) and fails once a
field is deleted; `sugar-xero backfill --from-xero` imports Xero's invoices into the Xero
Invoices module once, and a second run writes nothing."""

from __future__ import annotations

import json

import pytest
import requests

from sugar_xero.local.xero.config import DEFAULT_TENANT_ID
from tests.e2e.test_reconcile_local import cli, local_stack

pytestmark = pytest.mark.e2e


def test_sugar_check_and_the_history_import_on_the_local_stack():
    with local_stack() as (state, state_file):
        urls = state["urls"]
        ran = cli("sugar-check", "--state-file", str(state_file))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Accounts" in ran.stdout and "xero_sync_status_c" in ran.stdout and "token=***" in ran.stdout
        assert "local-crm-token" not in ran.stdout

        requests.post(f"{urls['sugar']}/_sugar/seed/fields", timeout=10,
                      json={"remove": {"Quotes": ["xero_amount_due_c"]}}).raise_for_status()
        ran = cli("sugar-check", "--state-file", str(state_file), "--json")
        assert ran.returncode == 1
        problems = [r for r in json.loads(ran.stdout)["rows"] if r["state"] != "present"]
        assert [(r["module"], r["name"], r["state"]) for r in problems] == [("Quotes", "xero_amount_due_c", "missing")]
        status = cli("status", "--state-file", str(state_file))
        assert "the CRM lacks what the configuration needs" in status.stdout and status.returncode == 1

        headers = {"Authorization": "Bearer person", "xero-tenant-id": DEFAULT_TENANT_ID}
        contact = requests.post(f"{urls['xero']}/api.xro/2.0/Contacts", headers=headers, timeout=10,
                                json={"Contacts": [{"Name": "Made In Xero Ltd"}]}).json()["Contacts"][0]
        for n in range(3):
            answer = requests.put(f"{urls['xero']}/api.xro/2.0/Invoices", headers=headers, timeout=10, json={
                "Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": contact["ContactID"]}, "Status": "AUTHORISED",
                              "Date": f"2026-0{n + 1}-15", "DueDate": "2026-12-31", "LineItems": [{
                                  "Description": f"Work {n}", "Quantity": 1, "UnitAmount": 100 + n,
                                  "AccountCode": "200", "TaxType": "OUTPUT"}]}]})
            assert answer.status_code == 200, answer.text
        ran = cli("backfill", "--from-xero", "--state-file", str(state_file))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "imported 3 document(s)" in ran.stdout and "Invoices page 1/1" in ran.stdout
        records = requests.get(f"{urls['sugar']}/_sugar/state", timeout=10).json()["records"].get("xero_Invoices", [])
        assert sorted(r["total"] for r in records) == ["109.00", "110.09", "111.18"]
        again = cli("backfill", "--from-xero", "--state-file", str(state_file))
        assert again.returncode == 0 and "imported 0 document(s)" in again.stdout
