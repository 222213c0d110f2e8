"""The Sugar REST v11 client against ``responses`` (no network): token cache and lease, 401
renewal, paging, bulk, retries and error mapping."""

from __future__ import annotations

import copy
import itertools
import json
import logging
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from shared.sugar import (
    BulkRequest,
    DynamoSugarTokenCache,
    SugarAuthError,
    SugarClient,
    SugarEditConflict,
    SugarError,
    SugarInvalidRequest,
    SugarNotAuthorized,
    SugarNotFound,
    SugarServerError,
    SugarUnavailable,
)

BASE = "http://127.0.0.1/sugar"
API = f"{BASE}/rest/v11"
TOKEN_URL = f"{API}/oauth2/token"
USERNAME = "xero_integration"
PASSWORD = "pa55-w0rd-never-logged"
PLATFORM = "xero_connector"
KEY = f"sugar:{PLATFORM}:{USERNAME}"
QUOTE_ID = "2b4f8c1e-0000-4000-8000-000000000001"


class MemoryTokenCache:
    """Compare-and-set with the same rules as the sync table: the write names the version it
    read (None: only if absent) and becomes that version + 1."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.reads = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            self.reads += 1
            item = self.items.get(key)
            return copy.deepcopy(item) if item else None

    def put(self, key: str, token: dict[str, Any], expected_version: int | None) -> bool:
        with self._lock:
            current = self.items.get(key)
            if expected_version is None and current is not None:
                return False
            if expected_version is not None and (current is None or current["version"] != expected_version):
                return False
            self.items[key] = {**copy.deepcopy(token), "version": (expected_version or 0) + 1}
            self.writes += 1
            return True


class TokenServer:
    """Sugar's /oauth2/token: hands out numbered tokens and remembers every grant asked for."""

    def __init__(self, rsps: responses.RequestsMock, *, refuse: set[str] = frozenset(), delay: float = 0.0,
                 expires_in: int = 3600):
        self.grants: list[dict[str, Any]] = []
        self.issued: list[str] = []
        self._refuse = refuse
        self._delay = delay
        self._expires_in = expires_in
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        rsps.add_callback(responses.POST, TOKEN_URL, callback=self._answer)

    def _answer(self, request):
        body = json.loads(request.body)
        with self._lock:
            self.grants.append(body)
            number = next(self._numbers)
        if self._delay:
            time.sleep(self._delay)
        if body["grant_type"] in self._refuse:
            label = "invalid_grant" if body["grant_type"] == "refresh_token" else "need_login"
            return 400 if label == "invalid_grant" else 401, {}, json.dumps(
                {"error": label, "error_message": "Your authentication token is invalid."})
        token = f"access-{number}-secret"
        with self._lock:
            self.issued.append(token)
        return 200, {}, json.dumps({"access_token": token, "expires_in": self._expires_in,
                                    "token_type": "bearer", "scope": None,
                                    "refresh_token": f"refresh-{number}-secret",
                                    "refresh_expires_in": 1209600,
                                    "download_token": f"download-{number}"})

    @property
    def kinds(self) -> list[str]:
        return [g["grant_type"] for g in self.grants]


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def cache() -> MemoryTokenCache:
    return MemoryTokenCache()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def make_client(cache, sleep=None, **overrides) -> SugarClient:
    options = {"sleep": sleep or FakeSleep(), "max_attempts": 4}
    options.update(overrides)
    return SugarClient(BASE, USERNAME, PASSWORD, PLATFORM, cache, **options)


def headers_of(rsps, url_part: str) -> list[str | None]:
    return [c.request.headers.get("OAuth-Token") for c in rsps.calls if url_part in c.request.url]


