"""One way to cut a list into batches: by count (Xero's 50 per call, DynamoDB's 25 or 100 per
batch call, Sugar's bulk size) or by encoded size (a queue message's bytes)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def chunks(values: Sequence[T], size: int) -> Iterator[list[T]]:
    """``values`` in order, ``size`` at a time (the last chunk may be shorter)."""
    if size < 1:
        raise ValueError("a chunk holds at least one value")
    for start in range(0, len(values), size):
        yield list(values[start:start + size])


def _encoded_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def chunks_by_json_size(values: Sequence[Any], limit: int) -> Iterator[list[Any]]:
    """``values`` in order, in chunks whose compact JSON arrays take at most about ``limit`` bytes
    (a single value larger than ``limit`` is a chunk of its own). The whole list is measured
    first: the usual case, everything fits, costs one encoding rather than one per value."""
    if not values:
        return
    if _encoded_size(list(values)) <= limit:
        yield list(values)
        return
    chunk: list[Any] = []
    size = 1  # the array's brackets
    for value in values:
        value_size = _encoded_size(value) + 1  # and its comma
        if chunk and size + value_size > limit:
            yield chunk
            chunk, size = [], 1
        chunk.append(value)
        size += value_size
    if chunk:
        yield chunk
