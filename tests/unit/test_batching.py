"""Top-up: a short batch takes what is already waiting, settles those messages itself, and
answers Lambda for Lambda's records only."""

from __future__ import annotations

import json

import pytest

import shared.batching as batching
from shared.batching import run_topped_up, topped_up


class FakeQueue:
    def __init__(self, waiting: int):
        self.waiting = [{"MessageId": f"w{n}", "ReceiptHandle": f"rh-w{n}", "Body": json.dumps({"job_id": f"w{n}"}),
                         "Attributes": {"ApproximateReceiveCount": "1"}} for n in range(waiting)]
        self.deleted: list[str] = []
        self.released: list[str] = []

    def receive_waiting(self, max_messages):
        taken, self.waiting = self.waiting[:max_messages], self.waiting[max_messages:]
        return taken

    def delete(self, handles):
        self.deleted.extend(handles)

    def release(self, handle):
        self.released.append(handle)


@pytest.fixture(autouse=True)
def _stop_at_the_first_empty_look(monkeypatch):
    """These tests are about what is done with gathered messages; how long to gather is
    tests/unit/test_batching_adaptive.py's."""
    monkeypatch.setattr(batching, "QUIET_SECONDS", 0.0)
    monkeypatch.setattr(batching, "GATHER_PAUSE_SECONDS", 0.0)
    monkeypatch.setattr(batching, "SETTLE_SECONDS", 0.0)


def lambda_event(count: int) -> dict:
    return {"Records": [{"messageId": f"m{n}", "receiptHandle": f"rh-m{n}", "body": json.dumps({"job_id": f"m{n}"}),
                         "eventSource": "aws:sqs", "eventSourceARN": "arn:q", "awsRegion": "eu-west-1"}
                        for n in range(count)]}


def test_a_short_batch_is_filled_to_fifty_with_what_is_waiting():
    queue = FakeQueue(waiting=70)
    full, added = topped_up(lambda_event(3), queue)
    assert len(full["Records"]) == 50 and len(added) == 47 and len(queue.waiting) == 23
    assert added[0]["eventSourceARN"] == "arn:q" and added[0]["receiptHandle"] == "rh-w0"


def test_a_full_batch_or_an_empty_queue_is_left_as_it_is():
    queue = FakeQueue(waiting=5)
    event = lambda_event(50)
    assert topped_up(event, queue) == (event, [])
    assert topped_up(lambda_event(1), FakeQueue(0))[1] == []


def test_added_messages_are_deleted_when_done_and_lambda_hears_only_of_its_own_failures():
    queue = FakeQueue(waiting=4)
    seen = []

    def run(event):
        seen.extend(r["messageId"] for r in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "w2"}]}

    answer = run_topped_up(lambda_event(2), queue, run)
    assert seen == ["m0", "m1", "w0", "w1", "w2", "w3"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert queue.deleted == ["rh-w0", "rh-w1", "rh-w3"]  # w2 failed: it comes back after its timeout


def test_a_copy_of_a_job_already_in_the_batch_is_handed_back_not_worked_twice():
    queue = FakeQueue(waiting=2)
    queue.waiting[0]["Body"] = json.dumps({"job_id": "m0"})
    full, added = topped_up(lambda_event(1), queue)
    assert [r["messageId"] for r in full["Records"]] == ["m0", "w1"]
    assert queue.released == ["rh-w0"]


class Job:
    def __init__(self, status, error=None, warnings=()):
        self.status, self.error, self.warnings = status, error, list(warnings)


class Jobs:
    def __init__(self, **jobs):
        self.jobs = jobs
        self.updates = {}

    def get_job(self, job_id):
        return self.jobs.get(job_id)

    def update_job(self, job_id, **changes):
        self.updates[job_id] = changes


class RedrivenQueue(FakeQueue):
    def max_receive_count(self):
        return 3


def test_a_message_failing_its_last_delivery_marks_its_job_dead_lettered():
    from shared.batching import mark_dead_lettered

    records = lambda_event(3)["Records"]
    for record, count in zip(records, ("3", "2", "3"), strict=True):
        record["attributes"] = {"ApproximateReceiveCount": count}
    jobs = Jobs(m0=Job("queued", "Xero 503: will retry"), m1=Job("queued"), m2=Job("queued"))
    answer = {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}
    mark_dead_lettered(records, answer, queue=RedrivenQueue(0), jobs=jobs)
    assert list(jobs.updates) == ["m0"]  # m1 has deliveries left; m2 succeeded
    assert jobs.updates["m0"]["status"] == "failed"
    assert jobs.updates["m0"]["error"] == "dead-lettered after 3 attempts: Xero 503: will retry"


def test_a_job_whose_crm_write_back_never_landed_fails_visibly_when_dead_lettered():
    """Issue 11, Deliver 4: the write-back is a step of the job; out of deliveries, it is a failure
    status lists and replay brings back, never a note on a succeeded job."""
    from shared.batching import mark_dead_lettered
    from shared.usecases.contacts import WRITE_BACK_PENDING

    records = lambda_event(2)["Records"]
    for record in records:
        record["attributes"] = {"ApproximateReceiveCount": "3"}
    # queued: a job waiting for its write-back is not final (shared.usecases.writeback.end_after_write_back)
    jobs = Jobs(m0=Job("queued", warnings=[f"{WRITE_BACK_PENDING}: Sugar answered 503"]), m1=Job("succeeded"))
    answer = {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}
    mark_dead_lettered(records, answer, queue=RedrivenQueue(0), jobs=jobs)
    assert list(jobs.updates) == ["m0"]
    assert jobs.updates["m0"]["status"] == "failed"
    assert jobs.updates["m0"]["error"] == ("dead-lettered after 3 attempts: the Xero write is done, the CRM "
                                           f"write-back is not ({WRITE_BACK_PENDING}: Sugar answered 503)")
