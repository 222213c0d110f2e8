"""The emulator's WSGI layer, in front of xero-local's rolo router.

Accounting API calls go through auth, injected faults, rate limits, spec validation and
Idempotency-Key handling, then to this layer's handlers (Contacts, Items, Invoices and their
OnlineInvoice, Quotes, Payments, PurchaseOrders, CreditNotes and their Allocations, settings) or,
for anything else (/connect/token, /connections, /_xero/*), to xero-local's own routes.
xero-local's routes read one module-level ``store``; it is replaced once by a proxy that
resolves to the store of the emulator serving the current request, so several emulators
can run in one process without sharing data.
"""

from __future__ import annotations

import contextvars
import hashlib
import html
import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

import xero_local.routes as xero_local_routes
from werkzeug.test import run_wsgi_app
from werkzeug.wrappers import Request, Response
from xero_local.server import create_router

from .config import EmulatorConfig, FaultConfig
from .parameters import allowed_parameters
from .store import ID_FIELDS, RESOURCE_KEYS, EmulatorStore, Outcome, updated_ms
from .traffic import FaultInjector, IdempotencyCache, Latency, RateLimiter, RequestLog, StoredResponse
from .values import (
    BadValue,
    WhereFilter,
    date_fields,
    page_of,
    parse_date,
    parse_if_modified_since,
    round_to,
    xero_to_ms,
)

API_PREFIX = "/api.xro/2.0"
NOT_FOUND_TEXT = "The resource you're looking for cannot be found"
# Xero's gateway refuses a longer query string (as sent, percent-encoded) with a 404: IIS's
# "404.15 query string too long" (XeroAPI/Xero-Net#280); 52 GUIDs in IDs= pass and 53 do not
# (XeroAPI/Xero-OpenAPI#534, xero-node#404), 55 and 56 with raw commas (Xero-NetStandard#413):
# IIS's default maxQueryString, 2,048. Xero documents no limit.
MAX_QUERY_STRING = 2048
_WRITE_METHODS = ("PUT", "POST", "PATCH", "DELETE")
_PAGED = {"contacts", "invoices", "payments", "quotes", "purchase_orders", "credit_notes"}
_DOCUMENT_KINDS = ("invoices", "quotes", "purchase_orders", "credit_notes")
ONLINE_INVOICE_PATH = "/_emulator/online-invoices/"
_CONTACT_SUMMARY = (
    "ContactID",
    "ContactNumber",
    "AccountNumber",
    "ContactStatus",
    "Name",
    "FirstName",
    "LastName",
    "CompanyNumber",
    "EmailAddress",
    "IsSupplier",
    "IsCustomer",
    "UpdatedDateUTC",
    "UpdatedDateUTCString",
    "HasAttachments",
    "HasValidationErrors",
)
_DOCUMENT_CONTACT = (
    "ContactID",
    "ContactNumber",
    "Name",
    "ContactStatus",
    "EmailAddress",
    "FirstName",
    "LastName",
    "Addresses",
    "Phones",
    "HasValidationErrors",
)
_INVOICE_SUMMARY_DROP = ("LineItems", "Payments", "CreditNotes", "Prepayments", "Overpayments")

_ALLOWED_PARAMETERS = "xero_emulator.allowed_parameters"
_current_store: contextvars.ContextVar[EmulatorStore | None] = contextvars.ContextVar(
    "xero_emulator_store", default=None
)


class _StoreProxy:
    """Stands in for xero-local's module-level store: the serving emulator's store, else the original."""

    def __init__(self, original: Any):
        self._original = original

    def __getattr__(self, name: str) -> Any:
        return getattr(_current_store.get() or self._original, name)


if not isinstance(xero_local_routes.store, _StoreProxy):
    xero_local_routes.store = _StoreProxy(xero_local_routes.store)


class _Dropped(Exception):
    pass


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, default=_json_default), status=status, headers=headers, mimetype="application/json"
    )


def _envelope(key: str, records: list[Any], **extra: Any) -> dict[str, Any]:
    ms = int(time.time() * 1000)
    return {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": "sugar-xero emulator",
        "DateTimeUTC": f"/Date({ms})/",
        **extra,
        key: records,
    }


def _bad_request(message: str, **extra: Any) -> Response:
    return json_response(
        {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message, **extra}, 400
    )


