"""Onboarding against the local stack through the connector's real flow, as an administrator's
browser walks it after `sugar-xero connect`: ``GET /xero/connect`` with the admin token (a
cookie bound to a single-use state, a PKCE challenge), the emulated Xero sign-in (which grants
at once), then ``GET /xero/callback`` with that cookie. The callback exchanges the code, reads
Xero's ``/connections`` and records every organisation the user authorised.

Used by the demo and the end-to-end tests; loopback only.
"""

from __future__ import annotations

from typing import Any

import requests


class OnboardingFailed(RuntimeError):
    pass


def connect_through_browser_flow(api_url: str, admin_token: str, *, timeout: float = 15.0,
                                 session: requests.Session | None = None) -> dict[str, Any]:
    """Walk the flow; returns the callback's JSON answer (``status``, ``tenants``, ``message``)."""
    http = session or requests.Session()
    api_url = api_url.rstrip("/")
    start = http.get(f"{api_url}/xero/connect", params={"token": admin_token}, allow_redirects=False,
                     timeout=timeout)
    if start.status_code != 302 or "Set-Cookie" not in start.headers:
        raise OnboardingFailed(f"/xero/connect answered {start.status_code}: {start.text[:300]}")
    # The cookie is Secure (a browser sends it to a loopback http:// origin; Python's cookie jar
    # does not), so it is carried by hand, exactly as set.
    cookie = start.headers["Set-Cookie"].split(";", 1)[0]
    signin = http.get(start.headers["Location"], allow_redirects=False, timeout=timeout)
    if signin.status_code != 302 or "Location" not in signin.headers:
        raise OnboardingFailed(f"Xero's sign-in answered {signin.status_code}: {signin.text[:300]}")
    callback = http.get(signin.headers["Location"], headers={"Cookie": cookie, "Accept": "application/json"},
                        allow_redirects=False, timeout=timeout)
    if callback.status_code != 200:
        raise OnboardingFailed(f"/xero/callback answered {callback.status_code}: {callback.text[:300]}")
    return callback.json()
