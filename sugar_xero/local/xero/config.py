"""Settings of the Xero emulator and the organisation it pretends to be."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_TENANT_ID = "8d3f5e2a-6b1c-4c7e-9f40-5a2b3c4d5e6f"
DEFAULT_TENANT_NAME = "Harbour Demo Pte Ltd"

FAULT_KINDS = ("429", "500", "502", "503", "504", "slow", "dropped", "dropped_after", "500_after", "504_after")
"""What an injected fault can do: answer that status, sleep before answering, close the
connection before doing anything, do the work and then close the connection unanswered, or do the
work and then answer 500/504 instead of the result ("the work was done and the answer was lost")."""

# Xero's Organisation.Timezone values are Windows zone ids, upper-cased without spaces (the spec's
# TimeZone enum). The emulator knows the ones its tests and demo use; any other is refused at start.
XERO_TIMEZONES = {
    "SINGAPORESTANDARDTIME": "Asia/Singapore",
    "NEWZEALANDSTANDARDTIME": "Pacific/Auckland",
    "AUSEASTERNSTANDARDTIME": "Australia/Sydney",
    "GMTSTANDARDTIME": "Europe/London",
    "EASTERNSTANDARDTIME": "America/New_York",
    "PACIFICSTANDARDTIME": "America/Los_Angeles",
    "HAWAIIANSTANDARDTIME": "Pacific/Honolulu",
    "UTC": "UTC",
}


def default_tax_rates() -> list[dict[str, Any]]:
    """A Singapore-style GST organisation (the fixtures' quotes are SGD with 9% GST)."""

    def rate(tax_type: str, name: str, percent: str, revenue: bool, expenses: bool) -> dict[str, Any]:
        return {
            "Name": name,
            "TaxType": tax_type,
            "Status": "ACTIVE",
            "ReportTaxType": tax_type,
            "CanApplyToAssets": expenses,
            "CanApplyToEquity": False,
            "CanApplyToExpenses": expenses,
            "CanApplyToLiabilities": False,
            "CanApplyToRevenue": revenue,
            "DisplayTaxRate": percent,
            "EffectiveRate": percent,
            "TaxComponents": [
                {"Name": "GST", "Rate": percent, "IsCompound": False, "IsNonRecoverable": False}
            ],
        }

    return [
        rate("OUTPUT", "GST on Income", "9", True, False),
        rate("INPUT", "GST on Expenses", "9", False, True),
        rate("EXEMPTOUTPUT", "GST Free Income", "0", True, False),
        rate("EXEMPTINPUT", "GST Free Expenses", "0", False, True),
        rate("NONE", "No GST", "0", True, True),
    ]


def default_accounts() -> list[dict[str, Any]]:
    def account(
        account_id: str, code: str, name: str, kind: str, tax_type: str, cls: str, **extra: Any
    ) -> dict[str, Any]:
        return {
            "AccountID": account_id,
            "Code": code,
            "Name": name,
            "Type": kind,
            "TaxType": tax_type,
            "Status": "ACTIVE",
            "Class": cls,
            "EnablePaymentsToAccount": False,
            "ShowInExpenseClaims": False,
            "ReportingCode": "",
            "HasAttachments": False,
            **extra,
        }

    return [
        account(
            "5040915e-8ce7-4177-8d08-fde416232f18",
            "090",
            "Business Bank Account",
            "BANK",
            "NONE",
            "ASSET",
            BankAccountNumber="0123456789",
            BankAccountType="BANK",
            CurrencyCode="SGD",
        ),
        account("8d5ab3fa-0e54-4c1b-b6ea-2d9d1b6b2b10", "200", "Sales", "REVENUE", "OUTPUT", "REVENUE"),
        account(
            "9e3b9b4e-3f3d-4f7f-8a0c-0d5e3b1b7a21", "260", "Other Revenue", "REVENUE", "OUTPUT", "REVENUE"
        ),
        account(
            "a1c2d3e4-5f60-4718-8293-a4b5c6d7e8f9", "300", "Purchases", "DIRECTCOSTS", "INPUT", "EXPENSE"
        ),
        account(
            "0b1c2d3e-4f50-4617-8293-b4c5d6e7f809", "310", "Cost of Goods Sold", "DIRECTCOSTS", "INPUT", "EXPENSE"
        ),
        account("b2c3d4e5-6f70-4829-93a4-b5c6d7e8f90a", "400", "Advertising", "EXPENSE", "INPUT", "EXPENSE"),
        account(
            "c3d4e5f6-7081-4930-a4b5-c6d7e8f90a1b", "477", "Wages and Salaries", "EXPENSE", "NONE", "EXPENSE"
        ),
        account(
            "d4e5f607-8192-4a41-b5c6-d7e8f90a1b2c",
            "610",
            "Accounts Receivable",
            "CURRENT",
            "NONE",
            "ASSET",
            SystemAccount="DEBTORS",
        ),
        account(
            "e5f60718-92a3-4b52-c6d7-e8f90a1b2c3d",
            "800",
            "Accounts Payable",
            "CURRLIAB",
            "NONE",
            "LIABILITY",
            SystemAccount="CREDITORS",
        ),
        account(
            "f6071829-a3b4-4c63-d7e8-f90a1b2c3d4e",
            "820",
            "GST",
            "CURRLIAB",
            "NONE",
            "LIABILITY",
            SystemAccount="GST",
        ),
        account(
            "1c2d3e4f-5061-4728-93a4-c5d6e7f8091a",
            "860",
            "Rounding",
            "CURRLIAB",
            "NONE",
            "LIABILITY",
            SystemAccount="ROUNDING",
        ),
    ]


def default_currencies() -> list[dict[str, Any]]:
    return [
        {"Code": "SGD", "Description": "Singapore Dollar"},
        {"Code": "USD", "Description": "United States Dollar"},
    ]


@dataclass
class FaultConfig:
    """Fault injection: ``rate`` (0..1) of API answers become one of ``kinds``; ``next`` forces the
    next answers in order ("ok" for a normal one). Draws come from ``random.Random(seed)``, so the
    same seed and the same request sequence give the same faults."""

    rate: float = 0.0
    seed: int | None = None
    kinds: tuple[str, ...] = ("429", "500", "503")
    next: list[str] = field(default_factory=list)
    slow_seconds: float = 2.0
    retry_after: int = 1
    path_contains: str = "/api.xro/2.0/"

    MAX_SLOW_SECONDS = 30.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        unknown = set(data) - {
            "rate",
            "seed",
            "kinds",
            "next",
            "slow_seconds",
            "retry_after",
            "path_contains",
        }
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        config = cls(
            rate=float(data.get("rate", 0.0)),
            seed=None if data.get("seed") is None else int(data["seed"]),
            kinds=tuple(str(k) for k in data.get("kinds", cls.kinds)),
            next=[str(k) for k in data.get("next", [])],
            slow_seconds=float(data.get("slow_seconds", 2.0)),
            retry_after=int(data.get("retry_after", 1)),
            path_contains=str(data.get("path_contains", "/api.xro/2.0/")),
        )
        config.check()
        return config

    def check(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        bad = [k for k in (*self.kinds, *self.next) if k not in FAULT_KINDS and k != "ok"]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; use {list(FAULT_KINDS)} or 'ok'")
        if self.rate and not self.kinds:
            raise ValueError("kinds must not be empty when rate > 0")
        if not 0.0 <= self.slow_seconds <= self.MAX_SLOW_SECONDS:
            raise ValueError(f"slow_seconds must be between 0 and {self.MAX_SLOW_SECONDS}")

    def as_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "seed": self.seed,
            "kinds": list(self.kinds),
            "next": list(self.next),
            "slow_seconds": self.slow_seconds,
            "retry_after": self.retry_after,
            "path_contains": self.path_contains,
        }


@dataclass
class EmulatorConfig:
    """Everything about the emulator a test, the local stack or a benchmark may want to change."""

    tenant_id: str = DEFAULT_TENANT_ID
    tenant_name: str = DEFAULT_TENANT_NAME
    # Further organisations the emulated Xero user may access (tenant id → name): Xero's
    # GET /connections lists every organisation the user authorised for the app, not one
    # (developer.xero.com/documentation/guides/oauth2/tenants), so one login onboards them all.
    organisations: dict[str, str] = field(default_factory=dict)
    # Xero's per-organisation limits, and the app-wide one
    minute_limit: int = 60
    concurrent_limit: int = 5
    day_limit: int = 5000
    app_minute_limit: int = 10000
    minute_window_seconds: float = 60.0
    day_window_seconds: float = 86400.0
    idempotency_ttl_seconds: float = 360.0
    latency_seconds: float = 0.0
    # > latency_seconds: each call's latency is drawn from [latency_seconds, latency_max_seconds]
    latency_max_seconds: float = 0.0
    latency_seed: int | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    # Validate request bodies against Xero's OpenAPI spec (required: a missing file stops the emulator)
    validate_spec: bool = True
    spec_path: str | None = None
    require_auth: bool = True
    # Xero refuses Accounting calls without a xero-tenant-id header; False serves them for tenant_id
    require_tenant_header: bool = True
    base_currency: str = "SGD"
    # Organisation.Timezone: new documents without a Date are dated today in this zone
    timezone: str = "SINGAPORESTANDARDTIME"
    # the wall clock that decides what "today" is (tests move it)
    wall_clock: Callable[[], float] = time.time
    tax_rates: list[dict[str, Any]] = field(default_factory=default_tax_rates)
    accounts: list[dict[str, Any]] = field(default_factory=default_accounts)
    currencies: list[dict[str, Any]] = field(default_factory=default_currencies)
    tracking_categories: list[dict[str, Any]] = field(default_factory=list)
    request_log_size: int = 10000
    clock: Callable[[], float] = time.monotonic

    LIMIT_FIELDS = (
        "minute_limit",
        "concurrent_limit",
        "day_limit",
        "app_minute_limit",
        "minute_window_seconds",
        "day_window_seconds",
        "idempotency_ttl_seconds",
        "latency_seconds",
        "latency_max_seconds",
    )

    def update_limits(self, data: dict[str, Any]) -> None:
        unknown = set(data) - set(self.LIMIT_FIELDS)
        if unknown:
            raise ValueError(f"unknown limit settings: {sorted(unknown)}; allowed: {list(self.LIMIT_FIELDS)}")
        for name, value in data.items():
            number = float(value)
            if number < 0:
                raise ValueError(f"{name} must not be negative")
            if name.startswith("latency") and number > FaultConfig.MAX_SLOW_SECONDS:
                raise ValueError(f"{name} must be at most {FaultConfig.MAX_SLOW_SECONDS}")
            setattr(self, name, int(number) if name.endswith("_limit") else number)

    def today(self) -> dt.date:
        """Today in the organisation's timezone."""
        zone = ZoneInfo(XERO_TIMEZONES[self.timezone.upper()])
        return dt.datetime.fromtimestamp(self.wall_clock(), tz=zone).date()

    def limits_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.LIMIT_FIELDS}