def _not_found() -> Response:
    return Response(NOT_FOUND_TEXT, status=404, mimetype="text/plain")


def _flag(request: Request, name: str, default: bool) -> bool:
    value = _arg(request, name)
    if value is None:
        return default
    return value.strip().lower() in ("true", "1", "yes")


def _arg(request: Request, name: str) -> str | None:
    """A query parameter the operation takes; Xero ignores the others, and so does the emulator."""
    lowered = name.lower()
    allowed = request.environ.get(_ALLOWED_PARAMETERS)
    if allowed is not None and lowered not in allowed:
        return None
    for key, value in request.args.items():
        if key.lower() == lowered:
            return value
    return None


class XeroEmulator:
    """A WSGI application: Xero's Accounting API as the connector uses it, plus /_emulator/ controls."""

    def __init__(self, config: EmulatorConfig | None = None):
        self.config = config or EmulatorConfig()
        self.store = EmulatorStore(self.config)
        self.limiter = RateLimiter(self.config)
        self.latency = Latency(self.config)
        self.idempotency = IdempotencyCache(self.config)
        self.faults = FaultInjector(self.config.faults)
        self.log = RequestLog(self.config.request_log_size)
        self._delegate = create_router().wsgi()
        self._validate_spec = self._spec_validation_wanted()
        self._routes = self._build_routes()

    # ---- plumbing -------------------------------------------------------------------------
    def _spec_validation_wanted(self) -> bool:
        """On unless a caller turns it off by name; a missing spec stops the emulator at start rather
        than letting it accept whatever it is sent."""
        if not self.config.validate_spec:
            return False
        from sugar_xero import xero_spec

        xero_spec.contract(self.config.spec_path)  # raises SpecNotFound naming XERO_OPENAPI_SPEC
        return True

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        token = _current_store.set(self.store)
        try:
            request = Request(environ)
            try:
                response = self.handle(request)
            except _Dropped:
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                raise ConnectionAbortedError("fault injection: connection dropped") from None
            return response(environ, start_response)
        finally:
            _current_store.reset(token)

    def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_emulator/"):
            return self._control(request)
        if path == "/_xero/state" and request.method == "GET":
            return self._xero_local_state()
        if path.lower().startswith(API_PREFIX.lower() + "/"):
            return self._api(request)
        started = time.monotonic()
        response = self._forward(request, request.get_data(cache=True))
        if not path.startswith("/_xero/"):
            # Identity calls (token, connections) count against nothing but are Xero calls all
            # the same: benchmarks count token refreshes from this log.
            self._finish({"method": request.method, "path": path, "query": dict(request.args.items()),
                          "tenant": None, "idempotency_key": None, "status": response.status_code,
                          "fault": None, "rate_limit_problem": None, "spec_violation": None,
                          "replayed": False}, started)
        return response

    def _forward(self, request: Request, body: bytes) -> Response:
        environ = dict(request.environ)
        environ["wsgi.input"] = BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        app_iter, status, headers = run_wsgi_app(self._delegate, environ, buffered=True)
        data = b"".join(app_iter)
        return Response(data, status=status, headers=headers)

    # ---- the Accounting API pipeline ------------------------------------------------------
    def _api(self, request: Request) -> Response:
        started = time.monotonic()
        tenant = request.headers.get("xero-tenant-id") or self.store.default_tenant_id()
        body = request.get_data(cache=True)
        key = request.headers.get("Idempotency-Key")
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.args.items()),
            "tenant": tenant,
            "idempotency_key": key,
            "status": None,
            "fault": None,
            "rate_limit_problem": None,
            "spec_violation": None,
            "replayed": False,
        }
        if request.method in _WRITE_METHODS and body:
            try:
                entry["body"] = json.loads(body)
            except ValueError:
                entry["body"] = body[:2000].decode("utf-8", "replace")
        try:
            response = self._api_steps(request, tenant, body, key, entry)
        except _Dropped:
            entry["status"] = "dropped"
            self._finish(entry, started)
            raise
        entry["status"] = response.status_code
        self._finish(entry, started)
        return response

    def _finish(self, entry: dict[str, Any], started: float) -> None:
        entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        self.log.add(entry)

    def _api_steps(
        self, request: Request, tenant: str, body: bytes, key: str | None, entry: dict[str, Any]
    ) -> Response:
        if self.config.require_auth and not request.headers.get("Authorization", "").startswith("Bearer "):
            return json_response(
                {
                    "Type": None,
                    "Title": "Unauthorized",
                    "Status": 401,
                    "Detail": "AuthenticationUnsuccessful",
                },
                401,
            )
        if self.config.require_tenant_header and not request.headers.get("xero-tenant-id"):
            return json_response(
                {"Type": None, "Title": "Forbidden", "Status": 403, "Detail": "AuthorizationUnsuccessful"},
                403,
            )
        if len(request.query_string) > MAX_QUERY_STRING:
            return _not_found()
        fault = self.faults.draw(request.path)
        entry["fault"] = fault
        if fault == "dropped":
            raise _Dropped()
        if fault and fault.isdigit():  # "500_after" is not: it answers after the work
            return self._injected_status(int(fault), tenant)
        admission = self.limiter.admit(tenant)
        if not admission.admitted:
            entry["rate_limit_problem"] = admission.problem
            headers = {**admission.headers, "X-Rate-Limit-Problem": admission.problem or ""}
            if admission.retry_after is not None:
                headers["Retry-After"] = str(admission.retry_after)
            return json_response(
                {
                    "Title": "Too Many Requests",
                    "Status": 429,
                    "Detail": f"Rate limit exceeded: {admission.problem}",
                },
                429,
                headers,
            )
        try:
            delay = self.latency.draw() + (
                self.faults.faults.slow_seconds if fault == "slow" else 0.0
            )
            if delay > 0:
                time.sleep(min(delay, FaultConfig.MAX_SLOW_SECONDS))
            response = self._process(request, tenant, body, key, entry)
        finally:
            self.limiter.release(tenant)
        response.headers.update(admission.headers)
        if fault == "dropped_after":
            raise _Dropped()
        if fault in ("500_after", "504_after"):
            # the work is done and stored; the caller only learns that something went wrong
            return self._injected_status(int(fault[:3]), tenant)
        return response

    def _injected_status(self, status: int, tenant: str) -> Response:
        headers = self.limiter.headers(tenant)
        if status == 429:
            headers["X-Rate-Limit-Problem"] = "minute"
            headers["Retry-After"] = str(self.faults.faults.retry_after)
            return json_response(
                {
                    "Title": "Too Many Requests",
                    "Status": 429,
                    "Detail": "Rate limit exceeded (injected fault)",
                },
                429,
                headers,
            )
        return json_response(
            {
                "Title": "An error occurred",
                "Status": status,
                "Detail": "An error occurred in Xero (injected fault)",
            },
            status,
            headers,
        )

    def _process(
        self, request: Request, tenant: str, body: bytes, key: str | None, entry: dict[str, Any]
    ) -> Response:
        method = request.method
        if method in _WRITE_METHODS and self._validate_spec and method != "DELETE":
            from sugar_xero import xero_spec

            try:
                xero_spec.validate_request(
                    method, request.path, body or None, dict(request.args.items()), spec=self.config.spec_path
                )
            except xero_spec.ContractViolation as violation:
                entry["spec_violation"] = str(violation)
                return _bad_request(
                    str(violation),
                    ContractViolations=[
                        {"path": path, "message": message} for path, message in violation.errors
                    ],
                )
        if key is None or method not in _WRITE_METHODS:
            return self._dispatch(request, tenant, body)
        if len(key) > 128:
            return _bad_request("Idempotency-Key must be at most 128 characters")
        query = urlencode(sorted(request.args.items(multi=True)))
        fingerprint = IdempotencyCache.fingerprint(method, request.path, query, body)
        outcome, value = self.idempotency.begin(tenant, key, fingerprint)
        if outcome == "conflict":
            return _bad_request(f"Idempotency-Key {key} was already used for a different request")
        if outcome == "replay":
            entry["replayed"] = True
            return Response(value.body, status=value.status, headers=value.headers)
        response = None
        try:
            response = self._dispatch(request, tenant, body)
        finally:
            keep = response is not None and response.status_code < 500 and response.status_code != 429
            stored = (
                StoredResponse(response.status_code, list(response.headers.items()), response.get_data())
                if keep and response is not None
                else None
            )
            self.idempotency.complete(value, stored)
        return response

    def _dispatch(self, request: Request, tenant: str, body: bytes) -> Response:
        sub_path = request.path[len(API_PREFIX) :]
        for pattern, template, methods, handler in self._routes:
            match = pattern.match(sub_path)
            if match:
                if request.method not in methods:
                    return Response("Method not allowed", status=405)
                request.environ[_ALLOWED_PARAMETERS] = allowed_parameters(request.method, template)
                try:
                    return handler(request, tenant, body, *match.groups())
                except BadValue as error:
                    return _bad_request(str(error))
        return self._forward(request, body)

    def _build_routes(self) -> list[tuple[re.Pattern[str], str, tuple[str, ...], Callable[..., Response]]]:
        routes: list[tuple[re.Pattern[str], str, tuple[str, ...], Callable[..., Response]]] = []

        def add(template: str, methods: tuple[str, ...], handler: Callable[..., Response]) -> None:
            """``template`` is the spec's path (``/Invoices/{InvoiceID}``): it names the operation
            whose query parameters apply (``parameters.QUERY_PARAMETERS``)."""
            path = re.sub(r"\{[^}]+\}", "([^/]+)", template)
            routes.append((re.compile(f"^{path}/?$", re.IGNORECASE), template, methods, handler))

        for kind in ("contacts", "items", "invoices", "quotes", "payments", "purchase_orders", "credit_notes"):
            name = RESOURCE_KEYS[kind]
            add(f"/{name}", ("GET", "PUT", "POST"), self._collection_handler(kind))
            add(f"/{name}/{{{ID_FIELDS[kind]}}}", ("GET", "POST"), self._single_handler(kind))
        add("/Invoices/{InvoiceID}/OnlineInvoice", ("GET",), self._online_invoice)
        add(
            "/CreditNotes/{CreditNoteID}/Allocations",
            ("PUT",),
            lambda r, t, b, note_id: self._write("allocations", r, t, b, None, parent_id=note_id),
        )
        add("/CreditNotes/{CreditNoteID}/Allocations/{AllocationID}", ("DELETE",), self._delete_allocation)
        add("/TaxRates", ("GET",), lambda r, t, b: self._setting_list(r, "TaxRates", self.config.tax_rates))
        add("/Accounts", ("GET",), lambda r, t, b: self._setting_list(r, "Accounts", self.config.accounts))
        add(
            "/Accounts/{AccountID}",
            ("GET",),
            lambda r, t, b, i: self._setting_one("Accounts", "AccountID", i, self.config.accounts),
        )
        add(
            "/Currencies",
            ("GET",),
            lambda r, t, b: self._setting_list(r, "Currencies", self.config.currencies),
        )
        add(
            "/TrackingCategories",
            ("GET",),
            lambda r, t, b: self._setting_list(r, "TrackingCategories", self.config.tracking_categories),
        )
        add(
            "/TrackingCategories/{TrackingCategoryID}",
            ("GET",),
            lambda r, t, b, i: self._setting_one(
                "TrackingCategories", "TrackingCategoryID", i, self.config.tracking_categories
            ),
        )
        add("/Organisation", ("GET",), lambda r, t, b: self._organisation(t))
        return routes

    # ---- resource handlers ----------------------------------------------------------------
    def _collection_handler(self, kind: str) -> Callable[..., Response]:
        def handler(request: Request, tenant: str, body: bytes) -> Response:
            if request.method == "GET":
                return self._list(kind, request, tenant)
            return self._write(kind, request, tenant, body, None)

        return handler

    def _single_handler(self, kind: str) -> Callable[..., Response]:
        def handler(request: Request, tenant: str, body: bytes, key: str) -> Response:
            if request.method == "GET":
                record = self.store.record(kind, tenant, key)
                if record is None:
                    return _not_found()
                return json_response(
                    _envelope(
                        RESOURCE_KEYS[kind], [self._present(kind, record, tenant, self._unitdp(request))]
                    )
                )
            return self._write(kind, request, tenant, body, key)

        return handler

    @staticmethod
    def _unitdp(request: Request) -> int:
        value = _arg(request, "unitdp")
        if value is None:
            return 2
        if value not in ("2", "4"):
            raise BadValue("unitdp must be 2 or 4")
        return int(value)

    def _write(
        self,
        kind: str,
        request: Request,
        tenant: str,
        body: bytes,
        path_id: str | None,
        *,
        parent_id: str | None = None,
    ) -> Response:
        key = RESOURCE_KEYS[kind]
        try:
            data = json.loads(body or b"null", parse_float=Decimal)
        except ValueError as error:
            return _bad_request(f"The request body is not valid JSON: {error}")
        if not isinstance(data, dict):
            return _bad_request(f"The request body must be a JSON object with a {key} array")
        body_key = next((k for k in data if k.lower() == key.lower()), None)
        elements = data[body_key] if body_key is not None else [data]
        if not isinstance(elements, list) or not elements:
            return _bad_request(f"{key} must be a non-empty array")
        if path_id is not None and len(elements) != 1:
            return _bad_request(f"Send exactly one element to {API_PREFIX}/{key}/{path_id}")
        summarize = _flag(request, "summarizeErrors", True)
        unitdp = self._unitdp(request)
        outcomes, stored = self.store.write_batch(
            kind,
            tenant,
            elements,
            method=request.method,
            path_id=path_id,
            summarize=summarize,
            unitdp=unitdp,
            parent_id=parent_id,
        )
        if (path_id is not None or parent_id is not None) and outcomes[0].not_found:
            return _not_found()
        if not stored:
            failed = [self._element(kind, o, tenant, unitdp, with_status=False) for o in outcomes if o.errors]
            return json_response(
                {
                    "ErrorNumber": 10,
                    "Type": "ValidationException",
                    "Message": "A validation exception occurred",
                    "Elements": failed,
                },
                400,
            )
        answers = [self._element(kind, o, tenant, unitdp, with_status=not summarize) for o in outcomes]
        return json_response(_envelope(key, answers))

    def _element(self, kind: str, outcome: Outcome, tenant: str, unitdp: int, *, with_status: bool) -> dict:
        if outcome.errors:
            element = self._round(kind, outcome.record, unitdp)
            element["HasValidationErrors"] = True
            element["ValidationErrors"] = [{"Message": m} for m in outcome.errors]
            if with_status:
                element["StatusAttributeString"] = "ERROR"
            return element
        element = self._present(kind, outcome.record, tenant, unitdp)
        if outcome.warnings:
            element["Warnings"] = [{"Message": m} for m in outcome.warnings]
        if with_status:
            element["StatusAttributeString"] = "WARNING" if outcome.warnings else "OK"
        return element

    def _list(self, kind: str, request: Request, tenant: str) -> Response:
        unitdp = self._unitdp(request)
        summary = _flag(request, "summaryOnly", False)
        records = self.store.records(kind, tenant)
        records = self._filter_by_params(kind, request, records)
        since = request.headers.get("If-Modified-Since")
        if since:
            threshold = parse_if_modified_since(since)
            records = [r for r in records if updated_ms(r) > threshold]
        presented = [self._present(kind, r, tenant, unitdp) for r in records]
        where = _arg(request, "where")
        if where:
            where_filter = WhereFilter(where)
            presented = [r for r in presented if where_filter.matches(r)]
        order = _arg(request, "order")
        if order:
            presented = _ordered(presented, order)
        extra: dict[str, Any] = {}
        page_arg, size_arg = _arg(request, "page"), _arg(request, "pageSize")
        paged = kind in _PAGED and (page_arg is not None or size_arg is not None)
        if paged:
            try:
                page = max(1, int(page_arg or 1))
                size = min(1000, max(1, int(size_arg or 100)))
            except ValueError:
                raise BadValue("page and pageSize must be whole numbers") from None
            presented, extra["pagination"] = page_of(presented, page, size)
        if kind == "contacts" and page_arg is None:
            # spec, Contact.MergedToContactID: "Only returned when using paging or when fetching a
            # contact by ContactId or ContactNumber"
            for record in presented:
                record.pop("MergedToContactID", None)
        if kind == "invoices" and page_arg is None:
            # Xero's Invoices documentation: a list (IDs= and InvoiceNumbers= included) is a summary
            # without line items unless ``page`` is given; one invoice by id or number has them.
            for record in presented:
                record.pop("LineItems", None)
        if summary:
            presented = [_summary(kind, r) for r in presented]
        return json_response(_envelope(RESOURCE_KEYS[kind], presented, **extra))

    def _filter_by_params(self, kind: str, request: Request, records: list[dict]) -> list[dict]:
        def values(name: str) -> set[str] | None:
            raw = _arg(request, name)
            return {v.strip().lower() for v in raw.split(",") if v.strip()} if raw else None

        if ids := values("IDs"):
            records = [r for r in records if r[ID_FIELDS[kind]].lower() in ids]
        if kind == "contacts":
            if not _flag(request, "includeArchived", False):
                records = [r for r in records if r.get("ContactStatus") != "ARCHIVED"]
            term = (_arg(request, "searchTerm") or "").casefold()
            if term:
                fields = ("Name", "FirstName", "LastName", "ContactNumber", "CompanyNumber", "EmailAddress")
                records = [r for r in records if any(term in str(r.get(f) or "").casefold() for f in fields)]
        if kind in _DOCUMENT_KINDS:
            contact_ids = values("ContactIDs") or values("ContactID")
            if contact_ids:
                records = [
                    r for r in records if r.get("Contact", {}).get("ContactID", "").lower() in contact_ids
                ]
            statuses = values("Statuses") or values("Status")
            if statuses:
                records = [r for r in records if r.get("Status", "").lower() in statuses]
        if kind == "invoices" and (numbers := values("InvoiceNumbers")):
            records = [r for r in records if str(r.get("InvoiceNumber", "")).lower() in numbers]
        if kind == "quotes" and (number := _arg(request, "QuoteNumber")):
            records = [r for r in records if str(r.get("QuoteNumber", "")).lower() == number.lower()]
        if kind in ("purchase_orders", "quotes"):
            records = _within_dates(records, _arg(request, "DateFrom"), _arg(request, "DateTo"))
        return records

    def _present(self, kind: str, record: dict[str, Any], tenant: str, unitdp: int) -> dict[str, Any]:
        presented = self._round(kind, record, unitdp)
        if kind in _DOCUMENT_KINDS and presented.get("Contact", {}).get("ContactID"):
            contact = self.store.record("contacts", tenant, presented["Contact"]["ContactID"])
            if contact:
                presented["Contact"] = {k: contact[k] for k in _DOCUMENT_CONTACT if k in contact}
        if kind == "payments" and presented.get("Invoice", {}).get("InvoiceID"):
            invoice = self.store.record("invoices", tenant, presented["Invoice"]["InvoiceID"])
            if invoice:
                summary = {
                    k: v
                    for k, v in self._present("invoices", invoice, tenant, unitdp).items()
                    if k not in _INVOICE_SUMMARY_DROP
                }
                summary["Contact"] = {k: summary.get("Contact", {}).get(k) for k in ("ContactID", "Name")}
                presented["Invoice"] = summary
        return presented

    def _online_invoice(self, request: Request, tenant: str, body: bytes, key: str) -> Response:
        """Xero gives a customer-facing URL for a sales invoice once it is approved; the emulator's
        URL is on its own loopback address and shows the invoice (see ``_online_invoice_page``)."""
        invoice = self.store.record("invoices", tenant, key)
        if invoice is None:
            return _not_found()
        problem = None
        if invoice["Type"] != "ACCREC":
            problem = "Online invoices are only available for sales invoices (ACCREC)"
        elif invoice["Status"] in ("DRAFT", "DELETED"):
            problem = f"An online invoice cannot be retrieved for a {invoice['Status']} invoice"
        if problem:
            return json_response(
                {
                    "ErrorNumber": 10,
                    "Type": "ValidationException",
                    "Message": "A validation exception occurred",
                    "Elements": [
                        {
                            "InvoiceID": invoice["InvoiceID"],
                            "Status": invoice["Status"],
                            "ValidationErrors": [{"Message": problem}],
                        }
                    ],
                },
                400,
            )
        url = request.host_url.rstrip("/") + ONLINE_INVOICE_PATH + online_invoice_token(tenant, invoice["InvoiceID"])
        return json_response(_envelope("OnlineInvoices", [{"OnlineInvoiceUrl": url}]))

    def _online_invoice_page(self, token: str) -> Response:
        for tenant in self.store.tenant_ids():
            for invoice in self.store.records("invoices", tenant):
                if online_invoice_token(tenant, invoice["InvoiceID"]) == token:
                    presented = self._present("invoices", invoice, tenant, 2)
                    rows = "".join(
                        f"<tr><td>{html.escape(str(li.get('Description', '')))}</td>"
                        f"<td>{li.get('Quantity', '')}</td><td>{li.get('UnitAmount', '')}</td>"
                        f"<td>{li.get('LineAmount', '')}</td></tr>"
                        for li in presented.get("LineItems") or []
                    )
                    page = (
                        f"<html><head><title>Invoice {html.escape(presented['InvoiceNumber'])}</title></head><body>"
                        f"<h1>Invoice {html.escape(presented['InvoiceNumber'])}</h1>"
                        f"<p>{html.escape(str(presented.get('Contact', {}).get('Name', '')))} · "
                        f"{presented['Status']} · {presented.get('CurrencyCode', '')} {presented['Total']} · "
                        f"due {presented['AmountDue']}</p><table>{rows}</table></body></html>"
                    )
                    return Response(page, mimetype="text/html")
        return Response("No such online invoice", status=404, mimetype="text/plain")

    def _delete_allocation(
        self, request: Request, tenant: str, body: bytes, note_id: str, allocation_id: str
    ) -> Response:
        answer = self.store.delete_allocation(tenant, note_id, allocation_id)
        if answer is None:
            return _not_found()
        return json_response(answer)

    @staticmethod
    def _round(kind: str, record: dict[str, Any], unitdp: int) -> dict[str, Any]:
        presented = _copy(record)
        for line in presented.get("LineItems") or []:
            if isinstance(line, dict) and isinstance(line.get("UnitAmount"), Decimal):
                line["UnitAmount"] = round_to(line["UnitAmount"], unitdp)
        for key in ("SalesDetails", "PurchaseDetails"):
            details = presented.get(key)
            if isinstance(details, dict) and isinstance(details.get("UnitPrice"), Decimal):
                details["UnitPrice"] = round_to(details["UnitPrice"], unitdp)
        return presented

    def _setting_list(self, request: Request, key: str, records: list[dict[str, Any]]) -> Response:
        presented = _copy(records)
        if key == "TaxRates" and (tax_type := _arg(request, "TaxType")):
            presented = [r for r in presented if str(r.get("TaxType", "")).lower() == tax_type.lower()]
        if key == "TrackingCategories" and not _flag(request, "includeArchived", False):
            presented = [r for r in presented if r.get("Status", "ACTIVE") != "ARCHIVED"]
        if where := _arg(request, "where"):
            where_filter = WhereFilter(where)
            presented = [r for r in presented if where_filter.matches(r)]
        return json_response(_envelope(key, presented))

    def _setting_one(self, key: str, id_field: str, value: str, records: list[dict[str, Any]]) -> Response:
        found = [r for r in records if str(r.get(id_field, "")).lower() == value.lower()]
        return json_response(_envelope(key, _copy(found))) if found else _not_found()

    def _organisation(self, tenant: str) -> Response:
        name = self.store.organisation_name(tenant) or f"Organisation {tenant[:8]}"
        return json_response(
            _envelope(
                "Organisations",
                [
                    {
                        "OrganisationID": tenant,
                        "Name": name,
                        "LegalName": name,
                        "BaseCurrency": self.config.base_currency,
                        "CountryCode": "SG",
                        "OrganisationType": "COMPANY",
                        "OrganisationStatus": "ACTIVE",
                        "IsDemoCompany": False,
                        "Timezone": self.config.timezone.upper(),
                        "Version": "GLOBAL",
                        "SalesTaxBasis": "ACCRUALS",
                        "SalesTaxPeriod": "QUARTERLY",
                        "DefaultSalesTax": "Tax Exclusive",
                        "DefaultPurchasesTax": "Tax Exclusive",
                    }
                ],
            )
        )

    # ---- controls -------------------------------------------------------------------------
    def _control(self, request: Request) -> Response:
        action = request.path[len("/_emulator/") :].strip("/")
        method = request.method
        if request.path.startswith(ONLINE_INVOICE_PATH) and method == "GET":
            return self._online_invoice_page(request.path[len(ONLINE_INVOICE_PATH) :].strip("/"))
        try:
            if action == "health" and method == "GET":
                return json_response(
                    {
                        "status": "ok",
                        "tenant_id": self.config.tenant_id,
                        "spec_validation": self._validate_spec,
                    }
                )
            if action == "requests" and method == "GET":
                since = int(request.args.get("since", "0") or 0)
                entries, last = self.log.since(since)
                return json_response({"requests": entries, "last_seq": last})
            if action == "reset" and method == "POST":
                self.reset()
                return json_response({"status": "ok"})
            if action == "faults" and method == "GET":
                return json_response(self.faults.state())
            if action == "faults" and method == "POST":
                data = request.get_json(force=True, silent=True)
                if not isinstance(data, dict):
                    return json_response({"error": "send a JSON object"}, 400)
                self.faults.configure(FaultConfig.from_json(data))
                return json_response(self.faults.state())
            if action == "state" and method == "GET":
                return json_response(
                    {
                        "default_tenant": self.store.default_tenant_id(),
                        "tenants": self.store.snapshot(),
                        "usage": self.limiter.usage(),
                    }
                )
            if action == "organisations" and method == "POST":
                # Another organisation the emulated user can access (as adding one to a Xero login).
                data = request.get_json(force=True, silent=True)
                if not isinstance(data, dict) or not all(isinstance(v, str) and v for v in data.values()):
                    return json_response({"error": "send a JSON object: tenant id → organisation name"}, 400)
                self.config.organisations.update(data)
                return json_response({"connections": self.store.get_connections()})
            if action == "merge" and method == "POST":
                # What a person does in Xero's app (Contacts → Merge); the API cannot merge.
                data = request.get_json(force=True, silent=True) or {}
                merged = self.store.merge_contacts(
                    data.get("tenant_id"), str(data.get("from") or ""), str(data.get("into") or "")
                )
                return json_response(merged) if merged else json_response({"error": "unknown contact"}, 404)
            if action == "limits" and method == "GET":
                return json_response(self.config.limits_json())
            if action == "limits" and method == "POST":
                data = request.get_json(force=True, silent=True)
                if not isinstance(data, dict):
                    return json_response({"error": "send a JSON object"}, 400)
                self.config.update_limits(data)
                return json_response(self.config.limits_json())
        except (ValueError, TypeError) as error:
            return json_response({"error": str(error)}, 400)
        return json_response({"error": f"no control {method} /_emulator/{action}"}, 404)

    def reset(self) -> None:
        """Empty the data, rate-limit windows, idempotency keys and log; restore the config's faults."""
        self.store.reset()
        self.limiter.reset()
        self.idempotency.reset()
        self.log.reset()
        self.faults.configure(self.config.faults)

    def _xero_local_state(self) -> Response:
        tenant = self.store.default_tenant_id()
        snapshot = self.store.snapshot().get(tenant, {})
        return json_response(
            {
                "tenant": self.store.get_tenant(),
                **{
                    k: snapshot.get(k, [])
                    for k in ("contacts", "invoices", "payments", "credit_notes", "items", "quotes")
                },
            }
        )


