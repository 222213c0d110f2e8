"""The connector against Xero as Xero documents itself (issue 12): each test pins one defect that
the emulator used to hide by agreeing with us, and fails on the code from before the fix.

- an invoice list by IDs= without page has no LineItems: credit notes are built from a paged
  fetch with unitdp=4, to the cent of the original 4-decimal lines;
- GET /CreditNotes takes no IDs=: credit notes are looked up with a where clause;
- POST /Contacts never updates by ContactNumber: a clash is resolved by finding the holder;
- Xero answers are parsed as Decimal, never float.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import responses

from shared.mapping.settings import MappingConfig
from shared.models.documents import ContactDocument
from shared.models.invoices import ContactRef, LineDocument, SalesInvoiceDocument
from shared.models.jobs import CrmRef
from shared.usecases import invoices
from shared.usecases.accept import accept
from shared.usecases.contacts import sync_contacts
from shared.usecases.work import WorkItem
from shared.xero.client import XeroClient, encode_json
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue
from tests.unit.test_contacts_usecase import queued

SGD_GST = {"OUTPUT": Decimal("9"), "NONE": Decimal("0")}


@pytest.fixture
def xero():
    config = EmulatorConfig()
    with serve(config=config) as server:
        yield XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


def _contact(xero: XeroClient, name: str) -> str:
    return xero.upsert_batch("Contacts", [{"Name": name}], idempotency_key=f"seed-{name}")[0]["ContactID"]


def _push(xero: XeroClient, jobs: FakeJobs, mappings: FakeMappings, doc: SalesInvoiceDocument) -> str:
    queue = FakeQueue()
    job_id = accept(kind=invoices.KIND_DOCUMENT, crm=CrmRef(module=doc.crm_module, id=doc.crm_id),
                    document=doc.model_dump(mode="json"), jobs=jobs, queue=queue,
                    status_base_url="https://x/prod").job_id
    items = [WorkItem(message_id=f"m{i}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
             for i, m in enumerate(queue.sent)]
    invoices.push_documents(items, xero=xero, jobs=jobs, mappings=mappings, config=MappingConfig(),
                            tax_rates=SGD_GST)
    return job_id


def test_a_paid_invoice_with_four_decimal_prices_is_credited_to_the_cent(xero):
    contact_id = _contact(xero, "Precise Pte Ltd")
    lines = [
        LineDocument(crm_id="l1", description="Sensor", quantity=Decimal("3"), unit_amount=Decimal("1.2345"),
                     tax_type="OUTPUT"),
        LineDocument(crm_id="l2", description="Cable", quantity=Decimal("2.5"), unit_amount=Decimal("10.0050"),
                     discount_rate=Decimal("12.5"), tax_type="OUTPUT"),
        LineDocument(crm_id="l3", description="Fee", quantity=Decimal("0.3333"), unit_amount=Decimal("7.7777"),
                     tax_type="NONE"),
    ]
    doc = SalesInvoiceDocument(kind="sales", crm_module="Orders", crm_id="o-1",
                               contact=ContactRef(xero_contact_id=contact_id), lines=lines, date="2026-11-02")
    jobs, mappings = FakeJobs(), FakeMappings()
    assert jobs.jobs[_push(xero, jobs, mappings, doc)].status == "succeeded"
    (invoice,) = xero.iter_pages("Invoices", params={"unitdp": "4"})
    payment = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"},
               "Amount": Decimal("1.00"), "Date": "2026-11-03"}
    xero._request("PUT", "/api.xro/2.0/Payments", json_body=encode_json({"Payments": [payment]}),
                  idempotency_key="pay-1")
    mapping = mappings.get_mappings(xero.tenant_id, "Orders#ACCREC", ["o-1"])["o-1"]
    mapping.document = {**mapping.document, "amount_paid": "1.00",
                        "amount_due": str(invoice["Total"] - Decimal("1.00"))}

    job_id = _push(xero, jobs, mappings, doc.model_copy(update={"cancelled": True}))
    assert jobs.jobs[job_id].status == "succeeded", jobs.jobs[job_id].error
    (summary,) = xero.get("CreditNotes")["CreditNotes"]
    note = xero.get(f"CreditNotes/{summary['CreditNoteID']}", {"unitdp": "4"})["CreditNotes"][0]
    assert (note["SubTotal"], note["TotalTax"], note["Total"]) == (
        invoice["SubTotal"], invoice["TotalTax"], invoice["Total"])
    credited = [(line["Quantity"], line["UnitAmount"]) for line in note["LineItems"]]
    assert credited[0] == (Decimal("3.0000"), Decimal("1.2345"))  # not 3 × 1.23
    assert credited[2] == (Decimal("0.3333"), Decimal("7.7777"))
    assert [line["LineAmount"] for line in note["LineItems"]] == [line["LineAmount"] for line in invoice["LineItems"]]


def test_credit_notes_are_fetched_by_id_with_a_where_clause_not_ids(xero):
    contact_id = _contact(xero, "Notes Ltd")
    made = xero.upsert_batch("CreditNotes", [
        {"Type": "ACCRECCREDIT", "Contact": {"ContactID": contact_id}, "Status": "DRAFT",
         "LineItems": [{"Description": f"n{n}", "Quantity": 1, "UnitAmount": Decimal(n + 1), "AccountCode": "200"}]}
        for n in range(3)], idempotency_key="notes")
    wanted = made[1]["CreditNoteID"]
    found = xero.get_by_ids("CreditNotes", [wanted])
    assert [n["CreditNoteID"] for n in found] == [wanted]  # IDs= would answer all three


def test_invoices_by_ids_with_lines_ask_for_a_page(xero):
    contact_id = _contact(xero, "Lines Ltd")
    made = xero.upsert_batch("Invoices", [
        {"Type": "ACCREC", "Contact": {"ContactID": contact_id}, "Status": "DRAFT",
         "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": Decimal("1.2345"), "AccountCode": "200"}]}],
        idempotency_key="inv", params={"unitdp": "4"})
    summary = xero.get_by_ids("Invoices", [made[0]["InvoiceID"]])
    assert "LineItems" not in summary[0]
    full = xero.get_by_ids("Invoices", [made[0]["InvoiceID"]], params=invoices.INVOICE_LINES)
    assert full[0]["LineItems"][0]["UnitAmount"] == Decimal("1.2345")


def test_a_contact_number_clash_links_the_holder_instead_of_renaming(xero):
    """A contact made in Xero (by an earlier push whose answer was lost) already carries the CRM id
    as its ContactNumber: the refusal is about the number, not the name, and the holder is the
    record's contact."""
    holder = xero.upsert_batch("Contacts", [{"Name": "Old Name Pte Ltd", "ContactNumber": "acc-77"}],
                               idempotency_key="seed")[0]
    jobs, queue, mappings = FakeJobs(), FakeQueue(), FakeMappings()
    job_id = queued(jobs, queue, ContactDocument(crm_id="acc-77", name="New Name Pte Ltd"))
    items = [WorkItem(message_id="m0", job_id=m["job_id"], kind=m["kind"], document=m["document"])
             for m in queue.sent]
    sync_contacts(items, xero=xero, jobs=jobs, mappings=mappings, config=MappingConfig())
    job = jobs.jobs[job_id]
    assert job.status == "succeeded", job.error
    (contact,) = xero.iter_pages("Contacts", params={"includeArchived": "true"})
    assert (contact["ContactID"], contact["Name"]) == (holder["ContactID"], "New Name Pte Ltd")
    assert mappings.get_mappings(xero.tenant_id, "Accounts", ["acc-77"])["acc-77"].xero_id == holder["ContactID"]


