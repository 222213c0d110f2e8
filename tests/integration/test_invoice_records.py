"""The Xero Invoices module filled against the Sugar double (real SugarClient over loopback HTTP):
an invoice made in Xero appears after its webhook, related to the Account through the contact
mapping; one the connector pushed is related to its quote (and the quote's opportunity); and the
history import writes each invoice once, even when it is stopped and run again."""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest
import responses

from shared import wiring
from shared.billing.rules import rules_file
from shared.mapping.settings import MappingFile, mapping_file
from shared.state.dynamo import SyncStateTable
from shared.state.records import Mapping
from shared.sugar import SugarClient
from shared.sugar.invoice_module import MODULE, installed_vardefs
from shared.usecases.invoice_history import (
    HistoryStopped,
    MemoryCheckpoints,
    WritePacer,
    import_history,
)
from shared.xero.client import XeroClient
from sugar_xero.local.sugar_double import SugarDouble, SugarDoubleServer
from tests.conftest import SYNC_TABLE_NAME
from tests.integration.test_payment_worker import TENANT, XERO_BASE, XeroDouble, deliver, event, invoice, receive
from tests.integration.test_payment_worker import run as run_worker
from tests.support.fakes import FakeTokens as Tokens

CONTACT = "c0ffee00-0000-4000-8000-000000000001"  # the contact of test_payment_worker's invoices


@pytest.fixture
def sugar():
    double = SugarDouble()
    double.install_fields(installed_vardefs())
    server = SugarDoubleServer(double)
    yield double, SugarClient(server.url, "xero-connector", "local-sugar-password", "xero_connector", Tokens(),
                              sleep=lambda s: None)
    server.shutdown()


@pytest.fixture
def worker(aws, monkeypatch, tmp_path, sugar):
    """payment_webhook's handler (API Gateway and SQS events) with Xero under `responses` and the
    CRM the Sugar double, the mapping configuration filling the Xero Invoices module."""
    from functions.payment_webhook import app

    double, crm = sugar
    config = tmp_path / "mapping.yaml"
    config.write_text("version: 1\ndefaults:\n  xero_invoices:\n    enabled: true\n"
                      "    related_fields: {opportunity_id: opportunity_id}\n")
    monkeypatch.setenv("MAPPING_CONFIG", str(config))
    mapping_file.cache_clear()
    sqs = aws["sqs"]
    queue = sqs.create_queue(QueueName="webhook")["QueueUrl"]
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", queue)
    monkeypatch.setenv("SUGAR_BASE_URL", "http://127.0.0.1:9/unused")
    monkeypatch.delenv("BILLING_RULES", raising=False)
    rules_file.cache_clear()
    wiring.reset()
    monkeypatch.setattr(wiring, "sugar_client", lambda: crm)
    clients: dict[str, XeroClient] = {}
    monkeypatch.setattr(wiring, "xero_client_for", lambda tenant_id: clients.setdefault(
        tenant_id, XeroClient(XERO_BASE, tenant_id, lambda force: "token", sleep=lambda s: None, max_attempts=3)))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")  # the Sugar double is real HTTP
        yield {**aws, "queue": queue, "handler": app.lambda_handler, "double": double, "xero": XeroDouble(mock),
               "table": aws["dynamodb"].Table(SYNC_TABLE_NAME)}
    wiring.reset()
    mapping_file.cache_clear()
    rules_file.cache_clear()


def records(double: SugarDouble) -> dict[str, dict]:
    return {r["sync_key"]: r for r in double.store.records.get(MODULE, {}).values()}


