"""Xero OAuth2 onboarding: one operator, once per Xero organisation.

``start`` issues a single-use ``state`` (stored hashed, 10 minutes), a PKCE ``code_verifier``
(RFC 7636, S256; kept server side beside the state, only its challenge leaves) and a browser
nonce for a cookie, and answers the authorise URL. ``finish`` consumes the state only when the
callback comes from the browser that started the flow (the nonce's hash is part of the
conditional delete), exchanges the code with the verifier, stores the token set in the one
place ``shared.xero.auth.XeroTokens`` reads it from, and records the organisations it reaches.

Why the cookie: a ``state`` alone only proves that *someone* started a flow. Bound to the
browser, a leaked or forwarded callback URL (or a script holding a state) cannot finish it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.errors import BadInput
from shared.observability import logger
from shared.xero.oauth import SCOPES, TokenSet, authorize_url, new_code_verifier, new_state, state_hash

STATE_TTL_SECONDS = 600
_TOKEN_WRITE_ATTEMPTS = 5


class OAuthStateStore(Protocol):
    def put_state(self, state_hash: str, *, expires_at: int, **fields: Any) -> None: ...

    def consume_state(self, state_hash: str, *, now: int, browser_hash: str) -> tuple[str, dict[str, Any]]:
        """("ok" | "expired" | "unknown" | "wrong_browser", the stored fields)."""


class Identity(Protocol):
    def exchange_code(self, code: str, redirect_uri: str, *, code_verifier: str | None = None) -> TokenSet: ...

    def connections(self, access_token: str) -> list[dict[str, Any]]: ...


class ConnectionStore(Protocol):
    def get_token(self, connection_id: str) -> dict[str, Any] | None: ...

    def put_token(self, connection_id: str, token: dict[str, Any], *,
                  expected_version: int | None) -> bool: ...

    def put_connection(self, connection_id: str, **fields: Any) -> None: ...


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    tenant_name: str
    tenant_type: str
    selected: bool = False


@dataclass
class Connected:
    connection_id: str
    token_version: int
    tenants: list[Tenant] = field(default_factory=list)
    problem: str | None = None


@dataclass(frozen=True)
class Started:
    location: str  # where the administrator's browser goes (Xero's sign-in)
    browser_nonce: str = field(repr=False)  # the cookie value that binds the state to this browser


def start(*, states: OAuthStateStore, authorize_base_url: str, client_id: str, redirect_uri: str,
          connection_id: str, clock: Callable[[], float] = time.time) -> Started:
    """The URL to send the administrator's browser to, and the nonce its cookie carries."""
    state, verifier, nonce = new_state(), new_code_verifier(), new_state()
    now = int(clock())
    states.put_state(state_hash(state), expires_at=now + STATE_TTL_SECONDS, created_at=now,
                     redirect_uri=redirect_uri, connection_id=connection_id,
                     browser_hash=state_hash(nonce), code_verifier=verifier)
    return Started(authorize_url(authorize_base_url, client_id=client_id, redirect_uri=redirect_uri,
                                 state=state, scopes=SCOPES, code_verifier=verifier), nonce)