# ---- tokens ------------------------------------------------------------------------------------
def test_logs_in_once_for_many_calls_and_sends_the_oauth_token_header(rsps, cache, sleep):
    server = TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID, "total": "1150.000000"})
    rsps.put(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID, "xero_status_c": "AUTHORISED"},
             match=[matchers.json_params_matcher({"xero_status_c": "AUTHORISED"})])
    rsps.post(f"{API}/Accounts/filter", json={"next_offset": -1, "records": []})
    client = make_client(cache, sleep)

    for _ in range(3):
        assert client.get_record("Quotes", QUOTE_ID)["total"] == "1150.000000"
    client.update_record("Quotes", QUOTE_ID, {"xero_status_c": "AUTHORISED"})
    client.filter("Accounts", [{"name": {"$starts": "Acme"}}])

    assert server.grants == [{"grant_type": "password", "client_id": "sugar", "client_secret": "",
                              "username": USERNAME, "password": PASSWORD, "platform": PLATFORM}]
    assert client.token_calls == 1
    sent = [c.request.headers.get("OAuth-Token") for c in rsps.calls if "oauth2" not in c.request.url]
    assert sent == ["access-1-secret"] * 5
    stored = cache.get(KEY)
    assert stored["access_token"] == "access-1-secret" and stored["refresh_token"] == "refresh-1-secret"
    assert stored["lease_until"] == 0 and stored["version"] == 2  # lease, then the token
    assert cache.reads == 2  # the client keeps the token it stored: no table read per call


def test_cached_token_is_reused_by_another_client_sharing_the_cache(rsps, cache):
    server = TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID})
    make_client(cache).get_record("Quotes", QUOTE_ID)
    second = make_client(cache)

    second.get_record("Quotes", QUOTE_ID)

    assert server.kinds == ["password"]
    assert second.token_calls == 0
    assert headers_of(rsps, "/Quotes/") == ["access-1-secret", "access-1-secret"]


def test_expired_token_is_renewed_with_the_refresh_grant(rsps, cache):
    now = time.time()
    cache.put(KEY, {"access_token": "old-access", "refresh_token": "old-refresh",
                    "access_expires_at": int(now) - 10, "refresh_expires_at": int(now) + 86400,
                    "lease_until": 0}, expected_version=None)
    server = TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID})

    make_client(cache).get_record("Quotes", QUOTE_ID)

    assert server.grants == [{"grant_type": "refresh_token", "refresh_token": "old-refresh",
                              "client_id": "sugar", "client_secret": "", "platform": PLATFORM}]
    assert headers_of(rsps, "/Quotes/") == ["access-1-secret"]
    assert cache.get(KEY)["refresh_token"] == "refresh-1-secret"  # Sugar rotates it: keep the new one


def test_token_close_to_expiry_is_renewed_before_use(rsps, cache):
    now = time.time()
    cache.put(KEY, {"access_token": "nearly-gone", "refresh_token": "r", "access_expires_at": int(now) + 30,
                    "refresh_expires_at": int(now) + 86400}, expected_version=None)
    server = TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID})

    make_client(cache).get_record("Quotes", QUOTE_ID)

    assert server.kinds == ["refresh_token"]
    assert headers_of(rsps, "/Quotes/") == ["access-1-secret"]


def test_401_mid_call_renews_once_and_repeats_the_call(rsps, cache):
    server = TokenServer(rsps)
    url = f"{API}/Quotes/{QUOTE_ID}"
    rsps.get(url, status=401, json={"error": "invalid_grant", "error_message": "token invalid"})
    rsps.get(url, json={"id": QUOTE_ID})
    client = make_client(cache)

    assert client.get_record("Quotes", QUOTE_ID) == {"id": QUOTE_ID}

    assert server.kinds == ["password", "refresh_token"]
    assert server.grants[1]["refresh_token"] == "refresh-1-secret"
    assert headers_of(rsps, "/Quotes/") == ["access-1-secret", "access-2-secret"]
    assert cache.get(KEY)["access_token"] == "access-2-secret"


def test_a_second_401_is_raised_without_looping(rsps, cache):
    server = TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", status=401,
             json={"error": "need_login", "error_message": "You need to be logged in"})

    with pytest.raises(SugarAuthError) as caught:
        make_client(cache).get_record("Quotes", QUOTE_ID)

    assert caught.value.status == 401 and caught.value.label == "need_login"
    assert not caught.value.retryable
    assert len(headers_of(rsps, "/Quotes/")) == 2
    assert server.kinds == ["password", "refresh_token"]


