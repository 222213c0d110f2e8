"""SQS adapter: the work queues between the API and the workers."""

from __future__ import annotations

import json
from typing import Any


def _sqs_client() -> Any:
    import boto3  # on first use: keeps boto3 out of a handler's import time

    return boto3.client("sqs")


class SqsQueue:
    def __init__(self, queue_url: str, *, client: Any | None = None):
        self.queue_url = queue_url
        self._client = client or _sqs_client()

    def send(self, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self._client.send_message(QueueUrl=self.queue_url,
                                  MessageBody=json.dumps(body, separators=(",", ":")),
                                  DelaySeconds=max(0, min(int(delay_seconds), 900)))

    def defer(self, receipt_handle: str, seconds: int) -> None:
        """Hold a received message back (e.g. for Xero's Retry-After) before it is seen again."""
        self._client.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle,
                                               VisibilityTimeout=max(0, min(int(seconds), 43200)))
