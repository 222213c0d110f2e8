"""A job's final status comes only after its follow-up steps (issue 11, Deliver 4).

A poller of ``GET /jobs/{id}`` must never see ``succeeded`` for a job that then fails: the CRM
write-back runs before the job is marked, and a write-back that Sugar will be asked again leaves
the job ``queued`` (a status the API contract allows for waiting work) with a warning saying it
waits for the CRM write-back. Every status a job ever takes is recorded here (``HistoryJobs``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shared.mapping.settings import InvoiceRules, MappingConfig
from shared.models.documents import ContactDocument
from shared.models.invoices import ContactRef, LineDocument, SalesInvoiceDocument
from shared.models.jobs import CrmRef
from shared.state.records import document_module
from shared.sugar.errors import SugarError
from shared.usecases import contacts, invoices
from shared.usecases.accept import accept
from shared.usecases.crash import STATE_WRITTEN, XERO_ANSWERED, CrashAt, WorkerCrashed
from shared.usecases.work import WorkItem
from shared.usecases.writeback import WRITE_BACK_PENDING, step_module
from shared.xero.client import XeroClient, encode_json
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue, FakeSugar, FakeXero, HistoryJobs

SGD_GST = {"OUTPUT": Decimal("9"), "INPUT": Decimal("9"), "NONE": Decimal("0")}
CUSTOMER = ContactDocument(crm_module="Accounts", crm_id="acc-1", name="Harbour Foods Pte Ltd",
                           crm_modified="2026-11-01T00:00:00Z")
SUGAR_503 = SugarError("POST /bulk: Sugar answered 503", status=503, retryable=True)


class SugarRefusingFirst(FakeSugar):
    """Sugar answers 503 to the first ``times`` bulk calls on ``module``, then writes."""

    def __init__(self, times: int = 1, module: str | None = None) -> None:
        super().__init__()
        self.times, self.module = times, module

    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]], chunk_size: int = 20):
        if self.times > 0 and self.module in (None, module):
            self.times -= 1
            self.calls.append((module, dict(updates)))
            raise SUGAR_503
        return super().update_records_bulk(module, updates, chunk_size)


def _accepted(jobs: FakeJobs, kind: str, doc: Any) -> list[WorkItem]:
    queue = FakeQueue()
    accept(kind=kind, crm=CrmRef(module=doc.crm_module, id=doc.crm_id), document=doc.model_dump(mode="json"),
           jobs=jobs, queue=queue, status_base_url="https://x/prod")
    return [WorkItem(message_id=f"m-{m['job_id']}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
            for m in queue.sent]


# ---- contacts --------------------------------------------------------------------------------
def test_a_contact_whose_write_back_is_refused_for_good_never_shows_succeeded():
    jobs, sugar = HistoryJobs(), FakeSugar()
    sugar.missing.add("acc-1")  # deleted in the CRM meanwhile: 404
    (item,) = _accepted(jobs, contacts.KIND, CUSTOMER)
    result = contacts.sync_contacts([item], xero=FakeXero(), jobs=jobs, mappings=FakeMappings(), crm=sugar,
                                    config=MappingConfig())
    assert result.retry == set()
    assert jobs.history[item.job_id] == ["queued", "in_progress", "failed"]
    assert "write-back was refused for good" in jobs.jobs[item.job_id].error


def test_a_contact_whose_write_back_waits_for_sugar_is_queued_then_succeeds_once():
    jobs, sugar, xero, mappings = HistoryJobs(), SugarRefusingFirst(), FakeXero(), FakeMappings()
    (item,) = _accepted(jobs, contacts.KIND, CUSTOMER)
    result = contacts.sync_contacts([item], xero=xero, jobs=jobs, mappings=mappings, crm=sugar,
                                    config=MappingConfig())
    waiting = jobs.jobs[item.job_id]
    assert result.retry == {item.message_id}
    assert waiting.status == "queued" and waiting.xero["contact_id"]
    assert any(w.startswith(WRITE_BACK_PENDING) for w in waiting.warnings)
    # SQS delivers the message again: Xero is not written again, the write-back lands
    result = contacts.sync_contacts([item], xero=xero, jobs=jobs, mappings=mappings, crm=sugar,
                                    config=MappingConfig())
    assert result.retry == set() and len(xero.calls) == 1
    assert jobs.history[item.job_id] == ["queued", "in_progress", "queued", "in_progress", "succeeded"]
    assert sugar.records[("Accounts", "acc-1")]["xero_sync_status_c"] == "synced"


def test_without_a_crm_the_job_ends_at_once():
    jobs = HistoryJobs()
    (item,) = _accepted(jobs, contacts.KIND, CUSTOMER)
    contacts.sync_contacts([item], xero=FakeXero(), jobs=jobs, mappings=FakeMappings(), crm=None,
                           config=MappingConfig())
    assert jobs.history[item.job_id] == ["queued", "in_progress", "succeeded"]


# ---- trade documents (Xero emulator) -------------------------------------------------------
@pytest.fixture
def xero():
    config = EmulatorConfig()
    with serve(config=config) as server:
        yield XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


def _sales(crm_id: str = "inv-1", day: int = 1, **changes: Any) -> SalesInvoiceDocument:
    return SalesInvoiceDocument(crm_module="Invoices", crm_id=crm_id, contact=ContactRef(contact=CUSTOMER),
                                lines=[LineDocument(crm_id="l1", description="Chiller service",
                                                    unit_amount=Decimal("100.00"), tax_type="OUTPUT")],
                                crm_modified=f"2026-12-0{day}T09:00:00+08:00", **changes)


def _push(items: list[WorkItem], xero: XeroClient, jobs: FakeJobs, mappings: FakeMappings, crm: Any,
          config: MappingConfig | None = None):
    return invoices.push_documents(items, xero=xero, jobs=jobs, mappings=mappings, crm=crm,
                                   config=config or MappingConfig(), tax_rates=SGD_GST)


def test_an_invoice_whose_write_back_is_refused_for_good_never_shows_succeeded(xero):
    jobs, mappings, sugar = HistoryJobs(), FakeMappings(), FakeSugar()
    sugar.missing.add("inv-1")
    items = _accepted(jobs, invoices.KIND_DOCUMENT, _sales())
    result = _push(items, xero, jobs, mappings, sugar)
    (job_id,) = [i.job_id for i in items]
    assert result.retry == set()
    assert "succeeded" not in jobs.history[job_id]
    assert jobs.history[job_id][-1] == "failed"
    job = jobs.jobs[job_id]
    assert "write-back was refused for good" in job.error and job.xero["id"]  # the Xero side is named
    step = mappings.get_intents(xero.tenant_id, step_module("Invoices"), ["inv-1"])["inv-1"]
    assert step.state == "failed"


def test_an_invoice_whose_write_back_is_retried_then_done_succeeds_once(xero):
    jobs, mappings, sugar = HistoryJobs(), FakeMappings(), SugarRefusingFirst(times=2, module="Invoices")
    items = _accepted(jobs, invoices.KIND_DOCUMENT, _sales())
    (job_id,) = [i.job_id for i in items]
    for _ in range(2):  # Sugar answers 503 twice: the job waits, queued, and says for what
        result = _push(items, xero, jobs, mappings, sugar)
        assert result.retry == {items[0].message_id}
        job = jobs.jobs[job_id]
        assert job.status == "queued" and any(w.startswith(WRITE_BACK_PENDING) for w in job.warnings)
    result = _push(items, xero, jobs, mappings, sugar)
    assert result.retry == set()
    assert jobs.history[job_id].count("succeeded") == 1 and jobs.history[job_id][-1] == "succeeded"
    assert "failed" not in jobs.history[job_id]
    assert sugar.records[("Invoices", "inv-1")]["xero_sync_status_c"] == "synced"
    invoices_in_xero = [i for i in xero.get("Invoices").get("Invoices") or [] if i.get("Status") != "DELETED"]
    assert len(invoices_in_xero) == 1


def _faults(xero: XeroClient, **config: Any) -> None:
    import requests

    answer = requests.post(f"{xero.base_url}/_emulator/faults", json=config, timeout=5)
    assert answer.status_code == 200, answer.text


def test_a_job_waiting_for_its_allocation_is_queued_naming_it_and_succeeds_once_after_it(xero):
    config = MappingConfig(invoices=InvoiceRules(cancel_with_payments="credit_note"))
    jobs, mappings, sugar = HistoryJobs(), FakeMappings(), FakeSugar()
    _push(_accepted(jobs, invoices.KIND_DOCUMENT, _sales(status="AUTHORISED")), xero, jobs, mappings, sugar, config)
    (invoice,) = xero.get("Invoices")["Invoices"]
    payment = {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"},
               "Amount": Decimal("50.00"), "Date": "2026-12-01"}
    xero._request("PUT", "/api.xro/2.0/Payments", json_body=encode_json({"Payments": [payment]}),
                  idempotency_key="pay-1")
    module = document_module("Invoices", "ACCREC")  # what the payment webhook would have stored
    mapping = mappings.get_mappings(xero.tenant_id, module, ["inv-1"])["inv-1"]
    mapping.document = {**mapping.document, "amount_paid": "50.00", "amount_due": "59.00"}
    _faults(xero, next=["503"] * 5, path_contains="/Allocations")  # Xero busy for the allocation
    items = _accepted(jobs, invoices.KIND_DOCUMENT, _sales(day=2, cancelled=True, status="AUTHORISED"))
    (job_id,) = [i.job_id for i in items]
    assert _push(items, xero, jobs, mappings, sugar, config).retry == {items[0].message_id}
    waiting = jobs.jobs[job_id]
    assert waiting.status == "queued" and "allocation of 59.00 to the invoice waits" in waiting.error
    assert waiting.xero["id"] == invoice["InvoiceID"]
    _faults(xero)
    assert _push(items, xero, jobs, mappings, sugar, config).retry == set()
    assert jobs.history[job_id] == ["queued", "in_progress", "queued", "in_progress", "succeeded"]
    assert sugar.records[("Invoices", "inv-1")]["xero_sync_status_c"] == "warning"  # credited: said on the record
    (note,) = xero.get("CreditNotes")["CreditNotes"]
    (allocation,) = xero.get(f"CreditNotes/{note['CreditNoteID']}")["CreditNotes"][0]["Allocations"]
    assert allocation["Amount"] == 59.0


@pytest.mark.parametrize("point", [XERO_ANSWERED, STATE_WRITTEN])
def test_a_worker_killed_before_the_write_back_writes_it_on_redelivery(xero, point):
    """Killed after Xero answered or after the state was written, before the write-back ran: the
    job is not final; the redelivery (nothing sent to Xero again) writes the CRM record back."""
    jobs, mappings, sugar = HistoryJobs(), FakeMappings(), FakeSugar()
    # the customer is in Xero beforehand: the crash hits the invoice
    contacts.sync_contacts(_accepted(jobs, contacts.KIND, CUSTOMER), xero=xero, jobs=jobs, mappings=mappings,
                           config=MappingConfig())
    items = _accepted(jobs, invoices.KIND_DOCUMENT, _sales())
    (job_id,) = [i.job_id for i in items]
    with pytest.raises(WorkerCrashed):
        invoices.push_documents(items, xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=MappingConfig(),
                                tax_rates=SGD_GST, crash=CrashAt(point))
    assert jobs.jobs[job_id].status == "in_progress" and ("Invoices", "inv-1") not in sugar.records
    assert _push(items, xero, jobs, mappings, sugar).retry == set()
    assert sugar.records[("Invoices", "inv-1")]["xero_sync_status_c"] == "synced"
    assert jobs.history[job_id][-1] == "succeeded" and jobs.history[job_id].count("succeeded") == 1
    invoices_in_xero = [i for i in xero.get("Invoices").get("Invoices") or [] if i.get("Status") != "DELETED"]
    assert len(invoices_in_xero) == 1
    # a further plain re-save writes nothing back: the step is confirmed for this Xero state
    _push(_accepted(HistoryJobs(), invoices.KIND_DOCUMENT, _sales()), xero, jobs, mappings, sugar)
    assert len([c for c in sugar.calls if c[0] == "Invoices"]) == 1


def test_a_contact_worker_killed_before_the_write_back_writes_it_on_redelivery():
    jobs, mappings, sugar, xero = HistoryJobs(), FakeMappings(), FakeSugar(), FakeXero()
    (item,) = _accepted(jobs, contacts.KIND, CUSTOMER)
    with pytest.raises(WorkerCrashed):
        contacts.sync_contacts([item], xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=MappingConfig(),
                               crash=CrashAt(STATE_WRITTEN))
    assert jobs.jobs[item.job_id].status == "in_progress" and sugar.calls == []
    contacts.sync_contacts([item], xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=MappingConfig())
    assert sugar.records[("Accounts", "acc-1")]["xero_sync_status_c"] == "synced" and len(xero.calls) == 1
    assert jobs.history[item.job_id][-1] == "succeeded" and jobs.history[item.job_id].count("succeeded") == 1
    contacts.sync_contacts([item], xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=MappingConfig())
    assert len(sugar.calls) == 1  # confirmed: a further delivery writes nothing back


def test_a_job_redelivered_after_its_write_back_was_refused_for_good_stays_failed():
    """Killed after the job was marked failed, before SQS deleted the message: the redelivery
    finds Xero unchanged and tries the refused write-back again; it never ends ``succeeded``."""
    jobs, mappings, sugar, xero = HistoryJobs(), FakeMappings(), FakeSugar(), FakeXero()
    sugar.missing.add("acc-1")
    (item,) = _accepted(jobs, contacts.KIND, CUSTOMER)
    for _ in range(2):  # the first delivery's message was never deleted: the same message again
        contacts.sync_contacts([item], xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=MappingConfig())
    assert len(xero.calls) == 1 and len(sugar.calls) == 2
    assert "succeeded" not in jobs.history[item.job_id] and jobs.jobs[item.job_id].status == "failed"
    assert "write-back was refused for good" in jobs.jobs[item.job_id].error


def test_a_push_write_back_retried_after_newer_xero_news_was_written_keeps_the_newer_values(xero):
    """Issue 11, Deliver 4 (ordering): the push's write-back waits for Sugar; meanwhile Xero's news
    (a payment: PAID) is written onto the record by the webhook worker, whose worker then dies
    before storing the state. The push's retry carries the older Xero state: it writes the
    connector's own fields (status of the push, Xero id) and never the older Xero values."""
    from shared.mapping.xero_documents import write_back_values
    from shared.models.invoices import XeroDocumentState
    from shared.usecases.writeback import Outcome, Steps, write_back, xero_version

    jobs, mappings, sugar = HistoryJobs(), FakeMappings(), SugarRefusingFirst(times=1, module="Invoices")
    items = _accepted(jobs, invoices.KIND_DOCUMENT, _sales())
    (job_id,) = [i.job_id for i in items]
    assert _push(items, xero, jobs, mappings, sugar).retry == {items[0].message_id}
    mapping = mappings.get_mappings(xero.tenant_id, document_module("Invoices", "ACCREC"), ["inv-1"])["inv-1"]
    pushed = XeroDocumentState.model_validate(mapping.document)
    paid = pushed.model_copy(update={"status": "PAID", "amount_paid": pushed.total, "amount_due": Decimal("0.00"),
                                     "updated_utc": "2099-01-01T00:00:00.000+00:00"})
    news_fields = {k: v for k, v in MappingConfig().write_back.fields.items()
                   if k not in ("sync_status", "last_error", "synced_at")}
    news_config = MappingConfig().model_copy(update={"write_back": MappingConfig().write_back.model_copy(
        update={"fields": news_fields})})
    write_back([Outcome(module="Invoices", crm_id="inv-1", sync_status="synced", xero_id=paid.xero_id,
                        values=write_back_values(paid), version=xero_version(paid.updated_utc))],
               crm=sugar, config=news_config, steps=Steps(mappings, xero.tenant_id))
    assert sugar.records[("Invoices", "inv-1")]["xero_status_c"] == "PAID"
    assert _push(items, xero, jobs, mappings, sugar).retry == set()
    record = sugar.records[("Invoices", "inv-1")]
    assert record["xero_status_c"] == "PAID" and record["xero_amount_due_c"] == "0.00"
    assert record["xero_sync_status_c"] == "synced" and record["xero_id_c"] == pushed.xero_id
    assert jobs.history[job_id][-1] == "succeeded" and jobs.history[job_id].count("succeeded") == 1
