"""Exactly once, newest wins, proven by killing work between steps (issue 11).

Every kind of Xero write the connector makes (contacts, items, sales invoices, bills, quotes,
purchase orders, credit notes) is pushed to the Xero emulator over HTTP, the worker is killed
at each crash point (``shared.usecases.crash``) and the message is redelivered as SQS would:
Xero must end up with exactly one record, holding the newest save, and the job ``succeeded``.
The mapping store that fails on its second write reproduces the chunk-composition duplicate."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shared.mapping.settings import CatalogueRules, InvoiceRules, MappingConfig
from shared.models.documents import ContactDocument, ItemDocument
from shared.models.invoices import ContactRef, LineDocument, PurchaseDocument, QuoteDocument, SalesInvoiceDocument
from shared.models.jobs import CrmRef
from shared.state.records import Mapping, document_module
from shared.usecases import contacts, invoices, items
from shared.usecases.accept import accept
from shared.usecases.crash import JOB_MARKED, NO_CRASH, POINTS, XERO_ANSWERED, CrashAt, WorkerCrashed
from shared.usecases.journal import ID_FIELDS
from shared.usecases.versions import OLDER
from shared.usecases.work import WorkItem
from shared.usecases.writeback import step_module
from shared.xero.client import XeroClient, encode_json
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue, FakeSugar

SGD_GST = {"OUTPUT": Decimal("9"), "INPUT": Decimal("9"), "NONE": Decimal("0")}
CUSTOMER = ContactDocument(crm_module="Accounts", crm_id="acc-1", name="Harbour Foods Pte Ltd",
                           crm_modified="2026-11-01T00:00:00Z")
SUPPLIER = ContactDocument(crm_module="Accounts", crm_id="sup-1", name="Tan Realty Agency", is_supplier=True,
                           crm_modified="2026-11-01T00:00:00Z")


@pytest.fixture
def xero():
    # Redelivery comes after SQS's visibility timeout, when Xero may have forgotten the
    # Idempotency-Key (it keeps keys only minutes): the hardest case, so keys expire at once here.
    config = EmulatorConfig(idempotency_ttl_seconds=0.0)
    with serve(config=config) as server:
        yield XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


@pytest.fixture(autouse=True)
def redelivery_after_the_resend_window(monkeypatch):
    """SQS redelivers a crashed batch after its visibility timeout: past the window in which
    the connector trusts Xero to still hold the Idempotency-Key, so the marker lookup is what
    protects (the identical resend has its own test below)."""
    from shared.usecases import journal

    monkeypatch.setattr(journal, "IDENTICAL_RESEND_SECONDS", 0.0)


class FailingMappings(FakeMappings):
    """A mapping store whose ``fail_at``-th write raises (a DynamoDB throttle, a timeout)."""

    def __init__(self, fail_at: int | None = None):
        super().__init__()
        self.writes, self.fail_at = 0, fail_at

    def put_mapping(self, mapping: Mapping) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise RuntimeError("ProvisionedThroughputExceededException")
        super().put_mapping(mapping)


class World:
    """The use cases between an in-memory queue that redelivers what was not deleted (as SQS
    does after a visibility timeout) and the Xero emulator."""

    def __init__(self, xero: XeroClient, *, config: MappingConfig | None = None, mappings: FakeMappings | None = None):
        self.xero = xero
        self.jobs, self.queue, self.mappings = FakeJobs(), FakeQueue(), mappings or FakeMappings()
        self.config = config or MappingConfig()
        self.pending: list[dict[str, Any]] = []
        self.crashes = 0
        self.crm: Any = None  # the Sugar the write-back goes to (none: skipped)

    def accept(self, kind: str, doc: Any) -> str:
        accepted = accept(kind=kind, crm=CrmRef(module=doc.crm_module, id=doc.crm_id),
                          document=doc.model_dump(mode="json"), jobs=self.jobs, queue=self.queue,
                          status_base_url="https://x/prod")
        self.pending += self.queue.sent
        self.queue.sent.clear()
        return accepted.job_id

    def deliver(self, crash: Any = NO_CRASH) -> bool:
        """One invocation over everything pending; False when it died. Like Lambda's event
        source mapping, only what the invocation finished is deleted."""
        messages = list(self.pending)
        work = [WorkItem(message_id=f"m-{m['job_id']}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
                for m in messages]
        retry: set[str] = set()
        try:
            for kind, run in ((contacts.KIND, self._contacts), (items.KIND, self._items),
                              (invoices.KIND_DOCUMENT, self._documents)):
                batch = [w for w in work if w.kind == kind]
                if batch:
                    retry |= run(batch, crash).retry
            crash.reached(JOB_MARKED)
        except WorkerCrashed:
            self.crashes += 1
            return False
        self.pending = [m for m in messages if f"m-{m['job_id']}" in retry]
        return True

    def drain(self, crash: Any = NO_CRASH, rounds: int = 6) -> None:
        for _ in range(rounds):
            if not self.pending:
                return
            self.deliver(crash)
        assert not self.pending, "work still queued after every redelivery"

    def _contacts(self, batch: list[WorkItem], crash: Any):
        return contacts.sync_contacts(batch, xero=self.xero, jobs=self.jobs, mappings=self.mappings,
                                      config=self.config, crash=crash)

    def _items(self, batch: list[WorkItem], crash: Any):
        return items.sync_items(batch, xero=self.xero, jobs=self.jobs, mappings=self.mappings,
                                catalogue=CatalogueRules(), crash=crash)

    def _documents(self, batch: list[WorkItem], crash: Any):
        return invoices.push_documents(batch, xero=self.xero, jobs=self.jobs, mappings=self.mappings,
                                       config=self.config, tax_rates=SGD_GST, crash=crash, crm=self.crm)

    def records(self, resource: str) -> list[dict[str, Any]]:
        found = list(self.xero.iter_pages(resource, params={"includeArchived": "true"}
                                          if resource == "Contacts" else None))
        return [r for r in found if r.get("Status") not in ("DELETED", "VOIDED")]


def _lines(amount: str, text: str) -> list[LineDocument]:
    return [LineDocument(crm_id="l1", description=text, unit_amount=Decimal(amount), tax_type="OUTPUT")]


def _sales(version: int, crm_id: str = "inv-1", **changes: Any) -> SalesInvoiceDocument:
    return SalesInvoiceDocument(crm_module="Invoices", crm_id=crm_id, contact=ContactRef(contact=CUSTOMER),
                                lines=_lines(f"{100 * version}.00", f"Chiller service v{version}"),
                                crm_modified=f"2026-12-0{version}T09:00:00+08:00", **changes)


def _bill(version: int, crm_id: str = "bill-1", **changes: Any) -> PurchaseDocument:
    return PurchaseDocument(crm_module="Property_Sales", crm_id=crm_id, contact=ContactRef(contact=SUPPLIER),
                            lines=[LineDocument(description=f"Commission v{version}",
                                                unit_amount=Decimal(f"{version}000.00"),
                                                account_code="310", tax_type="INPUT")],
                            crm_modified=f"2026-12-0{version}T09:00:00+08:00", write_back=False, **changes)


def _quote(version: int, crm_id: str = "q-1", **changes: Any) -> QuoteDocument:
    changes.setdefault("number", f"QU-{crm_id}")
    return QuoteDocument(crm_module="Opportunities", crm_id=crm_id, contact=ContactRef(contact=CUSTOMER),
                         lines=_lines(f"{100 * version}.00", f"Fit-out v{version}"),
                         crm_modified=f"2026-12-0{version}T09:00:00+08:00", write_back=False, **changes)


def _contact(version: int, crm_id: str = "acc-9") -> ContactDocument:
    return ContactDocument(crm_module="Accounts", crm_id=crm_id, name=f"Marina Bay Traders v{version} {crm_id}",
                           crm_modified=f"2026-12-0{version}T09:00:00+08:00")


def _item(version: int, crm_id: str = "pt-1") -> ItemDocument:
    return ItemDocument(crm_id=crm_id, code=f"SKU-{crm_id}", name=f"Lift inspection v{version}",
                        sales_price=Decimal(f"{version}00.0000"), crm_modified=f"2026-12-0{version}T09:00:00+08:00")


PURCHASE_ORDERS = MappingConfig(invoices=InvoiceRules(purchases_as="purchase_order"))
# kind → (job kind, document builder, Xero collection, how a record shows its version, config)
KINDS: dict[str, tuple[str, Any, str, Any, MappingConfig | None]] = {
    "contact": (contacts.KIND, _contact, "Contacts", lambda r: r["Name"].split(" ")[3], None),
    "item": (items.KIND, _item, "Items", lambda r: r["Name"].split(" ")[-1], None),
    "sales invoice": (invoices.KIND_DOCUMENT, _sales, "Invoices", lambda r: f"v{int(r['SubTotal']) // 100}", None),
    "bill": (invoices.KIND_DOCUMENT, _bill, "Invoices", lambda r: f"v{int(r['SubTotal']) // 1000}", None),
    "quote": (invoices.KIND_DOCUMENT, _quote, "Quotes", lambda r: f"v{int(r['SubTotal']) // 100}", None),
    "purchase order": (invoices.KIND_DOCUMENT, _bill, "PurchaseOrders",
                       lambda r: f"v{int(r['SubTotal']) // 1000}", PURCHASE_ORDERS),
}


def _contacts_first(world: World) -> None:
    """The documents' customer and supplier, in Xero beforehand: the crash hits the document."""
    for contact in (CUSTOMER, SUPPLIER):
        world.accept(contacts.KIND, contact)
    world.drain()


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_crash_at_each_point_then_redelivery_leaves_one_record_of_the_newest_save(xero, kind, point):
    job_kind, build, resource, version_shown, config = KINDS[kind]
    world = World(xero, config=config)
    _contacts_first(world)
    before = {r[ID_FIELDS[resource]] for r in world.records(resource)}
    first = world.accept(job_kind, build(1))
    assert world.deliver(CrashAt(point)) is False  # the worker dies at the point
    world.drain()  # SQS redelivers
    (created,) = [r for r in world.records(resource) if r[ID_FIELDS[resource]] not in before]
    assert version_shown(created) == "v1"
    assert world.jobs.jobs[first].status == "succeeded", world.jobs.jobs[first].error
    # a newer save afterwards updates the same record, the worker dying again on its way
    second = world.accept(job_kind, build(2))
    assert world.deliver(CrashAt(point)) is False
    world.drain()
    (updated,) = [r for r in world.records(resource) if r[ID_FIELDS[resource]] not in before]
    assert updated[ID_FIELDS[resource]] == created[ID_FIELDS[resource]] and version_shown(updated) == "v2"
    assert world.jobs.jobs[second].status == "succeeded", world.jobs.jobs[second].error


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_mapping_write_failing_mid_chunk_creates_nothing_twice(xero, kind):
    """The issue's reproduction: three documents in one chunk, Xero creates all three, the
    second mapping write fails; the redelivered chunk has another composition (one document is
    mapped now). Before the journal, Xero received creates ref 1, ref 2, ref 3, ref 2, ref 3."""
    job_kind, build, resource, _, config = KINDS[kind]
    world = World(xero, config=config, mappings=FailingMappings())
    _contacts_first(world)
    before = len(world.records(resource))
    world.mappings.writes, world.mappings.fail_at = 0, 2
    jobs = [world.accept(job_kind, build(1, crm_id=f"{kind[:3]}-{n}")) for n in (1, 2, 3)]
    with pytest.raises(RuntimeError):
        world.deliver()
    world.drain()
    assert len(world.records(resource)) == before + 3
    assert {world.jobs.jobs[j].status for j in jobs} == {"succeeded"}


