"""A small, in-memory stand-in for Sugar's REST API v11, for the local stack and tests.

It keeps what the connector relies on (``reference/sugarcrm.md``): OAuth2 password and refresh
grants with one live token per user and platform, ``OAuth-Token`` on every call, records by
module, filter with paging, links, bulk, ``date_modified`` set on each write. Control endpoints
under ``/_sugar/`` seed records, show state and the request log, reset, and inject faults.

Quotes with their lines (ProductBundles linked by ``product_bundles``, Products linked by
``products``) are seeded for any quote, in process or over HTTP::

    double.seed_quotes([{"id": "q1", "name": "Q", "quote_stage": "Closed Accepted",
                         "billing_account_id": "a1",
                         "bundles": [{"name": "Group 1", "products": [
                             {"name": "Visit", "quantity": "2", "discount_price": "100"}]}]}])
    POST /_sugar/seed/quotes  {"quotes": [...the same...], "accounts": [{...}]}

``benchmark_quotes(accounts=200, quotes=1000)`` builds such a payload with consistent totals.
``GET /_sugar/requests/counts`` counts calls by route (``GET /rest/v11/Quotes/{id}/link/...``),
uncapped, and ``POST /_sugar/requests/reset`` zeroes the counts and the log, keeping the data.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from shared.config import LOCAL_SECRET_DEFAULTS

ACCESS_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 14 * 86400
MAX_LOGGED_REQUESTS = 1000


def sugar_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def touched(previous: Any) -> str:
    """``date_modified`` for a change now: Sugar keeps whole seconds, so a record changed twice in one
    second is stamped a second later than before; every change moves it forward."""
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        before = datetime.fromisoformat(str(previous).replace("Z", "+00:00"))
        if before.tzinfo is None:
            before = before.replace(tzinfo=UTC)
    except ValueError:
        return now.isoformat()
    return max(now, before + timedelta(seconds=1)).astimezone(UTC).isoformat()


@dataclass
class SugarDoubleConfig:
    username: str = LOCAL_SECRET_DEFAULTS["SUGAR_USERNAME"]
    password: str = LOCAL_SECRET_DEFAULTS["SUGAR_PASSWORD"]
    platform: str = LOCAL_SECRET_DEFAULTS["SUGAR_PLATFORM"]
    access_token_seconds: int = ACCESS_TOKEN_SECONDS
    refresh_token_seconds: int = REFRESH_TOKEN_SECONDS
    clock: Callable[[], float] = time.time


@dataclass
class _Session:
    username: str
    platform: str
    access_token: str
    refresh_token: str
    access_expires: float
    refresh_expires: float


@dataclass
class _Fault:
    remaining: int
    status: int
    path_contains: str = ""


# Stock fields the double's ``GET /metadata`` reports, by module, with their vardef types (a
# subset of Sugar's own vardefs: those the connector reads; reference/sugarcrm.md). Custom fields
# exist only once installed (``install_fields``, ``POST /_sugar/seed/fields``), as after the
# package went through Module Loader: the double does not pretend they are there.
_COMMON_FIELDS = {"id": "id", "name": "name", "date_entered": "datetime", "date_modified": "datetime",
                  "modified_user_id": "assigned_user_name", "created_by": "assigned_user_name",
                  "deleted": "bool", "description": "text", "assigned_user_id": "relate", "team_id": "relate"}
STOCK_FIELDS: dict[str, dict[str, str]] = {
    "Accounts": {**_COMMON_FIELDS, "email": "email", "email1": "varchar", "phone_office": "phone",
                 "phone_fax": "phone", "website": "url", "account_type": "enum", "currency_id": "currency_id",
                 **{f"{kind}_address_{part}": "varchar" for kind in ("billing", "shipping")
                    for part in ("street", "city", "state", "postalcode", "country")}},
    "Contacts": {**_COMMON_FIELDS, "first_name": "varchar", "last_name": "varchar", "email": "email",
                 "email1": "varchar", "phone_work": "phone", "phone_mobile": "phone", "account_id": "relate",
                 **{f"primary_address_{part}": "varchar"
                    for part in ("street", "city", "state", "postalcode", "country")}},
    "ProductTemplates": {**_COMMON_FIELDS, "mft_part_num": "varchar", "vendor_part_num": "varchar",
                         "discount_price": "currency", "cost_price": "currency", "list_price": "currency",
                         "tax_class": "enum", "currency_id": "currency_id", "status": "enum"},
    "Quotes": {**_COMMON_FIELDS, "quote_num": "int", "quote_stage": "enum", "billing_account_id": "relate",
               "billing_contact_id": "relate", "opportunity_id": "relate", "currency_id": "currency_id",
               "taxrate_value": "decimal", "subtotal": "currency", "tax": "currency", "shipping": "currency",
               "total": "currency", "date_quote_expected_closed": "date", "purchase_order_num": "varchar",
               "payment_terms": "enum", "bundles": "collection"},
    "Opportunities": {**_COMMON_FIELDS, "account_id": "relate", "amount": "currency", "sales_stage": "enum"},
    "Cases": {**_COMMON_FIELDS, "case_number": "int", "account_id": "relate", "status": "enum"},
    "Users": {**_COMMON_FIELDS, "user_name": "user_name", "first_name": "varchar", "last_name": "varchar"},
    "WebLogicHooks": {**_COMMON_FIELDS, "webhook_target_module": "enum", "request_method": "enum",
                      "url": "varchar", "trigger_event": "enum"},
}


def stock_metadata() -> dict[str, dict[str, dict[str, Any]]]:
    return {module: {name: {"name": name, "type": kind} for name, kind in fields.items()}
            for module, fields in STOCK_FIELDS.items()}


@dataclass
class SugarStore:
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    links: dict[tuple[str, str, str], list[tuple[str, str]]] = field(default_factory=dict)
    # module → field name → vardef, as ``GET /metadata`` reports them
    fields: dict[str, dict[str, dict[str, Any]]] = field(default_factory=stock_metadata)

    def put(self, module: str, record: dict[str, Any]) -> dict[str, Any]:
        record = copy.deepcopy(record)
        record.setdefault("id", str(uuid.uuid4()))
        record["_module"] = module
        record.setdefault("date_modified", sugar_now())
        self.records.setdefault(module, {})[record["id"]] = record
        return record

    def link(self, module: str, record_id: str, link: str, related_module: str, related_id: str) -> None:
        related = self.links.setdefault((module, record_id, link), [])
        if (related_module, related_id) not in related:
            related.append((related_module, related_id))


def _error(status: int, code: str, message: str) -> Response:
    return Response(
        json.dumps({"error": code, "error_message": message}), status=status, content_type="application/json"
    )


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")


# ---- filters -------------------------------------------------------------------------------


def _compare(value: Any, operator: str, operand: Any) -> bool:
    text = "" if value is None else str(value)
    if operator == "$equals":
        return text == str(operand)
    if operator == "$not_equals":
        return text != str(operand)
    if operator == "$in":
        return text in {str(o) for o in operand}
    if operator == "$not_in":
        return text not in {str(o) for o in operand}
    if operator == "$starts":
        return text.startswith(str(operand))
    if operator == "$contains":
        return str(operand) in text
    if operator == "$is_null":
        return value in (None, "")
    if operator == "$not_null":
        return value not in (None, "")
    for name, test in (
        ("$gte", lambda a, b: a >= b),
        ("$gt", lambda a, b: a > b),
        ("$lte", lambda a, b: a <= b),
        ("$lt", lambda a, b: a < b),
    ):
        if operator == name:
            return value is not None and test(_ordered(value), _ordered(operand))
    raise ValueError(f"unsupported filter operator {operator}")


def _ordered(value: Any) -> Any:
    """Numbers compare as numbers, dates (ISO 8601 with offset) as instants, the rest as text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return str(value)


