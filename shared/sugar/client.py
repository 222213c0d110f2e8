"""The Sugar REST v11 client: the only code that knows Sugar's URLs, headers and shapes.

Records, filter and related-record paging, and ``/bulk``. Calls carry ``OAuth-Token``; the
token comes from the shared cache (``auth.SugarTokens``) and is renewed once on a 401 before
the call is repeated. Transient failures are retried by ``transport.SugarTransport``. Amounts
arrive as 6-decimal strings and stay as Sugar sent them: JSON numbers are parsed as Decimal,
and parsing amounts is the callers' business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from shared.observability import logger
from shared.sugar.auth import SugarTokens
from shared.sugar.errors import SugarError, error_fields, sugar_error
from shared.sugar.token_cache import SugarTokenCache, sugar_connection_id
from shared.sugar.transport import SugarTransport, decode_json, encode_json

API_VERSION = "v11"
UPSERT_VERSION = "v11_10"  # the sync_key upsert endpoint arrived with API 11.10 (Sugar 10.2)
DEFAULT_PAGE_SIZE = 100
DEFAULT_BULK_CHUNK = 20
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE", "PATCH", "HEAD"})


def _segment(value: str) -> str:
    """One path segment, escaped so an id can never change the route: ``/`` and every other
    reserved character are percent-encoded, and the dot-segments ``.`` and ``..`` (which a URL
    resolver or the server would apply) are refused."""
    text = str(value) if value is not None else ""
    if not text:
        raise ValueError("Sugar module, id and link names cannot be empty")
    if text.strip(".") == "":
        raise ValueError(f"{text!r} is a path dot-segment, not a Sugar module, id or link name")
    return quote(text, safe="")


def record_path(module: str, record_id: str | None = None) -> str:
    return f"/{_segment(module)}" + (f"/{_segment(record_id)}" if record_id is not None else "")


def _fields_param(fields: Sequence[str] | str | None) -> str | None:
    if fields is None:
        return None
    return fields if isinstance(fields, str) else ",".join(fields)


@dataclass(frozen=True)
class BulkRequest:
    """One call inside ``/bulk``. ``path`` is relative to the API version (``/Quotes/<id>``)."""

    method: str
    path: str
    data: Mapping[str, Any] | None = None
    version: str = API_VERSION

    @classmethod
    def upsert(cls, module: str, sync_key: str, fields: Mapping[str, Any]) -> BulkRequest:
        """Create or update the record whose ``sync_key`` is ``sync_key``:
        ``PATCH /v11_10/<Module>/sync_key/<key>`` (Sugar 10.2+, admin users)."""
        return cls("PATCH", f"{record_path(module)}/sync_key/{_segment(sync_key)}", fields, UPSERT_VERSION)

    @classmethod
    def update(cls, module: str, record_id: str, fields: Mapping[str, Any]) -> BulkRequest:
        return cls("PUT", record_path(module, record_id), fields)

    @classmethod
    def create(cls, module: str, fields: Mapping[str, Any]) -> BulkRequest:
        return cls("POST", record_path(module), fields)

    @classmethod
    def get(cls, module: str, record_id: str) -> BulkRequest:
        return cls("GET", record_path(module, record_id))

    def as_sugar(self) -> dict[str, Any]:
        item: dict[str, Any] = {"url": f"/{self.version}{self.path}", "method": self.method.upper()}
        if self.data is not None:
            item["data"] = encode_json(dict(self.data))  # Sugar wants the body as a JSON string
        return item


@dataclass(frozen=True)
class BulkResult:
    """One answer inside ``/bulk``: Sugar's status and contents (the record, or an error body)."""

    status: int
    contents: Any
    headers: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def label(self) -> str | None:
        return None if self.ok else error_fields(self.contents)[0]

    def error(self, where: str = "") -> SugarError | None:
        """The typed error this item would have raised on its own; None when it succeeded."""
        return None if self.ok else sugar_error(self.status, self.contents, where=where)