def _paid_invoice(world: World) -> str:
    world.accept(invoices.KIND_DOCUMENT, _sales(1, status="AUTHORISED"))
    world.drain()
    (invoice,) = world.records("Invoices")
    payment = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"},
               "Amount": Decimal("50.00"), "Date": "2026-12-01"}
    world.xero._request("PUT", "/api.xro/2.0/Payments", json_body=encode_json({"Payments": [payment]}),
                        idempotency_key="pay-1")
    # what the payment webhook would have stored on the mapping
    module = document_module("Invoices", "ACCREC")
    mapping = world.mappings.get_mappings(world.xero.tenant_id, module, ["inv-1"])["inv-1"]
    mapping.document = {**mapping.document, "amount_paid": "50.00", "amount_due": "59.00"}
    return invoice["InvoiceID"]


@pytest.mark.parametrize("point", POINTS)
def test_a_credit_note_is_raised_once_whatever_the_crash(xero, point):
    config = MappingConfig(invoices=InvoiceRules(cancel_with_payments="credit_note"))
    world = World(xero, config=config)
    _contacts_first(world)
    _paid_invoice(world)
    job = world.accept(invoices.KIND_DOCUMENT, _sales(2, cancelled=True, status="AUTHORISED"))
    assert world.deliver(CrashAt(point)) is False
    world.drain()
    assert world.jobs.jobs[job].status == "succeeded", world.jobs.jobs[job].error
    notes = xero.get("CreditNotes")["CreditNotes"]
    assert len(notes) == 1 and notes[0]["Type"] == "ACCRECCREDIT"


