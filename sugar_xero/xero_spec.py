"""Contract checks against Xero's official OpenAPI description of the Accounting API.

``validate_request`` finds the operation a request targets (``POST /api.xro/2.0/Contacts``),
validates its JSON body against the operation's request schema with OpenAPI 3.0 semantics, and
checks the query parameters it declares. ``assert_calls_match_spec`` does the same for every Xero
call the ``responses`` library recorded, so unit tests catch a body Xero would reject.

The spec is big (about 1 MB of YAML), so it is parsed once per path and every operation's
validator is built once, on first use.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

SPEC_ENV_VAR = "XERO_OPENAPI_SPEC"
API_PREFIX = "/api.xro/2.0"
_SPEC_URI = "urn:xero:accounting-openapi"
_MAX_VALUE_CHARS = 80


class ContractViolation(AssertionError):
    """A request that Xero's published contract does not allow; ``errors`` holds (json_path, message)."""

    def __init__(
        self, method: str, path: str, errors: list[tuple[str, str]], operation_id: str | None = None
    ):
        self.method = method.upper()
        self.path = path
        self.operation_id = operation_id
        self.errors = errors
        where = f"{self.method} {path}" + (f" ({operation_id})" if operation_id else "")
        lines = "\n".join(f"  - {json_path}: {message}" for json_path, message in errors)
        super().__init__(f"{where} breaks the Xero OpenAPI contract:\n{lines}")


class SpecNotFound(FileNotFoundError):
    """The Xero OpenAPI file is not where ``spec_path()`` says."""


def repository_root() -> Path:
    """The directory holding the ``sugar_xero`` package (the repository checkout)."""
    return Path(__file__).resolve().parent.parent


