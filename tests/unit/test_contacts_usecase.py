from __future__ import annotations

from shared.errors import RateLimited, XeroError
from shared.mapping.settings import ContactRules, MappingConfig
from shared.models.documents import ContactDocument
from shared.models.jobs import CrmRef
from shared.usecases.accept import accept
from shared.usecases.contacts import KIND, sync_contacts
from shared.usecases.versions import SUPERSEDED
from shared.usecases.work import WorkItem
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue, FakeXero


def queued(jobs: FakeJobs, queue: FakeQueue, doc: ContactDocument) -> str:
    accepted = accept(kind=KIND, crm=CrmRef(module=doc.crm_module, id=doc.crm_id),
                      document=doc.model_dump(mode="json"), jobs=jobs, queue=queue,
                      status_base_url="https://x/prod")
    return accepted.job_id


def items_from(queue: FakeQueue) -> list[WorkItem]:
    return [WorkItem(message_id=f"m{i}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
            for i, m in enumerate(queue.sent)]


def test_identical_callouts_make_one_job_and_one_message():
    jobs, queue = FakeJobs(), FakeQueue()
    doc = ContactDocument(crm_id="a1", name="Acme", crm_modified="2026-11-26T09:00:00Z")
    ids = {queued(jobs, queue, doc) for _ in range(5)}
    assert len(ids) == 1 and len(queue.sent) == 1
    changed = doc.model_copy(update={"crm_modified": "2026-11-26T09:05:00Z"})
    assert queued(jobs, queue, changed) not in ids


def test_batch_of_120_goes_in_three_calls_and_maps_every_record():
    jobs, queue, mappings, xero = FakeJobs(), FakeQueue(), FakeMappings(), FakeXero()
    for n in range(120):
        queued(jobs, queue, ContactDocument(crm_id=f"a{n}", name=f"Customer {n}"))
    result = sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    assert result.retry == set()
    assert [len(call[1]) for call in xero.calls] == [50, 50, 20]
    assert all(call[0] == "Contacts" and call[2].startswith("contacts-") for call in xero.calls)
    assert len(xero.contacts) == 120
    assert all(job.status == "succeeded" and job.xero["contact_id"] for job in jobs.jobs.values())
    assert len(mappings.items) == 120


def test_unchanged_record_is_not_sent_again_and_changed_one_updates_by_id():
    jobs, queue, mappings, xero = FakeJobs(), FakeQueue(), FakeMappings(), FakeXero()
    queued(jobs, queue, ContactDocument(crm_id="a1", name="Acme", crm_modified="t1"))
    sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    first_id = next(iter(xero.contacts))
    queue.sent.clear()
    queued(jobs, queue, ContactDocument(crm_id="a1", name="Acme", crm_modified="t2"))
    sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    assert len(xero.calls) == 1  # same content: nothing sent
    queue.sent.clear()
    queued(jobs, queue, ContactDocument(crm_id="a1", name="Acme Ltd", crm_modified="t3"))
    sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    assert xero.calls[-1][1][0]["ContactID"] == first_id
    assert list(xero.contacts) == [first_id] and xero.contacts[first_id]["Name"] == "Acme Ltd"


def test_two_saves_of_one_record_in_a_batch_make_one_write_newest_wins():
    jobs, queue, mappings, xero = FakeJobs(), FakeQueue(), FakeMappings(), FakeXero()
    queued(jobs, queue, ContactDocument(crm_id="a1", name="Old", crm_modified="2026-01-01T00:00:00Z"))
    queued(jobs, queue, ContactDocument(crm_id="a1", name="New", crm_modified="2026-01-02T00:00:00Z"))
    sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    assert len(xero.calls) == 1 and len(xero.calls[0][1]) == 1
    assert next(iter(xero.contacts.values()))["Name"] == "New"
    # The older save was not sent: its job says so instead of claiming a success it did not have.
    statuses = sorted((job.status, tuple(job.warnings)) for job in jobs.jobs.values())
    assert statuses == [("ignored", (SUPERSEDED,)), ("succeeded", ())]


def test_one_bad_record_fails_alone_and_the_rest_land():
    jobs, queue, mappings, xero = FakeJobs(), FakeQueue(), FakeMappings(), FakeXero()
    xero.contacts["x"] = {"ContactID": "x", "Name": "Taken", "ContactNumber": "other"}
    bad = queued(jobs, queue, ContactDocument(crm_id="a1", name="Taken"))
    good = queued(jobs, queue, ContactDocument(crm_id="a2", name="Free"))
    result = sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings,
                           config=MappingConfig(contacts=ContactRules(name_conflict="fail")))
    assert result.retry == set()
    assert jobs.jobs[bad].status == "failed" and "already assigned" in jobs.jobs[bad].error
    assert jobs.jobs[good].status == "succeeded"


