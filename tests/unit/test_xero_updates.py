"""Xero's news back into the CRM (shared/usecases/xero_updates.py): documents applied onto their
mappings and CRM records, never backwards, once per state; pending webhook refreshes fetched 50
ids a call, credit notes through their invoices, contacts when configured. The sync table and
the webhook event items are moto's DynamoDB; Xero and Sugar are in-memory doubles."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.errors import RateLimited, XeroError
from shared.mapping.settings import MappingConfig
from shared.mapping.xero_documents import document_state
from shared.models.invoices import DocumentChange, XeroDocumentState
from shared.state.dynamo import SyncStateTable
from shared.state.records import Mapping
from shared.state.webhook_events import WebhookEventTable
from shared.sugar.errors import SugarInvalidRequest, SugarUnavailable
from shared.usecases import xero_updates
from shared.usecases.xero_updates import apply_documents, imported_record_id, refresh_pending
from tests.conftest import SYNC_TABLE_NAME
from tests.support.fakes import FakeSugar

TENANT = "b1e2c3d4-aaaa-4bbb-8ccc-123456789abc"
CONFIG = MappingConfig()
ONLINE = "https://in.xero.com/OnlineInvoiceOfQ1"


# ---- Xero documents as Xero's GET answers them ------------------------------------------------
def xero_date(iso: str) -> str:
    moment = datetime.fromisoformat(iso).replace(tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def invoice(invoice_id: str, *, status: str = "AUTHORISED", paid: float = 0, credited: float = 0,
            updated: str = "2026-11-27T10:00:00", total: float = 1090.0, kind: str = "ACCREC",
            number: str | None = "INV-0001", payments: list[dict] | None = None,
            fully_paid_on: str | None = None) -> dict[str, Any]:
    due = 0 if status == "VOIDED" else round(total - paid - credited, 2)
    document = {
        "InvoiceID": invoice_id, "Type": kind, "InvoiceNumber": number, "Reference": "Q-1", "Status": status,
        "Contact": {"ContactID": "c0ffee00-0000-4000-8000-000000000001", "Name": "Harbour View Pte Ltd"},
        "CurrencyCode": "SGD", "DateString": "2026-11-01T00:00:00", "DueDateString": "2026-12-01T00:00:00",
        "SubTotal": 1000.0, "TotalTax": 90.0, "Total": total, "AmountDue": due, "AmountPaid": paid,
        "AmountCredited": credited, "UpdatedDateUTC": xero_date(updated),
        "LineItems": [{"LineItemID": "11111111-2222-4333-8444-555555555555", "Description": "Membership",
                       "Quantity": 1.0, "UnitAmount": 1000.0, "LineAmount": 1000.0}],
        "Payments": payments or [],
    }
    if fully_paid_on:
        document["FullyPaidOnDate"] = xero_date(fully_paid_on)
    return document


def payment(amount: float, day: str = "2026-11-20") -> dict[str, Any]:
    return {"PaymentID": str(uuid.uuid4()), "Date": xero_date(f"{day}T00:00:00"), "Amount": amount,
            "Reference": "bank", "Status": "AUTHORISED"}


def credit_note(note_id: str, *, allocated_to: list[str], amount: float = 100.0,
                updated: str = "2026-11-27T11:00:00") -> dict[str, Any]:
    return {"CreditNoteID": note_id, "Type": "ACCRECCREDIT", "CreditNoteNumber": "CN-0001", "Status": "PAID",
            "Contact": {"ContactID": "c0ffee00-0000-4000-8000-000000000001"}, "Total": amount,
            "RemainingCredit": 0.0, "UpdatedDateUTC": xero_date(updated),
            "Allocations": [{"Invoice": {"InvoiceID": i}, "Amount": amount, "Date": xero_date(updated)}
                            for i in allocated_to]}


class FakeXeroReader:
    """GET by IDs and the online invoice link, like Xero: every call recorded."""

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, dict[str, Any]]] = {"Invoices": {}, "CreditNotes": {}, "Contacts": {}}
        self.online: dict[str, str] = {}
        self.calls: list[tuple[str, Any]] = []
        self.fail: Exception | None = None

    def add(self, resource: str, document: dict[str, Any]) -> None:
        key = {"Invoices": "InvoiceID", "CreditNotes": "CreditNoteID", "Contacts": "ContactID"}[resource]
        self.resources[resource][document[key]] = copy.deepcopy(document)

    def get_by_ids(self, resource: str, ids: list[str], *, params: dict[str, Any] | None = None) -> list[dict]:
        found = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 50):
            chunk = unique[start:start + 50]
            self.calls.append((resource, list(chunk)))
            if self.fail:
                raise self.fail
            found += [copy.deepcopy(self.resources[resource][i]) for i in chunk if i in self.resources[resource]]
        return found

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(("GET", path))
        invoice_id = path.split("/")[1]
        if invoice_id not in self.online:
            raise XeroError("Xero answered 400: no online invoice", status=400)
        return {"OnlineInvoices": [{"OnlineInvoiceUrl": self.online[invoice_id]}]}

    def list_gets(self, resource: str) -> list[list[str]]:
        return [ids for name, ids in self.calls if name == resource]


class ImportingSugar(FakeSugar):
    """FakeSugar plus record creation with a given id, refusing a second create as Sugar does."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[tuple[str, dict[str, Any]]] = []

    def create_record(self, module: str, fields: dict[str, Any]) -> dict[str, Any]:
        if self.down is not None:
            raise self.down
        self.created.append((module, dict(fields)))
        if (module, fields["id"]) in self.records:
            raise SugarInvalidRequest(f"POST /{module}: Sugar answered 422 invalid_parameter: Record already "
                                      f"exists: {fields['id']} in module: {module}", status=422)
        self.records[(module, fields["id"])] = dict(fields)
        return dict(fields)


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def table(moto_dynamodb):
    return SyncStateTable(SYNC_TABLE_NAME, resource=moto_dynamodb.resource("dynamodb"))