def test_401_uses_a_token_another_worker_already_renewed(rsps, cache):
    server = TokenServer(rsps)
    url = f"{API}/Quotes/{QUOTE_ID}"
    rsps.get(url, status=401, json={"error": "invalid_grant"})
    rsps.get(url, json={"id": QUOTE_ID})
    client = make_client(cache)
    client._tokens.access_token()  # holds access-1
    stored = cache.get(KEY)
    cache.put(KEY, {**stored, "access_token": "renewed-elsewhere"}, expected_version=stored["version"])

    client.get_record("Quotes", QUOTE_ID)

    assert server.kinds == ["password"]
    assert headers_of(rsps, "/Quotes/") == ["access-1-secret", "renewed-elsewhere"]


def test_refused_refresh_falls_back_to_the_password_grant(rsps, cache):
    now = time.time()
    cache.put(KEY, {"access_token": "old", "refresh_token": "spent-refresh", "access_expires_at": int(now) - 1,
                    "refresh_expires_at": int(now) + 86400}, expected_version=None)
    server = TokenServer(rsps, refuse={"refresh_token"})
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID})

    make_client(cache).get_record("Quotes", QUOTE_ID)

    assert server.kinds == ["refresh_token", "password"]
    assert headers_of(rsps, "/Quotes/") == ["access-2-secret"]
    assert cache.get(KEY)["access_token"] == "access-2-secret"


def test_refused_password_is_raised_and_remembered_so_other_workers_do_not_retry(rsps, cache):
    server = TokenServer(rsps, refuse={"password"})

    with pytest.raises(SugarAuthError) as caught:
        make_client(cache).get_record("Quotes", QUOTE_ID)
    with pytest.raises(SugarAuthError):
        make_client(cache).get_record("Quotes", QUOTE_ID)

    assert caught.value.label == "need_login" and not caught.value.retryable
    assert server.kinds == ["password"]
    assert cache.get(KEY)["lease_until"] == 0


def test_token_endpoint_outage_gives_the_lease_back(rsps, cache):
    rsps.post(TOKEN_URL, status=500, json={"error": "fatal_error", "error_message": "boom"})

    with pytest.raises(SugarServerError) as caught:
        make_client(cache).get_record("Quotes", QUOTE_ID)

    assert caught.value.retryable
    assert cache.get(KEY)["lease_until"] == 0  # the next worker may try at once


def test_two_clients_racing_with_an_empty_cache_log_in_once(rsps, cache):
    server = TokenServer(rsps, delay=0.3)  # a slow login, so the second worker meets the lease
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID})
    clients = [make_client(cache, sleep=time.sleep) for _ in range(4)]
    start = threading.Barrier(len(clients))
    errors: list[BaseException] = []

    def work(client: SugarClient) -> None:
        start.wait()
        try:
            client.get_record("Quotes", QUOTE_ID)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert not errors
    assert server.kinds == ["password"]
    assert sum(c.token_calls for c in clients) == 1
    assert headers_of(rsps, "/Quotes/") == ["access-1-secret"] * len(clients)


def test_a_lease_left_by_a_dead_worker_is_taken_over_when_it_expires(rsps, cache):
    clock = FakeClock(1_000_000.0)
    cache.put(KEY, {"lease_until": int(clock()) + 30}, expected_version=None)  # its holder died
    server = TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID})

    make_client(cache, sleep=clock.sleep, clock=clock).get_record("Quotes", QUOTE_ID)

    assert server.kinds == ["password"]
    assert 30 <= clock() - 1_000_000.0 <= 32  # waited for the lease to run out, no longer


def test_waiting_for_a_login_that_never_lands_gives_up(rsps, cache):
    clock = FakeClock(1_000_000.0)
    server = TokenServer(rsps)

    class LeaseAlwaysTaken(MemoryTokenCache):
        def get(self, key):
            return {"lease_until": int(clock()) + 30, "version": 7}

    with pytest.raises(SugarError) as caught:
        make_client(LeaseAlwaysTaken(), sleep=clock.sleep, clock=clock).get_record("Quotes", QUOTE_ID)

    assert caught.value.retryable and caught.value.label == "login_wait_timeout"
    assert server.grants == []


