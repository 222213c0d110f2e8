"""Authentication (``design/api-contract.md``).

CRM callouts: any one of a bearer token, an ``X-Sugar-Signature`` HMAC of the raw body, or
``?token=`` (stock Sugar hooks cannot send headers). Onboarding (``/xero/connect``): the
administrator's own secret, bearer or ``?token=``; never the CRM token, which lives in Sugar's
hook URLs. All comparisons are constant-time; nothing here logs a credential."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def sugar_signature(raw_body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    # An unset secret matches nothing, not even an empty credential.
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def token_is_presented(*, headers: Mapping[str, str] | None, query: Mapping[str, str] | None,
                       token: str) -> bool:
    """``Authorization: Bearer <token>`` or ``?token=<token>``."""
    authorization = _header(headers, "authorization") or ""
    if authorization[:7].lower() == "bearer " and _same(authorization[7:].strip(), token):
        return True
    return _same((query or {}).get("token") or "", token)


def crm_request_is_authentic(*, headers: Mapping[str, str] | None, query: Mapping[str, str] | None,
                             raw_body: bytes, crm_token: str, signing_secret: str) -> bool:
    """Either secret may be unset (empty): the other one's way in still works."""
    if token_is_presented(headers=headers, query=query, token=crm_token):
        return True
    signature = (_header(headers, "x-sugar-signature") or "").strip().lower()
    return bool(signing_secret) and _same(signature, sugar_signature(raw_body, signing_secret))