@pytest.fixture
def events(moto_dynamodb):
    return WebhookEventTable(SYNC_TABLE_NAME, resource=moto_dynamodb.resource("dynamodb"), sleep=lambda s: None)


def mapped(table: SyncStateTable, document: dict[str, Any], *, crm_id: str = "q-1", module: str = "Quotes#ACCREC",
           online_url: str | None = ONLINE, resource: str = "Invoices") -> XeroDocumentState:
    """A document the connector pushed, with its state as the push stored it."""
    state = document_state(resource, document, line_crm_ids=["line-1"], online_url=online_url)
    table.put_mapping(Mapping(tenant_id=TENANT, module=module, crm_id=crm_id, xero_id=state.xero_id,
                              xero_number=state.number, document=state.model_dump(mode="json")))
    return state


def stored(table: SyncStateTable, crm_id: str = "q-1", module: str = "Quotes#ACCREC") -> XeroDocumentState:
    mapping = table.get_mappings(TENANT, module, [crm_id])[crm_id]
    return XeroDocumentState.model_validate(mapping.document)


def apply(table, sugar, documents, *, changes: list | None = None, config=CONFIG, xero=None, resource="Invoices"):
    return apply_documents(resource, documents, tenant_id=TENANT, mappings=table, crm=sugar, config=config,
                           on_changes=(changes.extend if changes is not None else None), xero=xero)