def consume_state(state: str | None, *, states: OAuthStateStore, browser_nonce: str | None,
                  clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """The stored fields of a valid state, which can then never be used again. A callback from
    another browser (no cookie, another cookie) is refused and leaves the state for the right one."""
    if not state or len(state) > 200:
        raise BadInput("invalid_state", "The callback has no usable state parameter. Start the "
                                        "connection again at /xero/connect.")
    if not browser_nonce or len(browser_nonce) > 200:
        raise BadInput("wrong_browser", "This callback does not come from the browser that opened "
                                        "/xero/connect (its cookie is missing). Finish the sign-in in "
                                        "the same browser, or start again at /xero/connect.", status=403)
    outcome, stored = states.consume_state(state_hash(state), now=int(clock()),
                                           browser_hash=state_hash(browser_nonce))
    if outcome == "ok" and not (stored.get("redirect_uri") and stored.get("code_verifier")):
        outcome = "unknown"  # not one this connector issued
    if outcome == "wrong_browser":
        raise BadInput("wrong_browser", "This callback does not come from the browser that opened "
                                        "/xero/connect. Finish the sign-in in the same browser, or start "
                                        "again at /xero/connect.", status=403)
    if outcome == "expired":
        raise BadInput("expired_state", f"This Xero sign-in took longer than {STATE_TTL_SECONDS // 60} "
                                        "minutes and has expired. Start again at /xero/connect.")
    if outcome != "ok":
        raise BadInput("unknown_state", "This Xero sign-in link is unknown or was used already (each "
                                        "works once). Start again at /xero/connect.")
    return stored


def finish(*, code: str | None, state: str | None, browser_nonce: str | None, xero_error: str | None = None,
           states: OAuthStateStore, identity: Identity, store: ConnectionStore, connection_id: str,
           preferred_tenant_id: str | None = None, clock: Callable[[], float] = time.time) -> Connected:
    stored = consume_state(state, states=states, browser_nonce=browser_nonce, clock=clock)
    if xero_error:
        raise BadInput("xero_declined", f"Xero did not grant access ({xero_error[:64]}): the sign-in was "
                                        "cancelled or refused. Start again at /xero/connect.")
    if not code or len(code) > 2048:
        raise BadInput("missing_code",
                       "The callback has no authorisation code. Start again at /xero/connect.")
    connection_id = str(stored.get("connection_id") or connection_id)
    tokens = identity.exchange_code(code, str(stored["redirect_uri"]), code_verifier=str(stored["code_verifier"]))
    if not tokens.refresh_token:
        logger.warning("Xero granted no refresh token: was offline_access refused?")
    version = _store_token(store, connection_id, tokens, now=int(clock()))
    logger.info("Xero token set stored", extra={"connection": connection_id, "version": version})

    organisations = [c for c in identity.connections(tokens.access_token)
                     if c.get("tenantType", "ORGANISATION") == "ORGANISATION"]
    if not organisations:
        return Connected(connection_id, version, problem=(
            "Xero connected no organisation to this app. Start again at /xero/connect and pick one."))
    ids = [str(c["tenantId"]) for c in organisations]
    chosen = preferred_tenant_id if preferred_tenant_id in ids else ids[0]
    tenants = [Tenant(tenant_id=str(c["tenantId"]), tenant_name=str(c.get("tenantName") or ""),
                      tenant_type=str(c.get("tenantType") or "ORGANISATION"),
                      selected=str(c["tenantId"]) == chosen) for c in organisations]
    selected = next(t for t in tenants if t.selected)
    store.put_connection(connection_id, tenant_id=selected.tenant_id, tenant_name=selected.tenant_name,
                         tenant_type=selected.tenant_type, tenant_count=len(tenants),
                         tenants=[{"tenant_id": t.tenant_id, "tenant_name": t.tenant_name,
                                   "tenant_type": t.tenant_type} for t in tenants])
    if len(tenants) > 1:
        for tenant in tenants:
            store.put_connection(f"{connection_id}#{tenant.tenant_id}", tenant_id=tenant.tenant_id,
                                 tenant_name=tenant.tenant_name, tenant_type=tenant.tenant_type,
                                 parent_connection=connection_id)
    problem = None
    if preferred_tenant_id and preferred_tenant_id not in ids:
        problem = (f"XERO_TENANT_ID {preferred_tenant_id} is not among the organisations Xero connected; "
                   f"using {selected.tenant_name or selected.tenant_id}.")
    elif len(tenants) > 1 and not preferred_tenant_id:
        problem = (f"{len(tenants)} organisations are connected; this CRM writes to "
                   f"{selected.tenant_name or selected.tenant_id}. Set XERO_TENANT_ID to choose another.")
    return Connected(connection_id, version, tenants, problem)


def _store_token(store: ConnectionStore, connection_id: str, tokens: TokenSet, *, now: int) -> int:
    """Write the new set over whatever is there (a disconnected or older set), compare-and-set on
    the version so that a worker refreshing at the same moment cannot be silently overwritten."""
    # ``access_expires_at``, the field XeroTokens reads: ``expires_at`` is the table's TTL
    # attribute, and DynamoDB would delete the whole set (refresh token included) at expiry.
    token = {"access_token": tokens.access_token, "access_expires_at": now + tokens.expires_in,
             "scope": tokens.scope, "status": "connected", "lease_until": 0, "connected_at": now}
    if tokens.refresh_token:
        token["refresh_token"] = tokens.refresh_token
    for _ in range(_TOKEN_WRITE_ATTEMPTS):
        current = store.get_token(connection_id)
        version = int(current["version"]) if current and "version" in current else None
        if store.put_token(connection_id, token, expected_version=version):
            return (version or 0) + 1
    raise BadInput("token_conflict", "The Xero token changed while it was being stored; try the "
                                     "connection again at /xero/connect.", status=409)