def matches(record: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
    for clause in filters:
        for key, condition in clause.items():
            if key == "$and":
                if not matches(record, condition):
                    return False
            elif key == "$or":
                if not any(matches(record, [c]) for c in condition):
                    return False
            elif isinstance(condition, dict):
                if not all(_compare(record.get(key), op, operand) for op, operand in condition.items()):
                    return False
            elif not _compare(record.get(key), "$equals", condition):
                return False
    return True


def _page(records: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
    order_by = str(args.get("order_by") if args.get("order_by") is not None else "date_modified:DESC")
    for term in reversed([t for t in order_by.split(",") if t]):
        name, _, direction = term.partition(":")
        records = sorted(
            records, key=lambda r, n=name: _ordered(r.get(n) or ""), reverse=direction.upper() != "ASC"
        )
    max_num = int(args.get("max_num") or 20)
    offset = int(args.get("offset") or 0)
    page = records[offset : offset + max_num]
    fields = args.get("fields")
    if fields:
        wanted = {f.strip() for f in str(fields).split(",") if f.strip()} | {"id", "date_modified", "_module"}
        page = [{k: v for k, v in r.items() if k in wanted} for r in page]
    next_offset = offset + len(page) if offset + len(page) < len(records) else -1
    return {"next_offset": next_offset, "records": page}


class SugarDouble:
    """The WSGI application. Thread-safe: one lock around the store."""

    def __init__(self, config: SugarDoubleConfig | None = None):
        self.config = config or SugarDoubleConfig()
        self.store = SugarStore()
        self._sessions: dict[str, _Session] = {}  # by access token
        self._lock = threading.RLock()
        self._log: list[dict[str, Any]] = []
        self._counts: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self.url_map = Map(
            [
                Rule("/_sugar/seed", methods=["POST"], endpoint="seed"),
                Rule("/_sugar/seed/quotes", methods=["POST"], endpoint="seed_quotes"),
                Rule("/_sugar/seed/fields", methods=["POST"], endpoint="seed_fields"),
                Rule("/_sugar/requests/counts", methods=["GET"], endpoint="counts"),
                Rule("/_sugar/requests/reset", methods=["POST"], endpoint="requests_reset"),
                Rule("/_sugar/state", methods=["GET"], endpoint="state"),
                Rule("/_sugar/requests", methods=["GET"], endpoint="requests"),
                Rule("/_sugar/reset", methods=["POST"], endpoint="reset"),
                Rule("/_sugar/faults", methods=["POST"], endpoint="faults"),
                Rule("/_sugar/health", methods=["GET"], endpoint="health"),
                Rule("/rest/v11/oauth2/token", methods=["POST"], endpoint="token"),
                Rule("/rest/v11/ping", methods=["GET"], endpoint="ping"),
                Rule("/rest/v11/metadata", methods=["GET"], endpoint="metadata"),
                Rule("/rest/v11/bulk", methods=["POST"], endpoint="bulk"),
                Rule("/rest/v11_10/<module>/sync_key/<sync_key>", methods=["PATCH"], endpoint="upsert"),
                Rule("/rest/v11/<module>/filter", methods=["POST", "GET"], endpoint="filter"),
                Rule("/rest/v11/<module>/<record_id>/link/<link>", methods=["GET"], endpoint="link"),
                Rule("/rest/v11/<module>/<record_id>", methods=["GET", "PUT", "DELETE"], endpoint="record"),
                Rule("/rest/v11/<module>", methods=["POST"], endpoint="create"),
            ],
            strict_slashes=False,
        )

    # ---- seeding ---------------------------------------------------------------------------
    def seed(self, payload: dict[str, Any]) -> dict[str, int]:
        """``{"records": {"Accounts": [{...}]}, "links": [{"module", "id", "link", "related_module",
        "related_id"}]}``."""
        with self._lock:
            count = 0
            for module, records in (payload.get("records") or {}).items():
                for record in records:
                    self.store.put(module, record)
                    count += 1
            for link in payload.get("links") or []:
                self.store.link(
                    link["module"], link["id"], link["link"], link["related_module"], link["related_id"]
                )
            return {"records": count, "links": len(payload.get("links") or [])}

    def seed_quotes(
        self, quotes: Iterable[dict[str, Any]], accounts: Iterable[dict[str, Any]] = ()
    ) -> dict[str, Any]:
        """Store quotes with their lines: each quote is a Quotes record plus ``bundles``, a list of
        ProductBundles records each with ``products`` (Products records) and optionally ``notes``
        (ProductBundleNotes). Ids are made when missing. Returns the counts and the quote ids."""
        payload = quote_seed(quotes)
        payload["records"]["Accounts"] = list(accounts)
        counts = self.seed(payload)
        records = payload["records"]
        return {
            "quotes": len(records["Quotes"]),
            "bundles": len(records["ProductBundles"]),
            "products": len(records["Products"]),
            "accounts": len(records["Accounts"]),
            "links": counts["links"],
            "quote_ids": [q["id"] for q in records["Quotes"]],
        }

    def install_fields(self, fields: dict[str, dict[str, dict[str, Any]]]) -> int:
        """Custom fields as a package or Studio would add them: ``{module: {name: {"type": ...}}}``.
        A module not known yet is added (a custom module)."""
        with self._lock:
            count = 0
            for module, defs in fields.items():
                for name, vardef in defs.items():
                    self.store.fields.setdefault(module, {})[name] = {"name": name, "source": "custom_fields",
                                                                      **vardef}
                    count += 1
            return count

    def remove_field(self, module: str, name: str) -> None:
        """A field deleted in Studio: gone from the metadata (the records keep nothing of it)."""
        with self._lock:
            self.store.fields.get(module, {}).pop(name, None)
            for record in self.store.records.get(module, {}).values():
                record.pop(name, None)

    def request_counts(self) -> dict[str, Any]:
        """Calls received since the last reset: ``total`` HTTP calls (a bulk call is one), the
        ``bulk_items`` run inside bulk calls, and both ``by_route`` (ids shown as ``{id}``)."""
        with self._lock:
            by_route = dict(sorted(self._counts.items()))
        total = sum(n for route, n in by_route.items() if not route.startswith("bulk: "))
        bulk_items = sum(n for route, n in by_route.items() if route.startswith("bulk: "))
        return {"total": total, "bulk_items": bulk_items, "by_route": by_route}

    def reset_requests(self) -> None:
        with self._lock:
            self._log.clear()
            self._counts.clear()

    def _bundles_collection(self, quote_id: str) -> dict[str, Any]:
        """The quote's ``bundles`` collection field: bundles with ``product_bundle_items``."""
        bundles = []
        for module, bundle_id in self.store.links.get(("Quotes", quote_id, "product_bundles"), []):
            bundle = self._find(module, bundle_id)
            if bundle is None:
                continue
            items = [
                copy.deepcopy(item)
                for link in ("products", "product_bundle_notes")
                for m, i in self.store.links.get((module, bundle_id, link), [])
                if (item := self._find(m, i)) is not None
            ]
            items.sort(key=lambda item: int(item.get("position") or 0))
            bundles.append({**copy.deepcopy(bundle), "product_bundle_items": {"records": items, "next_offset": -1}})
        return {"records": bundles, "next_offset": {"product_bundles": -1}}

    # ---- WSGI ------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request, *, session: _Session | None = None, bulk_item: bool = False) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
        except HTTPException as error:
            response = _error(error.code or 404, "not_found", f"No route {request.method} {request.path}")
            self._record(request, response, bulk_item=bulk_item)
            return response
        if endpoint in _CONTROL_ENDPOINTS:
            return getattr(self, f"_control_{endpoint}")(request)
        fault = self._take_fault(request.path)
        if fault is not None:
            response = _error(
                fault.status,
                "service_unavailable" if fault.status == 503 else "fatal_error",
                "Injected fault",
            )
        elif endpoint == "token":
            response = self._token(request)
        else:
            session = session or self._session_for(request)
            if isinstance(session, Response):
                response = session
            else:
                try:
                    response = getattr(self, f"_rest_{endpoint}")(request, session, **values)
                except (ValueError, TypeError, KeyError) as error:
                    response = _error(422, "invalid_parameter", str(error))
        self._record(request, response, bulk_item=bulk_item)
        return response

    def _record(self, request: Request, response: Response, *, bulk_item: bool = False) -> None:
        body: Any = None
        if request.path != "/rest/v11/oauth2/token":  # never keep credentials
            try:
                body = json.loads(request.get_data(as_text=True)) if request.get_data() else None
            except ValueError:
                body = request.get_data(as_text=True)
        with self._lock:
            self._log.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string.decode(),
                    "status": response.status_code,
                    "body": body,
                    "at": time.time(),
                    "bulk_item": bulk_item,
                }
            )
            del self._log[:-MAX_LOGGED_REQUESTS]
            self._counts[("bulk: " if bulk_item else "") + f"{request.method} {route_of(request.path)}"] += 1

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.path_contains in path:
                    fault.remaining -= 1
                    return fault
            self._faults = [f for f in self._faults if f.remaining > 0]
            return None

    # ---- authentication --------------------------------------------------------------------
    def _new_session(self, username: str, platform: str) -> _Session:
        now = self.config.clock()
        # One live token per user per platform: a new login ends the previous one.
        for token, existing in list(self._sessions.items()):
            if existing.username == username and existing.platform == platform:
                del self._sessions[token]
        session = _Session(
            username,
            platform,
            secrets.token_hex(16),
            secrets.token_hex(16),
            now + self.config.access_token_seconds,
            now + self.config.refresh_token_seconds,
        )
        self._sessions[session.access_token] = session
        return session

    def _token(self, request: Request) -> Response:
        form: dict[str, Any]
        if request.is_json:
            form = request.get_json(silent=True) or {}
        else:
            form = request.form.to_dict()
        grant = form.get("grant_type")
        with self._lock:
            if grant == "password":
                if (form.get("username"), form.get("password")) != (
                    self.config.username,
                    self.config.password,
                ):
                    return _error(401, "need_login", "You must specify a valid username and password.")
                if form.get("platform") != self.config.platform:
                    return _error(
                        401, "invalid_grant", f"The platform {form.get('platform')!r} is not registered."
                    )
                session = self._new_session(form["username"], form["platform"])
            elif grant == "refresh_token":
                now = self.config.clock()
                found = next(
                    (
                        s
                        for s in self._sessions.values()
                        if secrets.compare_digest(s.refresh_token, str(form.get("refresh_token", "")))
                    ),
                    None,
                )
                if found is None or found.refresh_expires < now:
                    return _error(401, "invalid_grant", "Invalid refresh token")
                session = self._new_session(found.username, found.platform)
            else:
                return _error(400, "unsupported_grant_type", f"Grant type {grant!r} is not supported.")
        return _json(
            {
                "access_token": session.access_token,
                "expires_in": self.config.access_token_seconds,
                "token_type": "bearer",
                "scope": None,
                "refresh_token": session.refresh_token,
                "refresh_expires_in": self.config.refresh_token_seconds,
                "download_token": uuid.uuid4().hex,
            }
        )

    def _session_for(self, request: Request) -> _Session | Response:
        token = request.headers.get("OAuth-Token")
        if not token:
            return _error(401, "need_login", "No valid authentication for user.")
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.access_expires < self.config.clock():
                return _error(401, "invalid_grant", "The access token provided is invalid.")
            return session

    # ---- REST ------------------------------------------------------------------------------
    def _rest_ping(self, request: Request, session: _Session) -> Response:
        return _json("pong")

    def _rest_metadata(self, request: Request, session: _Session) -> Response:
        """``GET /metadata``: ``type_filter`` and ``module_filter`` are comma-separated lists (Sugar's
        MetadataApi); only the ``modules`` section is served, each module with its ``fields``."""
        types = [t for t in str(request.args.get("type_filter") or "modules").split(",") if t]
        wanted = [m for m in str(request.args.get("module_filter") or "").split(",") if m]
        answer: dict[str, Any] = {"_hash": "double"}
        if "modules" in types:
            with self._lock:
                answer["modules"] = {module: {"fields": copy.deepcopy(fields), "_hash": f"double-{module}"}
                                     for module, fields in self.store.fields.items()
                                     if not wanted or module in wanted}
        return _json(answer)

    def _find(self, module: str, record_id: str) -> dict[str, Any] | None:
        return self.store.records.get(module, {}).get(record_id)

    @staticmethod
    def _missing(module: str, record_id: str) -> Response:
        return _error(404, "not_found", f"Could not find record: {record_id} in module: {module}")

    def _rest_record(self, request: Request, session: _Session, module: str, record_id: str) -> Response:
        with self._lock:
            record = self._find(module, record_id)
            if record is None:
                return self._missing(module, record_id)
            if request.method == "GET":
                answer = copy.deepcopy(record)
                wanted = {f.strip() for f in str(request.args.get("fields") or "").split(",")}
                if module == "Quotes" and "bundles" in wanted:
                    answer["bundles"] = self._bundles_collection(record_id)
                return _json(answer)
            if request.method == "DELETE":
                del self.store.records[module][record_id]
                return _json({"id": record_id})
            changes = request.get_json(force=True, silent=True)
            if not isinstance(changes, dict):
                return _error(422, "invalid_parameter", "The body must be a JSON object.")
            record.update({k: v for k, v in changes.items() if k not in {"id", "_module", "date_modified"}})
            record["date_modified"] = touched(record.get("date_modified"))
            return _json(copy.deepcopy(record))

    def _rest_create(self, request: Request, session: _Session, module: str) -> Response:
        values = request.get_json(force=True, silent=True)
        if not isinstance(values, dict):
            return _error(422, "invalid_parameter", "The body must be a JSON object.")
        with self._lock:
            values = {**values, "date_entered": sugar_now(), "date_modified": sugar_now()}
            return _json(copy.deepcopy(self.store.put(module, values)))

    def _rest_upsert(self, request: Request, session: _Session, module: str, sync_key: str) -> Response:
        """``PATCH /v11_10/<Module>/sync_key/<key>`` (Sugar 10.2+): the record with that
        ``sync_key`` updated, or created with it when there is none."""
        values = request.get_json(force=True, silent=True)
        if not isinstance(values, dict):
            return _error(422, "invalid_parameter", "The body must be a JSON object.")
        with self._lock:
            found = next((r for r in self.store.records.get(module, {}).values()
                          if r.get("sync_key") == sync_key), None)
            changes = {k: v for k, v in values.items() if k not in {"id", "_module", "date_modified", "sync_key"}}
            if found is None:
                created = {**changes, "sync_key": sync_key, "date_entered": sugar_now(), "date_modified": sugar_now()}
                return _json(copy.deepcopy(self.store.put(module, created)))
            found.update(changes)
            found["date_modified"] = touched(found.get("date_modified"))
            return _json(copy.deepcopy(found))

    def _rest_filter(self, request: Request, session: _Session, module: str) -> Response:
        args: dict[str, Any] = request.args.to_dict()
        if request.method == "POST":
            args.update(request.get_json(force=True, silent=True) or {})
        filters = args.get("filter") or bracket_filter(request.args) or []
        if isinstance(filters, str):
            filters = json.loads(filters)
        with self._lock:
            records = [
                copy.deepcopy(r) for r in self.store.records.get(module, {}).values() if matches(r, filters)
            ]
        return _json(_page(records, args))

    def _rest_link(
        self, request: Request, session: _Session, module: str, record_id: str, link: str
    ) -> Response:
        with self._lock:
            if self._find(module, record_id) is None:
                return self._missing(module, record_id)
            related = [
                copy.deepcopy(self._find(m, i))
                for m, i in self.store.links.get((module, record_id, link), [])
            ]
        records = [r for r in related if r is not None]
        # Sugar lists a bundle's lines in their position order: here, the order they were linked in
        args = {"order_by": "", **request.args.to_dict()}
        return _json(_page(records, args))

    def _rest_bulk(self, request: Request, session: _Session) -> Response:
        body = request.get_json(force=True, silent=True) or {}
        answers = []
        for item in body.get("requests") or []:
            url = str(item.get("url", ""))
            path = "/rest" + url if url.startswith("/v11") else url
            data = item.get("data")
            builder = EnvironBuilder(
                path=path,
                method=str(item.get("method", "GET")).upper(),
                data=data if isinstance(data, (str, bytes)) else json.dumps(data or {}),
                content_type="application/json",
            )
            try:
                inner = self.dispatch(Request(builder.get_environ()), session=session, bulk_item=True)
            finally:
                builder.close()
            try:
                contents = json.loads(inner.get_data(as_text=True))
            except ValueError:
                contents = inner.get_data(as_text=True)
            answers.append(
                {
                    "contents": contents,
                    "status": inner.status_code,
                    "headers": {k: v for k, v in inner.headers.items()},
                }
            )
        return _json(answers)

    # ---- control ---------------------------------------------------------------------------
    def _control_health(self, request: Request) -> Response:
        return _json({"status": "ok", "service": "sugar-double"})

    def _control_seed(self, request: Request) -> Response:
        payload = request.get_json(force=True, silent=True)
        if not isinstance(payload, dict):
            return _error(400, "invalid_parameter", 'Send {"records": {module: [...]}, "links": [...]}.')
        return _json(self.seed(payload))

    def _control_state(self, request: Request) -> Response:
        with self._lock:
            return _json(
                {
                    "records": {m: list(copy.deepcopy(r).values()) for m, r in self.store.records.items()},
                    "links": [
                        {"module": m, "id": i, "link": ln, "related_module": rm, "related_id": ri}
                        for (m, i, ln), related in self.store.links.items()
                        for rm, ri in related
                    ],
                    "sessions": len(self._sessions),
                }
            )

    def _control_requests(self, request: Request) -> Response:
        with self._lock:
            return _json({"requests": copy.deepcopy(self._log)})

    def _control_counts(self, request: Request) -> Response:
        return _json(self.request_counts())

    def _control_requests_reset(self, request: Request) -> Response:
        self.reset_requests()
        return _json({"status": "ok"})

    def _control_seed_quotes(self, request: Request) -> Response:
        payload = request.get_json(force=True, silent=True)
        if not isinstance(payload, dict) or not isinstance(payload.get("quotes"), list):
            return _error(400, "invalid_parameter", 'Send {"quotes": [{..., "bundles": [...]}], "accounts": [...]}.')
        try:
            return _json(self.seed_quotes(payload["quotes"], payload.get("accounts") or []))
        except (TypeError, ValueError, KeyError) as error:
            return _error(400, "invalid_parameter", f"Bad quote seed: {error}")

    def _control_seed_fields(self, request: Request) -> Response:
        payload = request.get_json(force=True, silent=True)
        if not isinstance(payload, dict) or not isinstance(payload.get("fields", {}), dict):
            return _error(400, "invalid_parameter", 'Send {"fields": {module: {name: {"type": ...}}}, '
                                                    '"remove": {module: [name]}}.')
        installed = self.install_fields(payload.get("fields") or {})
        for module, names in (payload.get("remove") or {}).items():
            for name in names:
                self.remove_field(module, name)
        return _json({"installed": installed})

    def _control_reset(self, request: Request) -> Response:
        with self._lock:
            self.store = SugarStore()
            self._sessions.clear()
            self._log.clear()
            self._counts.clear()
            self._faults.clear()
        return _json({"status": "ok"})

    def _control_faults(self, request: Request) -> Response:
        spec = request.get_json(force=True, silent=True) or {}
        status = int(spec.get("status", 503))
        if status not in {500, 502, 503, 504, 429}:
            return _error(400, "invalid_parameter", "status must be 429, 500, 502, 503 or 504")
        with self._lock:
            self._faults.append(
                _Fault(
                    remaining=int(spec.get("count", 1)),
                    status=status,
                    path_contains=str(spec.get("path_contains", "")),
                )
            )
        return _json({"status": "ok"})


