"""Write-back of each record's outcome into its Sugar fields, and recognising it coming back."""

from __future__ import annotations

import json

import pytest

from shared.mapping.settings import MappingConfig, WriteBack
from shared.models.documents import ContactDocument
from shared.models.jobs import CrmRef
from shared.models.sugar import AccountHook
from shared.sugar.errors import SugarError
from shared.usecases.accept import accept
from shared.usecases.contacts import KIND, WRITE_BACK_PENDING, sync_contacts
from shared.usecases.crash import XERO_ANSWERED, WorkerCrashed
from shared.usecases.work import WorkItem
from shared.usecases.writeback import Outcome, own_write_back, payload, step_module, write_back
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue, FakeSugar, FakeXero

CONFIG = MappingConfig()


def run(docs, *, jobs=None, mappings=None, xero=None, crm=None, config=CONFIG):
    jobs, queue = jobs or FakeJobs(), FakeQueue()
    mappings, xero = mappings or FakeMappings(), xero or FakeXero()
    for doc in docs:
        accept(kind=KIND, crm=CrmRef(module=doc.crm_module, id=doc.crm_id), document=doc.model_dump(mode="json"),
               jobs=jobs, queue=queue, status_base_url="https://x/prod")
    items = [WorkItem(message_id=f"m{i}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
             for i, m in enumerate(queue.sent)]
    result = sync_contacts(items, xero=xero, jobs=jobs, mappings=mappings, crm=crm, config=config)
    return result, jobs, items


def test_payload_uses_the_configured_fields():
    outcome = Outcome(module="Accounts", crm_id="a1", sync_status="synced", xero_id="x1",
                      synced_at="2026-11-27T10:00:00+00:00")
    assert payload(outcome, CONFIG) == {"xero_id_c": "x1", "xero_sync_status_c": "synced",
                                        "xero_last_error_c": "", "xero_synced_at_c": "2026-11-27T10:00:00+00:00"}
    narrow = MappingConfig(write_back=WriteBack(fields={"xero_id": "xid_c", "sync_status": "st_c"}))
    assert payload(outcome, narrow) == {"xid_c": "x1", "st_c": "synced"}
    failed = Outcome(module="Accounts", crm_id="a1", sync_status="failed", last_error="x" * 400)
    assert payload(failed, CONFIG) == {"xero_sync_status_c": "failed", "xero_last_error_c": "x" * 255}


def test_after_a_batch_each_record_is_written_back_20_a_call():
    sugar, xero = FakeSugar(), FakeXero()
    xero.contacts["t"] = {"ContactID": "t", "Name": "Taken", "ContactNumber": "someone"}
    docs = [ContactDocument(crm_id=f"a{n}", name=f"Customer {n}") for n in range(44)]
    docs.append(ContactDocument(crm_id="c1", crm_module="Contacts", name="Taken"))
    result, jobs, _ = run(docs, xero=xero, crm=sugar,
                          config=MappingConfig(contacts={"name_conflict": "fail"}))
    assert result.retry == set()
    assert [(module, len(updates)) for module, updates in sugar.calls] == [
        ("Accounts", 20), ("Accounts", 20), ("Accounts", 4), ("Contacts", 1)]
    written = sugar.records[("Accounts", "a0")]
    assert written["xero_sync_status_c"] == "synced" and written["xero_last_error_c"] == ""
    assert written["xero_id_c"] == xero.contacts[written["xero_id_c"]]["ContactID"]
    assert written["xero_synced_at_c"]
    failed = sugar.records[("Contacts", "c1")]
    assert failed["xero_sync_status_c"] == "failed" and "already assigned" in failed["xero_last_error_c"]
    assert "xero_id_c" not in failed


def test_warnings_are_written_back_as_warning():
    sugar, xero = FakeSugar(), FakeXero()
    xero.contacts["t"] = {"ContactID": "t", "Name": "Acme", "ContactNumber": "someone"}
    run([ContactDocument(crm_id="a1", name="Acme")], xero=xero, crm=sugar)
    written = sugar.records[("Accounts", "a1")]
    assert written["xero_sync_status_c"] == "warning" and "pushed as 'Acme (a1)'" in written["xero_last_error_c"]


def test_sugar_down_leaves_the_xero_job_queued_for_its_write_back_and_retries_the_same_values_later():
    sugar, jobs, mappings, xero = FakeSugar(), FakeJobs(), FakeMappings(), FakeXero()
    sugar.down = SugarError("POST /bulk: Sugar answered 503", status=503, retryable=True)
    doc = ContactDocument(crm_id="a1", name="Acme")
    result, jobs, items = run([doc], jobs=jobs, mappings=mappings, xero=xero, crm=sugar)
    (job,) = jobs.jobs.values()
    # not final while the write-back waits: succeeded only once Sugar wrote the record
    assert job.status == "queued" and any(WRITE_BACK_PENDING in w for w in job.warnings)
    assert result.retry == {"m0"} and result.retry_after
    first_try = sugar.calls[0][1]["a1"]
    # SQS delivers the message again: Xero is not written twice, the write-back is repeated as it was.
    sugar.down = None
    result = sync_contacts(items, xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=CONFIG)
    assert result.retry == set() and len(xero.calls) == 1
    assert sugar.calls[1][1]["a1"] == first_try
    assert jobs.jobs[job.job_id].status == "succeeded"


def test_a_record_gone_from_sugar_fails_the_job_visibly_and_is_not_retried():
    sugar, mappings = FakeSugar(), FakeMappings()
    sugar.missing.add("a1")
    result, jobs, _ = run([ContactDocument(crm_id="a1", name="Acme")], crm=sugar, mappings=mappings)
    (job,) = jobs.jobs.values()
    assert result.retry == set() and job.status == "failed"
    assert "write-back was refused for good" in job.error and "404" in job.error
    step = mappings.get_intents("tenant-1", step_module("Accounts"), ["a1"])["a1"]
    assert step.state == "failed"
    # `sugar-xero status` lists it among the failures, with the reason
    from shared.usecases.status import gather

    class Table:
        def scan_status_items(self):
            return [("job", j.job_id, j.model_dump(mode="json")) for j in jobs.jobs.values()]

    report = gather(store=Table(), probe=None, limits=None)
    assert report.jobs["failed"] == 1
    assert [f for f in report.recent_failures if "write-back was refused" in str(f)]


class DyingSugar(FakeSugar):
    """Sugar writes the records, then the worker dies before reading the answer (a timeout)."""

    def update_records_bulk(self, module, updates, chunk_size=20):
        super().update_records_bulk(module, updates, chunk_size)
        raise WorkerCrashed(XERO_ANSWERED)


def test_the_write_back_is_a_journal_step_recorded_before_the_call_and_redone_when_unconfirmed():
    sugar, jobs, mappings, xero = DyingSugar(), FakeJobs(), FakeMappings(), FakeXero()
    doc = ContactDocument(crm_id="a1", name="Acme")
    with pytest.raises(WorkerCrashed):
        run([doc], jobs=jobs, mappings=mappings, xero=xero, crm=sugar)
    step = mappings.get_intents(xero.tenant_id, step_module("Accounts"), ["a1"])["a1"]
    assert step.state == "intent" and json.loads(step.step_values) == sugar.calls[0][1]["a1"]
    first_try = sugar.calls[0][1]["a1"]
    # SQS delivers the message again: Xero is not written again; the unconfirmed step is redone
    # with the values it recorded (one bulk call), and confirmed
    (job_id,) = jobs.jobs
    sugar = FakeSugar()
    items = [WorkItem(message_id="m0", job_id=job_id, kind=KIND, document=doc.model_dump(mode="json"))]
    result = sync_contacts(items, xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=CONFIG)
    assert result.retry == set() and len(xero.calls) == 1
    assert sugar.calls == [("Accounts", {"a1": first_try})]
    assert mappings.get_intents(xero.tenant_id, step_module("Accounts"), ["a1"])["a1"].state == "confirmed"
    assert jobs.jobs[job_id].status == "succeeded"
    # confirmed: a further delivery writes nothing back
    sync_contacts(items, xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=CONFIG)
    assert len(sugar.calls) == 1


def test_no_sugar_configured_or_disabled_skips_the_write_back():
    result, jobs, _ = run([ContactDocument(crm_id="a1", name="Acme")], crm=None)
    assert result.retry == set() and {j.status for j in jobs.jobs.values()} == {"succeeded"}
    sugar = FakeSugar()
    run([ContactDocument(crm_id="a1", name="Acme")], crm=sugar,
        config=MappingConfig(write_back=WriteBack(enabled=False)))
    assert sugar.calls == []
    report = write_back([Outcome(module="Accounts", crm_id="a1", sync_status="synced")], crm=None, config=CONFIG)
    assert report.written == set() and report.pending == {}


def hook(event="after_save", changes=None):
    return AccountHook.model_validate({"bean": "Account", "event": event, "dataChanges": changes,
                                       "data": {"id": "a1", "name": "Acme"}})


def test_a_hook_changing_only_write_back_fields_is_recognised():
    changes = {"xero_id_c": {"field_name": "xero_id_c", "before": "", "after": "x1"},
               "xero_synced_at_c": {"field_name": "xero_synced_at_c"}, "date_modified": {}}
    assert "xero_id_c" in own_write_back(hook(changes=changes), CONFIG)
    as_list = [{"field_name": "xero_sync_status_c"}, {"field_name": "modified_user_id"}]
    assert own_write_back(hook(changes=as_list), CONFIG)


def test_a_real_change_or_a_hook_without_changes_is_not_ignored():
    assert own_write_back(hook(changes={"xero_id_c": {}, "name": {}}), CONFIG) is None
    assert own_write_back(hook(changes={"date_modified": {}}), CONFIG) is None
    assert own_write_back(hook(changes=None), CONFIG) is None
    assert own_write_back(hook(changes=[]), CONFIG) is None
    assert own_write_back(hook(event="after_delete", changes={"xero_id_c": {}}), CONFIG) is None


def test_a_write_back_save_maps_to_the_same_xero_body():
    from shared.mapping.sugar_contacts import hook_to_document
    from shared.mapping.xero_contacts import to_xero_contact

    plain = hook(changes={"name": {}})
    saved = AccountHook.model_validate({**plain.model_dump(), "data": {
        **plain.data.model_dump(), "xero_id_c": "x1", "xero_sync_status_c": "synced",
        "xero_synced_at_c": "2026-11-27T10:00:00+00:00", "date_modified": "2026-11-27T10:00:01+00:00"}})
    assert to_xero_contact(hook_to_document(saved)) == to_xero_contact(hook_to_document(plain))


def test_a_save_that_changes_nothing_in_xero_writes_nothing_back():
    sugar, jobs, mappings, xero = FakeSugar(), FakeJobs(), FakeMappings(), FakeXero()
    run([ContactDocument(crm_id="a1", name="Acme", crm_modified="t1")], jobs=jobs, mappings=mappings,
        xero=xero, crm=sugar)
    assert len(sugar.calls) == 1
    # Sugar's after_save for the write-back (a new date_modified, same customer): no loop.
    run([ContactDocument(crm_id="a1", name="Acme", crm_modified="t2")], jobs=jobs, mappings=mappings,
        xero=xero, crm=sugar)
    assert len(sugar.calls) == 1 and len(xero.calls) == 1


def test_a_redelivered_batch_reads_its_write_back_steps_in_one_read():
    class CountingMappings(FakeMappings):
        def __init__(self):
            super().__init__()
            self.step_reads = 0

        def get_intents(self, tenant_id, module, crm_ids):
            self.step_reads += module.endswith("#WRITEBACK")
            return super().get_intents(tenant_id, module, crm_ids)

    sugar, mappings, xero = FakeSugar(), CountingMappings(), FakeXero()
    docs = [ContactDocument(crm_id=f"a{n}", name=f"Customer {n}") for n in range(5)]
    _, jobs, items = run(docs, mappings=mappings, xero=xero, crm=sugar)
    mappings.step_reads = 0
    sync_contacts(items, xero=xero, jobs=jobs, mappings=mappings, crm=sugar, config=CONFIG)
    assert mappings.step_reads == 1 and len(sugar.calls) == 1  # unchanged and confirmed: nothing written
