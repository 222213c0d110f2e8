"""shared.usecases.redrive: a job re-sent to its queue, a dead-letter queue moved back, and the
claim that none of it duplicates anything in Xero (the contact worker run on what was re-sent)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import XeroError
from shared.mapping.settings import MappingConfig
from shared.models.documents import ContactDocument
from shared.models.jobs import CrmRef
from shared.state.dynamo import now_iso
from shared.usecases.accept import accept
from shared.usecases.contacts import KIND, sync_contacts
from shared.usecases.redrive import KIND_QUEUES, LIVE_SECONDS, QueueMessage, job_id_of, redrive_dlq, redrive_job
from shared.usecases.work import WorkItem
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue, FakeXero


class Jobs(FakeJobs):
    def get_job_payload(self, job_id: str) -> dict[str, Any] | None:
        return self.payloads.get(job_id)


class FailingQueue(FakeQueue):
    def send(self, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
        raise ConnectionError("SQS unreachable")


class MemoryQueue:
    """An SQS queue in memory: receive hides messages until deleted, as a visibility timeout does."""

    def __init__(self, bodies: list[str] = ()) -> None:
        self.messages: dict[str, str] = {}
        self.hidden: set[str] = set()
        self.sent: list[str] = []
        self.receives = 0
        self._next = 0
        for body in bodies:
            self.send_raw(body)

    def send_raw(self, body: str, attributes: dict[str, Any] | None = None) -> None:
        self._next += 1
        self.messages[f"r{self._next}"] = body
        self.sent.append(body)

    def receive(self, max_messages: int, *, visibility_timeout: int) -> list[QueueMessage]:
        assert 1 <= max_messages <= 10 and visibility_timeout > 0
        self.receives += 1
        ready = [r for r in self.messages if r not in self.hidden][:max_messages]
        self.hidden.update(ready)
        return [QueueMessage(receipt_handle=r, body=self.messages[r], message_id=r) for r in ready]

    def delete(self, receipt_handle: str) -> None:
        del self.messages[receipt_handle]
        self.hidden.discard(receipt_handle)


def accepted(jobs: Jobs, queue: FakeQueue, doc: ContactDocument) -> str:
    return accept(kind=KIND, crm=CrmRef(module=doc.crm_module, id=doc.crm_id), document=doc.model_dump(mode="json"),
                  jobs=jobs, queue=queue, status_base_url="https://x/prod").job_id


def work(messages: list[dict[str, Any]], **adapters: Any):
    items = [WorkItem(message_id=f"m{i}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
             for i, m in enumerate(messages)]
    return sync_contacts(items, config=MappingConfig(), **adapters)


# ---- one job ---------------------------------------------------------------------------------
def test_a_failed_job_is_sent_again_as_its_original_message_and_goes_back_to_queued():
    jobs, intake, queue = Jobs(), FakeQueue(), FakeQueue()
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    jobs.update_job(job_id, status="failed", error="Xero answered 500 after 5 attempts")

    result = redrive_job(job_id, jobs=jobs, queues={"contact": queue})

    assert result.sent and result.queue == "contact" and result.status_before == "failed"
    assert result.crm == {"module": "Accounts", "id": "a1"}
    assert queue.sent == intake.sent  # the very message accept() sent: {"job_id", "kind", "document"}
    assert set(queue.sent[0]) == {"job_id", "kind", "document"}
    job = jobs.get_job(job_id)
    assert job.status == "queued"
    assert any("re-driven" in w and "was failed: Xero answered 500" in w for w in job.warnings)


def test_queues_may_be_keyed_by_kind_or_by_queue_name():
    jobs, intake, by_kind = Jobs(), FakeQueue(), FakeQueue()
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    jobs.update_job(job_id, status="failed")
    result = redrive_job(job_id, jobs=jobs, queues={KIND: by_kind, "contact": FakeQueue()})
    assert result.sent and result.queue == KIND and len(by_kind.sent) == 1
    assert KIND_QUEUES[KIND] == "contact"


@pytest.mark.parametrize("status", ["succeeded", "ignored"])
def test_a_finished_job_is_not_sent_again_unless_forced(status):
    jobs, intake, queue = Jobs(), FakeQueue(), FakeQueue()
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    jobs.update_job(job_id, status=status)

    refused = redrive_job(job_id, jobs=jobs, queues={"contact": queue})
    assert not refused.sent and "force" in refused.reason and queue.sent == []
    assert jobs.get_job(job_id).status == status

    forced = redrive_job(job_id, jobs=jobs, queues={"contact": queue}, force=True)
    assert forced.sent and len(queue.sent) == 1


def test_unknown_job_unknown_kind_and_missing_payload_send_nothing():
    jobs, intake, queue = Jobs(), FakeQueue(), FakeQueue()
    assert not redrive_job("nope", jobs=jobs, queues={"contact": queue}).sent
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    jobs.update_job(job_id, status="failed")
    no_queue = redrive_job(job_id, jobs=jobs, queues={"invoice": queue})
    assert not no_queue.sent and "no work queue" in no_queue.reason
    del jobs.payloads[job_id]
    no_payload = redrive_job(job_id, jobs=jobs, queues={"contact": queue})
    assert not no_payload.sent and "not stored" in no_payload.reason
    assert queue.sent == [] and jobs.get_job(job_id).status == "failed"


def test_a_send_that_fails_puts_the_job_back_as_it_was():
    jobs, intake = Jobs(), FakeQueue()
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    jobs.update_job(job_id, status="failed", error="boom")
    with pytest.raises(ConnectionError):
        redrive_job(job_id, jobs=jobs, queues={"contact": FailingQueue()})
    job = jobs.get_job(job_id)
    assert job.status == "failed" and job.warnings == [] and job.attempt == 1


# ---- new attempts (issue 11, Deliver 3) -------------------------------------------------------
def test_a_failed_job_gets_a_new_attempt_of_the_same_job_and_document():
    jobs, intake, queue = Jobs(), FakeQueue(), FakeQueue()
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    assert jobs.get_job(job_id).attempt == 1
    for expected in (2, 3):
        jobs.update_job(job_id, status="failed", error="Xero refused it")
        result = redrive_job(job_id, jobs=jobs, queues={"contact": queue})
        assert result.sent and result.attempt == expected
        job = jobs.get_job(job_id)
        assert job.job_id == job_id and job.attempt == expected and job.status == "queued"
        assert f"attempt {expected} (was failed: Xero refused it)" in job.warnings[-1]
    assert [m["document"] for m in queue.sent] == [intake.sent[0]["document"]] * 2
    assert {m["job_id"] for m in queue.sent} == {job_id}


@pytest.mark.parametrize("status", ["queued", "in_progress"])
def test_a_live_attempt_is_refused_even_when_forced(status):
    jobs, intake, queue = Jobs(), FakeQueue(), FakeQueue()
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    jobs.update_job(job_id, status=status, updated_at=now_iso())
    for force in (False, True):
        refused = redrive_job(job_id, jobs=jobs, queues={"contact": queue}, force=force)
        assert not refused.sent and "is live" in refused.reason and refused.attempt is None
    assert queue.sent == [] and jobs.get_job(job_id).attempt == 1 and jobs.get_job(job_id).status == status


@pytest.mark.parametrize("status", ["queued", "in_progress"])
def test_an_attempt_never_confirmed_past_the_visibility_timeout_is_stuck_and_gets_a_new_one(status):
    jobs, intake, queue = Jobs(), FakeQueue(), FakeQueue()
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    touched = datetime.now(UTC) - timedelta(seconds=LIVE_SECONDS + 5)
    jobs.update_job(job_id, status=status, updated_at=touched.isoformat())
    result = redrive_job(job_id, jobs=jobs, queues={"contact": queue}, reason="re-driven by the reconciliation")
    assert result.sent and result.attempt == 2 and result.status_before == status
    assert jobs.get_job(job_id).attempt == 2 and len(queue.sent) == 1


def test_a_succeeded_job_overwritten_since_gets_a_new_attempt_when_forced():
    jobs, intake, queue = Jobs(), FakeQueue(), FakeQueue()
    job_id = accepted(jobs, intake, ContactDocument(crm_id="a1", name="Acme"))
    jobs.update_job(job_id, status="succeeded")
    forced = redrive_job(job_id, jobs=jobs, queues={"contact": queue}, force=True)
    assert forced.sent and forced.attempt == 2 and jobs.get_job(job_id).attempt == 2


# ---- nothing duplicated ----------------------------------------------------------------------
def test_re_driving_duplicates_nothing_in_xero():
    jobs, mappings, xero, intake = Jobs(), FakeMappings(), FakeXero(), FakeQueue()
    doc = ContactDocument(crm_id="a1", name="Acme", crm_modified="2026-11-26T09:00:00Z")
    job_id = accepted(jobs, intake, doc)

    # The first delivery: Xero is down; the job is retried, and then its message is dead-lettered.
    xero.fail_next = [XeroError("Xero answered 503 after 5 attempts", status=503, retryable=True)] * 1
    result = work(intake.sent, xero=xero, jobs=jobs, mappings=mappings)
    assert result.retry and xero.contacts == {}
    # Its last delivery failed: the worker marks it so (shared.batching.mark_dead_lettered).
    jobs.update_job(job_id, status="failed", error="dead-lettered after 1 attempt: Xero answered 503")

    # The operator re-drives the job while its dead-lettered copy is also moved back: two messages.
    queue = FakeQueue()
    assert redrive_job(job_id, jobs=jobs, queues={"contact": queue}).sent
    dlq, target = MemoryQueue([json.dumps(intake.sent[0])]), MemoryQueue()
    assert redrive_dlq(dlq, target, max_messages=10) == 1
    redelivered = queue.sent + [json.loads(body) for body in target.sent]
    assert len(redelivered) == 2

    # Both in one batch, then each again alone: one Xero contact, written once.
    work(redelivered, xero=xero, jobs=jobs, mappings=mappings)
    work(redelivered[:1], xero=xero, jobs=jobs, mappings=mappings)
    work(redelivered[1:], xero=xero, jobs=jobs, mappings=mappings)
    assert len(xero.contacts) == 1
    writes = [c for c in xero.calls if c[0] == "Contacts"]
    assert len(writes) == 2  # the refused first attempt, then exactly one write that landed
    assert jobs.get_job(job_id).status == "succeeded"

    # A forced re-drive of the succeeded job writes nothing either: the content is unchanged.
    forced = FakeQueue()
    assert redrive_job(job_id, jobs=jobs, queues={"contact": forced}, force=True).sent
    work(forced.sent, xero=xero, jobs=jobs, mappings=mappings)
    assert len([c for c in xero.calls if c[0] == "Contacts"]) == 2 and len(xero.contacts) == 1


# ---- dead-letter queues ----------------------------------------------------------------------
def test_a_dead_letter_queue_is_moved_back_whole_and_emptied():
    bodies = [json.dumps({"job_id": f"j{n}", "kind": KIND, "document": {}}) for n in range(25)] + ["not json"]
    dlq, target = MemoryQueue(bodies), MemoryQueue()
    moved: list[QueueMessage] = []
    assert redrive_dlq(dlq, target, max_messages=100, on_moved=moved.append) == 26
    assert target.sent == bodies  # as they were, even one no worker could read
    assert dlq.messages == {}
    assert [job_id_of(m.body) for m in moved][:2] == ["j0", "j1"] and job_id_of("not json") is None
    assert dlq.receives == 4  # three batches of up to 10, then the empty receive that ends it


def test_max_messages_bounds_the_move():
    dlq, target = MemoryQueue([f"m{n}" for n in range(30)]), MemoryQueue()
    assert redrive_dlq(dlq, target, max_messages=12) == 12
    assert len(target.sent) == 12 and len(dlq.messages) == 18


def test_a_message_is_deleted_only_after_its_copy_was_sent():
    class BrokenTarget(MemoryQueue):
        def send_raw(self, body: str, attributes: dict[str, Any] | None = None) -> None:
            raise ConnectionError("SQS unreachable")

    dlq = MemoryQueue(["a", "b"])
    with pytest.raises(ConnectionError):
        redrive_dlq(dlq, BrokenTarget(), max_messages=10)
    assert sorted(dlq.messages.values()) == ["a", "b"]  # still there, visible again after the timeout
