"""Real DynamoDB applies each conditional write atomically; moto's in-memory backend checks the
condition and writes in separate steps, which threads can interleave. Serialising moto's request
handlers restores the atomicity, so threaded tests and benchmarks measure the connector, not moto."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLERS = ("get_item", "put_item", "update_item", "delete_item", "batch_get_item",
            "batch_write_item", "transact_write_items")


@contextmanager
def atomic_moto_dynamodb() -> Iterator[None]:
    from moto.dynamodb import responses as moto_dynamodb_responses

    lock = threading.RLock()
    originals = {name: getattr(moto_dynamodb_responses.DynamoHandler, name) for name in HANDLERS}

    def locked(original):
        def handler(self):
            with lock:
                return original(self)
        return handler

    for name, original in originals.items():
        setattr(moto_dynamodb_responses.DynamoHandler, name, locked(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(moto_dynamodb_responses.DynamoHandler, name, original)