def online_invoice_token(tenant: str, invoice_id: str) -> str:
    """The same invoice always has the same online URL, as on Xero."""
    return hashlib.sha256(f"{tenant}:{invoice_id}".encode()).hexdigest()[:40]


def _within_dates(records: list[dict[str, Any]], date_from: str | None, date_to: str | None) -> list[dict]:
    if not date_from and not date_to:
        return records
    low = xero_to_ms(date_fields("Date", parse_date(date_from, "DateFrom"))["Date"]) if date_from else None
    high = xero_to_ms(date_fields("Date", parse_date(date_to, "DateTo"))["Date"]) if date_to else None
    kept = []
    for record in records:
        day = xero_to_ms(record.get("Date"))
        if day is None or (low is not None and day < low) or (high is not None and day > high):
            continue
        kept.append(record)
    return kept


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _summary(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    if kind == "contacts":
        return {k: record[k] for k in _CONTACT_SUMMARY if k in record}
    if kind == "invoices":
        reduced = {k: v for k, v in record.items() if k not in _INVOICE_SUMMARY_DROP}
        reduced["Contact"] = {k: record.get("Contact", {}).get(k) for k in ("ContactID", "Name")}
        return reduced
    return record


def _ordered(records: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    for clause in reversed([c.strip() for c in order.split(",") if c.strip()]):
        parts = clause.split()
        field, descending = parts[0], len(parts) > 1 and parts[1].upper() == "DESC"

        def sort_key(record: dict[str, Any], field: str = field) -> tuple[int, Any]:
            value: Any = record
            for part in field.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                return (0, "")
            ms = xero_to_ms(value)
            if ms is not None:
                return (1, ms)
            if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                return (1, Decimal(str(value)))
            return (2, str(value).casefold())

        records = sorted(records, key=sort_key, reverse=descending)
    return records
