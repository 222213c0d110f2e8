"""Deadline-aware workers: retries and HTTP timeouts are planned against the invocation's
remaining time, and what cannot finish is handed back (a retryable error the use cases turn
into a deferred message) before Lambda's timeout, never cut off half-way. A fake clock and a
slow Xero / Sugar: every call takes its whole timeout and then fails."""

from __future__ import annotations

import pytest
import requests

from shared.backoff import FINISH_SECONDS, MIN_CALL_SECONDS, Deadline, current_deadline, deadline_of
from shared.errors import XeroError
from shared.sugar.errors import SugarError
from shared.sugar.transport import SugarTransport
from shared.xero.client import XeroClient


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Context:
    def __init__(self, clock: Clock, millis: int):
        self._end = clock.now + millis / 1000
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - self._clock.now) * 1000)


class SlowService(requests.Session):
    """Answers nothing within the timeout it is given (the clock moves by that much), or a 503
    after a second when ``answer_503``."""

    def __init__(self, clock: Clock, *, answer_503: bool = False):
        super().__init__()
        self.clock = clock
        self.answer_503 = answer_503
        self.timeouts: list[float] = []

    def request(self, method, url, **kwargs):  # type: ignore[override]
        self.timeouts.append(kwargs["timeout"])
        if self.answer_503:
            self.clock.sleep(1.0)
            response = requests.Response()
            response.status_code, response._content, response.url = 503, b"{}", url
            return response
        self.clock.sleep(kwargs["timeout"])
        raise requests.Timeout("slow")


@pytest.mark.parametrize("answer_503", [False, True])
@pytest.mark.parametrize("remaining_ms", [60_000, 20_000, 7_500])
def test_a_slow_xero_never_outlives_the_function(remaining_ms, answer_503):
    clock = Clock()
    context = Context(clock, remaining_ms)
    xero = SlowService(clock, answer_503=answer_503)
    client = XeroClient("http://127.0.0.1:9", "tenant", lambda force: "token", session=xero, sleep=clock.sleep,
                        max_wait_seconds=60.0, timeout=30.0)
    with deadline_of(context, clock=clock) as deadline, pytest.raises(XeroError) as raised:
        client.get("Invoices")
    assert raised.value.retryable  # the use cases defer the message: nothing is lost
    assert context.get_remaining_time_in_millis() >= FINISH_SECONDS * 1000  # time left to defer and answer
    assert all(t <= remaining_ms / 1000 - FINISH_SECONDS for t in xero.timeouts)
    assert deadline is not None and current_deadline() is None  # only for the batch


def test_without_a_deadline_the_client_keeps_its_own_limits():
    clock = Clock()
    xero = SlowService(clock)
    client = XeroClient("http://127.0.0.1:9", "tenant", lambda force: "token", session=xero, sleep=clock.sleep,
                        timeout=30.0, max_attempts=3)
    with pytest.raises(XeroError):
        client.get("Invoices")
    assert xero.timeouts == [30.0, 30.0, 30.0]


def test_no_call_is_started_without_time_for_it():
    clock = Clock()
    xero = SlowService(clock)
    client = XeroClient("http://127.0.0.1:9", "tenant", lambda force: "token", session=xero, sleep=clock.sleep)
    context = Context(clock, int((FINISH_SECONDS + MIN_CALL_SECONDS - 0.5) * 1000))
    with deadline_of(context, clock=clock), pytest.raises(XeroError, match="deferred before the function's timeout"):
        client.get("Invoices")
    assert xero.timeouts == []


@pytest.mark.parametrize("answer_503", [False, True])
def test_a_slow_sugar_never_outlives_the_function(answer_503):
    clock = Clock()
    context = Context(clock, 20_000)
    sugar = SlowService(clock, answer_503=answer_503)
    transport = SugarTransport(sugar, sleep=clock.sleep, max_attempts=4, max_wait_seconds=60.0, timeout=30.0)
    with deadline_of(context, clock=clock), pytest.raises(SugarError) as raised:
        transport.send("GET", "http://127.0.0.1:9/rest/v11/Accounts/a", log_path="/Accounts/a")
    assert raised.value.retryable
    assert context.get_remaining_time_in_millis() >= FINISH_SECONDS * 1000


def test_a_deadline_reads_the_lambda_context():
    clock = Clock()
    deadline = Deadline.from_context(Context(clock, 60_000), clock)
    assert deadline is not None and deadline.remaining() == pytest.approx(60 - FINISH_SECONDS)
    assert deadline.call_timeout(30.0) == 30.0
    clock.sleep(40)
    assert deadline.call_timeout(30.0) == pytest.approx(15.0) and deadline.allows(10.0)
    assert not deadline.allows(14.0)
    assert Deadline.from_context(object()) is None


def test_a_token_refresh_is_not_started_or_awaited_past_the_deadline():
    from shared.xero.auth import XeroTokens

    class Table:
        def get_token(self, connection_id):
            return {"version": 1, "lease_until": 10 ** 12}  # someone else holds the lease, forever

        def put_token(self, *args, **kwargs):
            raise AssertionError("nothing is written this close to the deadline")

    clock = Clock()
    tokens = XeroTokens(Table(), "default", identity_url="http://127.0.0.1:9/token", client_id="i",
                        client_secret="s", session=SlowService(clock), clock=clock, sleep=clock.sleep)
    with deadline_of(Context(clock, 8_000), clock=clock), pytest.raises(XeroError) as raised:
        tokens.access_token()
    assert raised.value.retryable and clock.now - 1000.0 < 8.0 - FINISH_SECONDS
