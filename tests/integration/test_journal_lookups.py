"""The journal finds a dead attempt's quote or purchase order the way Xero lets you ask.

GET /Quotes and GET /PurchaseOrders take no ``where`` and no ``IDs`` (``xero_accounting.yaml``
16.1.0), and Xero ignores a parameter an operation does not take: a ``where`` lookup answers the
first page of every quote, so a marker on page two is never found and the document is created a
second time. The emulator ignores unknown parameters as Xero does, so these tests put the
document past the first page."""

from __future__ import annotations

import pytest

from shared.models.documents import ContactDocument
from shared.state.records import Intent
from shared.usecases.journal import Entry, Journal
from shared.xero.client import XeroClient
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.support.fakes import FakeMappings

EARLIER = 120  # more than Xero's page of 100


@pytest.fixture
def xero():
    config = EmulatorConfig()
    with serve(config=config) as server:
        yield XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


def _seed(xero: XeroClient, resource: str, number_field: str | None, prefix: str, contact_id: str) -> None:
    bodies = []
    for n in range(EARLIER):
        body = {"Contact": {"ContactID": contact_id}, "Date": "2026-12-01",
                "LineItems": [{"Description": f"Earlier {n}", "Quantity": 1, "UnitAmount": 10, "AccountCode": "200"}]}
        if number_field:
            body[number_field] = f"{prefix}-{n:04d}"
        bodies.append(body)
    for start in range(0, len(bodies), 50):
        xero.upsert_batch(resource, bodies[start:start + 50], idempotency_key=f"seed-{resource}-{start}")


def _dead_attempt(journal_store: FakeMappings, xero: XeroClient, module: str, resource: str,
                  body: dict) -> tuple[Entry, str]:
    """Xero made the document, then the worker died before its mapping was stored."""
    (made,) = xero.upsert_batch(resource, [dict(body)], idempotency_key=f"dead-{module}")
    journal_store.record_intent(Intent(tenant_id=xero.tenant_id, module=module, crm_id="crm-1", resource=resource))
    return Entry(module=module, crm_id="crm-1", resource=resource, body=dict(body)), made


def _contact(xero: XeroClient) -> str:
    (contact,) = xero.upsert_batch("Contacts", [{"Name": "Harbour Foods Pte Ltd"}], idempotency_key="contact")
    return contact["ContactID"]


@pytest.mark.parametrize("resource, number_field, id_field", [
    ("Quotes", "QuoteNumber", "QuoteID"),
    ("PurchaseOrders", "PurchaseOrderNumber", "PurchaseOrderID"),
])
def test_a_document_past_the_first_page_is_found_by_its_number(xero, resource, number_field, id_field):
    contact_id = _contact(xero)
    _seed(xero, resource, number_field, "EARLY", contact_id)
    store = FakeMappings()
    body = {"Contact": {"ContactID": contact_id}, "Date": "2026-12-02", number_field: "CRM-TARGET",
            "LineItems": [{"Description": "Lift inspection", "Quantity": 1, "UnitAmount": 250, "AccountCode": "200"}]}
    entry, made = _dead_attempt(store, xero, f"Quotes#{resource}", resource, body)
    journal = Journal(store, xero)

    assert journal.recover([entry]) == {}
    assert entry.found is not None and entry.body[id_field] == made[id_field]  # updated, never created again
    assert journal.lookups == 1  # one call by number, not a walk through every page


def test_a_quote_marked_by_reference_is_found_among_its_customers_quotes_on_any_page(xero):
    contact_id = _contact(xero)
    _seed(xero, "Quotes", None, "", contact_id)
    store = FakeMappings()
    body = {"Contact": {"ContactID": contact_id}, "Date": "2026-12-02", "Reference": "CRM q-77",
            "LineItems": [{"Description": "Lift inspection", "Quantity": 1, "UnitAmount": 250, "AccountCode": "200"}]}
    entry, made = _dead_attempt(store, xero, "Quotes#Quotes", "Quotes", body)
    journal = Journal(store, xero)

    assert journal.recover([entry]) == {}
    assert entry.body["QuoteID"] == made["QuoteID"]
    assert journal.lookups == 2  # the customer's quotes, page by page (121: two pages)


# ---- how many markers one lookup carries ---------------------------------------------------------
def _dead_contacts(xero: XeroClient, store: FakeMappings, crm_ids: list[str]) -> list[Entry]:
    """Xero made these contacts, the worker died before their mappings (one batch call)."""
    bodies = [{"Name": f"Customer {crm_id}", "ContactNumber": crm_id} for crm_id in crm_ids]
    xero.upsert_batch("Contacts", bodies, idempotency_key="dead-contacts")
    for crm_id in crm_ids:
        store.record_intent(Intent(tenant_id=xero.tenant_id, module="Accounts", crm_id=crm_id, resource="Contacts"))
    # a newer save of each (another name): each is found and becomes an update
    return [Entry(module="Accounts", crm_id=crm_id, resource="Contacts",
                  body={"Name": f"Customer {crm_id} Pte Ltd", "ContactNumber": crm_id}) for crm_id in crm_ids]


