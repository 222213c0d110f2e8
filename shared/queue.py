"""SQS adapter: the work queues between the API and the workers."""

from __future__ import annotations

import json
from typing import Any


def _sqs_client() -> Any:
    import boto3  # on first use: keeps boto3 out of a handler's import time

    return boto3.client("sqs")


# SQS's message limit is 256 KiB of UTF-8. A job whose document is larger travels as its id
# only, and the worker reads the document from the job's stored payload (``shared.api.sqs``).
MESSAGE_LIMIT = 256 * 1024 - 1024
DOCUMENT_STORED = "document_stored"


def message_text(body: dict[str, Any]) -> str:
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode("utf-8")) > MESSAGE_LIMIT and "job_id" in body and "document" in body:
        text = json.dumps({**{k: v for k, v in body.items() if k != "document"}, DOCUMENT_STORED: True},
                          separators=(",", ":"), ensure_ascii=False)
    return text


class SqsQueue:
    def __init__(self, queue_url: str, *, client: Any | None = None):
        self.queue_url = queue_url
        self._client = client or _sqs_client()

    def send(self, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self._client.send_message(QueueUrl=self.queue_url,
                                  MessageBody=message_text(body),
                                  DelaySeconds=max(0, min(int(delay_seconds), 900)))

    def defer(self, receipt_handle: str, seconds: int) -> None:
        """Hold a received message back (e.g. for Xero's Retry-After) before it is seen again."""
        self._client.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle,
                                               VisibilityTimeout=max(0, min(int(seconds), 43200)))

    def max_receive_count(self) -> int | None:
        """The RedrivePolicy's maxReceiveCount (deliveries before SQS moves a message to the DLQ),
        read once per container; None without a policy."""
        if not hasattr(self, "_max_receive_count"):
            attributes = self._client.get_queue_attributes(QueueUrl=self.queue_url,
                                                           AttributeNames=["RedrivePolicy"]).get("Attributes") or {}
            policy = json.loads(attributes.get("RedrivePolicy") or "{}")
            count = policy.get("maxReceiveCount")
            self._max_receive_count = int(count) if count is not None else None
        return self._max_receive_count

    def release(self, receipt_handle: str) -> None:
        """Hand a received message back at once (visible again), without it counting as a defer."""
        self._client.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle,
                                               VisibilityTimeout=0)

    def receive_waiting(self, max_messages: int) -> list[dict[str, Any]]:
        """Messages already waiting (no long poll: this never waits), at most ``max_messages``,
        as ReceiveMessage returns them."""
        found: list[dict[str, Any]] = []
        while len(found) < max_messages:
            answer = self._client.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(10, max_messages - len(found)),
                WaitTimeSeconds=0, AttributeNames=["All"], MessageAttributeNames=["All"])
            messages = answer.get("Messages") or []
            if not messages:
                break
            found.extend(messages)
        return found

    def delete(self, receipt_handles: list[str]) -> None:
        """Delete received messages, 10 to a call (what Lambda does for a batch it invoked)."""
        from shared.chunking import chunks

        for chunk in chunks(receipt_handles, 10):
            self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(chunk)])