def test_a_credit_note_whose_mapping_write_fails_is_not_raised_again(xero):
    config = MappingConfig(invoices=InvoiceRules(cancel_with_payments="credit_note"))
    world = World(xero, config=config, mappings=FailingMappings())
    _contacts_first(world)
    _paid_invoice(world)
    world.mappings.writes, world.mappings.fail_at = 0, 1
    world.accept(invoices.KIND_DOCUMENT, _sales(2, cancelled=True, status="AUTHORISED"))
    with pytest.raises(RuntimeError):
        world.deliver()
    world.drain()
    assert len(xero.get("CreditNotes")["CreditNotes"]) == 1


# ---- newest wins ---------------------------------------------------------------------------------
def test_an_older_save_after_a_newer_one_is_ignored_and_xero_keeps_the_newer(xero):
    world = World(xero)
    newer = _contact(1, crm_id="acc-7").model_copy(update={"name": "Newer name",
                                                           "crm_modified": "2026-12-03T02:00:00Z"})
    # 09:00 in Singapore is 01:00 UTC: earlier than 02:00 UTC although it sorts after it as text
    older = newer.model_copy(update={"name": "Older name", "crm_modified": "2026-12-03T09:00:00+08:00"})
    world.accept(contacts.KIND, newer)
    world.drain()
    job = world.accept(contacts.KIND, older)
    world.drain()
    assert world.jobs.jobs[job].status == "ignored" and world.jobs.jobs[job].warnings == [OLDER]
    (contact,) = [c for c in world.records("Contacts") if c.get("ContactNumber") == "acc-7"]
    assert contact["Name"] == "Newer name"


