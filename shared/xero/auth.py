"""Xero OAuth2 token sets: one per connection, stored once in the sync table.

Refreshes are serialised: a worker that finds the token expired first takes a short lease with a
conditional write on the token's version; only the lease holder calls Xero's token endpoint, and
it persists the new set (refresh tokens rotate on every refresh) before anyone uses it. The
others wait for the new version. Without a refresh token (Custom Connections, the local
emulator) the client-credentials grant is used under the same lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import requests

from shared.backoff import call_timeout, time_for_a_call
from shared.errors import ConnectionNotReady, XeroError
from shared.observability import MetricNames, logger, metrics

EXPIRY_MARGIN_SECONDS = 60
LEASE_SECONDS = 20
TOKEN_CALL_TIMEOUT_SECONDS = LEASE_SECONDS - 5  # the call must end while we still hold the lease


class TokenTable(Protocol):
    def get_token(self, connection_id: str) -> dict[str, Any] | None: ...

    def put_token(self, connection_id: str, token: dict[str, Any], *,
                  expected_version: int | None) -> bool: ...


class XeroTokens:
    def __init__(self, table: TokenTable, connection_id: str, *, identity_url: str, client_id: str,
                 client_secret: str, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self._table = table
        self._connection_id = connection_id
        self._identity_url = identity_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._session = session or requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._cached: dict[str, Any] | None = None
        self.token_calls = 0

    def __call__(self, force_refresh: bool = False) -> str:
        return self.access_token(force_refresh=force_refresh)

    def access_token(self, *, force_refresh: bool = False) -> str:
        if not force_refresh and self._usable(self._cached):
            return self._cached["access_token"]  # type: ignore[index]
        # After a 401 the token we used is stale, whatever the version counter says (taking the
        # lease bumps the version without changing the token).
        stale_token = (self._cached or {}).get("access_token") if force_refresh else None
        deadline = self._clock() + 2 * LEASE_SECONDS
        while self._clock() < deadline and time_for_a_call():  # and the invocation's own deadline
            item = self._table.get_token(self._connection_id)
            if item and item.get("status") == "disconnected":
                raise ConnectionNotReady("the Xero connection is disconnected; run `sugar-xero connect`")
            fresh_enough = item and (stale_token is None or item.get("access_token") != stale_token)
            if fresh_enough and self._usable(item):
                self._cached = item
                return item["access_token"]  # type: ignore[index]
            version = int(item["version"]) if item else None
            lease_free = not item or float(item.get("lease_until", 0)) < self._clock()
            if lease_free and self._table.put_token(
                    self._connection_id,
                    {**(item or {}), "lease_until": int(self._clock()) + LEASE_SECONDS},
                    expected_version=version):
                return self._refresh_under_lease((version or 0) + 1, item)
            self._sleep(0.2)  # someone else is refreshing: wait for their new version
        raise XeroError("timed out waiting for another worker's token refresh", retryable=True)

    def _usable(self, item: dict[str, Any] | None) -> bool:
        if not item or not item.get("access_token"):
            return False
        # ``expires_at``: sets written before the rename (the TTL attribute; see _refresh_under_lease)
        expiry = item.get("access_expires_at", item.get("expires_at", 0))
        return float(expiry) > self._clock() + EXPIRY_MARGIN_SECONDS

    def _refresh_under_lease(self, lease_version: int, previous: dict[str, Any] | None) -> str:
        refresh_token = (previous or {}).get("refresh_token")
        form = ({"grant_type": "refresh_token", "refresh_token": refresh_token} if refresh_token
                else {"grant_type": "client_credentials"})
        self.token_calls += 1
        metrics.add_metric(name=MetricNames.TOKEN_REFRESHES, unit="Count", value=1)
        try:
            response = self._session.post(self._identity_url, data=form,
                                          auth=(self._client_id, self._client_secret),
                                          timeout=call_timeout(TOKEN_CALL_TIMEOUT_SECONDS))
        except requests.RequestException as error:
            self._give_back_lease(previous, lease_version)
            raise XeroError(f"Xero's token endpoint failed: {type(error).__name__}",
                            retryable=True) from error
        if response.status_code == 400 and "invalid_grant" in response.text:
            self._table.put_token(self._connection_id, {"status": "disconnected",
                                                        "disconnected_at": int(self._clock())},
                                  expected_version=lease_version)
            metrics.add_metric(name=MetricNames.CONNECTION_DISCONNECTED, unit="Count", value=1)
            logger.error("Xero refused the refresh token: connection marked disconnected",
                         extra={"connection": self._connection_id})
            raise ConnectionNotReady("Xero answered invalid_grant: reconnect with `sugar-xero connect`")
        if response.status_code >= 400:
            self._give_back_lease(previous, lease_version)
            raise XeroError(f"Xero's token endpoint answered {response.status_code}", retryable=True)
        answer = response.json()
        token = {
            "access_token": answer["access_token"],
            "refresh_token": answer.get("refresh_token") or refresh_token,
            # Not ``expires_at``: that is the sync table's TTL attribute, and DynamoDB would delete
            # the item (refresh token included) once the 30-minute access token expired.
            "access_expires_at": int(self._clock()) + int(answer.get("expires_in", 1800)),
            "scope": answer.get("scope", ""),
            "status": "connected",
            "lease_until": 0,
        }
        token = {k: v for k, v in token.items() if v is not None}
        if not self._table.put_token(self._connection_id, token, expected_version=lease_version):
            raise XeroError("lost the token lease while refreshing", retryable=True)
        self._cached = {**token, "version": lease_version + 1}
        return token["access_token"]

    def _give_back_lease(self, previous: dict[str, Any] | None, lease_version: int) -> None:
        """The refresh failed without a verdict on the grant: let the next worker try at once."""
        self._table.put_token(self._connection_id, {**(previous or {}), "lease_until": 0},
                              expected_version=lease_version)
