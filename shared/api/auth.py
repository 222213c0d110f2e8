"""Authentication of CRM callouts (``design/api-contract.md``): any one of a bearer token, an
``X-Sugar-Signature`` HMAC of the raw body, or ``?token=`` (stock Sugar hooks cannot send headers).
All comparisons are constant-time; nothing here logs a credential."""

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


def crm_request_is_authentic(*, headers: Mapping[str, str] | None, query: Mapping[str, str] | None,
                             raw_body: bytes, crm_token: str, signing_secret: str) -> bool:
    authorization = _header(headers, "authorization") or ""
    if authorization[:7].lower() == "bearer " and hmac.compare_digest(
            authorization[7:].strip().encode(), crm_token.encode()):
        return True
    signature = (_header(headers, "x-sugar-signature") or "").strip().lower()
    if signature and hmac.compare_digest(signature.encode(),
                                         sugar_signature(raw_body, signing_secret).encode()):
        return True
    token = (query or {}).get("token")
    return bool(token) and hmac.compare_digest(token.encode(), crm_token.encode())
