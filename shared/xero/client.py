"""The Xero Accounting API client: the only code that knows Xero's URLs and headers.

Every write is a batch (up to 50 elements) with ``summarizeErrors=false`` and an
``Idempotency-Key``; 429, 5xx, timeouts and dropped connections are retried with bounded,
jittered exponential backoff that honours ``Retry-After``. A wait longer than the caller can
afford raises ``RateLimited`` so the work goes back to its queue instead of blocking a Lambda.
An optional ``gate`` (``shared.xero.limits.SharedRateGate``) holds each attempt to the limits
every Lambda instance shares, and learns from each answer's rate-limit headers.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

import requests

from shared.backoff import backoff_seconds, call_timeout, retry_after_seconds, time_for_a_call, time_to_wait
from shared.errors import RateLimited, XeroError
from shared.observability import MetricNames, logger, metrics

API_PREFIX = "/api.xro/2.0"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_IDS_PER_CALL = 50  # about what fits in one IDs= list
WHERE_IDS_PER_CALL = 25  # ids in one where OR-list, for collections that take no IDs=
IDS_PARAMETER_RESOURCES = frozenset({"Invoices", "Contacts"})  # GETs with IDs= in the spec (16.1.0)
_ID_FIELDS = {"CreditNotes": "CreditNoteID", "Payments": "PaymentID", "Items": "ItemID"}  # GETs with where=
ONE_BY_ONE_RESOURCES = frozenset({"Quotes", "PurchaseOrders"})  # GETs with neither IDs= nor where=
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
XERO_DEFAULT_PAGE_SIZE = 100  # what Xero pages by where it takes no pageSize (Quotes)

TokenSource = Callable[[bool], str]
"""Returns a valid access token; called with True after a 401 to force a refresh."""


class RateGate(Protocol):
    """Limits shared by every instance (``shared.xero.limits.SharedRateGate``)."""

    def acquire(self, tenant_id: str) -> Any:
        """A permit for one call now, or ``RateLimited``."""

    def release(self, permit: Any) -> None: ...

    def observe(self, tenant_id: str, headers: Any, status: int) -> None: ...


def validation_messages(element: dict[str, Any]) -> list[str]:
    """Xero's ValidationErrors on an element (and on its lines), as plain messages."""
    messages = [e.get("Message", "") for e in element.get("ValidationErrors") or []]
    for line in element.get("LineItems") or []:
        messages += [e.get("Message", "") for e in line.get("ValidationErrors") or []]
    return [m for m in messages if m]


