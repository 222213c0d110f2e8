"""XeroTokens over moto's DynamoDB (the sync table) and a real token endpoint on loopback.

The token endpoint is a small werkzeug server on 127.0.0.1 and a free port rather than a
`responses` mock: moto routes `requests` through its own `responses` registry, which would
swallow or shadow ours. Each worker thread gets its own XeroTokens and table handle, as each
Lambda process would."""

from __future__ import annotations

import json
import socket
import threading
import time
from base64 import b64decode
from collections.abc import Callable
from urllib.parse import parse_qs

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.errors import ConnectionNotReady, XeroError
from shared.state.dynamo import SyncStateTable
from shared.xero.auth import XeroTokens
from tests.conftest import SYNC_TABLE_NAME

CONNECTION = "default"
CLIENT_ID, CLIENT_SECRET = "client-id-1", "client-secret-1"


# ---- a token endpoint on loopback ------------------------------------------------------------
class TokenEndpoint:
    """Xero's identity token endpoint, scripted by ``answer(form) -> (status, body)``."""

    def __init__(self, answer: Callable[[dict[str, str]], tuple[int, dict]], delay: float = 0.0):
        self.answer = answer
        self.delay = delay
        self.calls: list[dict[str, str]] = []
        self.auth: list[str] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/connect/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @Request.application
    def _app(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}
        with self._lock:
            self.calls.append(form)
            self.auth.append(b64decode(request.headers.get("Authorization", "Basic ")[6:]).decode())
        time.sleep(self.delay)  # a slow endpoint widens the window in which racers arrive
        status, body = self.answer(form)
        return Response(json.dumps(body), status=status, content_type="application/json")

    def __enter__(self) -> TokenEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def rotating(form: dict[str, str]) -> tuple[int, dict]:
    """Refresh token ``rN`` gives access token ``aN+1`` and refresh token ``rN+1``; only the
    newest refresh token works (a reused one would mean two workers refreshed)."""
    if form.get("grant_type") == "client_credentials":
        return 200, {"access_token": "cc-access", "expires_in": 1800, "token_type": "Bearer",
                     "scope": "accounting.transactions"}
    n = int(form["refresh_token"].removeprefix("r"))
    return 200, {"access_token": f"a{n + 1}", "refresh_token": f"r{n + 1}", "expires_in": 1800,
                 "token_type": "Bearer", "scope": "offline_access accounting.transactions"}


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def session(moto_dynamodb, atomic_moto):
    return moto_dynamodb


def state(aws) -> SyncStateTable:
    """A table adapter with its own DynamoDB client, as each Lambda process has."""
    return SyncStateTable(SYNC_TABLE_NAME, resource=aws.resource("dynamodb"))


def tokens(aws, endpoint_url: str, **options) -> XeroTokens:
    return XeroTokens(state(aws), CONNECTION, identity_url=endpoint_url, client_id=CLIENT_ID,
                      client_secret=CLIENT_SECRET, session=requests.Session(), **options)


def store_expired_set(aws, *, refresh_token: str | None = "r1") -> None:
    token = {"access_token": "a1", "access_expires_at": int(time.time()) - 10, "status": "connected",
             "lease_until": 0, "scope": "offline_access accounting.transactions"}
    if refresh_token:
        token["refresh_token"] = refresh_token
    assert state(aws).put_token(CONNECTION, token, expected_version=None)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/connect/token"  # nothing listens: connection refused


def run_together(workers: list[Callable[[], str]]) -> list[str | BaseException]:
    results: list[str | BaseException] = [""] * len(workers)
    start = threading.Barrier(len(workers))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = workers[i]()
        except BaseException as error:  # noqa: BLE001 - reported back to the test
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


# ---- the race --------------------------------------------------------------------------------
def test_twenty_workers_find_the_token_expired_and_only_one_refreshes(session):
    store_expired_set(session)
    with TokenEndpoint(rotating, delay=0.4) as endpoint:
        workers = [tokens(session, endpoint.url) for _ in range(20)]
        results = run_together([worker.access_token for worker in workers])

    assert results == ["a2"] * 20
    assert len(endpoint.calls) == 1
    assert endpoint.calls[0] == {"grant_type": "refresh_token", "refresh_token": "r1"}
    assert endpoint.auth == [f"{CLIENT_ID}:{CLIENT_SECRET}"]
    assert sum(worker.token_calls for worker in workers) == 1

    stored = state(session).get_token(CONNECTION)
    assert stored["refresh_token"] == "r2"  # the rotated one, persisted
    assert stored["access_token"] == "a2" and stored["status"] == "connected"
    assert int(stored["lease_until"]) == 0
    # the access token's expiry is not the table's TTL attribute: the set must outlive it
    assert "expires_at" not in stored
    assert abs(int(stored["access_expires_at"]) - (time.time() + 1800)) < 30


