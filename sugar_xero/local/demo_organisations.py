"""The demo's part for one CRM with several Xero organisations: when the running stack's mapping
configuration names organisations (``make run`` uses ``demo_mapping.yaml``: Singapore and
Malaysia), both organisations are connected through the connector's connect/callback flow (the
emulator's user may access both, so one consent connects both), one accepted quote per
organisation is sent, and the demo prints which organisation each invoice landed in."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from typing import Any, TextIO

import requests

from shared.config import LOCAL_SECRET_DEFAULTS
from shared.mapping.settings import MappingConfigError, Organisations, load_mapping_file
from sugar_xero.local.onboard import OnboardingFailed, connect_through_browser_flow

TERMINAL = {"succeeded", "failed", "ignored"}
# A customer per organisation, by the field the demo configuration routes on.
DEMO_CUSTOMERS = {"Singapore": ("demo-acc-sg", "Marina Bay Traders Pte Ltd"),
                  "Malaysia": ("demo-acc-my", "Kuala Lumpur Supplies Sdn Bhd")}


def organisations_of(state: dict[str, Any]) -> Organisations | None:
    path = (state.get("environment") or {}).get("MAPPING_CONFIG")
    if not path:
        return None
    try:
        return load_mapping_file(path).organisations
    except MappingConfigError:
        return None


def _quote(quote_id: str, account_id: str) -> dict[str, Any]:
    return {"id": quote_id, "name": f"Demo quote {quote_id}", "quote_stage": "Closed Accepted",
            "billing_account_id": account_id, "currency_id": "-99", "taxrate_value": "9.000000",
            "subtotal": "500.000000", "new_sub": "500.000000", "discount": "0.000000", "tax": "45.000000",
            "shipping": "0.000000", "total": "545.000000", "taxable_subtotal": "500.000000",
            "date_modified": "2026-11-26T10:00:00+00:00"}


def route_one_quote_to_each(session: requests.Session, *, api_url: str, xero_url: str | None,
                            sugar_url: str | None, state: dict[str, Any], token: str, wait_seconds: float,
                            out: TextIO) -> bool:
    """True when there is nothing to show (one organisation) or both quotes landed where routed."""
    organisations = organisations_of(state)
    if organisations is None or organisations.route_by != "account.billing_address_country" \
            or not sugar_url or not xero_url:
        return True
    routed = [(country, *DEMO_CUSTOMERS[country]) for country in DEMO_CUSTOMERS
              if organisations.tenant_for(country) in organisations.names.values()]
    print("", file=out)
    print(f"One CRM, {len(organisations.names)} Xero organisations ({', '.join(organisations.names)}): "
          f"quotes routed by the Account's country", file=out)
    # Onboarded as an administrator does it after `sugar-xero connect`: one consent, every organisation.
    try:
        connected = connect_through_browser_flow(api_url, os.environ.get("ADMIN_TOKEN")
                                                 or LOCAL_SECRET_DEFAULTS["ADMIN_TOKEN"], session=session)
    except (OnboardingFailed, requests.RequestException, ValueError) as error:
        print(f"  connecting the organisations failed: {error}", file=out)
        return False
    for tenant in connected.get("tenants") or []:
        name = organisations.name_of(tenant["tenant_id"]) or "not in the mapping configuration"
        print(f"  connected: {tenant['tenant_name']} ({tenant['tenant_id']}) = {name}"
              f"{', the default' if tenant.get('selected') else ''}", file=out)
    if connected.get("message") and connected["message"] != "Connected.":
        print(f"  {connected['message']}", file=out)
    seeded = session.post(f"{sugar_url}/_sugar/seed/quotes", timeout=10, json={
        "accounts": [{"id": account_id, "name": name, "billing_address_country": country}
                     for country, account_id, name in routed],
        "quotes": [{**_quote(f"demo-q-{account_id[-2:]}", account_id), "bundles": [{"name": "Services", "products": [
            {"name": "Quarterly maintenance", "quantity": "1", "discount_price": "500.000000",
             "tax_class": "Taxable", "total_amount": "500.000000"}]}]} for _, account_id, _ in routed]})
    seeded.raise_for_status()
    jobs: dict[str, tuple[str, str]] = {}
    for country, account_id, _ in routed:
        quote_id = f"demo-q-{account_id[-2:]}"
        answer = session.post(f"{api_url}/crm/quotes", params={"token": token}, timeout=10,
                              json={"bean": "Quote", "event": "after_save", "data": _quote(quote_id, account_id)})
        if answer.status_code != 202:
            print(f"  quote {quote_id}: HTTP {answer.status_code} {answer.text[:200]}", file=out)
            return False
        jobs[answer.json()["job_id"]] = (quote_id, country)
    finished = _wait_for_jobs(session, api_url, token, set(jobs), wait_seconds)
    return _report_routed(session, xero_url, organisations, jobs, finished, out)


def _wait_for_jobs(session: requests.Session, api_url: str, token: str, job_ids: set[str],
                   wait_seconds: float) -> dict[str, dict[str, Any]]:
    """The jobs that ended within ``wait_seconds`` (bounded), as last read."""
    deadline, finished = time.monotonic() + wait_seconds, {}
    while time.monotonic() < deadline and len(finished) < len(job_ids):
        for job_id in job_ids - set(finished):
            job = session.get(f"{api_url}/jobs/{job_id}", params={"token": token}, timeout=10).json()
            if job.get("status") in TERMINAL:
                finished[job_id] = job
        time.sleep(0.25)
    return finished


def _report_routed(session: requests.Session, xero_url: str, organisations: Any, jobs: dict[str, tuple[str, str]],
                   finished: dict[str, dict[str, Any]], out: TextIO) -> bool:
    """Each quote's invoice, found in the organisation it was routed to; False when one is missing."""
    tenants = session.get(f"{xero_url}/_emulator/state", timeout=10).json().get("tenants") or {}
    ok = True
    for job_id, (quote_id, country) in jobs.items():
        job = finished.get(job_id) or {"status": "unfinished"}
        tenant_id = organisations.tenant_for(country)
        name = organisations.name_of(tenant_id)
        invoice_id = (job.get("xero") or {}).get("invoice_id") or (job.get("xero") or {}).get("id")
        invoice = next((i for i in (tenants.get(tenant_id) or {}).get("invoices", [])
                        if i.get("InvoiceID") == invoice_id or (i.get("Reference") or "").find(quote_id) >= 0), None)
        if job.get("status") != "succeeded" or invoice is None:
            ok = False
            print(f"  quote {quote_id} ({country}): job {job.get('status')} {job.get('error') or ''}".rstrip(),
                  file=out)
            continue
        print(f"  quote {quote_id} (customer in {country}) → organisation {name} ({tenant_id}): invoice "
              f"{invoice.get('InvoiceNumber')} total {Decimal(str(invoice.get('Total'))):.2f}", file=out)
    return ok