class XeroClient:
    def __init__(self, base_url: str, tenant_id: str, token_source: TokenSource, *,
                 session: requests.Session | None = None, max_attempts: int = 5,
                 max_wait_seconds: float = 10.0, timeout: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 on_response: Callable[[requests.Response], None] | None = None,
                 gate: RateGate | None = None):
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self._token_source = token_source
        self._session = session or requests.Session()
        self._max_attempts = max_attempts
        self._max_wait = max_wait_seconds
        self._timeout = timeout
        self._sleep = sleep
        self._on_response = on_response
        self._gate = gate
        self.calls = 0

    # ---- public ----------------------------------------------------------------------------
    def upsert_batch(self, resource: str, elements: list[dict[str, Any]], *,
                     idempotency_key: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``params`` adds query parameters (``unitdp=4`` for 4-decimal prices); summarizeErrors
        stays false whatever it says."""
        if not 1 <= len(elements) <= 50:
            raise ValueError("a Xero batch holds 1 to 50 elements")
        answer = self._request("POST", f"{API_PREFIX}/{resource}",
                               params={**(params or {}), "summarizeErrors": "false"},
                               json_body=encode_json({resource: elements}),
                               idempotency_key=idempotency_key)
        returned = answer.get(resource) or []
        if len(returned) != len(elements):
            raise XeroError(f"Xero answered {len(returned)} {resource} for {len(elements)} sent",
                            retryable=True)
        return returned

    def allocate_credit_note(self, credit_note_id: str, invoice_id: str, amount: Decimal, *,
                             on: date) -> dict[str, Any]:
        """Allocate part of a credit note to an invoice (a call of its own in Xero). The key is
        derived from the allocation, so a retried call is not applied twice. ``on`` is the
        organisation's day (``OrganisationMetadata.today``), never the server's UTC date."""
        allocation = {"Invoice": {"InvoiceID": invoice_id}, "Amount": amount, "Date": on.isoformat()}
        key = hashlib.sha256(f"{credit_note_id}|{invoice_id}|{amount}".encode()).hexdigest()
        return self._request("PUT", f"{API_PREFIX}/CreditNotes/{credit_note_id}/Allocations",
                             json_body=encode_json({"Allocations": [allocation]}),
                             idempotency_key=f"allocation-{key}")

    def get(self, path: str, params: dict[str, Any] | None = None, *,
            if_modified_since: str | None = None) -> dict[str, Any]:
        headers = {"If-Modified-Since": if_modified_since} if if_modified_since else None
        return self._request("GET", f"{API_PREFIX}/{path.lstrip('/')}", params=params,
                             extra_headers=headers)

    def iter_pages(self, resource: str, *, params: dict[str, Any] | None = None,
                   if_modified_since: str | None = None, page_size: int = 1000,
                   max_pages: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every element of a listing, page by page (``page`` is 1-based). Large pages cost
        fewer calls; a page shorter than ``page_size`` is the last. ``max_pages`` bounds the loop."""
        for page in range(1, max_pages + 1):
            answer = self.get(resource, {**(params or {}), "page": page, "pageSize": page_size},
                              if_modified_since=if_modified_since)
            elements = answer.get(resource) or []
            yield from elements
            pagination = answer.get("pagination") or {}
            last_page = pagination.get("pageCount")
            if last_page is not None:
                if page >= int(last_page):
                    return
                continue
            # Where Xero ignores pageSize (GET /Quotes takes none) pages hold 100: a page of exactly
            # 100 is not the last one just because it is shorter than the size asked for.
            if not elements or (len(elements) < page_size and len(elements) != XERO_DEFAULT_PAGE_SIZE):
                return

    def get_by_ids(self, resource: str, ids: list[str], *, params: dict[str, Any] | None = None,
                   id_param: str = "IDs", with_lines: bool = False) -> list[dict[str, Any]]:
        """Fetch resources by id, the way Xero's spec (16.1.0) allows for each collection.

        Only ``GET /Invoices`` and ``GET /Contacts`` take an ``IDs=`` list (at most 50 ids a call:
        Xero's gateway refuses a URL with more than about 52). Xero ignores ``IDs=`` elsewhere and
        answers the whole collection, so the others are
        asked with a ``where`` OR-list of Guid comparisons instead (CreditNotes, Payments, Items).

        An invoice list without ``page`` is a summary without ``LineItems`` (Xero's Invoices
        documentation); ``with_lines`` asks for page 1, which holds every one of up to 50 ids.
        Quotes and PurchaseOrders take neither ``IDs=`` nor ``where``: they are read one by one."""
        unique = list(dict.fromkeys(ids))
        found: list[dict[str, Any]] = []
        extra = dict(params or {})
        if with_lines:
            extra["page"] = 1
        if resource in IDS_PARAMETER_RESOURCES:
            for start in range(0, len(unique), MAX_IDS_PER_CALL):
                chunk = unique[start:start + MAX_IDS_PER_CALL]
                answer = self.get(resource, {**extra, id_param: ",".join(chunk)})
                found += answer.get(resource) or []
            return found
        if resource in ONE_BY_ONE_RESOURCES:  # no IDs= and no where: GET /Quotes/{QuoteID} per id
            for record_id in unique:
                if _GUID.match(record_id):
                    found += self.get(f"{resource}/{record_id}", extra).get(resource) or []
            return found
        id_field = _ID_FIELDS.get(resource)
        if id_field is None:
            raise ValueError(f"Xero has no way to fetch {resource} by id in bulk")
        guids = [i for i in unique if _GUID.match(i)]
        for start in range(0, len(guids), WHERE_IDS_PER_CALL):
            chunk = guids[start:start + WHERE_IDS_PER_CALL]
            where = " OR ".join(f'{id_field}==Guid("{i}")' for i in chunk)
            found += self.get(resource, {**extra, "where": where}).get(resource) or []
        return found

    # ---- transport -------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                 json_body: Any = None, idempotency_key: str | None = None,
                 extra_headers: dict[str, str] | None = None) -> dict[str, Any]:
        refreshed = False
        for attempt in range(1, self._max_attempts + 1):
            if not time_for_a_call():
                # The invocation's deadline is near: the work goes back to its queue, whole,
                # rather than being cut off by the Lambda timeout half-way through.
                raise XeroError(f"deferred before the function's timeout ({method} {path}, attempt {attempt})",
                                retryable=True, retry_after=1.0)
            headers = {"Authorization": f"Bearer {self._token_source(False)}",
                       "xero-tenant-id": self.tenant_id, "Accept": "application/json"}
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key[:128]
            headers.update(extra_headers or {})
            # Each attempt is a call Xero counts: it waits for the shared limits (or raises
            # RateLimited so the work goes back to its queue) and frees its slot however it ends.
            permit = self._gate.acquire(self.tenant_id) if self._gate else None
            try:
                self.calls += 1
                # Bytes are sent as they are (already encoded, so what is checked is what is sent).
                body = json_body if isinstance(json_body, bytes) or json_body is None \
                    else encode_json(json_body)
                if body is not None:
                    headers["Content-Type"] = "application/json"
                response = self._session.request(method, self.base_url + path, params=params,
                                                 data=body, headers=headers,
                                                 timeout=call_timeout(self._timeout))
            except (requests.ConnectionError, requests.Timeout) as error:
                logger.warning("Xero call failed in transit", extra={"path": path, "attempt": attempt,
                                                                      "error": type(error).__name__})
                transit_error: Exception | None = error
            else:
                transit_error = None
            finally:
                if self._gate:
                    self._gate.release(permit)
            if transit_error is not None:
                self._back_off(attempt, None, f"{type(transit_error).__name__} calling Xero")
                continue
            if self._gate:
                self._gate.observe(self.tenant_id, response.headers, response.status_code)
            if self._on_response:
                self._on_response(response)
            if response.status_code == 401 and not refreshed:
                refreshed = True
                self._token_source(True)
                continue
            if response.status_code in RETRYABLE_STATUSES:
                if response.status_code == 429:
                    metrics.add_metric(name=MetricNames.XERO_429, unit="Count", value=1)
                retry_after = retry_after_seconds(response.headers)
                problem = response.headers.get("X-Rate-Limit-Problem")
                if response.status_code == 429 and (problem or "").lower() == "day":
                    raise RateLimited("Xero's daily limit is used up", retry_after=retry_after or 3600,
                                      problem="day")
                self._back_off(attempt, retry_after, f"Xero answered {response.status_code}",
                               problem=problem, status=response.status_code)
                continue
            if response.status_code == 304:
                return {}
            if response.status_code >= 400:
                raise XeroError(_error_text(response), status=response.status_code)
            return parse_json(response.content) if response.content else {}
        raise XeroError("unreachable")  # _back_off raises on the last attempt

    def _back_off(self, attempt: int, retry_after: float | None, reason: str, *,
                  problem: str | None = None, status: int | None = None) -> None:
        wait = backoff_seconds(attempt, retry_after)
        if attempt >= self._max_attempts or wait > self._max_wait or not time_to_wait(wait):
            if status == 429 or retry_after is not None:
                raise RateLimited(f"{reason}; retry in {wait:.0f}s", retry_after=wait, problem=problem)
            raise XeroError(f"{reason} after {attempt} attempts", status=status, retryable=True,
                            retry_after=wait)
        self._sleep(wait)