def test_an_older_own_document_after_a_newer_one_sends_nothing(xero):
    world = World(xero)
    _contacts_first(world)
    world.accept(invoices.KIND_DOCUMENT, _sales(3))
    world.drain()
    calls = xero.calls
    job = world.accept(invoices.KIND_DOCUMENT, _sales(2))
    world.drain()
    assert xero.calls == calls  # nothing sent
    assert world.jobs.jobs[job].status == "ignored" and world.jobs.jobs[job].warnings == [OLDER]
    (invoice,) = world.records("Invoices")
    assert invoice["SubTotal"] == 300.0


def test_in_one_batch_the_newest_instant_wins_and_the_other_job_says_it_was_superseded(xero):
    world = World(xero)
    _contacts_first(world)
    # 250.00 saved at 02:00 UTC, 100.00 at 09:00+08:00 = 01:00 UTC, delivered after it
    newer = world.accept(invoices.KIND_DOCUMENT, _sales(2).model_copy(update={"crm_modified": "2026-12-03T02:00:00Z"}))
    older = world.accept(invoices.KIND_DOCUMENT,
                         _sales(1).model_copy(update={"crm_modified": "2026-12-03T09:00:00+08:00"}))
    world.drain()
    (invoice,) = world.records("Invoices")
    assert invoice["SubTotal"] == 200.0
    assert world.jobs.jobs[newer].status == "succeeded"
    assert world.jobs.jobs[older].status == "ignored" and "superseded" in world.jobs.jobs[older].warnings[0]


