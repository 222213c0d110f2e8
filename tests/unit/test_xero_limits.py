"""SharedRateGate against moto's DynamoDB: Xero's limits held across gate instances (one per
Lambda process in production), which share nothing but the table."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import boto3
import pytest
import requests
from requests.structures import CaseInsensitiveDict

from shared.errors import RateLimited
from shared.xero.client import XeroClient
from shared.xero.limits import SharedRateGate
from tests.conftest import SYNC_TABLE_NAME

START = datetime(2026, 3, 2, 9, 30, 10, tzinfo=UTC).timestamp()  # 10 s into a minute
TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"


class FakeClock:
    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds




@pytest.fixture
def dynamodb(moto_dynamodb):
    _sessions.append(moto_dynamodb)
    yield moto_dynamodb.resource("dynamodb")
    _sessions.clear()


_sessions: list[boto3.session.Session] = []


def new_table():
    """A table handle with its own DynamoDB client, as a separate Lambda process would have.
    (Made in the calling thread from one session: a fresh session per handle costs 200 ms.)"""
    return _sessions[-1].resource("dynamodb").Table(SYNC_TABLE_NAME)


@pytest.fixture
def clock():
    return FakeClock()


def make_gate(clock: FakeClock, **limits) -> SharedRateGate:
    limits.setdefault("max_wait_seconds", 0.2)
    return SharedRateGate(new_table(), clock=clock, sleep=clock.sleep, **limits)


def calls_through(gate: SharedRateGate, tenant: str, n: int) -> None:
    for _ in range(n):
        gate.release(gate.acquire(tenant))


# ---- minute window ---------------------------------------------------------------------------
def test_sixty_calls_in_any_rolling_minute_then_the_61st_waits_for_the_oldest(dynamodb, clock):
    gate = make_gate(clock, minute_margin_seconds=0.0)
    calls_through(gate, TENANT, 30)
    clock.now += 20
    calls_through(gate, TENANT, 30)
    with pytest.raises(RateLimited) as refused:
        gate.acquire(TENANT)
    assert refused.value.problem == "minute"
    assert refused.value.retry_after == pytest.approx(40, abs=0.01)  # the first 30 age out at +60 s

    clock.now += 40  # 60 s after the first 30: exactly those 30 are free again, not one more
    calls_through(gate, TENANT, 30)
    with pytest.raises(RateLimited):
        gate.acquire(TENANT)


def test_an_epoch_minute_boundary_does_not_let_120_through(dynamodb, clock):
    """The fixed-window flaw: 60 at 12:00:59 and 60 more at 12:01:00 would be 120 in 60 s."""
    clock.now = datetime(2026, 3, 2, 12, 0, 59, tzinfo=UTC).timestamp()
    gate = make_gate(clock, minute_margin_seconds=0.0)
    calls_through(gate, TENANT, 60)
    clock.now += 1.0  # 12:01:00, a new epoch minute
    with pytest.raises(RateLimited) as refused:
        gate.acquire(TENANT)
    assert refused.value.retry_after == pytest.approx(59, abs=0.01)


def test_the_margin_holds_a_ticket_past_the_minute_for_the_trip_to_xero(dynamodb, clock):
    gate = make_gate(clock)  # default margin: 1 s
    calls_through(gate, TENANT, 60)
    clock.now += 60.5
    with pytest.raises(RateLimited) as refused:
        gate.acquire(TENANT)
    assert refused.value.retry_after == pytest.approx(0.5, abs=0.01)
    clock.now += 0.5
    calls_through(gate, TENANT, 60)


def test_the_minute_limit_is_shared_by_gate_instances(dynamodb, clock):
    first, second = make_gate(clock, minute_limit=6), make_gate(clock, minute_limit=6)
    calls_through(first, TENANT, 3)
    calls_through(second, TENANT, 3)
    with pytest.raises(RateLimited):
        first.acquire(TENANT)
    with pytest.raises(RateLimited):
        second.acquire(TENANT)


def counted(scope: str, sk: str) -> int:
    item = new_table().get_item(Key={"PK": f"LIMIT#{scope}", "SK": sk}).get("Item") or {}
    return int(item.get("calls", 0))


def live_tickets(tenant: str) -> int:
    item = new_table().get_item(Key={"PK": f"LIMIT#{tenant}", "SK": "MINUTE"}).get("Item") or {}
    return sum(1 for k in item if k.startswith("t") and k[1:].isdigit())


def slots_held(tenant: str) -> list[str]:
    item = new_table().get_item(Key={"PK": f"LIMIT#{tenant}", "SK": "INFLIGHT"}).get("Item") or {}
    return [k for k in item if k.startswith("slot") and not k.endswith("_until")]


def test_a_call_refused_by_a_later_limit_gives_back_what_it_took(dynamodb, clock):
    gate = make_gate(clock, app_minute_limit=2)
    calls_through(gate, TENANT, 1)
    calls_through(gate, OTHER_TENANT, 1)
    with pytest.raises(RateLimited) as refused:
        gate.acquire(OTHER_TENANT)
    assert refused.value.problem == "appminute"
    minute = f"MIN#{int(clock.now // 60)}"
    assert live_tickets(OTHER_TENANT) == 1  # the refused call took no minute ticket
    assert counted("app", minute) == 2
    assert slots_held(OTHER_TENANT) == []

    day_gate = make_gate(clock, day_limit=1)
    calls_through(day_gate, "tenant-c", 1)
    with pytest.raises(RateLimited) as refused:
        day_gate.acquire("tenant-c")
    assert refused.value.problem == "day"
    assert live_tickets("tenant-c") == 1
    assert counted("app", minute) == 3
    assert slots_held("tenant-c") == []


# ---- calls in flight -------------------------------------------------------------------------
def test_five_in_flight_then_the_sixth_is_refused_until_one_is_released(dynamodb, clock):
    gate = make_gate(clock)
    permits = [gate.acquire(TENANT) for _ in range(5)]
    assert sorted(p.slot for p in permits) == [0, 1, 2, 3, 4]
    started = clock.now
    with pytest.raises(RateLimited) as refused:
        make_gate(clock).acquire(TENANT)
    assert refused.value.problem == "concurrent"
    assert 0 < refused.value.retry_after <= 1.0
    assert clock.now - started <= 0.2 + 0.1  # it polled only for its small bound

    gate.release(permits[2])
    sixth = make_gate(clock).acquire(TENANT)
    assert sixth.slot == permits[2].slot
    with pytest.raises(RateLimited):
        gate.acquire(TENANT)


def test_expired_permits_are_not_counted_and_their_late_release_frees_nothing(dynamodb, clock):
    gate = make_gate(clock, lease_seconds=20)
    dead = [gate.acquire(TENANT) for _ in range(5)]  # a process died holding all five
    clock.now += 21  # their leases lapse (still the same minute)

    survivor = make_gate(clock)
    alive = [survivor.acquire(TENANT) for _ in range(5)]
    for permit in dead:  # the dead process's late releases must not free the new holders' slots
        gate.release(permit)
    with pytest.raises(RateLimited) as refused:
        survivor.acquire(TENANT)
    assert refused.value.problem == "concurrent"
    survivor.release(alive[0])
    survivor.acquire(TENANT)


def test_a_slot_frees_itself_while_acquire_polls(dynamodb, clock):
    gate = make_gate(clock, lease_seconds=1.0, max_wait_seconds=2.0)
    for _ in range(5):
        gate.acquire(TENANT)
    make_gate(clock, max_wait_seconds=2.0).acquire(TENANT)  # polls until a lease lapses
    assert START + 1.0 <= clock.now <= START + 2.0


# ---- day budget ------------------------------------------------------------------------------
def test_day_budget_defaults_to_5000_and_is_configurable(dynamodb, clock):
    assert make_gate(clock).day_limit == 5000
    gate = make_gate(clock, day_limit=3)
    calls_through(gate, TENANT, 3)
    with pytest.raises(RateLimited) as refused:
        gate.acquire(TENANT)
    assert refused.value.problem == "day"
    midnight = datetime(2026, 3, 3, tzinfo=UTC).timestamp()
    assert refused.value.retry_after == pytest.approx(midnight - clock.now, abs=0.01)

    clock.now = midnight + 1
    calls_through(gate, TENANT, 3)


# ---- Xero's answers --------------------------------------------------------------------------
def test_429_with_retry_after_blocks_every_gate_sharing_the_table(dynamodb, clock):
    worker_a, worker_b = make_gate(clock), make_gate(clock)
    worker_a.observe(TENANT, {"retry-after": "30", "X-Rate-Limit-Problem": "MINUTE"}, 429)
    with pytest.raises(RateLimited) as refused:
        worker_b.acquire(TENANT)
    assert refused.value.problem == "minute"
    assert refused.value.retry_after == pytest.approx(30, abs=0.01)
    worker_b.acquire(OTHER_TENANT)  # another organisation is not blocked

    clock.now += 30
    worker_b.release(worker_b.acquire(TENANT))


def test_a_shorter_block_never_cuts_a_longer_one(dynamodb, clock):
    worker_a, worker_b = make_gate(clock), make_gate(clock)
    worker_a.observe(TENANT, {"Retry-After": "7200", "X-Rate-Limit-Problem": "Day"}, 429)
    worker_a.observe(TENANT, {"Retry-After": "5", "X-Rate-Limit-Problem": "minute"}, 429)
    clock.now += 10
    with pytest.raises(RateLimited) as refused:
        worker_b.acquire(TENANT)
    assert refused.value.problem == "day"
    assert refused.value.retry_after == pytest.approx(7190, abs=0.01)


def test_concurrent_429_without_retry_after_blocks_briefly(dynamodb, clock):
    gate = make_gate(clock)
    gate.observe(TENANT, {"X-Rate-Limit-Problem": "Concurrent"}, 429)
    with pytest.raises(RateLimited) as refused:
        make_gate(clock).acquire(TENANT)
    assert refused.value.problem == "concurrent"
    assert 0 < refused.value.retry_after <= 1.0
    clock.now += 1
    make_gate(clock).acquire(TENANT)


def test_min_limit_remaining_zero_blocks_for_a_rolling_minute(dynamodb, clock):
    gate = make_gate(clock, minute_margin_seconds=0.0)
    calls_through(gate, TENANT, 3)
    clock.now += 10
    gate.observe(TENANT, {"X-MinLimit-Remaining": "0", "X-DayLimit-Remaining": "4900"}, 200)
    with pytest.raises(RateLimited) as refused:
        make_gate(clock, minute_margin_seconds=0.0).acquire(TENANT)
    assert refused.value.problem == "minute"
    assert refused.value.retry_after == pytest.approx(50, abs=0.01)  # our own 3 age out first
    clock.now += 50
    calls_through(make_gate(clock, minute_margin_seconds=0.0), TENANT, 3)
    with pytest.raises(RateLimited):  # the others Xero told of were stamped when we heard of them
        make_gate(clock, minute_margin_seconds=0.0).acquire(TENANT)
    clock.now += 10
    calls_through(make_gate(clock, minute_margin_seconds=0.0), TENANT, 57)


def test_xero_numbers_win_when_fewer_calls_remain_than_we_counted(dynamodb, clock):
    gate = make_gate(clock)
    calls_through(gate, TENANT, 1)
    gate.observe(TENANT, {"X-MinLimit-Remaining": "5"}, 200)  # other callers used 54 of the 60
    calls_through(make_gate(clock), TENANT, 5)
    with pytest.raises(RateLimited):
        gate.acquire(TENANT)


def test_remaining_figures_above_our_count_change_nothing(dynamodb, clock):
    gate = make_gate(clock, minute_limit=8)
    calls_through(gate, TENANT, 4)
    gate.observe(TENANT, {"X-MinLimit-Remaining": "7"}, 200)  # Xero's window reset before ours
    calls_through(make_gate(clock, minute_limit=8), TENANT, 4)
    with pytest.raises(RateLimited):
        gate.acquire(TENANT)


def test_day_limit_remaining_lowers_the_day_budget(dynamodb, clock):
    gate = make_gate(clock)
    calls_through(gate, TENANT, 1)
    gate.observe(TENANT, {"x-daylimit-remaining": "2"}, 200)
    calls_through(make_gate(clock), TENANT, 2)
    with pytest.raises(RateLimited) as refused:
        gate.acquire(TENANT)
    assert refused.value.problem == "day"


# ---- app-wide --------------------------------------------------------------------------------
def test_app_minute_limit_spans_every_tenant(dynamodb, clock):
    assert make_gate(clock).app_minute_limit == 10_000
    gate = make_gate(clock, app_minute_limit=3)
    calls_through(gate, TENANT, 2)
    calls_through(gate, OTHER_TENANT, 1)
    with pytest.raises(RateLimited) as refused:
        gate.acquire("tenant-c")
    assert refused.value.problem == "appminute"
    clock.now += 50
    calls_through(gate, "tenant-c", 1)


def test_appminute_429_blocks_every_tenant(dynamodb, clock):
    make_gate(clock).observe(TENANT, {"Retry-After": "12", "X-Rate-Limit-Problem": "AppMinute"}, 429)
    for tenant in (TENANT, OTHER_TENANT):
        with pytest.raises(RateLimited) as refused:
            make_gate(clock).acquire(tenant)
        assert refused.value.problem == "appminute"
        assert refused.value.retry_after == pytest.approx(12, abs=0.01)


def test_app_min_limit_remaining_is_trusted(dynamodb, clock):
    gate = make_gate(clock)
    calls_through(gate, TENANT, 1)
    gate.observe(TENANT, {"X-AppMinLimit-Remaining": "0"}, 200)
    with pytest.raises(RateLimited) as refused:
        make_gate(clock).acquire(OTHER_TENANT)
    assert refused.value.problem == "appminute"


# ---- tenants ---------------------------------------------------------------------------------
def test_two_tenants_are_independent(dynamodb, clock):
    gate = make_gate(clock, minute_limit=7)
    calls_through(gate, TENANT, 7)
    held = [gate.acquire(OTHER_TENANT) for _ in range(5)]
    with pytest.raises(RateLimited) as refused:
        gate.acquire(TENANT)
    assert refused.value.problem == "minute"
    with pytest.raises(RateLimited) as refused:
        gate.acquire(OTHER_TENANT)
    assert refused.value.problem == "concurrent"
    gate.release(held[0])
    calls_through(gate, OTHER_TENANT, 1)  # 6 of its 7
    with pytest.raises(RateLimited):
        gate.acquire(TENANT)


# ---- many processes at once ------------------------------------------------------------------
def test_twenty_threads_never_have_more_than_five_calls_in_flight(dynamodb, atomic_moto):
    rounds = 3
    gates = [SharedRateGate(new_table(), minute_limit=1000, max_wait_seconds=10.0, poll_seconds=0.1)
             for _ in range(20)]
    in_flight, peak, granted, refused = 0, 0, 0, 0
    lock = threading.Lock()
    start = threading.Barrier(len(gates))

    def worker(gate: SharedRateGate) -> None:
        nonlocal in_flight, peak, granted, refused
        start.wait()
        for _ in range(rounds):
            try:
                permit = gate.acquire(TENANT)
            except RateLimited:
                with lock:
                    refused += 1
                continue
            with lock:
                in_flight += 1
                granted += 1
                peak = max(peak, in_flight)
            time.sleep(0.1)  # the Xero call: long enough that waiters pile up on every freed slot
            with lock:
                in_flight -= 1
            gate.release(permit)

    threads = [threading.Thread(target=worker, args=(gate,)) for gate in gates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    assert 1 <= peak <= 5
    assert granted + refused == 20 * rounds
    assert granted >= 20  # the polling bound is generous: most calls got through
    assert slots_held(TENANT) == []  # every slot given back


# ---- plugged into the client -----------------------------------------------------------------
class ScriptedSession:
    """Answers the client's calls in turn (no `responses` here: moto owns the requests mock)."""

    def __init__(self, *answers: tuple[int, dict[str, str]]):
        self.answers = list(answers)
        self.sent = 0

    def request(self, method, url, **kwargs):
        self.sent += 1
        status, headers = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(headers)
        response._content = b'{"Contacts": [{"ContactID": "c-1"}]}' if status == 200 else b"{}"
        return response