@pytest.fixture
def emulator():
    config = EmulatorConfig()
    with serve(config=config) as server:
        yield server, XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


def _lookups(server) -> list[dict]:
    import requests

    log = requests.get(f"{server.url}/_emulator/requests", params={"since": 0}, timeout=30).json()["requests"]
    return [r for r in log if r["method"] == "GET" and r["path"].endswith("/Contacts")]


def test_a_batch_of_50_short_contact_numbers_is_looked_up_in_one_call(emulator):
    """50 markers of 11 characters make a 2,023-character query: one call, not two of 25."""
    server, xero = emulator
    store = FakeMappings()
    entries = _dead_contacts(xero, store, [f"bench-c{n:04d}" for n in range(50)])
    journal = Journal(store, xero)
    assert journal.recover(entries) == {}
    assert all("ContactID" in e.body for e in entries)
    assert journal.lookups == 1 and len(_lookups(server)) == 1


def test_sugar_ids_are_looked_up_in_as_few_calls_as_the_query_length_allows(emulator):
    """Sugar's ids are 36-character GUIDs: 30 fit in a query Xero accepts (with includeArchived),
    so 50 take two calls, each query within the limit (the emulator answers 404 past it, as
    Xero's gateway does)."""
    import uuid

    server, xero = emulator
    store = FakeMappings()
    entries = _dead_contacts(xero, store, [str(uuid.uuid5(uuid.NAMESPACE_URL, f"acc-{n}")) for n in range(50)])
    journal = Journal(store, xero)
    assert journal.recover(entries) == {}
    assert all("ContactID" in e.body for e in entries)
    calls = _lookups(server)
    assert journal.lookups == 2 and [r["status"] for r in calls] == [200, 200]
    from urllib.parse import urlencode

    from shared.usecases.journal import MAX_QUERY_CHARS
    assert all(len(urlencode(r["query"])) <= MAX_QUERY_CHARS for r in calls)
    assert max(r["query"]["where"].count(" OR ") + 1 for r in calls) > 25  # more than the old fixed 25


def test_the_emulator_refuses_a_query_longer_than_xeros_gateway_takes(emulator):
    import requests

    server, xero = emulator
    headers = {"Authorization": "Bearer x", "xero-tenant-id": xero.tenant_id}
    fits = requests.get(f"{server.url}/api.xro/2.0/Contacts", params={"where": "x" * 2042}, headers=headers, timeout=30)
    too_long = requests.get(f"{server.url}/api.xro/2.0/Contacts", params={"where": "x" * 2043}, headers=headers,
                            timeout=30)
    assert fits.status_code != 404  # (Xero's where parser may refuse it: not the gateway)
    assert too_long.status_code == 404 and "cannot be found" in too_long.text


def test_a_batch_of_name_clashes_is_looked_up_in_queries_xeros_gateway_accepts(emulator):
    """25 CRM accounts whose names Xero already holds (entered there by hand): the candidates'
    lookup (name and email of each) is far longer than one query Xero accepts, so it is split;
    before, Xero's gateway (and now the emulator) answered 404 and every contact failed."""
    from shared.usecases import contacts
    from tests.integration.test_exactly_once import World

    server, xero = emulator
    names = [f"Marina Bay Engineering and Facilities Management Services {n:02d} Pte Ltd" for n in range(25)]
    xero.upsert_batch("Contacts", [{"Name": name, "EmailAddress": f"accounts{n:02d}@marinabay-engineering.com.sg"}
                                   for n, name in enumerate(names)], idempotency_key="entered-in-xero")
    world = World(xero)
    jobs = [world.accept(contacts.KIND, ContactDocument(
        crm_module="Accounts", crm_id=f"acc-{n:02d}", name=name, email=f"accounts{n:02d}@marinabay-engineering.com.sg",
        crm_modified="2026-12-01T00:00:00Z")) for n, name in enumerate(names)]
    world.drain()
    lookups = _lookups(server)
    assert lookups and all(r["status"] == 200 for r in lookups)
    assert {world.jobs.jobs[j].status for j in jobs} == {"succeeded"}, [world.jobs.jobs[j].error for j in jobs]
    assert len(world.records("Contacts")) == 25  # each CRM account found its Xero contact
