"""Xero's news written onto CRM records as journal steps (issue 11, Deliver 4): the write-backs made
by the webhook worker and the reconcile (``xero_updates.apply_documents``) are recorded before the
Sugar call with the version of Xero's state they carry, retried until Sugar took them, and a
refusal for good is a ``failed`` job ``sugar-xero status`` lists, never a log line only. An older
Xero state's write-back never overwrites a newer one already written. The sync table is moto's
DynamoDB (its conditional intent write decides newest-wins); Sugar is the in-memory double."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.mapping.settings import MappingConfig
from shared.mapping.xero_documents import document_state, write_back_values
from shared.state.dynamo import SyncStateTable
from shared.state.records import Mapping
from shared.sugar.errors import SugarUnavailable
from shared.usecases.status import gather
from shared.usecases.writeback import (
    WRITE_BACK_KIND,
    Outcome,
    Steps,
    step_module,
    write_back,
    xero_version,
)
from shared.usecases.xero_updates import CONTACT_VALUES_STEP, apply_contacts, apply_documents
from tests.conftest import SYNC_TABLE_NAME
from tests.support.fakes import FakeSugar
from tests.unit.test_xero_updates import TENANT, invoice, mapped, stored, xero_date

CONFIG = MappingConfig()


@pytest.fixture
def table(moto_dynamodb):
    return SyncStateTable(SYNC_TABLE_NAME, resource=moto_dynamodb.resource("dynamodb"))


class SugarDownFirst(FakeSugar):
    """Sugar answers 503 to the first ``times`` bulk calls, then writes."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]], chunk_size: int = 20):
        if self.times > 0:
            self.times -= 1
            self.calls.append((module, dict(updates)))
            raise SugarUnavailable("POST /bulk: Sugar answered 503 maintenance", status=503, retryable=True)
        return super().update_records_bulk(module, updates, chunk_size)


def _apply(table: SyncStateTable, sugar: FakeSugar, documents: list[dict[str, Any]], *, source: str = "webhook"):
    return apply_documents("Invoices", documents, tenant_id=TENANT, mappings=table, crm=sugar, config=CONFIG,
                           jobs=table, source=source)


def _step(table: SyncStateTable, crm_id: str = "q-1"):
    return table.get_intents(TENANT, step_module("Quotes"), [crm_id]).get(crm_id)


def _failed_jobs(table: SyncStateTable) -> list[dict[str, Any]]:
    return gather(store=table, probe=None, limits=None).recent_failures


def test_a_write_back_sugar_refuses_once_is_a_step_retried_until_done(table):
    invoice_id = str(uuid.uuid4())
    before = mapped(table, invoice(invoice_id))
    news = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")
    sugar = SugarDownFirst(times=1)
    report = _apply(table, sugar, [news])
    assert invoice_id in report.pending and stored(table) == before  # applied again later
    step = _step(table)
    assert step.state == "sent" and step.version == xero_version(document_state("Invoices", news).updated_utc)
    report = _apply(table, sugar, [news])  # the webhook's retry (or the next reconcile pass)
    assert report.pending == {} and report.failed == {} and stored(table).status == "PAID"
    assert _step(table).state == "confirmed" and _step(table).attempt == 2
    first, again = (updates["q-1"] for _, updates in sugar.calls)
    assert first == again and sugar.records[("Quotes", "q-1")]["xero_status_c"] == "PAID"
    assert _failed_jobs(table) == []