# ---- paging ------------------------------------------------------------------------------------
def test_iter_filter_pages_until_next_offset_is_minus_one(rsps, cache):
    TokenServer(rsps)
    flt = [{"quote_stage": "Closed Accepted"}, {"date_modified": {"$gte": "2024-05-01T00:00:00+00:00"}}]
    pages = {0: ([{"id": "q1"}, {"id": "q2"}], 2), 2: ([{"id": "q3"}, {"id": "q4"}], 4),
             4: ([{"id": "q5"}], -1)}
    for offset, (records, next_offset) in pages.items():
        rsps.post(f"{API}/Quotes/filter", json={"next_offset": next_offset, "records": records},
                  match=[matchers.json_params_matcher({"filter": flt, "max_num": 2, "offset": offset,
                                                       "fields": "id,name,total",
                                                       "order_by": "date_modified:asc"})])
    client = make_client(cache)

    found = [r["id"] for r in client.iter_filter("Quotes", flt, fields=["id", "name", "total"], max_num=2,
                                                 order_by="date_modified:asc")]

    assert found == ["q1", "q2", "q3", "q4", "q5"]
    assert len(headers_of(rsps, "/Quotes/filter")) == 3
    assert client.filter("Quotes", flt, fields="id,name,total", max_num=2, offset=2,
                         order_by="date_modified:asc") == ([{"id": "q3"}, {"id": "q4"}], 4)


def test_paging_that_does_not_advance_is_an_error(rsps, cache):
    TokenServer(rsps)
    rsps.post(f"{API}/Quotes/filter", json={"next_offset": 0, "records": [{"id": "q1"}]})

    with pytest.raises(SugarError, match="did not advance"):
        list(make_client(cache).iter_filter("Quotes", []))


def test_related_follows_every_page_of_a_link(rsps, cache):
    TokenServer(rsps)
    link = f"{API}/Quotes/{QUOTE_ID}/link/product_bundles"
    query = {"fields": "id,name,position", "max_num": "2"}
    rsps.get(link, json={"next_offset": 2, "records": [{"id": "b1"}, {"id": "b2"}]},
             match=[matchers.query_param_matcher({**query, "offset": "0"})])
    rsps.get(link, json={"next_offset": -1, "records": [{"id": "b3"}]},
             match=[matchers.query_param_matcher({**query, "offset": "2"})])
    client = make_client(cache)

    bundles = client.related("Quotes", QUOTE_ID, "product_bundles", fields=["id", "name", "position"],
                             max_num=2)

    assert [b["id"] for b in bundles] == ["b1", "b2", "b3"]
    assert client.related_page("Quotes", QUOTE_ID, "product_bundles", fields="id,name,position", max_num=2,
                               offset=2) == ([{"id": "b3"}], -1)


def test_ids_cannot_change_the_route(rsps, cache):
    TokenServer(rsps)
    rsps.get(f"{API}/Quotes/..%2FUsers%2F1", json={"id": "odd"})

    assert make_client(cache).get_record("Quotes", "../Users/1") == {"id": "odd"}


# ---- bulk --------------------------------------------------------------------------------------
def test_bulk_returns_each_items_outcome_and_one_failure_fails_nothing_else(rsps, cache):
    TokenServer(rsps)
    expected = {"requests": [
        {"url": f"/v11/Quotes/{QUOTE_ID}", "method": "PUT",
         "data": json.dumps({"xero_amount_due_c": "115.500000"}, separators=(",", ":"))},
        {"url": "/v11/Quotes/missing", "method": "PUT", "data": '{"xero_status_c":"PAID"}'},
        {"url": "/v11/Accounts/a1", "method": "GET"},
    ]}
    rsps.post(f"{API}/bulk", match=[matchers.json_params_matcher(expected)], json=[
        {"contents": {"id": QUOTE_ID, "xero_amount_due_c": "115.500000"}, "headers": [], "status": 200},
        {"contents": {"error": "not_found",
                      "error_message": "Could not find record: missing in module: Quotes"},
         "headers": [], "status": 404},
        {"contents": {"id": "a1", "name": "Acme"}, "headers": [], "status": 200},
    ])

    results = make_client(cache).bulk([
        BulkRequest.update("Quotes", QUOTE_ID, {"xero_amount_due_c": Decimal("115.500000")}),
        BulkRequest.update("Quotes", "missing", {"xero_status_c": "PAID"}),
        BulkRequest.get("Accounts", "a1"),
    ])

    assert [r.status for r in results] == [200, 404, 200]
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].contents["xero_amount_due_c"] == "115.500000"
    assert results[1].label == "not_found"
    assert isinstance(results[1].error(), SugarNotFound)
    assert results[2].error() is None and results[2].contents["name"] == "Acme"