_CONTROL_ENDPOINTS = {
    "seed",
    "seed_quotes",
    "seed_fields",
    "state",
    "requests",
    "counts",
    "requests_reset",
    "reset",
    "faults",
    "health",
}
_ID_SEGMENT = re.compile(r"^(/rest/v11/[^/]+)/(?!filter$)([^/]+)(/link/[^/]+)?$")


def route_of(path: str) -> str:
    """A request path with its record id replaced: ``/rest/v11/Quotes/{id}/link/product_bundles``."""
    upsert = re.match(r"^(/rest/v11_10/[^/]+/sync_key)/[^/]+$", path)
    if upsert:
        return upsert.group(1) + "/{key}"
    match = _ID_SEGMENT.match(path)
    if not match or path.startswith("/rest/v11/oauth2"):
        return path
    return f"{match.group(1)}/{{id}}{match.group(3) or ''}"


def bracket_filter(args: Any) -> list[dict[str, Any]] | None:
    """Sugar's GET form of a filter, ``filter[0][quote_stage][$equals]=...``, as the JSON form."""
    clauses: dict[int, dict[str, Any]] = {}
    for key, value in args.items(multi=True):
        parts = re.findall(r"\[([^\]]*)\]", key)
        if not key.startswith("filter[") or len(parts) < 2 or not parts[0].isdigit():
            continue
        clause = clauses.setdefault(int(parts[0]), {})
        field_name, rest = parts[1], parts[2:]
        if not rest:
            clause[field_name] = value
        elif rest[0] in ("$in", "$not_in"):
            clause.setdefault(field_name, {}).setdefault(rest[0], []).append(value)
        else:
            clause.setdefault(field_name, {})[rest[0]] = value
    return [clauses[i] for i in sorted(clauses)] or None