@pytest.mark.parametrize("source", ["webhook", "reconcile"])
def test_a_write_back_sugar_refuses_for_good_is_a_failed_job_status_lists(table, source):
    invoice_id = str(uuid.uuid4())
    mapped(table, invoice(invoice_id))
    sugar = FakeSugar()
    sugar.missing.add("q-1")  # deleted in the CRM: 404
    news = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")
    report = _apply(table, sugar, [news], source=source)
    assert report.failed and report.pending == {}
    assert stored(table).status == "PAID"  # Xero's state is kept for the rules and the drift audit
    assert _step(table).state == "failed"
    (failure,) = _failed_jobs(table)
    assert failure["kind"] == WRITE_BACK_KIND and (failure["crm_module"], failure["crm_id"]) == ("Quotes", "q-1")
    assert f"({source})" in failure["error"] and invoice_id in failure["error"] and "404" in failure["error"]
    # the same refusal seen again (a reconcile after the webhook) is listed once
    table.put_mapping(table.get_mappings(TENANT, "Quotes#ACCREC", ["q-1"])["q-1"].model_copy(
        update={"document": None}))
    _apply(table, sugar, [news], source=source)
    assert len(_failed_jobs(table)) == 1


def _outcome(document: dict[str, Any], **changes: Any) -> Outcome:
    state = document_state("Invoices", document)
    return Outcome(module="Quotes", crm_id="q-1", sync_status="synced", xero_id=state.xero_id,
                   values=write_back_values(state), version=xero_version(state.updated_utc), **changes)


def test_a_slower_write_back_of_an_older_state_never_overwrites_a_newer_one(table):
    invoice_id = str(uuid.uuid4())
    older = invoice(invoice_id, paid=400.0, updated="2026-11-27T10:00:00")
    newer = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")
    sugar, steps = FakeSugar(), Steps(table, TENANT)
    xero_only = CONFIG.model_copy(update={"write_back": CONFIG.write_back.model_copy(update={"fields": {
        k: v for k, v in CONFIG.write_back.fields.items() if k not in ("sync_status", "last_error", "synced_at")}})})
    assert write_back([_outcome(newer)], crm=sugar, config=xero_only, steps=steps).written == {("Quotes", "q-1")}
    report = write_back([_outcome(older)], crm=sugar, config=xero_only, steps=steps)  # the slow one lands last
    assert report.superseded == {("Quotes", "q-1")} and report.pending == {} and report.failed == {}
    record = sugar.records[("Quotes", "q-1")]
    assert record["xero_status_c"] == "PAID" and record["xero_amount_paid_c"] == "1090.00"
    # only the connector's own field (xero_id) would have gone: the record was not written at all
    # by the older state beyond it
    assert [u["q-1"].get("xero_status_c") for _, u in sugar.calls] == ["PAID", None]
    assert _step(table).version == xero_version(document_state("Invoices", newer).updated_utc)


def test_an_older_push_write_back_still_writes_the_push_status_but_not_older_xero_values(table):
    invoice_id = str(uuid.uuid4())
    pushed = invoice(invoice_id, updated="2026-11-27T09:00:00")
    paid = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")
    sugar, steps = FakeSugar(), Steps(table, TENANT)
    mapped(table, paid)
    _apply(table, sugar, [invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T13:00:00")])
    # the push's write-back, retried after Sugar was down, carries the state Xero answered the push with
    report = write_back([_outcome(pushed, synced_at="2026-11-27T09:00:01+00:00")], crm=sugar, config=CONFIG,
                        steps=steps)
    assert report.superseded == {("Quotes", "q-1")} and report.written == {("Quotes", "q-1")}
    sent = sugar.calls[-1][1]["q-1"]
    assert sent == {"xero_id_c": invoice_id, "xero_sync_status_c": "synced", "xero_last_error_c": "",
                    "xero_synced_at_c": "2026-11-27T09:00:01+00:00"}
    assert sugar.records[("Quotes", "q-1")]["xero_status_c"] == "PAID"


def test_the_same_state_written_again_is_not_refused(table):
    invoice_id = str(uuid.uuid4())
    news = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")
    sugar, steps = FakeSugar(), Steps(table, TENANT)
    for _ in range(2):
        report = write_back([_outcome(news)], crm=sugar, config=CONFIG, steps=steps)
        assert report.superseded == set() and report.written == {("Quotes", "q-1")}
    assert len(sugar.calls) == 2


class SugarLandingLast(FakeSugar):
    """Sugar applies the first bulk call slowly: a newer write-back is recorded and written while
    it is in flight (``during``), and the older values land after it."""

    def __init__(self, during) -> None:
        super().__init__()
        self.during = during

    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]], chunk_size: int = 20):
        if self.during is not None:
            during, self.during = self.during, None
            during()
        return super().update_records_bulk(module, updates, chunk_size)


