"""XeroClient over `responses` (no network, no moto): headers, batching, retries and backoff,
errors, token refresh, and the shared rate gate held around every attempt."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses

from shared.errors import RateLimited, XeroError
from shared.xero.client import XeroClient

BASE = "http://127.0.0.1:9"
CONTACTS = f"{BASE}/api.xro/2.0/Contacts"
TENANT = "b7a6c5d4-0000-4000-8000-000000000001"
KEY = "contacts-batch-7f3e"


class Tokens:
    """A token source that hands out a new token after a forced refresh."""

    def __init__(self):
        self.calls: list[bool] = []
        self.generation = 1

    def __call__(self, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        if force_refresh:
            self.generation += 1
        return f"access-{self.generation}"


class RecordingGate:
    def __init__(self, events: list, refuse: Exception | None = None):
        self.events = events
        self.refuse = refuse
        self.issued = 0

    def acquire(self, tenant_id):
        if self.refuse:
            raise self.refuse
        self.issued += 1
        permit = f"permit-{self.issued}"
        self.events.append(("acquire", tenant_id, permit))
        return permit

    def release(self, permit):
        self.events.append(("release", permit))

    def observe(self, tenant_id, headers, status):
        self.events.append(("observe", tenant_id, status, headers.get("X-MinLimit-Remaining")))


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def client(*, gate=None, tokens=None, sleeps=None, **options) -> XeroClient:
    return XeroClient(BASE, TENANT, tokens or Tokens(), session=requests.Session(),
                      sleep=(sleeps if sleeps is not None else []).append, gate=gate, **options)


def contacts(n: int) -> list[dict]:
    return [{"Name": f"Customer {i}", "ContactNumber": f"C-{i}"} for i in range(n)]


def echo_ok(request):
    """Xero's answer with summarizeErrors=false: every element back, in order, with a status."""
    sent = json.loads(request.body)["Contacts"]
    answered = [{**c, "ContactID": f"id-{c['ContactNumber']}", "StatusAttributeString": "OK"}
                for c in sent]
    return 200, {"X-MinLimit-Remaining": "58"}, json.dumps({"Contacts": answered})


# ---- what goes on the wire -------------------------------------------------------------------
def test_upsert_batch_sends_summarize_errors_false_idempotency_key_tenant_and_token(mocked):
    mocked.add_callback(responses.POST, CONTACTS, callback=echo_ok)
    result = client().upsert_batch("Contacts", contacts(2), idempotency_key=KEY)

    request = mocked.calls[0].request
    assert parse_qs(urlparse(request.url).query) == {"summarizeErrors": ["false"]}
    assert request.headers["Idempotency-Key"] == KEY
    assert request.headers["xero-tenant-id"] == TENANT
    assert request.headers["Authorization"] == "Bearer access-1"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.body) == {"Contacts": contacts(2)}
    assert [c["ContactID"] for c in result] == ["id-C-0", "id-C-1"]


def test_idempotency_key_is_cut_to_xeros_128_characters(mocked):
    mocked.add_callback(responses.POST, CONTACTS, callback=echo_ok)
    client().upsert_batch("Contacts", contacts(1), idempotency_key="k" * 200)
    assert mocked.calls[0].request.headers["Idempotency-Key"] == "k" * 128


def test_element_order_is_preserved(mocked):
    mocked.add_callback(responses.POST, CONTACTS, callback=echo_ok)
    sent = contacts(50)[::-1]
    result = client().upsert_batch("Contacts", sent, idempotency_key=KEY)
    assert [c["ContactNumber"] for c in result] == [c["ContactNumber"] for c in sent]
    assert [c["ContactNumber"] for c in json.loads(mocked.calls[0].request.body)["Contacts"]] == \
        [c["ContactNumber"] for c in sent]


@pytest.mark.parametrize("size", [0, 51])
def test_a_batch_holds_one_to_fifty_elements(mocked, size):
    with pytest.raises(ValueError):
        client().upsert_batch("Contacts", contacts(size), idempotency_key=KEY)
    assert len(mocked.calls) == 0


def test_an_answer_with_a_different_number_of_elements_is_a_retryable_error(mocked):
    mocked.add(responses.POST, CONTACTS, json={"Contacts": [{"ContactID": "only-one"}]})
    with pytest.raises(XeroError) as failed:
        client().upsert_batch("Contacts", contacts(2), idempotency_key=KEY)
    assert failed.value.retryable is True
    assert not isinstance(failed.value, RateLimited)


def test_get_sends_params_and_if_modified_since_and_304_is_empty(mocked):
    mocked.add(responses.GET, f"{BASE}/api.xro/2.0/Invoices", status=304)
    answer = client().get("/Invoices", {"page": 2}, if_modified_since="2026-03-01T00:00:00")
    request = mocked.calls[0].request
    assert answer == {}
    assert parse_qs(urlparse(request.url).query) == {"page": ["2"]}
    assert request.headers["If-Modified-Since"] == "2026-03-01T00:00:00"
    assert "Idempotency-Key" not in request.headers