# ---- apply_documents --------------------------------------------------------------------------
@pytest.mark.parametrize("news, expected", [
    (dict(paid=400.0, payments=[payment(400.0)]),
     {"xero_status_c": "AUTHORISED", "xero_amount_paid_c": "400.00", "xero_amount_due_c": "690.00",
      "xero_paid_date_c": "", "xero_payments_c": "2026-11-20 400.00"}),
    (dict(status="PAID", paid=1090.0, payments=[payment(400.0), payment(690.0, "2026-11-26")],
          fully_paid_on="2026-11-26T00:00:00"),
     {"xero_status_c": "PAID", "xero_amount_paid_c": "1090.00", "xero_amount_due_c": "0.00",
      "xero_paid_date_c": "2026-11-26", "xero_payments_c": "2026-11-20 400.00; 2026-11-26 690.00"}),
    (dict(status="VOIDED"), {"xero_status_c": "VOIDED", "xero_amount_due_c": "0.00", "xero_amount_paid_c": "0.00"}),
], ids=["part-paid", "paid", "voided"])
def test_paid_part_paid_and_voided_invoices_update_the_crm_record(table, news, expected):
    invoice_id = str(uuid.uuid4())
    before = mapped(table, invoice(invoice_id))
    sugar, changes = FakeSugar(), []
    report = apply(table, sugar, [invoice(invoice_id, updated="2026-11-27T12:00:00", **news)], changes=changes)

    assert [c.crm_id for c in report.changes] == ["q-1"] and report.pending == {}
    ((module, updates),) = sugar.calls
    assert module == "Quotes"  # the CRM module: the mapping module before '#'
    fields = updates["q-1"]
    assert {k: fields[k] for k in expected} == expected
    assert fields["xero_id_c"] == invoice_id and fields["xero_url_c"] == ONLINE  # the known link is kept
    # Xero's news leaves the push's own status fields alone.
    assert not {"xero_sync_status_c", "xero_last_error_c", "xero_synced_at_c"} & set(fields)

    after = stored(table)
    assert after.status == expected["xero_status_c"] and after.updated_utc > before.updated_utc
    assert after.line_ids == {"line-1": "11111111-2222-4333-8444-555555555555"}  # kept for the next push
    (change,) = changes
    assert isinstance(change, DocumentChange) and change.crm_module == "Quotes" and change.tenant_id == TENANT
    assert change.before == before and change.after == after


def test_the_same_state_again_writes_nothing_and_calls_nothing(table):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id))
    news = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")
    sugar, changes = FakeSugar(), []
    apply(table, sugar, [news], changes=changes)
    xero = FakeXeroReader()
    for _ in range(3):  # duplicates, including one in the same call
        report = apply(table, sugar, [news, news], changes=changes, xero=xero)
        assert report.unchanged == {invoice_id} and report.changes == []
    assert len(sugar.calls) == 1 and len(changes) == 1 and xero.calls == []


def test_out_of_order_news_never_moves_a_record_backwards(table):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id, updated="2026-11-27T09:00:00"))
    part = invoice(invoice_id, paid=400.0, updated="2026-11-27T10:00:00")
    paid = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T11:00:00")
    sugar = FakeSugar()
    apply(table, sugar, [paid, part])  # both in one call: the newest wins whatever the order
    assert stored(table).status == "PAID"
    report = apply(table, sugar, [part])  # the older one arrives late on its own
    assert report.unchanged == {invoice_id} and report.changes == []
    assert stored(table).status == "PAID"
    assert [u["q-1"]["xero_status_c"] for _, u in sugar.calls] == ["PAID"]


def test_sugar_failing_then_recovering_writes_once_with_the_right_values(table):
    invoice_id = str(uuid.uuid4())
    before = mapped(table, invoice(invoice_id))
    news = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")
    sugar, changes = FakeSugar(), []
    sugar.down = SugarUnavailable("POST /bulk: Sugar answered 503 maintenance", status=503, retryable=True)
    for _ in range(2):
        report = apply(table, sugar, [news], changes=changes)
        assert invoice_id in report.pending and report.changes == []
        assert stored(table) == before and changes == []  # nothing stored, no rules: applied again later
    sugar.down = None
    report = apply(table, sugar, [news], changes=changes)
    assert report.pending == {} and len(changes) == 1
    assert apply(table, sugar, [news], changes=changes).unchanged == {invoice_id}
    attempts = [u["q-1"] for _, u in sugar.calls]
    assert len(attempts) == 3 and attempts[0] == attempts[1] == attempts[2]  # the same values every time
    assert sugar.records[("Quotes", "q-1")] == attempts[-1]
    assert sugar.records[("Quotes", "q-1")]["xero_status_c"] == "PAID"


