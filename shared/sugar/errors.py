"""Sugar's REST errors as typed exceptions.

Sugar answers an error with an HTTP status and a JSON body ``{"error": "<label>",
"error_message": "<text>"}``; the label is the precise reason (``SugarApiException`` classes in
Sugar's ``include/api``). The label picks the exception class when Sugar gave one; the status
otherwise. Older Sugar versions (7.x) sent 412 for missing/invalid parameters, newer ones 422:
both map to ``SugarInvalidRequest``.
"""

from __future__ import annotations

import json
from typing import Any

from shared.errors import ConnectorError

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Statuses after which the same work may succeed later (the job goes back to its queue)."""


class SugarError(ConnectorError):
    """Sugar refused or failed a call. ``retryable``: the same request may work later."""

    def __init__(self, message: str, *, status: int | None = None, label: str | None = None,
                 retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.label = label
        self.retryable = retryable
        self.retry_after = retry_after


class SugarAuthError(SugarError):
    """401 ``need_login`` / ``invalid_grant``, or the token endpoint refused the credentials."""


class SugarNotAuthorized(SugarError):
    """403: the integration user may not do this (role, field lock, portal)."""


class SugarNotFound(SugarError):
    """404: no such record, module or route."""


class SugarEditConflict(SugarError):
    """409 ``edit_conflict``: someone else changed the record; re-read before writing."""


class SugarInvalidRequest(SugarError):
    """400/412/413/422/424/433: what was sent cannot be used as it is."""


class SugarServerError(SugarError):
    """500 ``fatal_error`` and other server failures."""


class SugarUnavailable(SugarError):
    """429, 502, 503 (``maintenance`` / ``service_unavailable``), 504: try again later."""


_CLASS_BY_LABEL: dict[str, type[SugarError]] = {
    "need_login": SugarAuthError,
    "invalid_grant": SugarAuthError,
    "not_authorized": SugarNotAuthorized,
    "field_locked": SugarNotAuthorized,
    "inactive_portal_user": SugarNotAuthorized,
    "portal_not_configured": SugarNotAuthorized,
    "not_found": SugarNotFound,
    "no_method": SugarNotFound,
    "edit_conflict": SugarEditConflict,
    "metadata_out_of_date": SugarInvalidRequest,
    "request_too_large": SugarInvalidRequest,
    "missing_parameter": SugarInvalidRequest,
    "invalid_parameter": SugarInvalidRequest,
    "request_failure": SugarInvalidRequest,
    "client_outdated": SugarInvalidRequest,
    "fatal_error": SugarServerError,
    "search_runtime": SugarServerError,
    "bad_gateway": SugarUnavailable,
    "maintenance": SugarUnavailable,
    "service_unavailable": SugarUnavailable,
    "search_unavailable": SugarUnavailable,
}

_CLASS_BY_STATUS: dict[int, type[SugarError]] = {
    401: SugarAuthError,
    403: SugarNotAuthorized,
    404: SugarNotFound,
    409: SugarEditConflict,
    429: SugarUnavailable,
    500: SugarServerError,
    502: SugarUnavailable,
    503: SugarUnavailable,
    504: SugarUnavailable,
}


def error_fields(contents: Any) -> tuple[str | None, str | None]:
    """(label, message) from an error body, decoded or raw; (None, None) when it has neither."""
    if isinstance(contents, str | bytes):
        try:
            contents = json.loads(contents)
        except ValueError:
            return None, None
    if not isinstance(contents, dict):
        return None, None
    label = contents.get("error")
    message = contents.get("error_message") or contents.get("error_description")
    return (str(label) if isinstance(label, str) else None,
            str(message) if message is not None else None)


def sugar_error(status: int, contents: Any, *, where: str = "", retry_after: float | None = None,
                fallback_text: str = "") -> SugarError:
    """The exception for one error answer. ``where`` is ``METHOD /path`` (never a URL with
    credentials); ``fallback_text`` is the raw body when it was not JSON (a proxy's page)."""
    label, message = error_fields(contents)
    cls = _CLASS_BY_LABEL.get(label or "") or _CLASS_BY_STATUS.get(status)
    if cls is None:
        cls = SugarServerError if status >= 500 else SugarInvalidRequest
    detail = message or fallback_text.strip()[:200] or "no detail"
    prefix = f"{where}: " if where else ""
    text = f"{prefix}Sugar answered {status} {label or ''}".rstrip() + f": {detail}"
    retryable = status in RETRYABLE_STATUSES or label in {"maintenance", "service_unavailable",
                                                          "search_unavailable"}
    return cls(text[:500], status=status, label=label, retryable=retryable, retry_after=retry_after)