def test_an_older_write_back_landing_after_a_newer_one_is_followed_by_the_newest_values_again(table):
    invoice_id = str(uuid.uuid4())
    older = invoice(invoice_id, paid=400.0, updated="2026-11-27T10:00:00")
    newer = invoice(invoice_id, status="PAID", paid=1090.0, updated="2026-11-27T12:00:00")
    steps = Steps(table, TENANT)
    sugar = SugarLandingLast(lambda: write_back([_outcome(newer)], crm=sugar, config=CONFIG, steps=steps))
    report = write_back([_outcome(older)], crm=sugar, config=CONFIG, steps=steps)
    assert [u["q-1"]["xero_status_c"] for _, u in sugar.calls] == ["PAID", "AUTHORISED", "PAID"]
    assert sugar.records[("Quotes", "q-1")]["xero_amount_paid_c"] == "1090.00"
    assert report.superseded == {("Quotes", "q-1")}
    assert _step(table).state == "confirmed" and _step(table).version == xero_version(
        document_state("Invoices", newer).updated_utc)


# ---- Xero's contact values (CONTACT events) --------------------------------------------------
CONTACT_CONFIG = MappingConfig.model_validate({"xero_updates": {"contact_fields": {
    "balance_receivable": "xero_balance_c", "contact_status": "xero_contact_status_c"}}})


def _contact(contact_id: str, outstanding: float, updated: str) -> dict[str, Any]:
    return {"ContactID": contact_id, "Name": "Harbour View", "ContactStatus": "ACTIVE",
            "UpdatedDateUTC": xero_date(updated),
            "Balances": {"AccountsReceivable": {"Outstanding": outstanding, "Overdue": 0.0}}}


def _apply_contacts(table, sugar, contacts):
    return apply_contacts(contacts, tenant_id=TENANT, mappings=table, crm=sugar, config=CONTACT_CONFIG, jobs=table)


def test_contact_values_are_a_step_of_their_own_retried_then_done_and_never_older(table):
    contact_id = str(uuid.uuid4())
    table.put_mapping(Mapping(tenant_id=TENANT, module="Accounts", crm_id="acc-1", xero_id=contact_id))
    sugar = SugarDownFirst(times=1)
    newer = _contact(contact_id, 690.0, "2026-11-27T12:00:00")
    assert _apply_contacts(table, sugar, [newer]) == (set(), {contact_id: "POST /bulk: Sugar answered 503 "
                                                                          "maintenance"})
    assert _apply_contacts(table, sugar, [newer]) == ({contact_id}, {})
    step = table.get_intents(TENANT, step_module("Accounts", CONTACT_VALUES_STEP), ["acc-1"])["acc-1"]
    assert step.state == "confirmed" and step.attempt == 2
    assert table.get_intents(TENANT, step_module("Accounts"), ["acc-1"]) == {}  # the push's step is its own
    # an older refresh arriving late writes nothing older
    _apply_contacts(table, sugar, [_contact(contact_id, 100.0, "2026-11-27T10:00:00")])
    assert sugar.records[("Accounts", "acc-1")]["xero_balance_c"] == "690.00"
    assert len(sugar.calls) == 2


def test_contact_values_the_crm_refuses_for_good_are_a_failed_job(table):
    contact_id = str(uuid.uuid4())
    table.put_mapping(Mapping(tenant_id=TENANT, module="Accounts", crm_id="acc-1", xero_id=contact_id))
    sugar = FakeSugar()
    sugar.missing.add("acc-1")
    assert _apply_contacts(table, sugar, [_contact(contact_id, 690.0, "2026-11-27T12:00:00")]) == (set(), {})
    (failure,) = _failed_jobs(table)
    assert failure["kind"] == WRITE_BACK_KIND and failure["crm_id"] == "acc-1" and contact_id in failure["error"]