def test_update_records_bulk_chunks_and_reports_per_id(rsps, cache):
    TokenServer(rsps)
    sent_sizes: list[int] = []

    def answer(request):
        items = json.loads(request.body)["requests"]
        sent_sizes.append(len(items))
        out = []
        for item in items:
            record_id = item["url"].rsplit("/", 1)[1]
            if record_id == "q-13":
                out.append({"contents": {"error": "edit_conflict"}, "headers": [], "status": 409})
            else:
                out.append({"contents": {"id": record_id, **json.loads(item["data"])}, "headers": [],
                            "status": 200})
        return 200, {}, json.dumps(out)

    rsps.add_callback(responses.POST, f"{API}/bulk", callback=answer)
    updates = {f"q-{n}": {"xero_sync_status_c": "synced"} for n in range(45)}

    outcome = make_client(cache).update_records_bulk("Quotes", updates)

    assert sent_sizes == [20, 20, 5]
    assert list(outcome) == list(updates)
    assert not outcome["q-13"].ok and isinstance(outcome["q-13"].error(), SugarEditConflict)
    assert all(outcome[i].ok for i in updates if i != "q-13")
    assert outcome["q-44"].contents == {"id": "q-44", "xero_sync_status_c": "synced"}


def test_bulk_answer_of_the_wrong_length_is_an_error(rsps, cache):
    TokenServer(rsps)
    rsps.post(f"{API}/bulk", json=[{"contents": {}, "status": 200}])

    with pytest.raises(SugarError, match="1 results for 2 requests"):
        make_client(cache).bulk([BulkRequest.get("Quotes", "a"), BulkRequest.get("Quotes", "b")])


# ---- retries -----------------------------------------------------------------------------------
def test_429_waits_as_long_as_retry_after_says_then_succeeds(rsps, cache, sleep):
    TokenServer(rsps)
    url = f"{API}/Quotes/{QUOTE_ID}"
    rsps.get(url, status=429, headers={"Retry-After": "7"}, json={"error": "too_many_requests"})
    rsps.get(url, json={"id": QUOTE_ID})

    assert make_client(cache, sleep).get_record("Quotes", QUOTE_ID) == {"id": QUOTE_ID}

    assert len(sleep.waits) == 1
    assert 7 <= sleep.waits[0] <= 8
    assert len(headers_of(rsps, "/Quotes/")) == 2


def test_a_retry_after_longer_than_a_worker_should_wait_is_raised_at_once(rsps, cache, sleep):
    TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", status=429, headers={"Retry-After": "600"})

    with pytest.raises(SugarUnavailable) as caught:
        make_client(cache, sleep).get_record("Quotes", QUOTE_ID)

    assert caught.value.retryable and caught.value.retry_after == 600
    assert sleep.waits == []


def test_503_exhausting_the_attempts_raises_a_retryable_error(rsps, cache, sleep):
    TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", status=503,
             json={"error": "maintenance", "error_message": "The system is in maintenance mode"})

    with pytest.raises(SugarUnavailable) as caught:
        make_client(cache, sleep, max_attempts=4).get_record("Quotes", QUOTE_ID)

    assert caught.value.status == 503 and caught.value.label == "maintenance"
    assert caught.value.retryable
    assert len(headers_of(rsps, "/Quotes/")) == 4
    assert len(sleep.waits) == 3
    assert 0.25 <= sleep.waits[0] <= 0.5 and 1.0 <= sleep.waits[2] <= 2.0  # growing, bounded, jittered


