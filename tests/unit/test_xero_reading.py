"""Reading from Xero: pages, id lists in chunks of 50, If-Modified-Since, Xero's date forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.xero.client import XeroClient
from shared.xero.dates import if_modified_since, parse_xero_date
from sugar_xero.local.xero_emulator import EmulatorConfig, serve


@pytest.fixture
def xero():
    config = EmulatorConfig()
    with serve(config=config) as server:
        client = XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)
        for start in range(0, 120, 50):
            client.upsert_batch("Contacts", [{"Name": f"Reader {n:03d}", "ContactNumber": f"r-{n:03d}"}
                                             for n in range(start, min(start + 50, 120))],
                                idempotency_key=f"seed-{start}")
        client.calls = 0
        yield client


def test_pages_until_a_short_page(xero):
    names = [c["Name"] for c in xero.iter_pages("Contacts", page_size=50)]
    assert len(names) == 120 and len(set(names)) == 120
    assert xero.calls == 3


def test_an_exact_multiple_stops_on_the_page_count(xero):
    assert len(list(xero.iter_pages("Contacts", page_size=60))) == 120
    assert xero.calls == 2


def test_ids_go_fifty_a_call(xero):
    ids = [c["ContactID"] for c in xero.iter_pages("Contacts", page_size=1000)]
    xero.calls = 0
    found = xero.get_by_ids("Contacts", ids + ids[:5])  # repeats are asked for once
    assert sorted(c["ContactID"] for c in found) == sorted(ids)
    assert xero.calls == 3


def test_if_modified_since_leaves_out_older_changes(xero):
    later = if_modified_since(datetime.now(UTC) + timedelta(minutes=5))
    assert list(xero.iter_pages("Contacts", if_modified_since=later)) == []
    earlier = if_modified_since(datetime.now(UTC), overlap=timedelta(minutes=10))
    assert len(list(xero.iter_pages("Contacts", if_modified_since=earlier))) == 120


def test_xero_dates():
    assert parse_xero_date("/Date(1551399321043+0000)/") == datetime(2019, 3, 1, 0, 15, 21, 43000, tzinfo=UTC)
    assert parse_xero_date("/Date(1551399321043+1300)/") == parse_xero_date("/Date(1551399321043)/")
    assert parse_xero_date("2019-03-01T00:15:21.043") == parse_xero_date("/Date(1551399321043)/")
    assert parse_xero_date("2019-02-28T23:15:21Z").tzinfo == UTC
    assert parse_xero_date("") is None and parse_xero_date(None) is None
    assert if_modified_since(datetime(2026, 11, 27, 10, 0, tzinfo=UTC), overlap=timedelta(minutes=5)) \
        == "2026-11-27T09:55:00"