@responses.activate
def test_xero_answers_are_read_as_decimal_not_float():
    body = json.dumps({"Invoices": [{"InvoiceID": "i", "Total": 0.1, "LineItems": [{"UnitAmount": 1.2345}]}]})
    responses.add(responses.GET, "http://127.0.0.1:9/api.xro/2.0/Invoices/i", body=body,
                  content_type="application/json")
    client = XeroClient("http://127.0.0.1:9", "t", lambda force: "token", sleep=lambda s: None)
    invoice = client.get("Invoices/i")["Invoices"][0]
    assert invoice["Total"] == Decimal("0.1") and isinstance(invoice["Total"], Decimal)
    assert invoice["LineItems"][0]["UnitAmount"] == Decimal("1.2345")


def test_a_contact_merged_in_xero_is_followed_to_its_survivor(xero):
    jobs, queue, mappings = FakeJobs(), FakeQueue(), FakeMappings()

    def sync(doc: ContactDocument) -> str:
        job_id = queued(jobs, queue, doc)
        items = [WorkItem(message_id="m0", job_id=m["job_id"], kind=m["kind"], document=m["document"])
                 for m in queue.sent]
        queue.sent.clear()
        sync_contacts(items, xero=xero, jobs=jobs, mappings=mappings, config=MappingConfig())
        return job_id

    sync(ContactDocument(crm_id="acc-5", name="Merged Away Ltd", crm_modified="2026-11-01T00:00:00+00:00"))
    merged = mappings.get_mappings(xero.tenant_id, "Accounts", ["acc-5"])["acc-5"].xero_id
    survivor = _contact(xero, "Survivor Ltd")
    import requests

    base = xero.base_url
    assert requests.post(f"{base}/_emulator/merge", json={"from": merged, "into": survivor}, timeout=10).ok
    job = jobs.jobs[sync(ContactDocument(crm_id="acc-5", name="Survivor Ltd", email="a@b.test",
                                         crm_modified="2026-11-02T00:00:00+00:00"))]
    assert job.status == "succeeded", job.error
    assert mappings.get_mappings(xero.tenant_id, "Accounts", ["acc-5"])["acc-5"].xero_id == survivor