def test_equal_instants_keep_the_later_delivery(xero):
    world = World(xero)
    first = _contact(1, crm_id="acc-8")
    second = first.model_copy(update={"name": "Delivered later"})
    world.accept(contacts.KIND, first)
    world.accept(contacts.KIND, second)
    world.drain()
    (contact,) = [c for c in world.records("Contacts") if c.get("ContactNumber") == "acc-8"]
    assert contact["Name"] == "Delivered later"


def test_a_document_without_crm_modified_is_versioned_by_its_receipt(xero):
    world = World(xero)
    _contacts_first(world)
    world.accept(invoices.KIND_DOCUMENT, _sales(1).model_copy(update={"crm_modified": None}))
    world.drain()
    mapping = world.mappings.get_mappings(xero.tenant_id, document_module("Invoices", "ACCREC"), ["inv-1"])["inv-1"]
    job = next(j for j in world.jobs.jobs.values() if j.kind == invoices.KIND_DOCUMENT)
    assert mapping.version and mapping.version.startswith(job.created_at[:16])


def test_the_journal_records_each_attempt_and_its_outcome(xero):
    world = World(xero)
    _contacts_first(world)
    world.accept(invoices.KIND_DOCUMENT, _sales(1))
    world.deliver(CrashAt(XERO_ANSWERED))
    module = document_module("Invoices", "ACCREC")
    (intent,) = world.mappings.get_intents(xero.tenant_id, module, ["inv-1"]).values()
    assert intent.state == "intent" and intent.attempt == 1 and intent.marker_field == "Reference"
    assert intent.idempotency_key and intent.body_hash and intent.version == "2026-12-01T01:00:00.000000Z"
    calls = xero.calls
    world.drain()
    # Found by its marker, made from exactly the body the dead attempt sent: Xero's record is
    # taken as the answer that was never stored; one lookup, nothing written again.
    assert xero.calls == calls + 1
    (intent,) = world.mappings.get_intents(xero.tenant_id, module, ["inv-1"]).values()
    assert intent.state == "confirmed" and intent.attempt == 1 and intent.found_id
    (invoice,) = world.records("Invoices")
    assert invoice["Reference"] == "CRM inv-1" and intent.found_id == invoice["InvoiceID"]


def test_a_marker_matching_two_xero_records_fails_visibly_instead_of_guessing(xero):
    """Bill numbers are not unique in Xero: someone keyed in a second bill with the same number
    for the same supplier while the connector's attempt was unconfirmed."""
    world = World(xero)
    _contacts_first(world)
    job = world.accept(invoices.KIND_DOCUMENT, _bill(1, number="SUP-77"))
    world.deliver(CrashAt(XERO_ANSWERED))
    (bill,) = world.records("Invoices")
    twin = {"Type": "ACCPAY", "Contact": {"ContactID": bill["Contact"]["ContactID"]}, "InvoiceNumber": "SUP-77",
            "LineItems": [{"Description": "typed by hand", "UnitAmount": 1, "AccountCode": "310"}]}
    xero.upsert_batch("Invoices", [twin], idempotency_key="by-hand")
    world.drain()
    assert len(world.records("Invoices")) == 2  # the connector's and the hand-made one: no third
    assert world.jobs.jobs[job].status == "failed" and "will not guess" in world.jobs.jobs[job].error


