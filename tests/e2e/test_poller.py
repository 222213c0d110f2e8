"""The local event source mapping (SQS → handler → delete or redrive) and the schedule timer."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from sugar_xero.local.poller import QueuePoller
from sugar_xero.local.template import QueueSubscription
from sugar_xero.local.timer import ScheduleTimer


@pytest.fixture(scope="module")
def sqs():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="eu-west-1")
    yield session.client("sqs", endpoint_url=f"http://{host}:{port}")
    server.stop()


def _queue_pair(sqs, name):
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return queue, arn, dlq


def _count(sqs, url):
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    return sum(int(v) for v in attributes["Attributes"].values())


def test_successes_are_deleted_and_reported_failures_end_in_the_dlq(sqs):
    queue, arn, dlq = _queue_pair(sqs, "work-a")
    for n in range(3):
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=json.dumps({"n": n}),
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
        )
    events = []

    def invoke(function, event):
        events.append(event)
        bad = [r["messageId"] for r in event["Records"] if json.loads(r["body"])["n"] == 1]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in bad]}

    subscription = QueueSubscription(
        "Fn", "WorkA", batch_size=10, batching_window_seconds=0, report_batch_item_failures=True
    )
    poller = QueuePoller(
        subscription, sqs=sqs, queue_url=queue, queue_arn=arn, region="eu-west-1", invoke=invoke
    )
    assert poller.poll_once() == 3
    record = events[0]["Records"][0]
    assert (
        record["eventSource"] == "aws:sqs"
        and record["eventSourceARN"] == arn
        and record["awsRegion"] == "eu-west-1"
    )
    assert record["attributes"]["ApproximateReceiveCount"] == "1" and record["md5OfBody"]
    assert record["messageAttributes"]["kind"]["stringValue"] == "test"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert _count(sqs, queue) == 1  # only the failed one is left

    deadline = time.monotonic() + 10
    while _count(sqs, dlq) == 0 and time.monotonic() < deadline:
        poller.poll_once()  # the failure comes back (after 1 s) until the redrive moves it
    assert _count(sqs, dlq) == 1 and _count(sqs, queue) == 0
    moved = sqs.receive_message(QueueUrl=dlq)["Messages"][0]
    assert json.loads(moved["Body"]) == {"n": 1}


def test_a_crashing_handler_leaves_the_whole_batch_on_the_queue(sqs):
    queue, arn, _ = _queue_pair(sqs, "work-b")
    sqs.send_message(QueueUrl=queue, MessageBody="{}")

    def invoke(function, event):
        raise RuntimeError("boom")

    subscription = QueueSubscription(
        "Fn", "WorkB", batch_size=10, batching_window_seconds=0, report_batch_item_failures=True
    )
    poller = QueuePoller(
        subscription, sqs=sqs, queue_url=queue, queue_arn=arn, region="eu-west-1", invoke=invoke
    )
    assert poller.poll_once() == 1
    assert _count(sqs, queue) == 1


def test_an_unknown_item_identifier_fails_the_whole_batch(sqs):
    queue, arn, _ = _queue_pair(sqs, "work-c")
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    subscription = QueueSubscription(
        "Fn", "WorkC", batch_size=10, batching_window_seconds=1, report_batch_item_failures=True
    )
    poller = QueuePoller(
        subscription,
        sqs=sqs,
        queue_url=queue,
        queue_arn=arn,
        region="eu-west-1",
        invoke=lambda f, e: {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
    )
    poller.poll_once()
    assert _count(sqs, queue) == 2


def test_timer_fills_in_the_schedules_input_and_fires_on_its_period():
    fired = []
    timer = ScheduleTimer(
        "Reconcile",
        0.05,
        schedule_arn="arn:aws:scheduler:eu-west-1:1:schedule/default/S",
        region="eu-west-1",
        invoke=lambda f, e: fired.append((f, e)),
        event_input='{"source":"aws.scheduler","time":"<aws.scheduler.scheduled-time>",'
        '"schedule":"<aws.scheduler.schedule-arn>"}',
    )
    timer.start()
    deadline = time.monotonic() + 5
    while len(fired) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    timer.stop()
    timer.join()
    function, event = fired[0]
    assert function == "Reconcile" and event["source"] == "aws.scheduler"
    assert event["schedule"].endswith("schedule/default/S") and event["time"].endswith("Z")
    default = ScheduleTimer(
        "R", 60, schedule_arn="arn:s", region="eu-west-1", invoke=lambda f, e: None
    ).event()
    assert default["detail-type"] == "Scheduled Event" and default["resources"] == ["arn:s"]
    assert default["detail"] == {} and default["version"] == "0"


def test_a_batch_lambda_would_refuse_is_refused_and_no_window_means_invoke_at_once(sqs):
    """Lambda's rule: a BatchSize above 10 needs MaximumBatchingWindowInSeconds ≥ 1. With no
    window, the function gets what one receive returns, without waiting for more."""
    from sugar_xero.local.poller import lambda_refusal

    queue, arn, _ = _queue_pair(sqs, "work-d")
    refused = QueueSubscription("Fn", "WorkD", batch_size=50, batching_window_seconds=0,
                                report_batch_item_failures=True)
    assert "at least 1" in lambda_refusal(refused)
    with pytest.raises(ValueError, match="BatchSize 50"):
        QueuePoller(refused, sqs=sqs, queue_url=queue, queue_arn=arn, region="eu-west-1", invoke=print)

    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"n": 0}))
    at_once = QueueSubscription("Fn", "WorkD", batch_size=10, batching_window_seconds=0,
                                report_batch_item_failures=True)
    poller = QueuePoller(at_once, sqs=sqs, queue_url=queue, queue_arn=arn, region="eu-west-1",
                         invoke=lambda f, e: {"batchItemFailures": []})
    started = time.monotonic()
    assert poller.poll_once() == 1
    assert time.monotonic() - started < 0.5  # a 1-second window would have held it for 1 s


def test_the_document_queues_settings_as_the_local_poller_reads_them_are_ones_lambda_accepts():
    from sugar_xero.local.poller import lambda_refusal
    from sugar_xero.local.template import StackTemplate, default_template_path

    subscriptions = {s.function: s for s in StackTemplate(default_template_path()).queue_subscriptions()}
    for function in ("ContactSyncFunction", "InvoicePushFunction"):
        subscription = subscriptions[function]
        assert (subscription.batch_size, subscription.batching_window_seconds,
                subscription.maximum_concurrency) == (10, 0.0, 2)
        assert lambda_refusal(subscription) is None
    assert all(lambda_refusal(s) is None for s in subscriptions.values())
