"""The one chunking helper: by count and by encoded size."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.chunking import chunks, chunks_by_json_size


@given(st.lists(st.integers()), st.integers(min_value=1, max_value=60))
def test_chunks_by_count_keep_order_and_size(values, size):
    found = list(chunks(values, size))
    assert [v for chunk in found for v in chunk] == values
    assert all(1 <= len(chunk) <= size for chunk in found)
    assert all(len(chunk) == size for chunk in found[:-1])


def test_a_chunk_holds_at_least_one():
    with pytest.raises(ValueError):
        list(chunks([1], 0))


@given(st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=40), max_size=3), max_size=40),
       st.integers(min_value=20, max_value=400))
def test_chunks_by_json_size_keep_order_and_stay_under_the_limit(values, limit):
    found = list(chunks_by_json_size(values, limit))
    assert [v for chunk in found for v in chunk] == values
    for chunk in found:
        encoded = len(json.dumps(chunk, separators=(",", ":")).encode())
        assert encoded <= limit or len(chunk) == 1


def test_everything_that_fits_is_one_chunk():
    events = [{"id": n} for n in range(50)]
    assert list(chunks_by_json_size(events, 200_000)) == [events]
    assert list(chunks_by_json_size([], 10)) == []