def test_an_invoice_made_in_xero_appears_in_the_crm_module_after_its_webhook(worker):
    store = SyncStateTable(SYNC_TABLE_NAME, resource=worker["dynamodb"])
    store.put_mapping(Mapping(tenant_id=TENANT, module="Accounts", crm_id="acc-harbour", xero_id=CONTACT))
    invoice_id = str(uuid.uuid4())  # made by the finance team in Xero: no mapping of the connector's
    made_in_xero = invoice(invoice_id, paid=500.0, updated="2026-11-27T12:00:00")
    made_in_xero["SubTotal"] = 1000.0
    made_in_xero["LineItems"] = [{"Description": "Audit", "ItemCode": "AUD", "Quantity": 1, "UnitAmount": 1000.0,
                                  "TaxType": "OUTPUT", "TaxAmount": 90.0, "LineAmount": 1000.0,
                                  "AccountCode": "200"}]
    worker["xero"].add("Invoices", made_in_xero)
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00.123")])
    assert run_worker(worker, receive(worker)) == []

    record = records(worker["double"])[invoice_id]
    assert record["invoice_number"] == made_in_xero["InvoiceNumber"] and record["document_type"] == "ACCREC"
    assert (record["status"], record["total"], record["amount_paid"], record["amount_due"]) == \
           ("AUTHORISED", "1090.00", "500.00", "590.00")
    assert record["sub_total"] == "1000.00" and record["total_tax"] == "90.00"
    assert record["account_id"] == "acc-harbour" and record["xero_tenant_id"] == TENANT
    assert "parent_id" not in record  # nobody in the CRM made it
    assert json.loads(record["lines_json"]) == [{
        "description": "Audit", "item_code": "AUD", "quantity": "1", "unit_amount": "1000.0",
        "tax_type": "OUTPUT", "tax_amount": "90.00", "line_amount": "1000.00", "account_code": "200"}]

    # paid in full later: the same record changes, no second one
    worker["xero"].add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-28T09:00:00"))
    deliver(worker, [event(invoice_id, "2026-11-28T09:00:00.000")])
    assert run_worker(worker, receive(worker)) == []
    assert len(worker["double"].store.records[MODULE]) == 1
    assert records(worker["double"])[invoice_id]["status"] == "PAID"
    assert records(worker["double"])[invoice_id]["fully_paid_on"] == "2026-11-26"


def test_an_invoice_the_connector_pushed_is_related_to_its_quote_and_opportunity(worker):
    from tests.integration.test_payment_worker import map_invoices

    invoice_id = str(uuid.uuid4())
    map_invoices(worker, [invoice(invoice_id)])  # pushed from quote q-0
    worker["double"].seed({"records": {"Quotes": [{"id": "q-0", "name": "Q0", "opportunity_id": "opp-7"}]}})
    worker["xero"].add("Invoices", invoice(invoice_id, paid=100.0, updated="2026-11-27T12:00:00"))
    deliver(worker, [event(invoice_id, "2026-11-27T12:00:00.123")])
    assert run_worker(worker, receive(worker)) == []
    record = records(worker["double"])[invoice_id]
    assert (record["parent_type"], record["parent_id"], record["opportunity_id"]) == ("Quotes", "q-0", "opp-7")
    assert worker["double"].store.records["Quotes"]["q-0"]["xero_amount_paid_c"] == "100.00"  # write-back too