def test_rate_limit_defers_the_batch_and_keeps_jobs_queued():
    jobs, queue, mappings, xero = FakeJobs(), FakeQueue(), FakeMappings(), FakeXero()
    job_id = queued(jobs, queue, ContactDocument(crm_id="a1", name="Acme"))
    xero.fail_next.append(RateLimited("minute limit", retry_after=37, problem="minute"))
    result = sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    assert result.retry == {"m0"} and result.retry_after == 37
    assert jobs.jobs[job_id].status == "queued"
    result = sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    assert result.retry == set() and jobs.jobs[job_id].status == "succeeded"
    assert jobs.jobs[job_id].attempts == 2


def test_non_retryable_xero_error_fails_the_jobs_with_xeros_message():
    jobs, queue, mappings, xero = FakeJobs(), FakeQueue(), FakeMappings(), FakeXero()
    job_id = queued(jobs, queue, ContactDocument(crm_id="a1", name="Acme"))
    xero.fail_next.append(XeroError("Xero answered 400: bad things", status=400))
    result = sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    assert result.retry == set()
    assert jobs.jobs[job_id].status == "failed" and "bad things" in jobs.jobs[job_id].error


def test_a_disconnected_xero_connection_keeps_jobs_queued_for_five_minutes():
    from shared.errors import ConnectionNotReady

    jobs, queue, mappings, xero = FakeJobs(), FakeQueue(), FakeMappings(), FakeXero()
    job_id = queued(jobs, queue, ContactDocument(crm_id="a1", name="Acme"))
    xero.fail_next.append(ConnectionNotReady("Xero answered invalid_grant"))
    result = sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    assert result.retry == {"m0"} and result.retry_after == 300
    assert jobs.jobs[job_id].status == "queued" and "invalid_grant" in jobs.jobs[job_id].error


class XeroRefusingASecondContactNumber(FakeXero):
    """Xero as documented (../shared/reference/xero-api.md, Corrections): POST /Contacts does not
    update a contact found by its ContactNumber; the number must be unique, so a second create
    with it is refused."""

    def _upsert(self, element):
        number = element.get("ContactNumber")
        if "ContactID" not in element and number and any(c.get("ContactNumber") == number
                                                          for c in self.contacts.values()):
            message = (f"The contact number {number} is already assigned to another contact. "
                       "The contact number must be unique across all contacts.")
            return {**element, "StatusAttributeString": "ERROR", "HasValidationErrors": True,
                    "ValidationErrors": [{"Message": message}]}
        return super()._upsert(element)


def test_a_worker_killed_after_xero_created_the_contact_finds_it_by_contact_number():
    from shared.usecases import journal
    from shared.usecases.crash import XERO_ANSWERED, CrashAt, WorkerCrashed

    jobs, queue, mappings, xero = FakeJobs(), FakeQueue(), FakeMappings(), XeroRefusingASecondContactNumber()
    job_id = queued(jobs, queue, ContactDocument(crm_id="a1", name="Acme", crm_modified="2026-12-03T09:00:00+08:00"))
    try:
        sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings, crash=CrashAt(XERO_ANSWERED))
    except WorkerCrashed:
        pass
    assert len(xero.contacts) == 1 and mappings.items == {}  # Xero made it; nothing stored
    journal.IDENTICAL_RESEND_SECONDS, saved = 0.0, journal.IDENTICAL_RESEND_SECONDS  # redelivered later
    try:
        sync_contacts(items_from(queue), xero=xero, jobs=jobs, mappings=mappings)
    finally:
        journal.IDENTICAL_RESEND_SECONDS = saved
    assert jobs.jobs[job_id].status == "succeeded", jobs.jobs[job_id].error
    (contact_id,) = xero.contacts
    assert mappings.items[("tenant-1", "Accounts", "a1")].xero_id == contact_id
    assert [path for path, _ in xero.gets] == ["Contacts"]  # one lookup by ContactNumber
