"""Xero OAuth2 authorisation-code flow: the authorise URL, the CSRF ``state``, the code exchange
and the organisations a token reaches (``GET /connections``).

Nothing here logs a code, a token or a secret. Custom Connections need none of this: they use
the client-credentials grant, which ``shared.xero.auth.XeroTokens`` falls back to by itself.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from shared.errors import BadInput, XeroError

# Granular scopes (apps created since March 2026 must use them; the spec file lists old names).
SCOPES = ("openid", "profile", "email", "offline_access", "accounting.contacts", "accounting.invoices",
          "accounting.payments", "accounting.settings.read")
STATE_BYTES = 32
HTTP_TIMEOUT_SECONDS = 10


def new_state() -> str:
    """An unguessable, URL-safe ``state`` (32 random bytes)."""
    return secrets.token_urlsafe(STATE_BYTES)


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def new_code_verifier() -> str:
    """A PKCE ``code_verifier`` (RFC 7636 4.1: 43 to 128 unreserved characters): 64 random bytes."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """The S256 ``code_challenge``: BASE64URL(SHA256(ASCII(code_verifier))), no padding (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(base_url: str, *, client_id: str, redirect_uri: str, state: str,
                  scopes: tuple[str, ...] = SCOPES, code_verifier: str | None = None) -> str:
    fields = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": " ".join(scopes), "state": state}
    if code_verifier:
        fields.update(code_challenge=code_challenge(code_verifier), code_challenge_method="S256")
    query = urlencode(fields)
    return f"{base_url}{'&' if '?' in base_url else '?'}{query}"


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_in: int
    scope: str

    def __repr__(self) -> str:  # never show a token in a traceback or a log line
        return f"TokenSet(expires_in={self.expires_in}, scope={self.scope!r})"


class XeroIdentity:
    """The two identity calls of onboarding."""

    def __init__(self, *, identity_url: str, api_base_url: str, client_id: str, client_secret: str,
                 session: requests.Session | None = None):
        self._identity_url = identity_url
        self._api_base_url = api_base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._session = session or requests.Session()

    def exchange_code(self, code: str, redirect_uri: str, *, code_verifier: str | None = None) -> TokenSet:
        """Raises BadInput when Xero refuses the code (expired, used, wrong redirect URI, a PKCE
        verifier that does not match), XeroError when Xero cannot be reached or fails."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        try:
            response = self._session.post(
                self._identity_url, auth=(self._client_id, self._client_secret),
                data=form,
                headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT_SECONDS)
        except requests.RequestException as error:
            raise XeroError(f"Xero's token endpoint could not be reached: {type(error).__name__}",
                            retryable=True) from error
        if response.status_code in (400, 401):
            reason = _oauth_error(response)
            hint = ("check XERO_CLIENT_ID and XERO_CLIENT_SECRET" if reason == "invalid_client"
                    else "the sign-in may have expired or been used already, or the redirect URI "
                         "is not the one registered for the app")
            raise BadInput("xero_refused_code",
                           f"Xero refused the authorisation code ({reason}): {hint}. "
                           "Start again at /xero/connect.")
        if response.status_code >= 300:
            raise XeroError(f"Xero's token endpoint answered {response.status_code}",
                            status=response.status_code, retryable=True)
        answer = response.json()
        if not answer.get("access_token"):
            raise XeroError("Xero's token endpoint answered without an access token")
        return TokenSet(access_token=str(answer["access_token"]), refresh_token=answer.get("refresh_token"),
                        expires_in=int(answer.get("expires_in") or 1800), scope=str(answer.get("scope", "")))

    def connections(self, access_token: str) -> list[dict[str, Any]]:
        try:
            response = self._session.get(f"{self._api_base_url}/connections",
                                         headers={"Authorization": f"Bearer {access_token}",
                                                  "Accept": "application/json"},
                                         timeout=HTTP_TIMEOUT_SECONDS)
        except requests.RequestException as error:
            raise XeroError(f"Xero's /connections could not be reached: {type(error).__name__}",
                            retryable=True) from error
        if response.status_code >= 300:
            raise XeroError(f"Xero's /connections answered {response.status_code}",
                            status=response.status_code, retryable=response.status_code >= 500)
        answer = response.json()
        return [c for c in answer if isinstance(c, dict) and c.get("tenantId")] if isinstance(answer, list) \
            else []


def _oauth_error(response: requests.Response) -> str:
    try:
        return str(response.json().get("error") or f"HTTP {response.status_code}")[:64]
    except ValueError:
        return f"HTTP {response.status_code}"
