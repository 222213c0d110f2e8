"""Xero Accounting API emulator for the local stack and the end-to-end tests.

A thin WSGI layer in front of xero-local's router that adds what the connector relies on and
xero-local lacks: Items, Quotes, settings lists, Decimal invoice arithmetic, uniqueness rules,
status transitions, payments, summarizeErrors, Idempotency-Key, If-Modified-Since, ``where``,
paging, per-tenant rate limits, fault injection, OpenAPI validation of request bodies, and
``/_emulator/`` controls (requests, reset, faults, state, limits, health).

    server = serve(config=EmulatorConfig(minute_limit=5))
    requests.get(server.url + "/api.xro/2.0/Contacts", headers={"Authorization": "Bearer x"})
    server.shutdown()

Run standalone: ``python -m sugar_xero.local.xero_emulator --port 5001``.
"""

from sugar_xero.local.xero.app import NOT_FOUND_TEXT, XeroEmulator
from sugar_xero.local.xero.config import (
    DEFAULT_TENANT_ID,
    FAULT_KINDS,
    EmulatorConfig,
    FaultConfig,
    default_accounts,
    default_currencies,
    default_tax_rates,
)
from sugar_xero.local.xero.server import EmulatorServer, create_app, main, serve

__all__ = [
    "DEFAULT_TENANT_ID",
    "FAULT_KINDS",
    "NOT_FOUND_TEXT",
    "EmulatorConfig",
    "EmulatorServer",
    "FaultConfig",
    "XeroEmulator",
    "create_app",
    "default_accounts",
    "default_currencies",
    "default_tax_rates",
    "main",
    "serve",
]

if __name__ == "__main__":
    main()