# ---- rate limits -----------------------------------------------------------------------------
def test_429_with_retry_after_waits_that_long_once_then_succeeds(mocked):
    mocked.add(responses.POST, CONTACTS, status=429,
               headers={"Retry-After": "2", "X-Rate-Limit-Problem": "minute"})
    mocked.add_callback(responses.POST, CONTACTS, callback=echo_ok)
    sleeps: list[float] = []
    xero = client(sleeps=sleeps)
    result = xero.upsert_batch("Contacts", contacts(3), idempotency_key=KEY)
    assert len(result) == 3
    assert len(sleeps) == 1
    assert 2.0 <= sleeps[0] <= 2.0 * 1.25  # Retry-After plus at most 25 % jitter
    assert xero.calls == 2
    assert mocked.calls[1].request.headers["Idempotency-Key"] == KEY  # the retry is the same call


@pytest.mark.parametrize("problem", ["day", "DAY", "Day"])
def test_the_daily_limit_raises_rate_limited_at_once(mocked, problem):
    mocked.add(responses.POST, CONTACTS, status=429,
               headers={"Retry-After": "5400", "X-Rate-Limit-Problem": problem})
    sleeps: list[float] = []
    with pytest.raises(RateLimited) as limited:
        client(sleeps=sleeps).upsert_batch("Contacts", contacts(1), idempotency_key=KEY)
    assert limited.value.problem == "day"
    assert limited.value.retry_after == 5400
    assert len(mocked.calls) == 1 and sleeps == []


def test_a_minute_limit_that_outlasts_the_retries_raises_rate_limited(mocked):
    mocked.add(responses.POST, CONTACTS, status=429,
               headers={"Retry-After": "1", "X-Rate-Limit-Problem": "minute"})
    sleeps: list[float] = []
    with pytest.raises(RateLimited) as limited:
        client(sleeps=sleeps, max_attempts=3).upsert_batch("Contacts", contacts(1), idempotency_key=KEY)
    assert len(mocked.calls) == 3 and len(sleeps) == 2
    assert limited.value.problem == "minute"
    assert 1.0 <= limited.value.retry_after <= 1.25


def test_a_retry_after_longer_than_the_client_may_wait_goes_back_to_the_queue(mocked):
    mocked.add(responses.POST, CONTACTS, status=503, headers={"Retry-After": "45"})
    sleeps: list[float] = []
    with pytest.raises(RateLimited) as limited:
        client(sleeps=sleeps, max_wait_seconds=10).upsert_batch("Contacts", contacts(1),
                                                                 idempotency_key=KEY)
    assert len(mocked.calls) == 1 and sleeps == []
    assert limited.value.retry_after >= 45


# ---- transient failures ----------------------------------------------------------------------
TRANSIENT = {
    "500": {"status": 500, "json": {"Message": "An error occurred"}},
    "503": {"status": 503, "body": "Service Unavailable"},
    "timeout": {"body": requests.exceptions.ReadTimeout("read timed out")},
    "connection": {"body": requests.exceptions.ConnectionError("connection reset by peer")},
}


@pytest.mark.parametrize("failure", TRANSIENT)
def test_transient_failures_back_off_exponentially_then_give_up_retryably(mocked, failure):
    mocked.add(responses.POST, CONTACTS, **TRANSIENT[failure])
    sleeps: list[float] = []
    xero = client(sleeps=sleeps, max_attempts=5)
    with pytest.raises(XeroError) as failed:
        xero.upsert_batch("Contacts", contacts(1), idempotency_key=KEY)
    assert failed.value.retryable is True
    assert not isinstance(failed.value, RateLimited)
    assert xero.calls == 5 and len(mocked.calls) == 5
    assert len(sleeps) == 4
    for wait, base in zip(sleeps, [0.25, 0.5, 1.0, 2.0], strict=True):
        assert base <= wait <= base * 1.25


@pytest.mark.parametrize("failure", TRANSIENT)
def test_a_transient_failure_then_success_succeeds(mocked, failure):
    mocked.add(responses.POST, CONTACTS, **TRANSIENT[failure])
    mocked.add_callback(responses.POST, CONTACTS, callback=echo_ok)
    sleeps: list[float] = []
    assert len(client(sleeps=sleeps).upsert_batch("Contacts", contacts(2), idempotency_key=KEY)) == 2
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.3125


def test_backoff_never_exceeds_its_cap(mocked):
    mocked.add(responses.GET, f"{BASE}/api.xro/2.0/Contacts", status=502)
    sleeps: list[float] = []
    with pytest.raises(XeroError):
        client(sleeps=sleeps, max_attempts=8, max_wait_seconds=60).get("Contacts")
    assert len(sleeps) == 7
    assert max(sleeps) <= 8.0 * 1.25


