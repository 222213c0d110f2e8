"""One CRM, two Xero organisations, through the whole local stack: the mapping configuration
routes each quote by its Account's country; two accepted quotes become two invoices in two
organisations (each customer created in its own organisation first); payments made in both
organisations come back through Xero's webhooks (one delivery per organisation, signed) and are
written to the right quotes. Both organisations are onboarded first through the connector's
connect/callback flow; afterwards a product's and a customer's later saves in the CRM reach every
organisation that holds them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from bench.local_stack import running_stack, wait_for_jobs
from shared.config import LOCAL_SECRET_DEFAULTS
from sugar_xero.local.onboard import connect_through_browser_flow
from sugar_xero.local.xero.config import DEFAULT_TENANT_ID

pytestmark = pytest.mark.e2e
TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
ADMIN_TOKEN = LOCAL_SECRET_DEFAULTS["ADMIN_TOKEN"]
WEBHOOK_KEY = LOCAL_SECRET_DEFAULTS["XERO_WEBHOOK_KEY"]
SG, MY = DEFAULT_TENANT_ID, "5e0b7a3c-9d21-4f6e-8a10-2b3c4d5e6f70"
MAPPING = f"""
version: 1
organisations:
  names: {{SG: "{SG}", MY: "{MY}"}}
  default: SG
  route_by: account.billing_address_country
  routes: {{Singapore: SG, Malaysia: MY}}
