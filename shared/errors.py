"""Domain errors. The API layer turns them into the contract's JSON error shape."""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


class BadInput(ConnectorError):
    """What a caller sent cannot be used; answered with a 4xx and nothing stored."""

    def __init__(self, code: str, message: str, *, status: int = 400, details: list[Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details or []


class Unauthorized(ConnectorError):
    """No valid CRM credential on a request."""


class NotFound(ConnectorError):
    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class XeroError(ConnectorError):
    """Xero refused or failed a call."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, problem: str | None = None):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.problem = problem


class RateLimited(XeroError):
    """Xero's (or our own shared) limit says: not now. The work waits in its queue."""

    def __init__(self, message: str, *, retry_after: float, problem: str | None = None):
        super().__init__(message, status=429, retryable=True, retry_after=retry_after, problem=problem)


class ConnectionNotReady(ConnectorError):
    """No usable Xero connection (never onboarded, or disconnected by invalid_grant)."""
