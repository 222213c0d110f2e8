"""Lambda's SQS event source mapping, locally: long-poll each subscribed queue, hand a batch to
the function, delete what succeeded. What failed stays on the queue, comes back after its
visibility timeout and, past the RedrivePolicy's maxReceiveCount, moves to the DLQ (moto does that
part, as SQS does)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from shared.usecases.crash import JOB_MARKED, WorkerCrashed
from shared.usecases.crash import from_environment as crash_points
from sugar_xero.local.background import BackgroundLoop
from sugar_xero.local.template import QueueSubscription

LOG = logging.getLogger("sugar_xero.local")

# Like Lambda's event source mapping: a batch is gathered until it holds BatchSize or the template's
# MaximumBatchingWindowInSeconds has passed; with no window, the function is invoked at once with
# what one receive returns. The stack runs ScalingConfig.MaximumConcurrency pollers per queue, each
# invoking one batch at a time (sugar_xero/local/stack.py), so at most that many run at once.
RECEIVE_WAIT_SECONDS = 1  # short long-poll, so that stopping never waits long
# Lambda refuses a BatchSize above 10 without a window of at least 1 s (docs: "when you set BatchSize
# to a value greater than 10, you must set MaximumBatchingWindowInSeconds to at least 1").
LARGEST_BATCH_WITHOUT_WINDOW = 10


def lambda_refusal(subscription: QueueSubscription) -> str | None:
    """Why Lambda would refuse this event source mapping's batching settings, or None."""
    if subscription.batch_size > LARGEST_BATCH_WITHOUT_WINDOW and subscription.batching_window_seconds < 1:
        return (f"{subscription.function}: BatchSize {subscription.batch_size} needs "
                "MaximumBatchingWindowInSeconds of at least 1 (Lambda's rule above 10)")
    return None


def _lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    converted = {}
    for name, value in (attributes or {}).items():
        converted[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
    return converted


def sqs_event(messages: list[dict[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's event source mapping delivers for messages from ReceiveMessage."""
    records = []
    for message in messages:
        body = message.get("Body", "")
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": body,
                "attributes": dict(message.get("Attributes") or {}),
                "messageAttributes": _lambda_message_attributes(message.get("MessageAttributes") or {}),
                "md5OfBody": message.get("MD5OfBody")
                or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def failed_message_ids(result: Any, subscription: QueueSubscription, message_ids: list[str]) -> set[str]:
    """Which messages stay on the queue, read as Lambda reads a handler's answer."""
    if not subscription.report_batch_item_failures:
        return set()
    if not isinstance(result, dict):
        return set()
    failures = result.get("batchItemFailures") or []
    failed = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in message_ids:
            return set(message_ids)  # Lambda treats a malformed answer as the whole batch failing
        failed.add(identifier)
    return failed


class QueuePoller(BackgroundLoop):
    def __init__(
        self,
        subscription: QueueSubscription,
        *,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        region: str,
        invoke: Callable[[str, dict[str, Any]], Any],
    ):
        refusal = lambda_refusal(subscription)
        if refusal:
            raise ValueError(refusal)
        self.subscription = subscription
        self._sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self._invoke = invoke
        super().__init__()
        self.thread_name = f"poller-{self.subscription.queue}"
        self.batches = 0
        self.crashes = 0

    def _receive(self, wait_seconds: int, count: int) -> list[dict[str, Any]]:
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return answer.get("Messages") or []

    def gather(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages: the first long-poll waits, the rest come within a short window."""
        limit = self.subscription.batch_size
        messages = self._receive(RECEIVE_WAIT_SECONDS, limit)
        if not messages:
            return []
        window = self.subscription.batching_window_seconds or 0.0
        deadline = time.monotonic() + window
        while len(messages) < limit and time.monotonic() < deadline and not self._stop.is_set():
            more = self._receive(0, limit - len(messages))
            if more:
                messages.extend(more)
            else:
                time.sleep(0.02)
        # A queue whose visibility timeout is shorter than the window can hand a message out twice:
        # keep its latest receipt only.
        latest = {m["MessageId"]: m for m in messages}
        return list(latest.values())

    def poll_once(self) -> int:
        messages = self.gather()
        if not messages:
            return 0
        event = sqs_event(messages, queue_arn=self.queue_arn, region=self.region)
        ids = [m["MessageId"] for m in messages]
        try:
            result = self._invoke(self.subscription.function, event)
            # SUGAR_XERO_LOCAL_CRASH_RATE: the invocation may die after its jobs are marked and
            # before Lambda deletes the messages (shared/usecases/crash.py).
            crash_points().reached(JOB_MARKED)
        except WorkerCrashed as crash:
            # Like a Lambda timeout: nothing is deleted; SQS hands the batch out again once its
            # visibility timeout has passed.
            LOG.warning("%s: %s; %d messages will be redelivered", self.subscription.function, crash,
                        len(messages))
            self.crashes += 1
            return len(messages)
        except Exception:
            LOG.exception(
                "%s failed on a batch of %d from %s; the batch will be retried",
                self.subscription.function,
                len(messages),
                self.subscription.queue,
            )
            return len(messages)
        failed = failed_message_ids(result, self.subscription, ids)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        self.batches += 1
        return len(messages)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the moto server going away at shutdown, or a passing error
                if self._stop.is_set():
                    return
                LOG.exception("poller for %s", self.subscription.queue)
                self._stop.wait(1.0)