def test_a_429_seen_by_one_client_stops_the_other_instances_at_once(dynamodb, clock):
    session = ScriptedSession((429, {"Retry-After": "40", "X-Rate-Limit-Problem": "minute"}))
    first = XeroClient("http://127.0.0.1:9", TENANT, lambda force: "token", session=session,
                       gate=make_gate(clock), sleep=clock.sleep)
    with pytest.raises(RateLimited):  # 40 s is longer than the client may wait
        first.upsert_batch("Contacts", [{"Name": "A"}], idempotency_key="k")

    idle = ScriptedSession()
    second = XeroClient("http://127.0.0.1:9", TENANT, lambda force: "token", session=idle,
                        gate=make_gate(clock), sleep=clock.sleep)
    with pytest.raises(RateLimited) as refused:
        second.get("Contacts")
    assert refused.value.problem == "minute" and refused.value.retry_after == pytest.approx(40, abs=0.01)
    assert idle.sent == 0
    assert slots_held(TENANT) == []  # the first client's permit was released


def test_xeros_remaining_zero_seen_by_the_client_holds_the_next_call(dynamodb, clock):
    session = ScriptedSession((200, {"X-MinLimit-Remaining": "0", "X-DayLimit-Remaining": "4000"}))
    client = XeroClient("http://127.0.0.1:9", TENANT, lambda force: "token", session=session,
                        gate=make_gate(clock), sleep=clock.sleep)
    assert client.upsert_batch("Contacts", [{"Name": "A"}], idempotency_key="k") == [{"ContactID": "c-1"}]
    with pytest.raises(RateLimited) as refused:
        client.get("Contacts")
    assert refused.value.problem == "minute"
    assert session.sent == 1