def test_a_record_gone_from_sugar_is_reported_and_the_state_still_stored(table):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id))
    sugar, changes = FakeSugar(), []
    sugar.missing.add("q-1")
    report = apply(table, sugar, [invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")],
                   changes=changes)
    assert "q-1" in report.failed[invoice_id] or "404" in report.failed[invoice_id]
    assert report.settled == {invoice_id} and stored(table).status == "PAID" and len(changes) == 1


def test_rules_failing_leave_the_news_to_be_applied_again(table):
    invoice_id = str(uuid.uuid4())
    before = mapped(table, invoice(invoice_id))
    news = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")

    def broken(changes):
        raise RuntimeError("rules file unreadable")

    report = apply_documents("Invoices", [news], tenant_id=TENANT, mappings=table, crm=FakeSugar(),
                             config=CONFIG, on_changes=broken)
    assert "rules file unreadable" in report.pending[invoice_id] and stored(table) == before
    seen: list = []
    assert apply(table, FakeSugar(), [news], changes=seen).changes and len(seen) == 1


def test_two_workers_racing_leave_the_newest_state_everywhere(table):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id, updated="2026-11-27T09:00:00"))
    older = invoice(invoice_id, paid=400.0, updated="2026-11-27T10:00:00")
    newer = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T11:00:00")
    sugar = FakeSugar()

    class Interleaved:
        """Worker A read the mapping; worker B applies the newer news before A stores."""

        def __init__(self) -> None:
            self.raced = False

        def __getattr__(self, name):
            return getattr(table, name)

        def put_document_state(self, mapping, document, *, expected_updated_utc):
            if not self.raced:
                self.raced = True
                apply(table, sugar, [newer])  # B: writes PAID to the CRM and stores it
            return table.put_document_state(mapping, document, expected_updated_utc=expected_updated_utc)

    report = apply_documents("Invoices", [older], tenant_id=TENANT, mappings=Interleaved(), crm=sugar,
                             config=CONFIG)
    assert report.changes == [] and report.rewrites == 1
    assert stored(table).status == "PAID"
    # A's part-paid write reached Sugar after B's; A then wrote B's winning state again.
    assert [u["q-1"]["xero_status_c"] for _, u in sugar.calls] == ["AUTHORISED", "PAID", "PAID"]
    assert sugar.records[("Quotes", "q-1")]["xero_status_c"] == "PAID"


def test_documents_the_connector_did_not_create_are_ignored_by_default(table):
    sugar, changes = ImportingSugar(), []
    stranger = invoice(str(uuid.uuid4()), status="PAID", paid=1090.0)
    report = apply(table, sugar, [stranger], changes=changes)
    assert report.ignored == {stranger["InvoiceID"]} and report.settled == {stranger["InvoiceID"]}
    assert sugar.calls == [] and sugar.created == [] and changes == []


def test_documents_the_connector_did_not_create_are_imported_once_when_configured(table):
    config = MappingConfig.model_validate({"xero_updates": {"unknown_documents": "import",
                                                            "import_module": "Xero_Invoices"}})
    sugar, changes = ImportingSugar(), []
    stranger = invoice(str(uuid.uuid4()), number="INV-0777", paid=100.0)
    bill = invoice(str(uuid.uuid4()), kind="ACCPAY", number="BILL-9")
    report = apply(table, sugar, [stranger, bill], changes=changes, config=config)

    record_id = imported_record_id(TENANT, stranger["InvoiceID"])
    assert report.imported == {stranger["InvoiceID"]} and report.ignored == {bill["InvoiceID"]}
    ((module, fields),) = sugar.created
    assert module == "Xero_Invoices" and fields["id"] == record_id and fields["sync_key"] == stranger["InvoiceID"]
    assert fields["name"] == "INV-0777 Harbour View Pte Ltd"
    assert sugar.records[("Xero_Invoices", record_id)]["xero_amount_paid_c"] == "100.00"
    assert stored(table, record_id, "Xero_Invoices#ACCREC").amount_paid == Decimal("100.00")
    (change,) = changes
    # first sight of an import: no transition (a paid import must not look like a payment now)
    assert change.before == change.after and change.crm_module == "Xero_Invoices"

    # Again, and a newer state: the mapping is found, nothing is created twice.
    apply(table, sugar, [stranger], config=config)
    apply(table, sugar, [invoice(stranger["InvoiceID"], status="PAID", paid=1090.0, updated="2026-11-28T09:00:00")],
          config=config)
    assert len(sugar.created) == 1
    assert sugar.records[("Xero_Invoices", record_id)]["xero_status_c"] == "PAID"


