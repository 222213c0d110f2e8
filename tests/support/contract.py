"""Every request body the connector sends to Xero, in every test, checked against Xero's
official OpenAPI (``XERO_OPENAPI_SPEC``). Violations are collected and fail the test at its end,
so client code that catches broad exceptions cannot swallow them. The spec is required: the session
refuses to start without it (tests/conftest.py), and a missing file here raises rather than passes."""

from __future__ import annotations

from typing import Any

from sugar_xero import xero_spec

violations: list[str] = []
checked = {"count": 0}


def check(method: str, path: str, body: Any, query: dict[str, Any] | None = None) -> None:
    if body is None or method.upper() not in {"POST", "PUT"}:
        return
    checked["count"] += 1
    try:
        xero_spec.validate_request(method, path, body, query=query)
    except xero_spec.ContractViolation as violation:
        violations.append(f"{method} {path}: {violation}")