# ---- follow-up writes as journal steps -------------------------------------------------------------
def _faults(xero: XeroClient, **config: Any) -> None:
    import requests

    answer = requests.post(f"{xero.base_url}/_emulator/faults", json=config, timeout=5)
    assert answer.status_code == 200, answer.text


def test_a_failed_allocation_is_retried_and_lands(xero):
    config = MappingConfig(invoices=InvoiceRules(cancel_with_payments="credit_note"))
    world = World(xero, config=config)
    _contacts_first(world)
    invoice_id = _paid_invoice(world)
    # Xero answers 503 to every try of the allocation call (the client's own retries included)
    _faults(xero, next=["503"] * 5, path_contains="/Allocations")
    job = world.accept(invoices.KIND_DOCUMENT, _sales(2, cancelled=True, status="AUTHORISED"))
    world.deliver()
    assert world.jobs.jobs[job].status == "queued" and "will retry" in world.jobs.jobs[job].error
    (note,) = xero.get("CreditNotes")["CreditNotes"]
    assert not xero.get(f"CreditNotes/{note['CreditNoteID']}")["CreditNotes"][0].get("Allocations")
    _faults(xero)  # Xero is back: the redelivered job allocates, and raises no second credit note
    world.drain()
    assert world.jobs.jobs[job].status == "succeeded", world.jobs.jobs[job].error
    assert any("allocated to what was still due" in w for w in world.jobs.jobs[job].warnings)
    (note,) = xero.get("CreditNotes")["CreditNotes"]
    (allocation,) = xero.get(f"CreditNotes/{note['CreditNoteID']}")["CreditNotes"][0]["Allocations"]
    assert allocation["Invoice"]["InvoiceID"] == invoice_id and allocation["Amount"] == 59.0


def test_an_allocation_xero_refuses_fails_visibly_on_the_job(xero):
    config = MappingConfig(invoices=InvoiceRules(cancel_with_payments="credit_note"))
    world = World(xero, config=config)
    _contacts_first(world)
    _paid_invoice(world)
    real = xero.allocate_credit_note

    def refused(*args, **kwargs):
        from shared.errors import XeroError

        raise XeroError("The amount exceeds the remaining credit", status=400)

    xero.allocate_credit_note = refused
    job = world.accept(invoices.KIND_DOCUMENT, _sales(2, cancelled=True, status="AUTHORISED"))
    world.drain()
    xero.allocate_credit_note = real
    outcome = world.jobs.jobs[job]
    assert outcome.status == "failed" and "could not be allocated" in outcome.error and "59.00" in outcome.error


def test_a_crash_after_the_allocation_answered_never_allocates_twice(xero):
    config = MappingConfig(invoices=InvoiceRules(cancel_with_payments="credit_note"))
    world = World(xero, config=config)
    _contacts_first(world)
    _paid_invoice(world)
    job = world.accept(invoices.KIND_DOCUMENT, _sales(2, cancelled=True, status="AUTHORISED"))
    # the first Xero answer is the credit note's, the second the allocation's: die after that one
    assert world.deliver(CrashAt(XERO_ANSWERED, skip=1)) is False
    world.drain()
    assert world.jobs.jobs[job].status == "succeeded", world.jobs.jobs[job].error
    (note,) = xero.get("CreditNotes")["CreditNotes"]
    allocations = xero.get(f"CreditNotes/{note['CreditNoteID']}")["CreditNotes"][0]["Allocations"]
    assert [a["Amount"] for a in allocations] == [59.0]


