"""The local stack's moto SQS hands each received message to one consumer at a time, and a long
poll still returns a message that arrives during the wait (sugar_xero/local/atomic_sqs.py)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import boto3
import pytest
from moto import mock_aws


@pytest.fixture
def atomic_sqs(monkeypatch):
    from moto.sqs.models import SQSBackend

    from sugar_xero.local.atomic_sqs import make_receive_atomic

    monkeypatch.setattr(SQSBackend, "receive_message", SQSBackend.receive_message)  # undone after the test
    make_receive_atomic()
    make_receive_atomic()  # idempotent: still one wrapper
    assert getattr(SQSBackend.receive_message, "_sugar_xero_atomic_receive", False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        yield sqs, sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]


def test_concurrent_receivers_each_get_a_message_once(atomic_sqs):
    sqs, url = atomic_sqs
    for start in range(0, 300, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(start + i)}
                                                      for i in range(10)])
    seen: Counter = Counter()

    def receive() -> None:
        client = boto3.client("sqs", region_name="eu-west-1")
        for _ in range(100):  # bounded
            messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages") or []
            if not messages:
                return
            seen.update(m["Body"] for m in messages)

    threads = [threading.Thread(target=receive) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(seen) == 300 and max(seen.values()) == 1


def test_a_long_poll_returns_what_arrives_during_the_wait_and_nothing_after_it(atomic_sqs):
    sqs, url = atomic_sqs
    started = time.monotonic()
    assert not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages")
    assert 0.9 <= time.monotonic() - started < 3

    threading.Timer(0.3, lambda: sqs.send_message(QueueUrl=url, MessageBody="late")).start()
    started = time.monotonic()
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5).get("Messages") or []
    assert [m["Body"] for m in messages] == ["late"] and time.monotonic() - started < 2