def test_an_import_interrupted_after_the_crm_create_finishes_without_a_twin(table):
    config = MappingConfig.model_validate({"xero_updates": {"unknown_documents": "import",
                                                            "import_module": "Xero_Invoices"}})
    stranger = invoice(str(uuid.uuid4()))
    record_id = imported_record_id(TENANT, stranger["InvoiceID"])
    sugar = ImportingSugar()
    sugar.records[("Xero_Invoices", record_id)] = {"id": record_id}  # created, then the worker died
    report = apply(table, sugar, [stranger], config=config)
    assert report.imported == {stranger["InvoiceID"]} and report.pending == {}
    assert list(sugar.records) == [("Xero_Invoices", record_id)]
    assert table.get_mappings(TENANT, "Xero_Invoices#ACCREC", [record_id])[record_id].xero_id == stranger["InvoiceID"]


def test_the_online_invoice_url_is_fetched_once_and_kept(table):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id, updated="2026-11-27T09:00:00"), online_url=None)
    xero, sugar = FakeXeroReader(), FakeSugar()
    xero.online[invoice_id] = "https://in.xero.com/abc123"
    # The push's own UPDATE event: same state, but no online link yet.
    report = apply(table, sugar, [invoice(invoice_id, updated="2026-11-27T09:00:00")], xero=xero)
    assert report.online_urls_fetched == 1 and stored(table).url == "https://in.xero.com/abc123"
    assert sugar.records[("Quotes", "q-1")]["xero_url_c"] == "https://in.xero.com/abc123"
    apply(table, sugar, [invoice(invoice_id, paid=400.0, updated="2026-11-27T10:00:00")], xero=xero)
    apply(table, sugar, [invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T11:00:00")], xero=xero)
    assert [c for c in xero.calls if c[0] == "GET"] == [("GET", f"Invoices/{invoice_id}/OnlineInvoice")]
    assert stored(table).url == "https://in.xero.com/abc123"


def test_no_online_url_keeps_the_app_link_and_a_rate_limit_writes_nothing(table):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id, updated="2026-11-27T09:00:00"), online_url=None)
    xero, sugar = FakeXeroReader(), FakeSugar()
    report = apply(table, sugar, [invoice(invoice_id, updated="2026-11-27T09:00:00")], xero=xero)
    assert report.unchanged == {invoice_id} and sugar.calls == []  # Xero had no link: nothing changed

    class Limited(FakeXeroReader):
        def get(self, path, params=None):
            raise RateLimited("Xero answered 429", retry_after=30)

    with pytest.raises(RateLimited):
        apply(table, sugar, [invoice(invoice_id, paid=5.0, updated="2026-11-27T10:00:00")], xero=Limited())
    assert sugar.calls == [] and stored(table).amount_paid == 0


def test_a_credit_note_the_connector_raised_gets_its_own_state(table):
    note_id = str(uuid.uuid4())
    mapped(table, credit_note(note_id, allocated_to=[], updated="2026-11-27T09:00:00") | {"Status": "AUTHORISED",
                                                                                         "RemainingCredit": 100.0},
           resource="CreditNotes", module="Quotes#ACCRECCREDIT", online_url=None)
    sugar = FakeSugar()
    report = apply(table, sugar, [credit_note(note_id, allocated_to=[str(uuid.uuid4())])], resource="CreditNotes")
    assert len(report.changes) == 1
    assert stored(table, module="Quotes#ACCRECCREDIT").status == "PAID"
    assert sugar.records[("Quotes", "q-1")]["xero_amount_due_c"] == "0.00"


# ---- refresh_pending --------------------------------------------------------------------------
def pend(events: WebhookEventTable, category: str, resource_id: str, date: str = "2026-11-27T12:00:00.000000Z"):
    assert events.record_pending(tenant_id=TENANT, category=category, resource_id=resource_id,
                                 event_date_utc=date, event_type="UPDATE", resource_url="u")


def refresh(events, xero, table, sugar, *, config=CONFIG, changes=None, limit=250):
    return refresh_pending(TENANT, store=events, xero=xero, mappings=table, crm=sugar, config=config,
                           on_changes=(changes.extend if changes is not None else None), limit=limit)