# ---- refusals --------------------------------------------------------------------------------
def test_a_validation_exception_is_final_and_carries_xeros_messages(mocked):
    mocked.add(responses.POST, CONTACTS, status=400, json={
        "ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
        "Elements": [{"Name": "Acme", "ValidationErrors": [
            {"Message": "The contact name Acme is already assigned to another contact."}]},
            {"Name": "Beta", "LineItems": [
                {"ValidationErrors": [{"Message": "Account code '999' is not valid."}]}]}],
    })
    sleeps: list[float] = []
    with pytest.raises(XeroError) as failed:
        client(sleeps=sleeps).upsert_batch("Contacts", contacts(2), idempotency_key=KEY)
    assert failed.value.retryable is False
    assert failed.value.status == 400
    assert "already assigned to another contact" in str(failed.value)
    assert "Account code '999' is not valid." in str(failed.value)
    assert len(mocked.calls) == 1 and sleeps == []


def test_401_refreshes_the_token_once_and_retries(mocked):
    mocked.add(responses.POST, CONTACTS, status=401, json={"Title": "Unauthorized"})
    mocked.add_callback(responses.POST, CONTACTS, callback=echo_ok)
    tokens = Tokens()
    client(tokens=tokens).upsert_batch("Contacts", contacts(1), idempotency_key=KEY)
    assert tokens.calls.count(True) == 1
    assert [c.request.headers["Authorization"] for c in mocked.calls] == \
        ["Bearer access-1", "Bearer access-2"]


def test_a_second_401_is_not_refreshed_again(mocked):
    mocked.add(responses.POST, CONTACTS, status=401, json={"Title": "Unauthorized"})
    tokens = Tokens()
    with pytest.raises(XeroError) as failed:
        client(tokens=tokens).upsert_batch("Contacts", contacts(1), idempotency_key=KEY)
    assert failed.value.status == 401 and failed.value.retryable is False
    assert tokens.calls.count(True) == 1
    assert len(mocked.calls) == 2


# ---- the shared gate -------------------------------------------------------------------------
def test_the_gate_is_held_around_every_attempt_and_fed_every_answer(mocked):
    events: list = []

    def on_wire(request):
        events.append(("request",))
        return echo_ok(request)

    mocked.add(responses.POST, CONTACTS, body=requests.exceptions.ConnectionError("reset"))
    mocked.add(responses.POST, CONTACTS, status=500, headers={"X-MinLimit-Remaining": "40"})
    mocked.add_callback(responses.POST, CONTACTS, callback=on_wire)
    gate = RecordingGate(events)
    client(gate=gate).upsert_batch("Contacts", contacts(2), idempotency_key=KEY)

    assert [e[0] for e in events] == [
        "acquire", "release",                        # dropped connection: nothing to observe
        "acquire", "release", "observe",             # 500
        "acquire", "request", "release", "observe",  # 200
    ]
    acquired = [e[2] for e in events if e[0] == "acquire"]
    assert acquired == [e[1] for e in events if e[0] == "release"]  # each permit given back
    assert all(e[1] == TENANT for e in events if e[0] in {"acquire", "observe"})
    assert [(e[2], e[3]) for e in events if e[0] == "observe"] == [(500, "40"), (200, "58")]


def test_the_permit_is_released_even_when_the_request_raises():
    events: list = []

    class BrokenSession(requests.Session):
        def request(self, *args, **kwargs):
            events.append(("request",))
            raise requests.exceptions.InvalidURL("no such place")

    xero = XeroClient(BASE, TENANT, Tokens(), session=BrokenSession(), gate=RecordingGate(events),
                      sleep=lambda _: None)
    with pytest.raises(requests.exceptions.InvalidURL):
        xero.get("Contacts")
    assert [e[0] for e in events] == ["acquire", "request", "release"]


def test_a_gate_refusal_sends_nothing_and_reaches_the_caller(mocked):
    events: list = []
    gate = RecordingGate(events, refuse=RateLimited("minute used up", retry_after=17, problem="minute"))
    with pytest.raises(RateLimited) as limited:
        client(gate=gate).upsert_batch("Contacts", contacts(1), idempotency_key=KEY)
    assert limited.value.retry_after == 17
    assert len(mocked.calls) == 0 and events == []


def test_the_429_itself_reaches_the_gate_before_the_backoff(mocked):
    events: list = []
    mocked.add(responses.POST, CONTACTS, status=429,
               headers={"Retry-After": "2", "X-Rate-Limit-Problem": "minute"})
    mocked.add_callback(responses.POST, CONTACTS, callback=echo_ok)
    xero = XeroClient(BASE, TENANT, Tokens(), session=requests.Session(), gate=RecordingGate(events),
                      sleep=lambda seconds: events.append(("sleep",)))
    xero.upsert_batch("Contacts", contacts(1), idempotency_key=KEY)
    assert [e[0] for e in events] == ["acquire", "release", "observe", "sleep",
                                      "acquire", "release", "observe"]
    assert events[2][2] == 429