# ---- the history import ----------------------------------------------------------------------
class PagedXero:
    """Xero's paged GET /Invoices and /CreditNotes: ``page`` (1-based) of ``pageSize``, in
    ``order``; ``pagination.pageCount`` as Xero answers it with a page parameter."""

    def __init__(self, invoices: list[dict], credit_notes: list[dict]):
        self.documents = {"Invoices": invoices, "CreditNotes": credit_notes}
        self.calls: list[tuple[str, int]] = []

    def get(self, resource, params=None, **_):
        params = params or {}
        page, size = int(params["page"]), int(params["pageSize"])
        assert params["order"].startswith("Date ASC")
        self.calls.append((resource, page))
        documents = sorted(self.documents[resource], key=lambda d: (d["DateString"], d[
            "InvoiceID" if resource == "Invoices" else "CreditNoteID"]))
        return {resource: documents[(page - 1) * size:page * size],
                "pagination": {"page": page, "pageSize": size, "pageCount": -(-len(documents) // size)}}


def history_documents(count: int) -> tuple[list[dict], list[dict]]:
    invoices = [{**invoice(str(uuid.UUID(int=n + 1))), "DateString": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T00:00:00"}
                for n in range(count)]
    credit_notes = [{"CreditNoteID": str(uuid.UUID(int=10_000 + n)), "Type": "ACCRECCREDIT", "Status": "AUTHORISED",
                     "CreditNoteNumber": f"CN-{n}", "Contact": {"ContactID": CONTACT, "Name": "Harbour View"},
                     "DateString": "2026-05-01T00:00:00", "Total": 10.0, "RemainingCredit": 10.0} for n in range(7)]
    return invoices, credit_notes


def upserts(double: SugarDouble) -> int:
    return double.request_counts()["by_route"].get(f"bulk: PATCH /rest/v11_10/{MODULE}/sync_key/{{key}}", 0)


def test_the_history_import_writes_each_invoice_once_even_after_a_restart(sugar):
    double, crm = sugar
    invoices, credit_notes = history_documents(250)
    xero = PagedXero(invoices, credit_notes)
    checkpoints = MemoryCheckpoints()
    config = MappingFile().defaults
    # Sugar goes down while the third page is written: the run stops there.
    calls = {"bulk": 0}
    real_bulk = crm.bulk

    def failing_bulk(requests):
        calls["bulk"] += 1
        if calls["bulk"] == 11:  # pages of 100 go in 5 bulk calls of 20: this is page 3's first
            double._faults.clear()
            from sugar_xero.local.sugar_double import _Fault

            double._faults.append(_Fault(remaining=10, status=503, path_contains="/bulk"))
        return real_bulk(requests)

    crm.bulk = failing_bulk
    with pytest.raises(HistoryStopped, match="Invoices page 3"):
        import_history(xero, crm, tenant_id=TENANT, mappings=None, config=config, checkpoints=checkpoints)
    # what Sugar took before it went down is checkpointed, to the document
    written_before = upserts(double)
    assert checkpoints.written(TENANT, "Invoices#all") == written_before
    assert 200 <= written_before < 300 and written_before % 20 == 0

    double._faults.clear()
    crm.bulk = real_bulk
    seen = []
    report = import_history(xero, crm, tenant_id=TENANT, mappings=None, config=config, checkpoints=checkpoints,
                            on_page=seen.append)
    assert report.skipped_pages == {"Invoices": written_before // 100, "CreditNotes": 0}
    assert upserts(double) == 257  # every invoice and credit note written exactly once
    assert len(double.store.records[MODULE]) == 257
    assert [(p.resource, p.page, p.page_count) for p in seen] == [("Invoices", 3, 3), ("CreditNotes", 1, 1)]
    assert [c for c in xero.calls if c[0] == "Invoices"][-1:] == [("Invoices", 3)]
    assert xero.calls.count(("Invoices", 1)) == 1  # pages already written were not read again
    credit = records(double)[str(uuid.UUID(int=10_000))]
    assert credit["document_type"] == "ACCRECCREDIT" and credit["amount_due"] == "10.00"

    # and a third run has nothing left to write
    again = import_history(xero, crm, tenant_id=TENANT, mappings=None, config=config, checkpoints=checkpoints)
    assert again.written == 0 and upserts(double) == 257


def test_history_since_a_date_asks_xero_for_those_dates():
    class Asking(PagedXero):
        def get(self, resource, params=None, **_):
            self.params = params
            return {resource: []}

    xero = Asking([], [])
    import_history(xero, None, tenant_id=TENANT, mappings=None, config=MappingFile().defaults,
                   checkpoints=MemoryCheckpoints(), since=date(2026, 3, 1))
    assert xero.params["where"] == "Date >= DateTime(2026, 03, 01)"


def test_writes_are_paced_to_a_thousand_a_minute():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    pacer = WritePacer(1000, clock=lambda: now[0], sleep=sleep)
    for _ in range(25):  # 2,500 writes in pages of 100
        pacer.before(100)
        now[0] += 0.5  # each page takes half a second to write
    # 1,000 in the first minute, then a wait for each later page's room
    assert slept and now[0] >= 120
    assert pacer.waited == pytest.approx(sum(slept))