def test_changed_invoices_are_fetched_together_and_their_items_cleared(table, events):
    # 50 in one GET is the integration test's (tests/integration/test_payment_worker.py); 25 here.
    xero, sugar = FakeXeroReader(), FakeSugar()
    ids = [str(uuid.uuid4()) for _ in range(25)]
    # Seeded in bulk (moto's conditional writes are slow); shaped as put_mapping/record_pending write them.
    with table._table.batch_writer() as batch:
        for n, invoice_id in enumerate(ids):
            state = document_state("Invoices", invoice(invoice_id), online_url=ONLINE)
            batch.put_item(Item={"PK": f"T#{TENANT}#Quotes#ACCREC#q-{n}", "SK": "MAP", **Mapping(
                tenant_id=TENANT, module="Quotes#ACCREC", crm_id=f"q-{n}", xero_id=invoice_id,
                document=state.model_dump(mode="json")).model_dump(exclude_none=True)})
            batch.put_item(Item={"PK": f"T#{TENANT}", "SK": f"PENDING#INVOICE#{invoice_id}", "status": "pending",
                                 "event_category": "INVOICE", "resource_id": invoice_id, "tenant_id": TENANT,
                                 "event_date_utc": "2026-11-27T12:00:00.000000Z"})
            xero.add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00"))
    report = refresh(events, xero, table, sugar)
    assert xero.calls == [("Invoices", xero.calls[0][1])] and sorted(xero.calls[0][1]) == sorted(ids)
    assert report.cleared == 25 and report.kept == {} and len(report.invoices.changes) == 25
    assert len(sugar.calls) == 2  # 20 records a Sugar bulk call
    assert events.pending_items(TENANT) == []
    assert refresh(events, xero, table, sugar).read == 0 and len(xero.calls) == 1


def test_more_pending_than_the_limit_says_so(table, events):
    xero = FakeXeroReader()
    for _ in range(3):
        pend(events, "INVOICE", str(uuid.uuid4()))  # Xero knows none of them: nothing to apply
    report = refresh(events, xero, table, FakeSugar(), limit=2)
    assert report.more and report.cleared == 2
    report = refresh(events, xero, table, FakeSugar(), limit=2)
    assert not report.more and report.cleared == 1


def test_a_newer_event_arriving_during_the_refresh_keeps_the_item_pending(table, events):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id))
    pend(events, "INVOICE", invoice_id, "2026-11-27T12:00:00.000000Z")

    class Racing(FakeXeroReader):
        raced = False

        def get_by_ids(self, resource, ids, *, params=None):
            found = super().get_by_ids(resource, ids, params=params)
            if not self.raced:
                self.raced = True
                pend(events, "INVOICE", invoice_id, "2026-11-27T12:00:05.000000Z")  # a payment lands now
            return found

    xero = Racing()
    xero.add("Invoices", invoice(invoice_id, paid=400.0, updated="2026-11-27T12:00:00"))
    report = refresh(events, xero, table, FakeSugar())
    assert report.superseded == 1 and report.cleared == 0
    (item,) = events.pending_items(TENANT)
    assert item["event_date_utc"] == "2026-11-27T12:00:05.000000Z"
    xero.add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:05"))
    assert refresh(events, xero, table, FakeSugar()).cleared == 1
    assert stored(table).status == "PAID" and events.pending_items(TENANT) == []


