"""``sugar-xero backfill`` against the local stack: 120 Accounts seeded in the Sugar double land in
the Xero emulator once each, and a second run makes no new job."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from bench.backfill import seed_accounts
from bench.local_stack import running_stack
from shared.config import LOCAL_SECRET_DEFAULTS

pytestmark = pytest.mark.e2e

ACCOUNTS = 120
PREFIX = "e2e-bf"
RUN_SECONDS = 60


@pytest.fixture(scope="module")
def backfilled():
    """Both runs, once per module, whichever test asks first: each test reads what it needs and
    none depends on another having run."""
    with running_stack() as urls:
        seed_accounts(urls["sugar"], ACCOUNTS, PREFIX)
        # The stack seeds the shared fixtures' Account too: every Account in Sugar is pushed.
        total = len(requests.get(f"{urls['sugar']}/_sugar/state", timeout=10).json()["records"]["Accounts"])
        first = _backfill(urls)
        writes_before_second = _contact_writes(urls["xero"])
        second = _backfill(urls)
        yield {"total": total, "first": first, "second": second,
               "second_run_contact_writes": _contact_writes(urls["xero"]) - writes_before_second,
               "contact_numbers": [c["ContactNumber"] for c in _contacts(urls["xero"])]}


def _backfill(urls: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "SUGAR_BASE_URL": urls["sugar"], "CRM_TOKEN": LOCAL_SECRET_DEFAULTS["CRM_TOKEN"],
           "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sugar_xero.cli", "backfill", "--module", "Accounts", "--since", "2026-01-01",
         "--url", urls["gateway"], "--batch", "50", "--wait", "40"],
        env=env, capture_output=True, text=True, timeout=RUN_SECONDS)


def _contact_writes(xero_url: str) -> int:
    log = requests.get(f"{xero_url}/_emulator/requests", timeout=10).json()["requests"]
    return sum(1 for r in log if r["method"] in {"POST", "PUT"} and r["path"].startswith("/api.xro/2.0/Contacts"))


def _contacts(xero_url: str) -> list[dict]:
    state = requests.get(f"{xero_url}/_emulator/state", timeout=10).json()
    return [c for tenant in state.get("tenants", {}).values() for c in tenant.get("contacts", [])
            if str(c.get("ContactNumber", "")).startswith(f"{PREFIX}-")]


def test_a_repeated_backfill_lands_each_account_once(backfilled):
    total, first, second = backfilled["total"], backfilled["first"], backfilled["second"]
    assert total >= ACCOUNTS
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"sent {total} accounts: {total} new jobs, 0 duplicates, 0 refused" in first.stdout
    assert f"jobs: {total} succeeded" in first.stdout
    assert f"[####################] {total}/{total} accounts" in first.stdout  # one line per page

    # The contact worker writes the Xero id back into each Account, which moves its
    # date_modified: to Sugar those are changed records, so they make new jobs (the content was
    # pushed already, so they write nothing to Xero: the next test). Unchanged ones are duplicates.
    assert second.returncode == 0, second.stdout + second.stderr
    summary = re.search(r"sent (\d+) accounts: (\d+) new jobs, (\d+) duplicates, 0 refused", second.stdout)
    assert summary, second.stdout
    sent, new, duplicates = map(int, summary.groups())
    assert sent == total and new + duplicates == total
    assert f"jobs: {total} succeeded" in second.stdout

    numbers = backfilled["contact_numbers"]
    assert len(numbers) == ACCOUNTS
    assert sorted(set(numbers)) == sorted(f"{PREFIX}-{n:05d}" for n in range(ACCOUNTS))


def test_the_second_run_writes_nothing_to_xero(backfilled):
    assert backfilled["second"].returncode == 0, backfilled["second"].stdout + backfilled["second"].stderr
    assert backfilled["second_run_contact_writes"] == 0