def test_a_xero_quote_with_four_decimal_prices_is_sent_to_the_cent_with_a_warning(xero):
    """POST /Quotes takes no unitdp (spec 16.1.0): Xero keeps 2 decimals, so the connector sends
    what Xero will keep and computes the total Xero will show."""
    from shared.mapping.invoices import to_xero_document
    from shared.models.invoices import QuoteDocument

    contact_id = _contact(xero, "Quoted Ltd")
    line = LineDocument(description="x", quantity=Decimal("3"), unit_amount=Decimal("1.2345"), tax_type="OUTPUT")
    doc = QuoteDocument(kind="quote", crm_module="Quotes", crm_id="q-4dp",
                        contact=ContactRef(xero_contact_id=contact_id), lines=[line], date="2026-11-02")
    mapped = to_xero_document(doc, MappingConfig(), contact_id=contact_id, tax_rates=SGD_GST)
    assert mapped.body["LineItems"][0]["UnitAmount"] == Decimal("1.23") and any("to the cent" in w
                                                                                for w in mapped.warnings)
    (quote,) = xero.upsert_batch("Quotes", [mapped.body], idempotency_key="q4", params={"unitdp": "4"})
    assert quote["Total"] == mapped.totals.total  # 3 × 1.23 = 3.69 + 9% = 4.02, as Xero computes it


def test_every_quote_is_listed_although_xero_pages_quotes_by_100(xero):
    """GET /Quotes takes no pageSize (spec 16.1.0): pages hold 100, and a full page is not the last."""
    contact_id = _contact(xero, "Many Quotes Ltd")
    for batch in range(3):
        xero.upsert_batch("Quotes", [
            {"Contact": {"ContactID": contact_id}, "Date": "2026-11-02",
             "LineItems": [{"Description": f"q{batch}-{n}", "Quantity": 1, "UnitAmount": Decimal("1"),
                            "AccountCode": "200"}]} for n in range(50)], idempotency_key=f"quotes-{batch}")
    assert len(list(xero.iter_pages("Quotes"))) == 150