def test_sugar_down_keeps_the_items_pending_until_the_write_back_lands(table, events):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id))
    pend(events, "INVOICE", invoice_id)
    xero, sugar = FakeXeroReader(), FakeSugar()
    xero.add("Invoices", invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00"))
    sugar.down = SugarUnavailable("Sugar answered 503", status=503, retryable=True)
    report = refresh(events, xero, table, sugar)
    assert report.retry and invoice_id in report.kept and len(events.pending_items(TENANT)) == 1
    sugar.down = None
    report = refresh(events, xero, table, sugar)
    assert not report.retry and report.cleared == 1
    assert sugar.records[("Quotes", "q-1")]["xero_status_c"] == "PAID"


def test_a_xero_failure_raises_and_clears_nothing(table, events):
    pend(events, "INVOICE", str(uuid.uuid4()))
    xero = FakeXeroReader()
    xero.fail = XeroError("Xero answered 503 after 5 attempts", status=503, retryable=True)
    with pytest.raises(XeroError):
        refresh(events, xero, table, FakeSugar())
    assert len(events.pending_items(TENANT)) == 1


def test_a_credit_note_updates_the_credited_amount_of_its_invoice(table, events):
    invoice_id, other_id, note_id = (str(uuid.uuid4()) for _ in range(3))
    mapped(table, invoice(invoice_id))
    mapped(table, invoice(other_id), crm_id="q-2")
    xero, sugar, changes = FakeXeroReader(), FakeSugar(), []
    xero.add("CreditNotes", credit_note(note_id, allocated_to=[invoice_id]))
    xero.add("Invoices", invoice(invoice_id, credited=100.0, updated="2026-11-27T11:00:00"))
    xero.add("Invoices", invoice(other_id, paid=50.0, updated="2026-11-27T11:00:00"))
    pend(events, "CREDITNOTE", note_id)
    pend(events, "INVOICE", other_id)
    report = refresh(events, xero, table, sugar, changes=changes)

    assert xero.calls[0] == ("CreditNotes", [note_id])
    assert xero.calls[1][0] == "Invoices" and sorted(xero.calls[1][1]) == sorted([invoice_id, other_id])
    assert len(xero.calls) == 2  # the credited invoice rides along with the changed one
    assert report.cleared == 2 and report.credit_notes.ignored == {note_id}  # not one the connector raised
    assert stored(table).amount_credited == Decimal("100.00") and stored(table).amount_due == Decimal("990.00")
    assert sugar.records[("Quotes", "q-1")]["xero_amount_credited_c"] == "100.00"
    assert {c.crm_id for c in changes} == {"q-1", "q-2"}


def test_a_credit_note_stays_pending_while_its_invoice_cannot_be_written(table, events):
    invoice_id, note_id = str(uuid.uuid4()), str(uuid.uuid4())
    mapped(table, invoice(invoice_id))
    xero, sugar = FakeXeroReader(), FakeSugar()
    xero.add("CreditNotes", credit_note(note_id, allocated_to=[invoice_id]))
    xero.add("Invoices", invoice(invoice_id, credited=100.0, updated="2026-11-27T11:00:00"))
    pend(events, "CREDITNOTE", note_id)
    sugar.down = SugarUnavailable("Sugar answered 503", status=503, retryable=True)
    report = refresh(events, xero, table, sugar)
    assert set(report.kept) == {note_id} and len(events.pending_items(TENANT)) == 1
    sugar.down = None
    assert refresh(events, xero, table, sugar).cleared == 1
    assert stored(table).amount_credited == Decimal("100.00")


def test_contact_events_write_configured_xero_values_or_nothing(table, events):
    contact_id = str(uuid.uuid4())
    table.put_mapping(Mapping(tenant_id=TENANT, module="Accounts", crm_id="acc-1", xero_id=contact_id))
    xero, sugar = FakeXeroReader(), FakeSugar()
    xero.add("Contacts", {"ContactID": contact_id, "Name": "Harbour View", "ContactStatus": "ACTIVE",
                          "Balances": {"AccountsReceivable": {"Outstanding": 690.0, "Overdue": 0.0},
                                       "AccountsPayable": {"Outstanding": 0, "Overdue": 0}}})
    pend(events, "CONTACT", contact_id)
    report = refresh(events, xero, table, sugar)  # nothing configured: nothing fetched or written
    assert report.cleared == 1 and xero.calls == [] and sugar.calls == []

    config = MappingConfig.model_validate({"xero_updates": {"contact_fields": {
        "balance_receivable": "xero_balance_c", "overdue_receivable": "xero_overdue_c",
        "Balances.AccountsPayable.Outstanding": "xero_payable_c", "contact_status": "xero_contact_status_c",
        "default_currency": "xero_currency_c"}}})
    pend(events, "CONTACT", contact_id, "2026-11-27T13:00:00.000000Z")
    report = refresh(events, xero, table, sugar, config=config)
    assert report.cleared == 1 and report.contacts_written == 1
    assert sugar.calls == [("Accounts", {"acc-1": {"xero_balance_c": "690.00", "xero_overdue_c": "0.00",
                                                   "xero_payable_c": "0.00", "xero_contact_status_c": "ACTIVE"}})]


def test_events_of_categories_the_connector_does_not_act_on_are_marked_done(table, events):
    pend(events, "SUBSCRIPTION", str(uuid.uuid4()))
    xero = FakeXeroReader()
    assert refresh(events, xero, table, FakeSugar()).cleared == 1 and xero.calls == []


def test_a_stored_state_without_timestamp_is_replaced_conditionally(table):
    invoice_id = str(uuid.uuid4())
    table.put_mapping(Mapping(tenant_id=TENANT, module="Quotes#ACCREC", crm_id="q-1", xero_id=invoice_id,
                              document={"target": "ACCREC", "xero_id": invoice_id, "status": "DRAFT",
                                        "updated_utc": None}))
    mapping = table.get_mappings(TENANT, "Quotes#ACCREC", ["q-1"])["q-1"]
    state = document_state("Invoices", invoice(invoice_id)).model_dump(mode="json")
    assert table.put_document_state(mapping, state, expected_updated_utc="2026-01-01T00:00:00.000+00:00") is False
    assert table.put_document_state(mapping, state, expected_updated_utc=None) is True
    assert table.put_document_state(mapping, state, expected_updated_utc=None) is False  # now it has one
    gone = mapping.model_copy(update={"crm_id": "missing"})
    assert table.put_document_state(gone, state, expected_updated_utc=None) is False  # never creates


def test_batched_lookup_finds_every_mapping_of_the_tenant_only(table):
    ids = [str(uuid.uuid4()) for _ in range(12)]
    for n, xero_id in enumerate(ids):
        table.put_mapping(Mapping(tenant_id=TENANT, module="Quotes#ACCREC", crm_id=f"q-{n}", xero_id=xero_id))
    table.put_mapping(Mapping(tenant_id="another", module="Quotes#ACCREC", crm_id="x", xero_id=ids[0]))
    found = table.find_by_xero_ids(TENANT, ids + [str(uuid.uuid4())])
    assert sorted(found) == sorted(ids)
    assert all(len(maps) == 1 and maps[0].tenant_id == TENANT for maps in found.values())


def test_crm_module_and_imported_ids_are_stable():
    assert xero_updates.crm_module("Quotes#ACCREC") == "Quotes" and xero_updates.crm_module("Accounts") == "Accounts"
    assert imported_record_id(TENANT, "ABC") == imported_record_id(TENANT, "abc") != imported_record_id("t2", "abc")


def test_a_refreshed_item_expires_unless_a_newer_event_reopens_it(table, events, moto_dynamodb):
    resource_id = str(uuid.uuid4())
    pend(events, "INVOICE", resource_id)
    assert events.clear_pending(tenant_id=TENANT, category="INVOICE", resource_id=resource_id,
                                event_date_utc="2026-11-27T12:00:00.000000Z")
    raw = moto_dynamodb.resource("dynamodb").Table(SYNC_TABLE_NAME)
    key = {"PK": f"T#{TENANT}", "SK": f"PENDING#INVOICE#{resource_id}"}
    item = raw.get_item(Key=key)["Item"]
    assert item["status"] == "refreshed" and int(item["expires_at"]) > datetime.now(UTC).timestamp() + 71 * 3600
    assert events.pending_items(TENANT) == []
    # Cleared already: a second clear of the same date changes nothing.
    assert not events.clear_pending(tenant_id=TENANT, category="INVOICE", resource_id=resource_id,
                                    event_date_utc="2026-11-27T12:00:00.000000Z")
    pend(events, "INVOICE", resource_id, "2026-11-27T12:30:00.000000Z")
    item = raw.get_item(Key=key)["Item"]
    assert item["status"] == "pending" and "expires_at" not in item  # never expires while pending
    assert [i["resource_id"] for i in events.pending_items(TENANT)] == [resource_id]


def test_webhook_latency_is_measured_from_the_event_time_xero_gave():
    from datetime import UTC, datetime, timedelta

    from shared.usecases.xero_updates import _milliseconds_since
    from shared.xero.webhooks import normalise_event_date

    two_seconds_ago = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    latency = _milliseconds_since(normalise_event_date(two_seconds_ago))
    assert latency is not None and 1900 <= latency < 10_000
    assert _milliseconds_since("not a date") is None