"""


def quote(quote_id: str, account_id: str) -> dict:
    return {"id": quote_id, "name": f"Quote {quote_id}", "quote_stage": "Closed Accepted",
            "billing_account_id": account_id, "currency_id": "-99", "taxrate_value": "9.000000",
            "subtotal": "100.000000", "new_sub": "100.000000", "discount": "0.000000", "tax": "9.000000",
            "shipping": "0.000000", "total": "109.000000", "taxable_subtotal": "100.000000",
            "date_modified": "2026-11-26T10:00:00+00:00"}


def signed(events: list[dict]) -> tuple[bytes, str]:
    body = json.dumps({"events": events, "firstEventSequence": 1, "lastEventSequence": len(events),
                       "entropy": uuid.uuid4().hex[:20]}).encode()
    return body, base64.b64encode(hmac.new(WEBHOOK_KEY.encode(), body, hashlib.sha256).digest()).decode()


def test_two_quotes_two_organisations_and_payments_from_both(tmp_path, monkeypatch):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    monkeypatch.setenv("MAPPING_CONFIG", str(mapping))
    with running_stack() as urls:
        api, xero, sugar = urls["gateway"], urls["xero"], urls["sugar"]
        # Both organisations onboarded as an administrator does it (`sugar-xero connect`): one
        # consent, Xero's /connections lists both, the callback records both, SG is the CRM's.
        connected = connect_through_browser_flow(api, ADMIN_TOKEN)
        assert [(t["tenant_id"], t["selected"]) for t in connected["tenants"]] == [(SG, True), (MY, False)], connected
        assert connected["message"] == "Connected."
        seeded = requests.post(f"{sugar}/_sugar/seed/quotes", timeout=10, json={
            "accounts": [{"id": "acc-sg", "name": "Lion City Pte Ltd", "billing_address_country": "Singapore"},
                         {"id": "acc-my", "name": "Kuala Trading Sdn Bhd", "billing_address_country": "Malaysia"}],
            "quotes": [{**quote(q, a), "bundles": [{"name": "Services", "products": [
                {"name": "Service", "quantity": "1", "discount_price": "100.000000", "tax_class": "Taxable",
                 "total_amount": "100.000000", "product_template_id": "pt-svc"}]}]}
                for q, a in (("q-sg", "acc-sg"), ("q-my", "acc-my"))]})
        assert seeded.status_code == 200, seeded.text
        # The catalogue: one product, pushed by its hook to the default organisation only.
        product = {"id": "pt-svc", "name": "Service", "mft_part_num": "SVC-1", "discount_price": "100.000000",
                   "cost_price": "60.000000", "tax_class": "Taxable", "status": "Available",
                   "date_modified": "2026-11-25T08:00:00+00:00"}
        requests.post(f"{sugar}/_sugar/seed", timeout=10,
                      json={"records": {"ProductTemplates": [product]}}).raise_for_status()
        pushed = requests.post(f"{api}/crm/products", params={"token": TOKEN}, timeout=30,
                               json={"bean": "ProductTemplate", "event": "after_save", "data": product})
        assert wait_for_jobs(api, [pushed.json()["job_id"]], TOKEN, deadline_seconds=60) == {
            pushed.json()["job_id"]: "succeeded"}

        jobs = []
        for quote_id, account_id in (("q-sg", "acc-sg"), ("q-my", "acc-my")):
            answer = requests.post(f"{api}/crm/quotes", params={"token": TOKEN}, timeout=30,
                                   json={"bean": "Quote", "event": "after_save", "data": quote(quote_id, account_id)})
            assert answer.status_code == 202, answer.text
            jobs.append(answer.json()["job_id"])
        assert wait_for_jobs(api, jobs, TOKEN, deadline_seconds=90) == dict.fromkeys(jobs, "succeeded")

        tenants = requests.get(f"{xero}/_emulator/state", timeout=10).json()["tenants"]
        invoices = {tenant: tenants.get(tenant, {}).get("invoices", []) for tenant in (SG, MY)}
        assert [len(invoices[SG]), len(invoices[MY])] == [1, 1]
        contacts = {tenant: [c.get("Name") for c in tenants[tenant].get("contacts", [])] for tenant in (SG, MY)}
        assert "Lion City Pte Ltd" in contacts[SG] and "Kuala Trading Sdn Bhd" not in contacts[SG]
        assert "Kuala Trading Sdn Bhd" in contacts[MY] and "Lion City Pte Ltd" not in contacts[MY]
        assert {Decimal(str(i["Total"])) for t in (SG, MY) for i in invoices[t]} == {Decimal("109.00")}
        # the product went to the second organisation before its invoice, which carries its code
        assert [i.get("Code") for i in tenants[MY].get("items", [])] == ["SVC-1"]
        assert [line.get("ItemCode") for line in invoices[MY][0]["LineItems"]] == ["SVC-1"]
        assert [line.get("ItemCode") for line in invoices[SG][0]["LineItems"]] == ["SVC-1"]

        # Paid in full in each organisation; Xero tells the connector, one delivery per organisation.
        for tenant in (SG, MY):
            (invoice,) = invoices[tenant]
            paid = requests.put(f"{xero}/api.xro/2.0/Payments", timeout=10, json={"Payments": [{
                "Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"},
                "Amount": invoice["Total"], "Date": "2026-11-27"}]},
                headers={"Authorization": "Bearer person", "xero-tenant-id": tenant})
            assert paid.status_code == 200, paid.text
            body, signature = signed([{
                "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{invoice['InvoiceID']}",
                "resourceId": invoice["InvoiceID"], "eventDateUtc": "2026-11-27T10:00:00.000",
                "eventType": "UPDATE", "eventCategory": "INVOICE", "tenantId": tenant,
                "tenantType": "ORGANISATION"}])
            delivered = requests.post(f"{api}/xero/webhooks", data=body, timeout=10,
                                      headers={"x-xero-signature": signature, "Content-Type": "application/json"})
            assert delivered.status_code == 200, delivered.text

        deadline, quotes = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            records = requests.get(f"{sugar}/_sugar/state", timeout=10).json()["records"].get("Quotes", [])
            quotes = {r["id"]: r for r in records}
            if all(quotes.get(q, {}).get("xero_status_c") == "PAID" for q in ("q-sg", "q-my")):
                break
            time.sleep(0.5)
        for quote_id, tenant in (("q-sg", SG), ("q-my", MY)):
            (invoice,) = invoices[tenant]
            assert quotes[quote_id]["xero_status_c"] == "PAID", quotes[quote_id]
            assert quotes[quote_id]["xero_number_c"] == invoice["InvoiceNumber"]
            assert quotes[quote_id]["xero_id_c"] == invoice["InvoiceID"]
            assert quotes[quote_id]["xero_amount_due_c"] == "0.00"

        # Later saves in the CRM reach every organisation holding the record: the product (now in
        # both) and the Malaysian customer (in MY only: the default organisation is not given it).
        changed = {**product, "discount_price": "120.000000",
                   "date_modified": datetime.now(UTC).isoformat(timespec="seconds")}
        saved = requests.post(f"{api}/crm/products", params={"token": TOKEN}, timeout=30,
                              json={"bean": "ProductTemplate", "event": "after_save", "data": changed})
        renamed = {"id": "acc-my", "name": "Kuala Trading Berhad", "billing_address_country": "Malaysia",
                   "date_modified": datetime.now(UTC).isoformat(timespec="seconds")}  # newer than its push
        requests.post(f"{sugar}/_sugar/seed", timeout=10,
                      json={"records": {"Accounts": [renamed]}}).raise_for_status()
        account = requests.post(f"{api}/crm/contacts", params={"token": TOKEN}, timeout=30,
                                json={"bean": "Account", "event": "after_save", "data": renamed})
        assert saved.status_code == 202 and account.status_code == 202, (saved.text, account.text)
        deadline, tenants = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            tenants = requests.get(f"{xero}/_emulator/state", timeout=10).json()["tenants"]
            prices = {t: [Decimal(str(i["SalesDetails"]["UnitPrice"])) for i in tenants[t].get("items", [])]
                      for t in (SG, MY)}
            names = {t: sorted(c.get("Name") for c in tenants[t].get("contacts", [])) for t in (SG, MY)}
            if prices == {SG: [Decimal("120")], MY: [Decimal("120")]} and "Kuala Trading Berhad" in names[MY]:
                break
            time.sleep(0.5)
        assert prices == {SG: [Decimal("120")], MY: [Decimal("120")]}, prices
        assert names[MY] == ["Kuala Trading Berhad"] and "Kuala Trading Berhad" not in names[SG], (
            names, requests.get(f"{api}/jobs/{account.json()['job_id']}", params={"token": TOKEN}, timeout=10).json())