def parse_json(content: bytes | str) -> Any:
    """A Xero answer with every JSON number that has a fraction read as Decimal, digit for digit
    (``response.json()`` would make 1.2345 a float)."""
    return json.loads(content, parse_float=Decimal)


def encode_json(body: Any) -> bytes:
    """JSON for Xero with every Decimal written as the JSON number it is, digit for digit
    (``requests``' own ``json=`` cannot encode Decimal, and float would round amounts).

    Decimals first become marked strings, then the marks are replaced by the bare number; the
    mark holds a fresh random nonce, so no text a user typed can be mistaken for one."""
    nonce = secrets.token_hex(16)

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError(f"{value} is not a number Xero accepts")
            return f"{nonce}{format(value, 'f')}"
        raise TypeError(f"cannot send {type(value).__name__} to Xero as JSON")

    text = json.dumps(body, default=default, allow_nan=False)  # as requests' json= writes it
    text = _MARKED_NUMBER.sub(lambda m: m.group(2) if m.group(1) == nonce else m.group(0), text)
    return text.encode("utf-8")


# One compiled pattern for every call (a pattern holding the nonce would be compiled per body).
_MARKED_NUMBER = re.compile(r'"([0-9a-f]{32})(-?[0-9]+(?:\.[0-9]+)?)"')


def _error_text(response: requests.Response) -> str:
    try:
        body = parse_json(response.content)
    except ValueError:
        return f"Xero answered {response.status_code}: {response.text[:300]}"
    messages = []
    for element in body.get("Elements") or []:
        messages += validation_messages(element)
    detail = "; ".join(messages) or body.get("Message") or body.get("Detail") or str(body)[:300]
    return f"Xero answered {response.status_code}: {detail}"