def _sugar_amount(value: Any) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))


def quote_seed(quotes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Quotes with nested ``bundles`` (each with ``products`` and optional ``notes``) as seed
    records and links (``product_bundles``, ``products``, ``product_bundle_notes``)."""
    records: dict[str, list[dict[str, Any]]] = {"Quotes": [], "ProductBundles": [], "Products": [],
                                                 "ProductBundleNotes": []}
    links: list[dict[str, str]] = []
    for given in quotes:
        quote = {k: v for k, v in given.items() if k != "bundles"}
        quote.setdefault("id", str(uuid.uuid4()))
        records["Quotes"].append(quote)
        for index, given_bundle in enumerate(given.get("bundles") or []):
            bundle = {k: v for k, v in given_bundle.items() if k not in ("products", "notes")}
            bundle.setdefault("id", str(uuid.uuid4()))
            bundle.setdefault("position", index)
            records["ProductBundles"].append(bundle)
            links.append({"module": "Quotes", "id": quote["id"], "link": "product_bundles",
                          "related_module": "ProductBundles", "related_id": bundle["id"]})
            position = 0
            for module, link, rows in (
                ("Products", "products", given_bundle.get("products") or []),
                ("ProductBundleNotes", "product_bundle_notes", given_bundle.get("notes") or []),
            ):
                for row in rows:
                    item = {**row, "_module": module}
                    item.setdefault("id", str(uuid.uuid4()))
                    item.setdefault("position", position)
                    if module == "Products":
                        item.setdefault("quote_id", quote["id"])
                    position += 1
                    records[module].append(item)
                    links.append({"module": "ProductBundles", "id": bundle["id"], "link": link,
                                  "related_module": module, "related_id": item["id"]})
    return {"records": records, "links": links}


def benchmark_quotes(
    accounts: int = 200, quotes: int = 1000, *, lines: int = 3, stage: str = "Closed Accepted",
    tax_rate: str = "9", prefix: str = "bench", awkward: bool = False,
) -> dict[str, Any]:
    """``{"accounts": [...], "quotes": [...]}`` for ``seed_quotes``: quote ``n`` belongs to account
    ``n % accounts``. Deterministic ids (``<prefix>-quote-0001``).

    By default prices are whole dollars, so Sugar's tax on the taxable subtotal and Xero's per-line
    tax agree to the cent. ``awkward`` seeds what real catalogues hold: 4-decimal unit prices,
    fractional quantities and 12.5% discounts, with Sugar's totals computed as Sugar does (6-decimal
    line totals, tax on the taxable subtotal), so some quotes differ from Xero's per-line arithmetic
    by a cent or two."""
    if accounts < 1 or quotes < 0 or lines < 1:
        raise ValueError("accounts and lines must be at least 1, quotes at least 0")
    account_records = [
        {
            "id": f"{prefix}-account-{a:04d}",
            "name": f"Benchmark Customer {a:04d}",
            "account_type": "Customer",
            "email1": f"billing{a:04d}@example.test",
            "billing_address_city": "Singapore",
            "billing_address_country": "Singapore",
            "currency_id": "-99",
        }
        for a in range(accounts)
    ]
    rate = Decimal(tax_rate)
    quote_records = [_benchmark_quote(n, account_records[n % accounts], lines=lines, rate=rate, stage=stage,
                                      prefix=prefix, awkward=awkward) for n in range(quotes)]
    return {"accounts": account_records, "quotes": quote_records}


def _benchmark_quote(n: int, account: dict[str, Any], *, lines: int, rate: Decimal, stage: str, prefix: str,
                     awkward: bool) -> dict[str, Any]:
    """Quote ``n`` of ``benchmark_quotes``: its lines, then its totals as Sugar computes them."""
    products, subtotal, discount, taxable = [], Decimal(0), Decimal(0), Decimal(0)
    for line_number in range(lines):
        quantity = Decimal(1 + (n + line_number) % 4)
        price = Decimal(10 * (5 + (n * 7 + line_number * 3) % 40))
        percent = Decimal(10) if line_number == 1 else Decimal(0)
        if awkward:
            quantity += Decimal("0.5") if (n + line_number) % 3 == 0 else Decimal(0)
            price += Decimal((n * 7919 + line_number * 104729) % 10000).scaleb(-4)  # 4 decimals
            percent = Decimal("12.5") if line_number == 1 else Decimal(0)
        gross = quantity * price
        line_total = (gross * (100 - percent) / 100).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
        taxable_line = line_number != 2
        subtotal += gross
        discount += gross - line_total
        taxable += line_total if taxable_line else 0
        products.append(
            {
                "id": f"{prefix}-product-{n:04d}-{line_number}",
                "name": f"Service {line_number + 1} for quote {n + 1}",
                "quantity": _sugar_amount(quantity),
                "discount_price": _sugar_amount(price),
                "discount_amount": _sugar_amount(percent),
                "discount_select": bool(percent),
                "tax_class": "Taxable" if taxable_line else "Non-Taxable",
                "mft_part_num": f"SVC-{line_number + 1:02d}",
                "product_template_id": f"{prefix}-template-{line_number + 1}",
                "total_amount": _sugar_amount(line_total),
            }
        )
    tax = (taxable * rate / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    new_sub = subtotal - discount
    return {
        "id": f"{prefix}-quote-{n + 1:04d}",
        "name": f"Benchmark quote {n + 1}",
        "quote_num": n + 1,
        "quote_type": "Quotes",
        "quote_stage": stage,
        "billing_account_id": account["id"],
        "billing_account_name": account["name"],
        "currency_id": "-99",
        "currency_name": "SGD",
        "taxrate_value": _sugar_amount(rate),
        "subtotal": _sugar_amount(subtotal),
        "discount": _sugar_amount(discount),
        "new_sub": _sugar_amount(new_sub),
        "taxable_subtotal": _sugar_amount(taxable),
        "tax": _sugar_amount(tax),
        "shipping": _sugar_amount(0),
        "total": _sugar_amount(new_sub + tax),
        "date_quote_expected_closed": "2026-12-31",
        "payment_terms": "Net 30",
        "purchase_order_num": f"PO-{n + 1:05d}",
        "bundles": [{"id": f"{prefix}-bundle-{n + 1:04d}", "name": "Group 1", "bundle_stage": "Draft",
                     "currency_id": "-99", "products": products}],
    }


def fixture_seed(fixtures_dir: Path) -> dict[str, Any]:
    """The shared Sugar fixtures as seed data: the hook bodies' records, the quote's bundles
    (link ``product_bundles``) and their products (link ``products``)."""
    sugar = fixtures_dir / "sugar"
    records: dict[str, list[dict[str, Any]]] = {}
    links: list[dict[str, str]] = []
    for name in (
        "account_after_save.json",
        "contact_after_save_v8.json",
        "product_template_after_save.json",
        "quote_closed_accepted.json",
    ):
        path = sugar / name
        if path.exists():
            data = json.loads(path.read_text())["data"]
            records.setdefault(data["_module"], []).append(data)
    bundles_path = sugar / "quote_product_bundles.json"
    quote = (records.get("Quotes") or [None])[0]
    if bundles_path.exists() and quote:
        for bundle in json.loads(bundles_path.read_text()).get("records", []):
            products = bundle.get("products") or []
            records.setdefault("ProductBundles", []).append(
                {k: v for k, v in bundle.items() if k != "products"}
            )
            links.append(
                {
                    "module": "Quotes",
                    "id": quote["id"],
                    "link": "product_bundles",
                    "related_module": "ProductBundles",
                    "related_id": bundle["id"],
                }
            )
            for product in products:
                records.setdefault("Products", []).append({**product, "quote_id": quote["id"]})
                links.append(
                    {
                        "module": "ProductBundles",
                        "id": bundle["id"],
                        "link": "products",
                        "related_module": "Products",
                        "related_id": product["id"],
                    }
                )
    _catalogue_behind_the_lines(records)
    return {"records": records, "links": links}


def _catalogue_behind_the_lines(records: dict[str, list[dict[str, Any]]]) -> None:
    """In Sugar every quote line's ``product_template_id`` names a ProductTemplate: seed the ones
    the fixtures do not hold, from the line's own catalogue fields, so the CRM is whole."""
    templates = records.setdefault("ProductTemplates", [])
    known = {template["id"] for template in templates}
    for product in records.get("Products", []):
        template_id = product.get("product_template_id")
        if not template_id or template_id in known:
            continue
        known.add(template_id)
        templates.append({"id": template_id, "name": product.get("name"), "mft_part_num": product.get("mft_part_num"),
                          "discount_price": product.get("discount_price"), "tax_class": product.get("tax_class"),
                          "status": "Available"})


class SugarDoubleServer:
    def __init__(self, app: SugarDouble, *, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self._server = make_server(host, port, app, threaded=True)
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="sugar-double", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    config: SugarDoubleConfig | None = None,
    seed: dict[str, Any] | None = None,
) -> SugarDoubleServer:
    app = SugarDouble(config)
    if seed:
        app.seed(seed)
    return SugarDoubleServer(app, host=host, port=port)
