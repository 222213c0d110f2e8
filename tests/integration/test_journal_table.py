"""The write-ahead journal in the sync table (moto): its conditions are what decide newest-wins
between concurrent workers and which attempt may settle, so they are tested on DynamoDB's
expression language, not only on the in-memory fake."""

from __future__ import annotations

import pytest

from shared.state.dynamo import SyncStateTable
from shared.state.records import Intent, Mapping
from shared.usecases import contacts, invoices
from shared.usecases.crash import POINTS, CrashAt
from tests.conftest import SYNC_TABLE_NAME
from tests.integration.test_exactly_once import (  # noqa: F401
    World,
    _contact,
    _contacts_first,
    _sales,
    redelivery_after_the_resend_window,
    xero,
)


@pytest.fixture
def table(moto_dynamodb):
    return SyncStateTable(SYNC_TABLE_NAME, resource=moto_dynamodb.resource("dynamodb"))


def _intent(version: str | None, **changes) -> Intent:
    return Intent(tenant_id="t", module="Invoices#ACCREC", crm_id="inv-1", resource="Invoices", version=version,
                  body_hash="h", idempotency_key="k", marker_field="Reference", marker_value="CRM inv-1",
                  job_ids=["j1"], **changes)


def test_attempts_count_up_and_an_older_version_is_refused(table):
    first = table.record_intent(_intent("2026-12-03T02:00:00.000000Z"))
    assert first is not None and first.attempt == 1 and first.state == "intent"
    again = table.record_intent(_intent("2026-12-03T02:00:00.000000Z"))  # the same save again
    assert again is not None and again.attempt == 2
    assert table.record_intent(_intent("2026-12-03T01:00:00.000000Z")) is None  # older: refused
    unknown = table.record_intent(_intent(None))  # no version: never refused, keeps the stored one
    assert unknown is not None and unknown.version == "2026-12-03T02:00:00.000000Z" and unknown.attempt == 3


def test_only_the_latest_attempt_settles(table):
    old = table.record_intent(_intent("2026-12-03T02:00:00.000000Z"))
    new = table.record_intent(_intent("2026-12-03T03:00:00.000000Z"))
    assert old is not None and new is not None
    assert table.settle_intent(old, "confirmed", found_id="x-1") is False
    assert table.settle_intent(new, "sent", error="connection lost") is True
    (stored,) = table.get_intents("t", "Invoices#ACCREC", ["inv-1"]).values()
    assert stored.state == "sent" and stored.attempt == 2 and stored.error == "connection lost"


def test_a_write_back_step_keeps_the_values_it_will_resend(table):
    values = '{"xero_id_c": "x-1", "xero_sync_status_c": "synced"}'
    step = table.record_intent(Intent(tenant_id="t", module="Invoices#WRITEBACK", crm_id="inv-1",
                                      resource="SugarWriteBack", body_hash="h", step_values=values))
    assert step is not None and step.step_values == values
    (stored,) = table.get_intents("t", "Invoices#WRITEBACK", ["inv-1"]).values()
    assert stored.state == "intent" and stored.step_values == values


def test_journal_entries_never_show_in_the_by_xero_id_index(table):
    intent = table.record_intent(_intent("2026-12-03T02:00:00.000000Z"))
    assert intent is not None
    table.settle_intent(intent, "confirmed", found_id="x-1")
    table.put_mapping(Mapping(tenant_id="t", module="Invoices#ACCREC", crm_id="inv-1", xero_id="x-1"))
    assert table.find_by_xero_ids("t", ["x-1"])["x-1"][0].module == "Invoices#ACCREC"
    assert table.find_by_xero_id("x-1").crm_id == "inv-1"


@pytest.mark.parametrize("point", POINTS)
def test_crashes_with_the_sync_table_as_state(xero, table, point):  # noqa: F811
    world = World(xero, mappings=table)
    _contacts_first(world)
    contact_job = world.accept(contacts.KIND, _contact(1))
    invoice_job = world.accept(invoices.KIND_DOCUMENT, _sales(1))
    assert world.deliver(CrashAt(point)) is False
    world.drain()
    assert world.jobs.jobs[contact_job].status == world.jobs.jobs[invoice_job].status == "succeeded"
    assert len(world.records("Invoices")) == 1
    assert len([c for c in world.records("Contacts") if c.get("ContactNumber") == "acc-9"]) == 1