def spec_path() -> Path:
    """Where the accounting spec is: ``$XERO_OPENAPI_SPEC``, else ``<repo>/../shared/xero-openapi/``."""
    configured = os.environ.get(SPEC_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return (repository_root().parent / "shared" / "xero-openapi" / "xero_accounting.yaml").resolve()


def load_spec(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The parsed spec (cached per file and modification time)."""
    resolved = Path(path) if path is not None else spec_path()
    if not resolved.is_file():
        raise SpecNotFound(f"Xero OpenAPI spec not found at {resolved}; set {SPEC_ENV_VAR}")
    return _load_spec_cached(str(resolved.resolve()), resolved.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load_spec_cached(path: str, _mtime_ns: int) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader, C or pure Python


# ---- operations -------------------------------------------------------------------------------


@dataclass
class _Operation:
    method: str
    template: str
    operation_id: str | None
    query_parameters: dict[str, dict[str, Any]]
    body_schema_ref: dict[str, Any] | None
    body_required: bool
    _validator: Any = field(default=None, repr=False)


class XeroContract:
    """Xero's accounting spec, indexed by method and path, with validators built lazily."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self._lock = threading.Lock()
        self._routes: list[tuple[re.Pattern[str], int, str, dict[str, Any]]] = []
        for template, path_item in spec.get("paths", {}).items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            variables = template.count("{")
            self._routes.append((re.compile(pattern, re.IGNORECASE), variables, template, path_item))
        # A literal segment wins over a template variable ("/Invoices/Foo" before "/Invoices/{ID}").
        self._routes.sort(key=lambda route: route[1])
        self._operations: dict[tuple[str, str], _Operation] = {}
        self._registry = None

    # -- lookup -----------------------------------------------------------------------------
    def operation(self, method: str, api_path: str) -> _Operation | None:
        method = method.lower()
        for pattern, _variables, template, path_item in self._routes:
            if pattern.match(api_path) and method in path_item:
                return self._operation_for(method, template, path_item)
        return None

    def path_known(self, api_path: str) -> bool:
        return any(pattern.match(api_path) for pattern, _v, _t, _p in self._routes)

    def _operation_for(self, method: str, template: str, path_item: dict[str, Any]) -> _Operation:
        key = (method, template)
        with self._lock:
            if key in self._operations:
                return self._operations[key]
            spec_op = path_item[method]
            parameters = [self._deref(p) for p in path_item.get("parameters", [])]
            parameters += [self._deref(p) for p in spec_op.get("parameters", [])]
            query = {p["name"]: p for p in parameters if p.get("in") == "query" and "name" in p}
            body_schema = None
            body_required = False
            request_body = spec_op.get("requestBody")
            if request_body:
                request_body = self._deref(request_body)
                body_required = bool(request_body.get("required"))
                media = request_body.get("content", {}).get("application/json")
                if media and "schema" in media:
                    body_schema = media["schema"]
            op = _Operation(method, template, spec_op.get("operationId"), query, body_schema, body_required)
            self._operations[key] = op
            return op

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 10:
            pointer = node["$ref"]
            if not pointer.startswith("#/"):
                raise ValueError(f"unsupported $ref {pointer!r}")
            target: Any = self.spec
            for part in pointer[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
            seen += 1
        return node

    # -- body validation --------------------------------------------------------------------
    def body_validator(self, op: _Operation):
        if op._validator is not None:
            return op._validator
        from openapi_schema_validator import OAS30Validator, oas30_format_checker
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        with self._lock:
            if self._registry is None:
                resource = Resource.from_contents(self.spec, default_specification=DRAFT4)
                self._registry = Registry().with_resource(_SPEC_URI, resource)
            schema = _rebase_refs(op.body_schema_ref)
            op._validator = OAS30Validator(
                schema, registry=self._registry, format_checker=oas30_format_checker
            )
        return op._validator


def _rebase_refs(schema: Any) -> Any:
    """Point local ``#/...`` refs of an inline request schema at the registered spec resource."""
    if isinstance(schema, dict):
        return {
            key: (
                _SPEC_URI + value
                if key == "$ref" and isinstance(value, str) and value.startswith("#")
                else _rebase_refs(value)
            )
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase_refs(item) for item in schema]
    return schema


@lru_cache(maxsize=4)
def _contract_cached(path: str, mtime_ns: int) -> XeroContract:
    return XeroContract(_load_spec_cached(path, mtime_ns))


def contract(path: str | os.PathLike[str] | None = None) -> XeroContract:
    resolved = Path(path) if path is not None else spec_path()
    if not resolved.is_file():
        raise SpecNotFound(f"Xero OpenAPI spec not found at {resolved}; set {SPEC_ENV_VAR}")
    return _contract_cached(str(resolved.resolve()), resolved.stat().st_mtime_ns)


# ---- public checks ----------------------------------------------------------------------------


def api_path_of(path_or_url: str) -> str | None:
    """``/Contacts`` for ``https://api.xero.com/api.xro/2.0/Contacts?x=1``; None for non-Accounting paths."""
    path = urlsplit(path_or_url).path if "://" in path_or_url else path_or_url.split("?", 1)[0]
    index = path.find(API_PREFIX + "/")
    if index < 0:
        return None
    return path[index + len(API_PREFIX) :].rstrip("/") or "/"


def validate_request(
    method: str,
    path: str,
    body: Any = None,
    query: Mapping[str, Any] | None = None,
    *,
    spec: str | os.PathLike[str] | None = None,
) -> str | None:
    """Raise ContractViolation when the request breaks Xero's spec; return the operationId otherwise.

    ``path`` may be a full URL or a path starting with ``/api.xro/2.0``; its query string is merged
    with ``query``. ``body`` may be bytes, a JSON string, or already-parsed JSON (None: no body).
    """
    api_path = api_path_of(path)
    display_path = urlsplit(path).path if "://" in path else path.split("?", 1)[0]
    if api_path is None:
        raise ContractViolation(
            method, display_path, [("$", f"not an Accounting API path (no {API_PREFIX}/)")]
        )
    all_query: dict[str, Any] = {}
    raw_query = urlsplit(path).query if "?" in path else ""
    all_query.update(parse_qsl(raw_query, keep_blank_values=True))
    if query:
        all_query.update({str(k): v for k, v in dict(query).items()})

    xero = contract(spec)
    op = xero.operation(method, api_path)
    if op is None:
        what = "method not allowed on" if xero.path_known(api_path) else "no such path in"
        raise ContractViolation(
            method, display_path, [("$", f"{what} the Xero spec: {method.upper()} {api_path}")]
        )

    errors: list[tuple[str, str]] = []
    errors += _query_errors(op, all_query)
    parsed, body_errors = _parse_body(body)
    errors += body_errors
    if not body_errors:
        if op.body_schema_ref is None:
            if parsed is not None:
                errors.append(("$", "this operation takes no JSON request body"))
        elif parsed is None:
            if op.body_required:
                errors.append(("$", "a JSON request body is required"))
        else:
            validator = xero.body_validator(op)
            for error in sorted(
                validator.iter_errors(parsed), key=lambda e: [str(p) for p in e.absolute_path]
            ):
                errors.append((_json_path(error.absolute_path), _describe(error)))
    if errors:
        raise ContractViolation(method, display_path, errors, op.operation_id)
    return op.operation_id


def _query_errors(op: _Operation, query: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors = []
    declared = {name.lower(): param for name, param in op.query_parameters.items()}
    for name, value in query.items():
        param = declared.get(name.lower())
        if param is None:
            if name.lower() == "summarizeerrors":
                errors.append(
                    (f"query.{name}", f"summarizeErrors is not a declared parameter of {op.operation_id}")
                )
            continue
        kind = (param.get("schema") or {}).get("type")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if kind == "boolean" and text.lower() not in ("true", "false"):
            errors.append((f"query.{name}", f"{value!r} is not a boolean (true or false)"))
        elif kind == "integer" and not re.fullmatch(r"-?\d+", text):
            errors.append((f"query.{name}", f"{value!r} is not an integer"))
    return errors


def _parse_body(body: Any) -> tuple[Any, list[tuple[str, str]]]:
    if body is None:
        return None, []
    if isinstance(body, (bytes, bytearray)):
        if not body:
            return None, []
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            return None, [("$", "request body is not UTF-8")]
    if isinstance(body, str):
        if not body.strip():
            return None, []
        try:
            return json.loads(body), []
        except ValueError as error:
            return None, [("$", f"request body is not valid JSON: {error}")]
    return body, []


def _json_path(parts: Iterable[Any]) -> str:
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _describe(error: Any) -> str:
    keyword = error.validator
    value = error.validator_value
    instance = error.instance
    if keyword == "maxLength":
        return f"{_short(instance)} is {len(instance)} characters long; the maximum is {value} (maxLength)"
    if keyword == "minLength":
        return f"{_short(instance)} is shorter than {value} characters (minLength)"
    if keyword == "enum":
        return f"{_short(instance)} is not one of {value} (enum)"
    if keyword == "type":
        return f"{_short(instance)} is not of type {value!r} (type)"
    if keyword == "required":
        return f"{error.message} (required)"
    message = error.message
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{message} ({keyword})"


def assert_calls_match_spec(calls: Iterable[Any], *, spec: str | os.PathLike[str] | None = None) -> int:
    """Validate every Xero Accounting API request among ``responses.calls``; return how many were checked.

    Each call needs ``.request`` with ``method``, ``url`` and ``body`` (a ``requests.PreparedRequest``).
    All violations are reported together in one ContractViolation; a missing spec raises SpecNotFound.
    """
    checked = 0
    problems: list[ContractViolation] = []
    for call in calls:
        request = getattr(call, "request", call)
        url = getattr(request, "url", None) or ""
        if api_path_of(url) is None:
            continue
        checked += 1
        try:
            validate_request(request.method, url, getattr(request, "body", None), spec=spec)
        except ContractViolation as violation:
            problems.append(violation)
    if problems:
        errors = [
            (f"{p.method} {p.path} {json_path}", message) for p in problems for json_path, message in p.errors
        ]
        raise ContractViolation("*", f"{len(problems)} of {checked} recorded Xero calls", errors)
    return checked
