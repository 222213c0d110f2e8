"""moto's ReceiveMessage checks a message's visibility and marks it received in separate steps,
with no lock, so two concurrent receives (two pollers, or a poller and a worker gathering its
batch) can both be handed the same message. SQS itself hides a received message from every other
consumer for its visibility timeout; a second delivery is rare ("at-least-once": a copy on a
server that was unavailable, https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/standard-queues-at-least-once-delivery.html).
The connector copes with a second delivery either way (its journal and ContactNumber lookups;
bench.exactly_once), but with moto's race the local stack's figures would count moto, not the
connector: each receive step is serialised here. A long poll waits outside the lock."""

from __future__ import annotations

import threading
import time
from typing import Any

_LOCK = threading.RLock()
_PATCHED = "_sugar_xero_atomic_receive"


def make_receive_atomic() -> None:
    """Patch moto's SQS backend in this process (idempotent)."""
    from moto.sqs.models import SQSBackend

    original = SQSBackend.receive_message
    if getattr(original, _PATCHED, False):
        return

    def receive_message(self: Any, queue_name: str, count: int, wait_seconds_timeout: int,
                        visibility_timeout: int, message_attribute_names: list[str] | None = None) -> list[Any]:
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with _LOCK:
                found = original(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            self.get_queue(queue_name).wait_for_messages(min(remaining, 0.05))

    setattr(receive_message, _PATCHED, True)
    SQSBackend.receive_message = receive_message