class SugarClient:
    def __init__(self, base_url: str, username: str, password: str, platform: str,
                 token_cache: SugarTokenCache, session: requests.Session | None = None,
                 client_id: str = "sugar", client_secret: str = "",
                 sleep: Callable[[float], None] = time.sleep, max_attempts: int = 4, *,
                 clock: Callable[[], float] = time.time, timeout: float = 30.0,
                 max_wait_seconds: float = 30.0):
        """``base_url``: Sugar's root, the part before ``/rest/v11``."""
        self.base_url = base_url.rstrip("/")
        self.api_url = f"{self.base_url}/rest/{API_VERSION}"
        self.connection_id = sugar_connection_id(platform, username)
        self._transport = SugarTransport(session or requests.Session(), sleep=sleep,
                                         max_attempts=max_attempts, max_wait_seconds=max_wait_seconds,
                                         timeout=timeout)
        self._tokens = SugarTokens(token_cache, self.connection_id, token_url=f"{self.api_url}/oauth2/token",
                                   transport=self._transport, username=username, password=password,
                                   platform=platform, client_id=client_id, client_secret=client_secret,
                                   clock=clock, sleep=sleep)

    def __repr__(self) -> str:
        return f"SugarClient({self.base_url!r}, connection={self.connection_id!r})"

    @property
    def token_calls(self) -> int:
        """Calls this client made to ``/oauth2/token`` (logins plus refreshes)."""
        return self._tokens.token_calls

    # ---- records -----------------------------------------------------------------------------
    def get_record(self, module: str, record_id: str,
                   fields: Sequence[str] | str | None = None) -> dict[str, Any]:
        return self._call("GET", record_path(module, record_id), params=_params(fields=_fields_param(fields)))

    def update_record(self, module: str, record_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("PUT", record_path(module, record_id), body=dict(fields))

    def create_record(self, module: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", record_path(module), body=dict(fields), idempotent=False)

    # ---- filter ------------------------------------------------------------------------------
    def filter(self, module: str, filter: list[dict[str, Any]],
               fields: Sequence[str] | str | None = None, max_num: int = DEFAULT_PAGE_SIZE,
               offset: int = 0, order_by: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """One page of ``POST /<Module>/filter``: (records, next_offset); next_offset -1 = last page.
        ``order_by`` is Sugar's ``field:asc|desc`` list."""
        body: dict[str, Any] = {"filter": filter, "max_num": max_num, "offset": offset}
        if fields is not None:
            body["fields"] = _fields_param(fields)
        if order_by:
            body["order_by"] = order_by
        # A filter is a read even though it is a POST: safe to repeat.
        answer = self._call("POST", f"{record_path(module)}/filter", body=body, idempotent=True)
        return _page(answer, f"POST {record_path(module)}/filter")

    def iter_filter(self, module: str, filter: list[dict[str, Any]],
                    fields: Sequence[str] | str | None = None, max_num: int = DEFAULT_PAGE_SIZE,
                    offset: int = 0, order_by: str | None = None) -> Iterator[dict[str, Any]]:
        """Every matching record, page by page, until Sugar says ``next_offset: -1``."""
        return _all_pages(lambda at: self.filter(module, filter, fields=fields, max_num=max_num,
                                                 offset=at, order_by=order_by), offset)

    # ---- related records ---------------------------------------------------------------------
    def related_page(self, module: str, record_id: str, link: str,
                     fields: Sequence[str] | str | None = None, max_num: int = DEFAULT_PAGE_SIZE,
                     offset: int = 0, order_by: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """One page of ``GET /<Module>/<id>/link/<link>``: (records, next_offset)."""
        path = f"{record_path(module, record_id)}/link/{_segment(link)}"
        answer = self._call("GET", path, params=_params(fields=_fields_param(fields), max_num=max_num,
                                                         offset=offset, order_by=order_by))
        return _page(answer, f"GET {path}")

    def iter_related(self, module: str, record_id: str, link: str,
                     fields: Sequence[str] | str | None = None, max_num: int = DEFAULT_PAGE_SIZE,
                     order_by: str | None = None) -> Iterator[dict[str, Any]]:
        return _all_pages(lambda at: self.related_page(module, record_id, link, fields=fields,
                                                       max_num=max_num, offset=at, order_by=order_by), 0)

    def related(self, module: str, record_id: str, link: str,
                fields: Sequence[str] | str | None = None, max_num: int = DEFAULT_PAGE_SIZE,
                order_by: str | None = None) -> list[dict[str, Any]]:
        """All records on the link (every page), e.g. a quote's ``product_bundles``."""
        return list(self.iter_related(module, record_id, link, fields=fields, max_num=max_num,
                                      order_by=order_by))

    # ---- metadata -----------------------------------------------------------------------------
    def metadata(self, modules: Sequence[str]) -> dict[str, Any]:
        """The modules' metadata (their ``fields`` by name, each with its ``type``):
        ``GET /metadata?type_filter=modules&module_filter=A,B``, as Sugar's MetadataApi reads them."""
        return self._call("GET", "/metadata", params={"type_filter": "modules", "module_filter": ",".join(modules)})

    # ---- bulk --------------------------------------------------------------------------------
    def bulk(self, requests: Sequence[BulkRequest]) -> list[BulkResult]:
        """Run the calls in order in one ``POST /bulk``. Each item keeps its own status and
        contents: an item's failure raises nothing (check ``BulkResult.ok``); only a failure
        of the bulk call itself raises."""
        if not requests:
            return []
        idempotent = all(r.method.upper() in IDEMPOTENT_METHODS for r in requests)
        answer = self._call("POST", "/bulk", body={"requests": [r.as_sugar() for r in requests]},
                            idempotent=idempotent)
        if not isinstance(answer, list) or len(answer) != len(requests):
            count = len(answer) if isinstance(answer, list) else "no list"
            raise SugarError(f"POST /bulk: Sugar answered {count} results for {len(requests)} requests",
                             label="bad_bulk_answer", retryable=idempotent)
        results = []
        for item in answer:
            item = item if isinstance(item, dict) else {}
            results.append(BulkResult(status=int(item.get("status") or 0), contents=item.get("contents"),
                                      headers=item.get("headers")))
        failed = [(r.method, r.path, res.status, res.label) for r, res in zip(requests, results, strict=True)
                  if not res.ok]
        if failed:
            logger.warning("Sugar bulk items failed", extra={"failed": len(failed), "of": len(requests),
                                                             "items": failed[:10]})
        return results

    def update_records_bulk(self, module: str, updates: Mapping[str, Mapping[str, Any]],
                            chunk_size: int = DEFAULT_BULK_CHUNK) -> dict[str, BulkResult]:
        """PUT each record's fields through ``/bulk``, ``chunk_size`` per call; the outcome per id."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        outcome: dict[str, BulkResult] = {}
        ids = list(updates)
        for start in range(0, len(ids), chunk_size):
            chunk = ids[start:start + chunk_size]
            results = self.bulk([BulkRequest.update(module, record_id, updates[record_id])
                                 for record_id in chunk])
            outcome.update(zip(chunk, results, strict=True))
        return outcome

    # ---- transport ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
              idempotent: bool | None = None) -> Any:
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        token = self._tokens.access_token()
        response = self._send(method, path, token, params, body, idempotent)
        if response.status_code == 401:
            # Expired early, or logged out by a newer login on the same platform: renew once.
            label, _ = error_fields(response.content)
            logger.info("Sugar rejected the access token; renewing it once",
                        extra={"sugar_call": f"{method} {path}", "label": label})
            token = self._tokens.access_token(rejected=token)
            response = self._send(method, path, token, params, body, idempotent)
        if response.status_code >= 400:
            try:
                contents: Any = decode_json(response)
                fallback = ""
            except ValueError:
                contents, fallback = None, response.text
            error = sugar_error(response.status_code, contents, where=f"{method} {path}",
                                fallback_text=fallback)
            logger.warning("Sugar call failed", extra={"sugar_call": f"{method} {path}",
                                                       "status": error.status, "label": error.label})
            raise error
        try:
            return decode_json(response)
        except ValueError as error:
            raise SugarError(f"{method} {path}: Sugar answered {response.status_code} with a body that is "
                             "not JSON", status=response.status_code, label="bad_answer",
                             retryable=True) from error

    def _send(self, method: str, path: str, token: str, params: dict[str, Any] | None, body: Any,
              idempotent: bool) -> requests.Response:
        return self._transport.send(method, self.api_url + path, log_path=path,
                                    headers={"OAuth-Token": token}, params=params, body=body,
                                    idempotent=idempotent)


def _params(**values: Any) -> dict[str, Any] | None:
    present = {k: v for k, v in values.items() if v is not None}
    return present or None


def _page(answer: Any, where: str) -> tuple[list[dict[str, Any]], int]:
    if not isinstance(answer, dict) or not isinstance(answer.get("records"), list):
        raise SugarError(f"{where}: Sugar answered without a records list", label="bad_answer",
                         retryable=True)
    try:
        next_offset = int(answer.get("next_offset", -1))
    except (TypeError, ValueError) as error:
        raise SugarError(f"{where}: next_offset is not a number", label="bad_answer") from error
    return answer["records"], next_offset


def _all_pages(fetch: Callable[[int], tuple[list[dict[str, Any]], int]],
               offset: int) -> Iterator[dict[str, Any]]:
    while True:
        records, next_offset = fetch(offset)
        yield from records
        if next_offset == -1:
            return
        if next_offset <= offset:
            # A next_offset that does not move forward would page for ever.
            raise SugarError(f"Sugar's paging did not advance (offset {offset}, next {next_offset})",
                             label="bad_paging")
        offset = next_offset