def test_a_quick_identical_redelivery_resends_the_same_request_under_its_key(monkeypatch):
    """Inside the window, the same chunk goes again under the same Idempotency-Key: Xero (here
    keeping keys for its usual minutes) answers what it answered the first time, no lookup."""
    from shared.usecases import journal

    monkeypatch.setattr(journal, "IDENTICAL_RESEND_SECONDS", 60.0)
    config = EmulatorConfig()  # keys kept 360 s
    with serve(config=config) as server:
        client = XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)
        world = World(client)
        _contacts_first(world)
        jobs = [world.accept(invoices.KIND_DOCUMENT, _sales(1, crm_id=f"inv-{n}")) for n in range(3)]
        assert world.deliver(CrashAt(XERO_ANSWERED)) is False
        calls = client.calls
        world.drain()
        assert client.calls == calls + 1  # the one identical POST, no GET
        assert len(world.records("Invoices")) == 3
        assert {world.jobs.jobs[j].status for j in jobs} == {"succeeded"}


class StatusLog:
    """Every quote status the connector sends to Xero, in order (the emulator applies them)."""

    def __init__(self, xero: XeroClient, refuse: str | None = None):
        self.sent: list[str] = []
        real = xero.upsert_batch

        def upsert_batch(resource: str, elements: list[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
            if resource == "Quotes":
                self.sent += [e.get("Status", "") for e in elements]
                if refuse and any(e.get("Status") == refuse and set(e) <= {"QuoteID", "Status", "Contact", "Date"}
                                  for e in elements):
                    return [{"StatusAttributeString": "ERROR", "HasValidationErrors": True,
                             "ValidationErrors": [{"Message": "Quote status cannot change from SENT to ACCEPTED"}]}]
            return real(resource, elements, **kwargs)

        xero.upsert_batch = upsert_batch  # type: ignore[method-assign]


@pytest.mark.parametrize("before", ["DRAFT", "DECLINED"])
def test_a_quote_accepted_in_the_crm_goes_through_sent_and_survives_a_crash_after_the_transition(xero, before):
    world = World(xero)
    _contacts_first(world)
    world.accept(invoices.KIND_DOCUMENT, _quote(1, quote_status=before))
    world.drain()
    (quote,) = world.records("Quotes")
    assert quote["Status"] == before
    log = StatusLog(xero)
    job = world.accept(invoices.KIND_DOCUMENT, _quote(2, quote_status="ACCEPTED"))
    # the first Xero answer is the quote's (sent as SENT), the second the ACCEPTED step's: die after it
    assert world.deliver(CrashAt(XERO_ANSWERED, skip=1)) is False
    assert log.sent == ["SENT", "ACCEPTED"]
    world.drain()
    assert log.sent == ["SENT", "ACCEPTED"]  # the redelivery read the Status and sent no transition again
    (quote,) = world.records("Quotes")
    assert quote["Status"] == "ACCEPTED" and quote["SubTotal"] == 200.0
    assert world.jobs.jobs[job].status == "succeeded", world.jobs.jobs[job].error
    mapping = world.mappings.get_mappings(xero.tenant_id, document_module("Opportunities", "QUOTE"), ["q-1"])
    assert mapping["q-1"].document["status"] == "ACCEPTED"
    step = world.mappings.get_intents(xero.tenant_id, document_module("Opportunities", "QUOTE") + "#ACCEPT", ["q-1"])
    assert step["q-1"].state == "confirmed"


def test_a_quote_accepted_in_the_crm_is_moved_once_and_a_second_delivery_sends_nothing(xero):
    world = World(xero)
    _contacts_first(world)
    world.accept(invoices.KIND_DOCUMENT, _quote(1, quote_status="DRAFT"))
    world.drain()
    log = StatusLog(xero)
    job = world.accept(invoices.KIND_DOCUMENT, _quote(2, quote_status="ACCEPTED"))
    world.drain()
    assert log.sent == ["SENT", "ACCEPTED"]
    assert world.records("Quotes")[0]["Status"] == "ACCEPTED"
    assert world.jobs.jobs[job].status == "succeeded"
    # the same save delivered again: accepted already, nothing sent
    world.pending.append({"job_id": job, "kind": invoices.KIND_DOCUMENT,
                          "document": _quote(2, quote_status="ACCEPTED").model_dump(mode="json")})
    world.drain()
    assert log.sent == ["SENT", "ACCEPTED"]
    assert world.jobs.jobs[job].status == "succeeded"


def test_an_acceptance_xero_refuses_fails_visibly_and_a_replay_retries_only_the_step(xero):
    world = World(xero)
    _contacts_first(world)
    world.accept(invoices.KIND_DOCUMENT, _quote(1, quote_status="DRAFT"))
    world.drain()
    real = xero.upsert_batch
    refusing = StatusLog(xero, refuse="ACCEPTED")
    job = world.accept(invoices.KIND_DOCUMENT, _quote(2, quote_status="ACCEPTED"))
    world.drain()
    outcome = world.jobs.jobs[job]
    assert outcome.status == "failed" and "could not be moved to ACCEPTED" in outcome.error
    assert refusing.sent == ["SENT", "ACCEPTED"] and world.records("Quotes")[0]["Status"] == "SENT"
    # a later delivery of the same save (a replay) finds the document unchanged and takes the step only
    xero.upsert_batch = real  # type: ignore[method-assign]
    log2 = StatusLog(xero)
    world.pending.append({"job_id": job, "kind": invoices.KIND_DOCUMENT,
                          "document": _quote(2, quote_status="ACCEPTED").model_dump(mode="json")})
    world.drain()
    assert log2.sent == ["ACCEPTED"]
    assert world.records("Quotes")[0]["Status"] == "ACCEPTED"
    assert world.jobs.jobs[job].status == "succeeded"


class SugarDyingOnce(FakeSugar):
    """Sugar writes the records of the first bulk call, then the worker dies before reading
    Sugar's answer (a Lambda timeout during the call)."""

    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]], chunk_size: int = 20):
        answer = super().update_records_bulk(module, updates, chunk_size)
        if len(self.calls) == 1:
            raise WorkerCrashed(XERO_ANSWERED)
        return answer


