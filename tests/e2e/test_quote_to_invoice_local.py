"""Issue 5's fixture through the whole local stack: the accepted quote becomes one Xero sales
invoice of exactly 13,561.08 with tax 1,081.08, its customer is created first in the same run,
the invoice's number, status and amounts are written back on the quote, and re-sending the
hook invoices nothing twice."""

from __future__ import annotations

import time

import pytest
import requests

from bench.local_stack import running_stack, wait_for_jobs
from shared.config import LOCAL_SECRET_DEFAULTS
from tests.conftest import load_fixture

pytestmark = pytest.mark.e2e
TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]


def _invoices(xero: str) -> list[dict]:
    tenants = requests.get(f"{xero}/_emulator/state", timeout=10).json()["tenants"]
    return [r for tenant in tenants.values() for r in tenant.get("invoices", [])]


def _sugar_quote(sugar: str, quote_id: str) -> dict:
    records = requests.get(f"{sugar}/_sugar/state", timeout=10).json()["records"].get("Quotes", [])
    return next((r for r in records if r["id"] == quote_id), {})


def test_the_accepted_quote_fixture_lands_as_one_invoice_to_the_cent():
    hook = load_fixture("sugar/quote_closed_accepted.json")
    with running_stack() as urls:
        api, xero, sugar = urls["gateway"], urls["xero"], urls["sugar"]
        answer = requests.post(f"{api}/crm/quotes", params={"token": TOKEN}, json=hook, timeout=30)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        assert wait_for_jobs(api, [job_id], TOKEN, deadline_seconds=60) == {job_id: "succeeded"}

        (invoice,) = _invoices(xero)
        assert invoice["Type"] == "ACCREC"
        assert (str(invoice["Total"]), str(invoice["TotalTax"])) == ("13561.08", "1081.08")
        contacts = requests.get(f"{xero}/_emulator/state", timeout=10).json()["tenants"]
        numbers = [c.get("ContactNumber") for t in contacts.values() for c in t.get("contacts", [])]
        assert hook["data"]["billing_account_id"] in numbers

        deadline, quote = time.monotonic() + 20, {}
        while time.monotonic() < deadline and not quote.get("xero_total_c"):
            quote = _sugar_quote(sugar, hook["data"]["id"])
            time.sleep(0.5)
        assert quote["xero_total_c"] == "13561.08" and quote["xero_number_c"] == invoice["InvoiceNumber"]
        assert quote["xero_status_c"] == invoice["Status"] and quote["xero_amount_due_c"] == "13561.08"

        again = requests.post(f"{api}/crm/quotes", params={"token": TOKEN},
                              json={**hook, "data": {**hook["data"], "date_modified": "2026-11-27T08:00:00+00:00"}},
                              timeout=30)
        assert again.status_code == 202
        assert wait_for_jobs(api, [again.json()["job_id"]], TOKEN, deadline_seconds=60)[again.json()["job_id"]] \
            == "succeeded"
        assert len(_invoices(xero)) == 1
