"""Backfill through the whole local stack: 2,000 Accounts seeded in the Sugar double, pushed with
``sugar-xero backfill``; Xero calls made ÷ the least possible, ⌈2000/50⌉ = 40. Target at most 1.10.
"""

from __future__ import annotations

import io
import math

import requests

from bench.local_stack import running_stack, xero_requests
from bench.report import Row
from shared.config import LOCAL_SECRET_DEFAULTS
from shared.sugar import SugarClient
from shared.usecases.backfill import MODULES
from sugar_xero.backfill import ConnectorApi, MemorySugarTokenCache, backfill

RECORDS = 2000
TARGET = 1.10
SINCE = "2026-01-01T00:00:00+00:00"


def seed_accounts(sugar_url: str, count: int, prefix: str) -> None:
    accounts = [{"id": f"{prefix}-{n:05d}", "name": f"Backfill Customer {n:05d}",
                 "email1": f"{prefix}{n}@example.com", "account_type": "Customer",
                 "date_modified": f"2026-02-{1 + n // 1000:02d}T10:{n // 60 % 60:02d}:{n % 60:02d}+00:00"}
                for n in range(count)]
    answer = requests.post(f"{sugar_url}/_sugar/seed", json={"records": {"Accounts": accounts}}, timeout=60)
    answer.raise_for_status()


def run() -> list[Row]:
    least = math.ceil(RECORDS / 50)
    with running_stack() as urls:
        seed_accounts(urls["sugar"], RECORDS, "bench-bf")
        sugar = SugarClient(urls["sugar"], LOCAL_SECRET_DEFAULTS["SUGAR_USERNAME"],
                            LOCAL_SECRET_DEFAULTS["SUGAR_PASSWORD"], LOCAL_SECRET_DEFAULTS["SUGAR_PLATFORM"],
                            token_cache=MemorySugarTokenCache())
        api = ConnectorApi(urls["gateway"], LOCAL_SECRET_DEFAULTS["CRM_TOKEN"])
        out = io.StringIO()
        code = backfill(MODULES["Accounts"], SINCE, api=api, sugar=sugar, batch=200, wait_seconds=600,
                        out=out)
        log = xero_requests(urls["xero"])
        state = requests.get(f"{urls['xero']}/_emulator/state", timeout=30).json()
    calls = sum(1 for r in log if r["path"].startswith("/api.xro/"))
    tokens = sum(1 for r in log if r["path"].startswith("/connect/token"))
    contacts = [c for tenant in state.get("tenants", {}).values() for c in tenant.get("contacts", [])
                if str(c.get("ContactNumber", "")).startswith("bench-bf-")]
    landed = len({c.get("ContactNumber") for c in contacts})
    ratio = calls / least
    summary = " / ".join(line.strip() for line in out.getvalue().splitlines()
                         if line.startswith(("sent ", "jobs:")))
    return [Row("4", f"backfill: {RECORDS} Accounts from Sugar through the local stack",
                f"{calls} Xero calls (+{tokens} token) ÷ {least}; {landed} landed, "
                f"{len(contacts) - landed} twice; exit {code}; {summary}",
                ratio, f"≤ {TARGET:g}", ratio <= TARGET and landed == RECORDS == len(contacts) and code == 0)]