def test_an_invoice_write_back_cut_off_by_a_crash_is_redone_with_the_values_it_recorded(xero):
    world = World(xero)
    _contacts_first(world)
    world.crm = SugarDyingOnce()
    job = world.accept(invoices.KIND_DOCUMENT, _sales(1))
    assert world.deliver() is False  # died during the Sugar bulk call
    module = step_module("Invoices")
    assert world.mappings.get_intents(xero.tenant_id, module, ["inv-1"])["inv-1"].state == "intent"
    calls = xero.calls
    world.drain()
    assert xero.calls == calls  # nothing sent to Xero again
    (first, again) = world.crm.calls  # one bulk call per delivery, the same values
    assert first == again and first[1]["inv-1"]["xero_sync_status_c"] == "synced"
    assert world.mappings.get_intents(xero.tenant_id, module, ["inv-1"])["inv-1"].state == "confirmed"
    assert world.jobs.jobs[job].status == "succeeded"
    assert len(world.records("Invoices")) == 1


def test_an_invoice_write_back_sugar_refuses_for_good_fails_the_job_visibly(xero):
    world = World(xero)
    _contacts_first(world)
    world.crm = FakeSugar()
    world.crm.missing.add("inv-1")
    job = world.accept(invoices.KIND_DOCUMENT, _sales(1))
    world.drain()
    outcome = world.jobs.jobs[job]
    assert outcome.status == "failed" and "write-back was refused for good" in outcome.error
    assert len(world.crm.calls) == 1 and len(world.records("Invoices")) == 1
    step = world.mappings.get_intents(xero.tenant_id, step_module("Invoices"), ["inv-1"])["inv-1"]
    assert step.state == "failed"