def test_dropped_connections_are_retried_for_reads(rsps, cache, sleep):
    TokenServer(rsps)
    url = f"{API}/Quotes/{QUOTE_ID}"
    rsps.get(url, body=requests.ConnectionError("connection reset"))
    rsps.get(url, body=requests.ReadTimeout("read timed out"))
    rsps.get(url, json={"id": QUOTE_ID})

    assert make_client(cache, sleep).get_record("Quotes", QUOTE_ID) == {"id": QUOTE_ID}
    assert len(sleep.waits) == 2


def test_a_create_that_timed_out_is_not_sent_twice(rsps, cache, sleep):
    TokenServer(rsps)
    rsps.post(f"{API}/Notes", body=requests.ReadTimeout("read timed out"))

    with pytest.raises(SugarError) as caught:
        make_client(cache, sleep).create_record("Notes", {"name": "Xero invoice INV-0042"})

    assert caught.value.label == "outcome_unknown" and not caught.value.retryable
    assert len(headers_of(rsps, "/Notes")) == 1 and sleep.waits == []


def test_a_create_is_repeated_when_sugar_did_not_act(rsps, cache, sleep):
    TokenServer(rsps)
    rsps.post(f"{API}/Notes", body=requests.ConnectTimeout("connect timed out"))
    rsps.post(f"{API}/Notes", status=503, json={"error": "service_unavailable"})
    rsps.post(f"{API}/Notes", json={"id": "n1"})

    assert make_client(cache, sleep).create_record("Notes", {"name": "x"}) == {"id": "n1"}
    assert len(headers_of(rsps, "/Notes")) == 3


@pytest.mark.parametrize(("status", "label", "error_type", "retryable"), [
    (403, "not_authorized", SugarNotAuthorized, False),
    (403, "field_locked", SugarNotAuthorized, False),
    (404, "not_found", SugarNotFound, False),
    (409, "edit_conflict", SugarEditConflict, False),
    (412, "metadata_out_of_date", SugarInvalidRequest, False),
    (412, "invalid_parameter", SugarInvalidRequest, False),  # Sugar 7.x status
    (422, "missing_parameter", SugarInvalidRequest, False),
    (422, "invalid_parameter", SugarInvalidRequest, False),
    (400, None, SugarInvalidRequest, False),
    (500, "fatal_error", SugarServerError, True),
])
def test_error_labels_map_to_typed_errors_and_are_not_retried(rsps, cache, sleep, status, label, error_type,
                                                              retryable):
    TokenServer(rsps)
    body = {"error": label, "error_message": "Sugar says no"} if label else {"unexpected": True}
    rsps.put(f"{API}/Quotes/{QUOTE_ID}", status=status, json=body)

    with pytest.raises(error_type) as caught:
        make_client(cache, sleep).update_record("Quotes", QUOTE_ID, {"name": "x"})

    error = caught.value
    assert (error.status, error.label, error.retryable) == (status, label, retryable)
    assert f"PUT /Quotes/{QUOTE_ID}" in error.message
    if label:
        assert "Sugar says no" in error.message
    assert len(headers_of(rsps, "/Quotes/")) == 1 and sleep.waits == []


def test_a_proxy_error_page_that_is_not_json_still_maps_by_status(rsps, cache, sleep):
    TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", status=502, body="<html>Bad gateway</html>")

    with pytest.raises(SugarUnavailable) as caught:
        make_client(cache, sleep, max_attempts=2).get_record("Quotes", QUOTE_ID)

    assert caught.value.status == 502 and caught.value.retryable and "Bad gateway" in caught.value.message


