"""SUGAR_XERO_LOCAL_CRASH_RATE in the local event source mapping: a worker killed at any point
deletes nothing, and SQS hands the messages out again (issue 11)."""

from __future__ import annotations

import json

import pytest

from shared.usecases import crash
from shared.usecases.crash import JOB_MARKED, STATE_WRITTEN, CrashAt, RandomCrash, WorkerCrashed
from sugar_xero.local.poller import QueuePoller
from sugar_xero.local.template import QueueSubscription
from tests.e2e.test_poller import _count, _queue_pair, sqs  # noqa: F401


def test_the_rate_is_read_outside_lambda_only(monkeypatch):
    monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    monkeypatch.delenv(crash.CRASH_RATE_VARIABLE, raising=False)
    assert crash.from_environment() is crash.NO_CRASH  # default 0
    monkeypatch.setenv(crash.CRASH_RATE_VARIABLE, "1")
    with pytest.raises(WorkerCrashed):
        crash.from_environment().reached(STATE_WRITTEN)
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.13")
    assert crash.from_environment() is crash.NO_CRASH  # never in Lambda
    monkeypatch.delenv("AWS_EXECUTION_ENV")
    monkeypatch.setenv(crash.CRASH_RATE_VARIABLE, "1.5")
    with pytest.raises(ValueError, match="between 0 and 1"):
        crash.from_environment()


def test_a_random_crash_hits_about_its_rate_and_counts_where():
    points = RandomCrash(0.2, seed=7)
    deaths = 0
    for _ in range(1000):
        try:
            points.reached(JOB_MARKED)
        except WorkerCrashed:
            deaths += 1
    assert 150 < deaths < 250 and points.crashes[JOB_MARKED] == deaths


def test_a_crash_exception_is_not_an_exception_handlers_can_swallow():
    with pytest.raises(WorkerCrashed):
        try:
            CrashAt(STATE_WRITTEN).reached(STATE_WRITTEN)
        except Exception:  # what a handler's catch-all looks like
            pytest.fail("swallowed")


@pytest.mark.parametrize("where", ["in the handler", "after the jobs are marked"])
def test_a_killed_invocation_deletes_nothing_and_the_batch_comes_back(sqs, monkeypatch, where):  # noqa: F811
    queue, arn, _dlq = _queue_pair(sqs, f"crash-{where.split()[-1]}")
    for n in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"n": n}))
    calls = []

    def invoke(function, event):
        calls.append(len(event["Records"]))
        if where == "in the handler" and len(calls) == 1:
            raise WorkerCrashed(STATE_WRITTEN)
        return {"batchItemFailures": []}

    monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)
    monkeypatch.setenv(crash.CRASH_RATE_VARIABLE, "1" if where != "in the handler" else "0")
    subscription = QueueSubscription("Fn", "Crash", batch_size=10, batching_window_seconds=0.2,
                                     report_batch_item_failures=True)
    poller = QueuePoller(subscription, sqs=sqs, queue_url=queue, queue_arn=arn, region="eu-west-1", invoke=invoke)
    assert poller.poll_once() == 3
    assert poller.crashes == 1 and _count(sqs, queue) == 3  # nothing deleted
    monkeypatch.setenv(crash.CRASH_RATE_VARIABLE, "0")
    delivered = 0
    for _ in range(20):  # the visibility timeout (1 s) passes, SQS redelivers
        delivered += poller.poll_once()
        if delivered >= 3:
            break
    assert delivered == 3 and _count(sqs, queue) == 0
