"""The gathering rule (shared/batching.py), on a fake clock and a queue whose saves arrive at set
moments: a lone save goes at once while calls are plentiful; a burst is gathered into full
batches even when it trickles in; scarce calls are used to gather; every wait is bounded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import shared.batching as batching
from shared.batching import Headroom, gather, topped_up

START = datetime(2026, 3, 2, 9, 30, 10, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


class ArrivingQueue:
    """Saves that reach the queue at given moments of ``clock``; ``receive_waiting`` hands out
    what has arrived and not been taken, as a ReceiveMessage with no wait does."""

    def __init__(self, clock: FakeClock, arrivals: list[float]):
        self.clock = clock
        self.pending = [(at, self._message(n)) for n, at in enumerate(sorted(arrivals))]
        self.looks = 0

    @staticmethod
    def _message(n: int) -> dict:
        return {"MessageId": f"a{n}", "ReceiptHandle": f"rh-a{n}", "Body": json.dumps({"job_id": f"a{n}"})}

    def receive_waiting(self, max_messages: int) -> list[dict]:
        self.looks += 1
        ready = [m for at, m in self.pending if at <= self.clock.now][:max_messages]
        taken = {m["MessageId"] for m in ready}
        self.pending = [(at, m) for at, m in self.pending if m["MessageId"] not in taken]
        return ready

    def release(self, handle: str) -> None:
        pass


def every(gap: float, count: int, *, start: float) -> list[float]:
    return [start + gap * n for n in range(count)]


PLENTY = Headroom(calls_left=60)


def test_a_lone_save_goes_after_one_more_look_while_calls_are_plentiful():
    clock = FakeClock()
    queue = ArrivingQueue(clock, [clock.now + 5.0])  # the next save comes much later
    assert gather(queue, 49, headroom=PLENTY, clock=clock, sleep=clock.sleep) == []
    assert queue.looks == 2 and clock.slept == pytest.approx(batching.SETTLE_SECONDS)


def test_the_first_save_of_a_burst_does_not_go_alone():
    """The saves sent with it reach the queue a moment later (they are still in the API): the
    second look finds them and the worker gathers the burst."""
    clock = FakeClock()
    queue = ArrivingQueue(clock, every(0.05, 60, start=clock.now + 0.2))
    found = gather(queue, 49, headroom=PLENTY, clock=clock, sleep=clock.sleep)
    assert len(found) == 49


def test_unknown_headroom_counts_as_plentiful_and_a_failing_read_does_not_hold_the_save():
    clock = FakeClock()

    def broken() -> Headroom:
        raise RuntimeError("DynamoDB unavailable")

    event = {"Records": [{"messageId": "m0", "receiptHandle": "rh-m0", "body": "{}"}]}
    full, added = topped_up(event, ArrivingQueue(clock, []), headroom=broken, clock=clock, sleep=clock.sleep)
    assert added == [] and clock.slept == pytest.approx(batching.SETTLE_SECONDS)


def test_a_burst_that_trickles_in_is_gathered_into_a_full_batch():
    """Saves 0.3 s apart (slower than the 0.1 s between looks, so most looks find nothing): the
    batch still fills to 50 instead of going with what the first looks found."""
    clock = FakeClock()
    queue = ArrivingQueue(clock, every(0.3, 200, start=clock.now))
    found = gather(queue, 49, headroom=PLENTY, clock=clock, sleep=clock.sleep)
    assert len(found) == 49
    assert clock.slept == pytest.approx(0.3 * 48, abs=0.15)  # as long as the 49 took to arrive


def test_a_burst_that_ends_goes_once_it_has_been_quiet_for_a_second():
    clock = FakeClock()
    queue = ArrivingQueue(clock, every(0.2, 20, start=clock.now))
    found = gather(queue, 49, headroom=PLENTY, clock=clock, sleep=clock.sleep)
    assert len(found) == 20
    last_arrival = 0.2 * 19
    assert last_arrival + batching.QUIET_SECONDS - 1e-6 <= clock.slept <= last_arrival + batching.QUIET_SECONDS + 0.2


def test_scarce_calls_are_used_to_gather_even_for_a_lone_save():
    """Few calls left: the save would wait for the gate anyway (here 4 s until a call frees), so
    the worker gathers what arrives meanwhile and sends one fuller batch."""
    clock = FakeClock()
    queue = ArrivingQueue(clock, [clock.now + 1.5, clock.now + 2.0, clock.now + 2.5])
    scarce = Headroom(calls_left=0, next_call_in=4.0)
    found = gather(queue, 49, headroom=scarce, clock=clock, sleep=clock.sleep)
    assert len(found) == 3
    assert 4.0 <= clock.slept <= 4.0 + 0.2  # no longer than the call had to wait anyway

    clock = FakeClock()
    few_left = Headroom(calls_left=batching.PLENTIFUL_CALLS - 1)
    found = gather(ArrivingQueue(clock, [clock.now + 0.5]), 49, headroom=few_left, clock=clock, sleep=clock.sleep)
    assert len(found) == 1 and clock.slept >= batching.QUIET_SECONDS


def test_gathering_is_bounded_whatever_arrives():
    clock = FakeClock()
    queue = ArrivingQueue(clock, every(0.5, 1000, start=clock.now))  # never 50 within the bound
    found = gather(queue, 49, headroom=Headroom(calls_left=0, next_call_in=3600.0), clock=clock, sleep=clock.sleep)
    assert 0 < len(found) < 49
    assert clock.slept <= batching.MAX_GATHER_SECONDS + batching.GATHER_PAUSE_SECONDS


def test_headroom_is_read_from_the_rate_gate_answer():
    def state(minute_used, day_used=0, resets_in=12.5, blocked_until=None):
        return {"minute": {"used": minute_used, "limit": 60, "resets_in_seconds": resets_in},
                "day": {"used": day_used, "limit": 5000}, "blocked_until": blocked_until}

    assert Headroom.from_gate(state(3)) == Headroom(calls_left=57) and Headroom.from_gate(state(3)).plentiful
    assert not Headroom.from_gate(state(45)).plentiful  # 15 left: scarce
    assert Headroom.from_gate(state(60)) == Headroom(calls_left=0, next_call_in=12.5)
    assert Headroom.from_gate(state(0, day_used=4990)).calls_left == 10  # the day's budget counts too
    blocked = Headroom.from_gate(state(1, blocked_until=START + 30), now=START)
    assert blocked.next_call_in == 30 and not blocked.plentiful


def test_headroom_from_a_real_gate_after_calls_were_made(moto_dynamodb):
    from shared.xero.limits import SharedRateGate
    from tests.conftest import SYNC_TABLE_NAME

    clock = FakeClock(START)
    gate = SharedRateGate(moto_dynamodb.resource("dynamodb").Table(SYNC_TABLE_NAME), clock=clock,
                          sleep=clock.sleep, max_wait_seconds=0.2)
    assert Headroom.from_gate(gate.headroom("tenant-a")).plentiful
    for _ in range(45):
        gate.release(gate.acquire("tenant-a"))
    headroom = Headroom.from_gate(gate.headroom("tenant-a"), now=clock.now)
    assert headroom.calls_left == 15 and not headroom.plentiful
