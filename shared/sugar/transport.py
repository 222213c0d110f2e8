"""HTTP to Sugar: JSON in and out (numbers as Decimal, never float), and bounded retries.

Retried here: 429, 502, 503, 504, timeouts and dropped connections, with jittered exponential
backoff that honours ``Retry-After``. A request that is not idempotent (a POST that creates) is
repeated only when Sugar cannot have acted on it: 429/503 answers, or a connection that was never
made; a timeout half-way through would risk a duplicate record, so it is reported instead.
Every other status goes back to the caller, which owns the 401 renewal and the error mapping.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError

from shared.backoff import backoff_seconds, call_timeout, retry_after_seconds, time_for_a_call, time_to_wait
from shared.observability import logger
from shared.sugar.errors import SugarError, SugarUnavailable, error_fields, sugar_error

RETRIED_STATUSES = frozenset({429, 502, 503, 504})
NOT_PROCESSED_STATUSES = frozenset({429, 503})
"""Answers that mean Sugar did nothing, so even a creating POST can be sent again."""



def encode_json(body: Any) -> str:
    """JSON for Sugar; Decimal goes out as a plain decimal string, which Sugar's decimal and
    currency fields accept, so no amount ever passes through float."""
    return json.dumps(body, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot send {type(value).__name__} to Sugar as JSON")


def decode_json(response: requests.Response) -> Any:
    if not response.content:
        return {}
    return json.loads(response.content, parse_float=Decimal)


def _never_connected(error: requests.RequestException) -> bool:
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, ConnectTimeoutError)  # urllib3's NewConnectionError is one too


class SugarTransport:
    def __init__(self, session: requests.Session, *, sleep: Callable[[float], None], max_attempts: int,
                 max_wait_seconds: float, timeout: float):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._session = session
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._max_wait = max_wait_seconds
        self._timeout = timeout
        self.requests_sent = 0

    def send(self, method: str, url: str, *, log_path: str, headers: dict[str, str] | None = None,
             params: dict[str, Any] | None = None, body: Any = None,
             idempotent: bool = True) -> requests.Response:
        """One logical call; returns the first answer that is not retried here.
        ``log_path`` is what logs and errors show: the path without host or query."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = encode_json(body).encode()
            all_headers["Content-Type"] = "application/json"
        where = f"{method} {log_path}"
        retried_statuses = RETRIED_STATUSES if idempotent else NOT_PROCESSED_STATUSES
        for attempt in range(1, self._max_attempts + 1):
            if not time_for_a_call():
                # Near the invocation's deadline: back to the queue rather than cut off mid-way.
                raise SugarUnavailable(f"{where}: deferred before the function's timeout (attempt {attempt})",
                                       label="deadline", retryable=True, retry_after=1.0)
            try:
                self.requests_sent += 1
                response = self._session.request(method, url, params=params, data=data,
                                                 headers=all_headers, timeout=call_timeout(self._timeout))
            except (requests.ConnectionError, requests.Timeout) as error:
                kind = type(error).__name__
                if not idempotent and not _never_connected(error):
                    logger.error("Sugar call failed in transit; not repeated, it may have been applied",
                                 extra={"sugar_call": where, "error": kind})
                    raise SugarError(f"{where}: {kind} after sending; the outcome is unknown",
                                     label="outcome_unknown", retryable=False) from error
                logger.warning("Sugar call failed in transit",
                               extra={"sugar_call": where, "attempt": attempt, "error": kind})
                wait = backoff_seconds(attempt)
                if attempt >= self._max_attempts or not time_to_wait(wait):
                    raise SugarError(f"{where}: {kind} after {attempt} attempts", label="transport_error",
                                     retryable=True) from error
                self._sleep(wait)
                continue
            if response.status_code not in retried_statuses:
                return response
            retry_after = retry_after_seconds(response.headers)
            label, _ = error_fields(response.content)
            logger.warning("Sugar asked to retry", extra={"sugar_call": where, "status": response.status_code,
                                                          "label": label, "attempt": attempt,
                                                          "retry_after": retry_after})
            wait = backoff_seconds(attempt, retry_after)
            if attempt >= self._max_attempts or (retry_after or 0) > self._max_wait or not time_to_wait(wait):
                # Out of attempts, asked to wait longer than a worker should block, or the wait
                # would outlive the invocation: the job's queue will bring the work back later.
                raise self._give_up(response, where, retry_after, attempt)
            self._sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _give_up(response: requests.Response, where: str, retry_after: float | None,
                 attempt: int) -> SugarError:
        try:
            contents: Any = decode_json(response)
            fallback = ""
        except ValueError:
            contents, fallback = None, response.text
        error = sugar_error(response.status_code, contents, where=where, retry_after=retry_after,
                            fallback_text=fallback)
        if not isinstance(error, SugarUnavailable) or not error.retryable:
            error = SugarUnavailable(error.message, status=error.status, label=error.label,
                                     retryable=True, retry_after=retry_after)
        error.message = f"{error.message} (after {attempt} attempts)"
        error.args = (error.message,)
        return error
