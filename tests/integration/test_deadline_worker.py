"""A worker invoked with too little time left defers its batch (SQS redelivers it later) and
leaves the job queued: nothing is cut off half-way, nothing is lost."""

from __future__ import annotations

import json

from shared import wiring
from shared.config import LOCAL_SECRET_DEFAULTS
from shared.xero.client import XeroClient
from tests.support.events import FakeLambdaContext, api_event, sqs_event

TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]


class AlmostOutOfTime(FakeLambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 6_000  # less than the finishing margin plus one call


def test_a_batch_without_time_left_is_deferred_not_cut_off(aws, monkeypatch):
    from functions.contact_sync import app

    account = {"bean": "Account", "event": "after_save", "data": {"id": "acc-deadline-1", "name": "Acme Ltd"}}
    answer = app.lambda_handler(api_event("POST", "/crm/contacts", body=account, query={"token": TOKEN}),
                                FakeLambdaContext())
    job_id = json.loads(answer["body"])["job_id"]
    calls = []

    class Refusing:
        def request(self, *args, **kwargs):
            calls.append(args)
            raise AssertionError("no call may start this close to the deadline")

    monkeypatch.setattr(wiring, "xero_client", lambda: XeroClient("http://127.0.0.1:9", "tenant",
                                                                   lambda force: "t", session=Refusing()))
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)["Messages"]
    event = sqs_event([json.loads(m["Body"]) for m in messages])
    for record, message in zip(event["Records"], messages, strict=True):
        record["receiptHandle"] = message["ReceiptHandle"]  # the deferral changes its visibility
    result = app.lambda_handler(event, AlmostOutOfTime())
    assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == [event["Records"][0]["messageId"]]
    assert calls == []
    job = wiring.job_store().get_job(job_id)
    assert job.status == "queued" and job.error.startswith("will retry: deferred before the function")
    # Held back for a while (the deferral's visibility timeout), then delivered again.
    assert aws["sqs"].receive_message(QueueUrl=aws["queue_url"]).get("Messages") is None