def test_workers_forced_to_refresh_by_a_401_share_one_refresh(session):
    store_expired_set(session)
    with TokenEndpoint(rotating, delay=0.4) as endpoint:
        workers = [tokens(session, endpoint.url) for _ in range(10)]
        assert workers[0].access_token() == "a2"  # one refresh; the others read it
        assert {worker.access_token() for worker in workers} == {"a2"}
        # Xero now answers 401 to a2 for all of them at once: one refresh, and nobody is handed
        # a2 again just because the lease moved the version on.
        results = run_together([lambda w=worker: w.access_token(force_refresh=True) for worker in workers])

    assert results == ["a3"] * 10
    assert [call["refresh_token"] for call in endpoint.calls] == ["r1", "r2"]
    assert state(session).get_token(CONNECTION)["refresh_token"] == "r3"


def test_a_usable_token_is_served_without_calling_xero(session):
    store_expired_set(session)
    with TokenEndpoint(rotating) as endpoint:
        first = tokens(session, endpoint.url)
        assert first.access_token() == "a2"
        assert tokens(session, endpoint.url).access_token() == "a2"  # from the table
        assert first.access_token() == "a2"  # from its cache
    assert len(endpoint.calls) == 1


# ---- failures --------------------------------------------------------------------------------
def test_invalid_grant_disconnects_and_later_calls_do_not_reach_xero(session):
    store_expired_set(session)
    with TokenEndpoint(lambda form: (400, {"error": "invalid_grant"})) as endpoint:
        with pytest.raises(ConnectionNotReady):
            tokens(session, endpoint.url).access_token()
        stored = state(session).get_token(CONNECTION)
        assert stored["status"] == "disconnected"
        assert "refresh_token" not in stored

        later = tokens(session, endpoint.url)
        for _ in range(3):
            with pytest.raises(ConnectionNotReady):
                later.access_token()
        with pytest.raises(ConnectionNotReady):
            later.access_token(force_refresh=True)
    assert len(endpoint.calls) == 1


def test_a_token_endpoint_500_gives_the_lease_back_for_the_next_caller(session):
    store_expired_set(session)
    answers = iter([(500, {"error": "server_error"})])

    def flaky(form):
        return next(answers, None) or rotating(form)

    sleeps: list[float] = []
    with TokenEndpoint(flaky) as endpoint:
        with pytest.raises(XeroError) as failed:
            tokens(session, endpoint.url).access_token()
        assert failed.value.retryable is True
        stored = state(session).get_token(CONNECTION)
        assert int(stored["lease_until"]) == 0 and stored["refresh_token"] == "r1"

        # the next caller refreshes at once: no waiting out the failed worker's lease
        assert tokens(session, endpoint.url, sleep=sleeps.append).access_token() == "a2"
    assert sleeps == []
    assert [call["refresh_token"] for call in endpoint.calls] == ["r1", "r1"]


def test_an_unreachable_token_endpoint_gives_the_lease_back_too(session):
    store_expired_set(session)
    with pytest.raises(XeroError) as failed:
        tokens(session, closed_port_url()).access_token()
    assert failed.value.retryable is True
    assert int(state(session).get_token(CONNECTION)["lease_until"]) == 0

    sleeps: list[float] = []
    with TokenEndpoint(rotating) as endpoint:
        assert tokens(session, endpoint.url, sleep=sleeps.append).access_token() == "a2"
    assert sleeps == []


def test_a_dead_lease_holder_is_waited_out_not_forever(session):
    store_expired_set(session)
    # A worker took the lease and died before refreshing.
    holder = state(session)
    item = holder.get_token(CONNECTION)
    assert holder.put_token(CONNECTION, {**item, "lease_until": int(time.time()) + 20},
                            expected_version=int(item["version"]))
    now = [time.time()]
    started = now[0]
    with TokenEndpoint(rotating) as endpoint:
        waiter = tokens(session, endpoint.url, clock=lambda: now[0],
                        sleep=lambda seconds: now.__setitem__(0, now[0] + seconds))
        assert waiter.access_token() == "a2"
    assert 19 <= now[0] - started <= 22  # it waited (on its clock) for the lease to lapse, then refreshed
    assert len(endpoint.calls) == 1


# ---- client credentials ----------------------------------------------------------------------
def test_client_credentials_when_nothing_is_stored(session):
    with TokenEndpoint(rotating) as endpoint:
        assert tokens(session, endpoint.url).access_token() == "cc-access"
    assert endpoint.calls == [{"grant_type": "client_credentials"}]
    assert endpoint.auth == [f"{CLIENT_ID}:{CLIENT_SECRET}"]
    stored = state(session).get_token(CONNECTION)
    assert stored["access_token"] == "cc-access" and "refresh_token" not in stored


def test_client_credentials_when_the_stored_set_has_no_refresh_token(session):
    store_expired_set(session, refresh_token=None)
    with TokenEndpoint(rotating, delay=0.2) as endpoint:
        workers = [tokens(session, endpoint.url) for _ in range(5)]
        results = run_together([worker.access_token for worker in workers])
    assert results == ["cc-access"] * 5
    assert endpoint.calls == [{"grant_type": "client_credentials"}]
