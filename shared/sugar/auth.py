"""Sugar OAuth2 tokens: one set per integration user and platform, shared by every worker.

Sugar keeps one live token per user per platform: a second password login on the same platform
logs the first out, and a refresh invalidates the earlier refresh token. So logins and refreshes
are serialised exactly as Xero's refreshes are (``shared/xero/auth.py``): a worker that finds
no usable token first takes a short lease with a compare-and-set on the token item's version;
only the lease holder calls ``/oauth2/token`` (refresh grant first, password grant if that is
refused), and it stores the new set before anyone uses it. The others wait for the new version.

A refused password login is remembered for a minute so that a fleet of workers does not hammer
Sugar (and lock the integration user out) with the same wrong credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.observability import logger
from shared.sugar.errors import SugarAuthError, SugarError, sugar_error
from shared.sugar.token_cache import SugarTokenCache
from shared.sugar.transport import SugarTransport, decode_json

EXPIRY_MARGIN_SECONDS = 60
LEASE_SECONDS = 30
LEASE_POLL_SECONDS = 0.2
LOGIN_REFUSED_PAUSE_SECONDS = 60
DEFAULT_EXPIRES_IN = 3600
DEFAULT_REFRESH_EXPIRES_IN = 14 * 86400  # Sugar's stock refresh-token lifetime
TOKEN_PATH = "/oauth2/token"


class SugarTokens:
    def __init__(self, cache: SugarTokenCache, key: str, *, token_url: str, transport: SugarTransport,
                 username: str, password: str, platform: str, client_id: str, client_secret: str,
                 clock: Callable[[], float], sleep: Callable[[float], None]):
        self._cache = cache
        self._key = key
        self._token_url = token_url
        self._transport = transport
        self._username = username
        self._password = password
        self._platform = platform
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._sleep = sleep
        self._held: dict[str, Any] | None = None
        self.password_logins = 0
        self.refreshes = 0

    def __repr__(self) -> str:  # never show the credentials held here
        return f"SugarTokens({self._key!r})"

    @property
    def token_calls(self) -> int:
        return self.password_logins + self.refreshes

    def access_token(self, *, rejected: str | None = None) -> str:
        """A usable access token. ``rejected``: the token Sugar just answered 401 to; a stored
        token other than it is used as it is (another worker renewed), otherwise it is renewed."""
        if rejected is None and self._usable(self._held):
            return self._held["access_token"]  # type: ignore[index]
        deadline = self._clock() + 2 * LEASE_SECONDS
        while self._clock() < deadline:
            item = self._cache.get(self._key)
            now = self._clock()
            if item and float(item.get("login_refused_until", 0)) > now:
                raise SugarAuthError(
                    "Sugar refused the integration user's login moments ago; check SUGAR_USERNAME, "
                    "SUGAR_PASSWORD and SUGAR_PLATFORM", status=401,
                    label=item.get("login_refused_label"), retryable=False)
            if self._usable(item) and item["access_token"] != rejected:  # type: ignore[index]
                self._held = item
                return item["access_token"]  # type: ignore[index]
            version = int(item["version"]) if item else None
            lease_free = not item or float(item.get("lease_until", 0)) < now
            if lease_free and self._cache.put(
                    self._key, {**_stored(item), "lease_until": int(now) + LEASE_SECONDS},
                    expected_version=version):
                return self._renew_under_lease((version or 0) + 1, item)
            self._sleep(LEASE_POLL_SECONDS)  # another worker is logging in: wait for its token
        raise SugarError("timed out waiting for another worker's Sugar login", label="login_wait_timeout",
                         retryable=True)

    def _usable(self, item: dict[str, Any] | None) -> bool:
        return bool(item and item.get("access_token")
                    and float(item.get("access_expires_at", 0)) > self._clock() + EXPIRY_MARGIN_SECONDS)

    def _renew_under_lease(self, lease_version: int, previous: dict[str, Any] | None) -> str:
        try:
            answer = self._grant_under_lease(lease_version, previous)
        except SugarAuthError:
            raise  # the refusal was recorded under the lease
        except Exception:
            # Give the lease back so the next worker can try at once.
            self._cache.put(self._key, {**_stored(previous), "lease_until": 0},
                            expected_version=lease_version)
            raise
        now = int(self._clock())
        token = {
            "access_token": answer["access_token"],
            "refresh_token": answer.get("refresh_token"),
            "access_expires_at": now + int(answer.get("expires_in") or DEFAULT_EXPIRES_IN),
            "refresh_expires_at": now + int(answer.get("refresh_expires_in") or DEFAULT_REFRESH_EXPIRES_IN),
            "status": "connected",
            "renewed_at": now,
            "lease_until": 0,
        }
        token = {k: v for k, v in token.items() if v is not None}
        if not self._cache.put(self._key, token, expected_version=lease_version):
            raise SugarError("lost the Sugar token lease while logging in", label="lease_lost",
                             retryable=True)
        self._held = {**token, "version": lease_version + 1}
        return token["access_token"]

    def _grant_under_lease(self, lease_version: int, previous: dict[str, Any] | None) -> dict[str, Any]:
        previous = previous or {}
        refresh_token = previous.get("refresh_token")
        refresh_alive = float(previous.get("refresh_expires_at", 0)) > self._clock() + EXPIRY_MARGIN_SECONDS
        if refresh_token and refresh_alive:
            try:
                self.refreshes += 1
                answer = self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})
                logger.info("Sugar token refreshed", extra={"connection": self._key})
                return answer
            except SugarAuthError as error:
                logger.warning("Sugar refused the refresh token; logging in with the password",
                               extra={"connection": self._key, "label": error.label})
        try:
            self.password_logins += 1
            answer = self._grant({"grant_type": "password", "username": self._username,
                                  "password": self._password})
        except SugarAuthError as error:
            refused = {"status": "login_refused", "lease_until": 0,
                       "login_refused_label": error.label or "need_login",
                       "login_refused_until": int(self._clock()) + LOGIN_REFUSED_PAUSE_SECONDS}
            self._cache.put(self._key, refused, expected_version=lease_version)
            logger.error("Sugar refused the integration user's login",
                         extra={"connection": self._key, "label": error.label, "status": error.status})
            raise
        logger.info("Sugar login", extra={"connection": self._key})
        return answer

    def _grant(self, form: dict[str, str]) -> dict[str, Any]:
        body = {**form, "client_id": self._client_id, "client_secret": self._client_secret,
                "platform": self._platform}
        response = self._transport.send("POST", self._token_url, log_path=TOKEN_PATH, body=body)
        try:
            contents: Any = decode_json(response)
            fallback = ""
        except ValueError:
            contents, fallback = None, response.text
        where = f"POST {TOKEN_PATH} ({form['grant_type']} grant)"
        if response.status_code in (400, 401):
            # Sugar's refusals of a grant (wrong password, spent refresh token) come as 400 or 401.
            error = sugar_error(response.status_code, contents, where=where, fallback_text=fallback)
            raise SugarAuthError(error.message, status=error.status, label=error.label, retryable=False)
        if response.status_code >= 400:
            raise sugar_error(response.status_code, contents, where=where, fallback_text=fallback)
        if not isinstance(contents, dict) or not contents.get("access_token"):
            raise SugarError(f"{where}: Sugar answered without an access token", label="bad_token_answer",
                             retryable=True)
        return contents


def _stored(item: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (item or {}).items() if k != "version"}