# ---- money and logs ----------------------------------------------------------------------------
def test_numbers_never_pass_through_float(rsps, cache):
    TokenServer(rsps)
    rsps.get(f"{API}/Quotes/{QUOTE_ID}", body='{"id":"q","total":"1150.000000","taxrate_value":12.5}',
             content_type="application/json")
    rsps.put(f"{API}/Quotes/{QUOTE_ID}", json={"id": "q"},
             match=[matchers.body_matcher('{"xero_amount_paid_c":"0.100000"}')])
    client = make_client(cache)

    record = client.get_record("Quotes", QUOTE_ID)
    client.update_record("Quotes", QUOTE_ID, {"xero_amount_paid_c": Decimal("0.100000")})

    assert record["total"] == "1150.000000"
    assert record["taxrate_value"] == Decimal("12.5") and isinstance(record["taxrate_value"], Decimal)


def test_no_token_or_password_reaches_the_logs(rsps, cache, sleep, caplog):
    caplog.set_level(logging.DEBUG)
    now = time.time()
    cache.put(KEY, {"access_token": "stale-access-secret", "refresh_token": "stale-refresh-secret",
                    "access_expires_at": int(now) + 3600, "refresh_expires_at": int(now) + 86400},
              expected_version=None)
    server = TokenServer(rsps, refuse={"refresh_token"})
    url = f"{API}/Quotes/{QUOTE_ID}"
    rsps.get(url, status=401, json={"error": "invalid_grant", "error_message": "token expired"})
    rsps.get(url, status=429, headers={"Retry-After": "1"})
    rsps.get(url, json={"id": QUOTE_ID})
    rsps.put(url, status=409, json={"error": "edit_conflict", "error_message": "reload"})

    client = make_client(cache, sleep)
    client.get_record("Quotes", QUOTE_ID)
    with pytest.raises(SugarEditConflict):
        client.update_record("Quotes", QUOTE_ID, {"name": "x"})

    assert server.kinds == ["refresh_token", "password"]
    records = [r for r in caplog.records if r.name.startswith("sugar-xero")]
    assert len(records) >= 4  # the renewal, the refused refresh, the login, the 429, the 409
    secrets = [PASSWORD, "stale-access-secret", "stale-refresh-secret", *server.issued,
               "refresh-1-secret", "refresh-2-secret"]
    for record in records:
        text = record.getMessage() + " " + repr(vars(record))
        for secret in secrets:
            assert secret not in text, f"a secret reached the log: {record.getMessage()}"
    assert PASSWORD not in repr(client) and PASSWORD not in repr(client._tokens)


# ---- the sync-table token cache ----------------------------------------------------------------
def test_dynamo_token_cache_does_compare_and_set_on_the_sync_table():
    from moto import mock_aws

    with mock_aws():
        import boto3

        from shared.state.dynamo import SyncStateTable
        from tests.conftest import create_sync_table

        create_sync_table(boto3.client("dynamodb"), "sync-sugar")
        table_cache = DynamoSugarTokenCache(SyncStateTable("sync-sugar", resource=boto3.resource("dynamodb")))

        assert table_cache.get(KEY) is None
        assert table_cache.put(KEY, {"lease_until": 5}, expected_version=None)
        assert not table_cache.put(KEY, {"lease_until": 6}, expected_version=None)
        item = table_cache.get(KEY)
        assert item == {"lease_until": 5, "version": 1}
        assert isinstance(item["version"], int)
        assert table_cache.put(KEY, {**item, "access_token": "a"}, expected_version=1)
        assert not table_cache.put(KEY, {"access_token": "b"}, expected_version=1)
        assert table_cache.get(KEY)["access_token"] == "a"

        # moto patches HTTP too: Sugar's double must be set up inside it.
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            server = TokenServer(rsps)
            rsps.get(f"{API}/Quotes/{QUOTE_ID}", json={"id": QUOTE_ID})
            for _ in range(2):
                SugarClient(BASE, "other_user", PASSWORD, PLATFORM, table_cache,
                            sleep=FakeSleep()).get_record("Quotes", QUOTE_ID)

        assert server.kinds == ["password"]
        stored = table_cache.get(f"sugar:{PLATFORM}:other_user")
        assert stored["access_token"] == "access-1-secret" and isinstance(stored["access_expires_at"], int)
        assert stored["version"] == 2
