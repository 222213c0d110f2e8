"""Connection-layer benchmarks through the whole local stack:

- calls per record: 1,000 contact callouts; Accounting API calls made (the ones Xero's 60 a minute
  count) ÷ the least possible, ⌈1000/50⌉ = 20. Target at most 1.05 (issue 14). Identity calls
  (token, /connections: once per connection, counted by no organisation's limit) are shown beside.
- faults: the same 1,000 with 30% of Xero's answers turned into 429, 500, 503 or a connection
  that drops (before answering, or after Xero did the work: what a client timeout looks like).
  Target: all 1,000 land, none twice, no job failed; calls ÷ least possible is printed.
"""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from bench.local_stack import running_stack, wait_for_jobs, xero_requests
from bench.report import Row
from shared.config import LOCAL_SECRET_DEFAULTS

RECORDS = 1000
TARGET = 1.05
FAULT_RATE = 0.3
FAULT_KINDS = ["429", "500", "503", "dropped", "dropped_after"]


@dataclass
class Pushed:
    api_calls: int
    token_calls: int
    connections_calls: int
    faults: Counter
    statuses: Counter
    contacts_per_number: Counter

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.contacts_per_number.values() if count > 1)


def seed_accounts(sugar_url: str, accounts: list[tuple[str, str]]) -> None:
    """The Accounts exist in the CRM, as for a real save: the worker writes the Xero contact's id
    back to each, and a write-back to a record that does not exist fails its job."""
    answer = requests.post(f"{sugar_url}/_sugar/seed", timeout=120, json={"records": {"Accounts": [
        {"id": crm_id, "name": name} for crm_id, name in accounts]}})
    answer.raise_for_status()


def push_contacts(records: int, *, faults: dict | None = None) -> Pushed:
    token = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
    with running_stack() as urls:
        api, xero = urls["gateway"], urls["xero"]
        seed_accounts(urls["sugar"], [(f"bench-{n:05d}", f"Bench Customer {n:05d}") for n in range(records)])
        if faults:
            requests.post(f"{xero}/_emulator/faults", json=faults, timeout=30).raise_for_status()
        session = requests.Session()

        def post(n: int) -> str:
            body = {"crm_id": f"bench-{n:05d}", "name": f"Bench Customer {n:05d}",
                    "email": f"customer{n}@example.com"}
            answer = session.post(f"{api}/crm/contacts", params={"token": token}, json=body, timeout=60)
            answer.raise_for_status()
            return answer.json()["job_id"]

        with ThreadPoolExecutor(8) as pool:
            job_ids = list(pool.map(post, range(records)))
        outcome = wait_for_jobs(api, job_ids, token, deadline_seconds=600)
        log = xero_requests(xero)
        state = requests.get(f"{xero}/_emulator/state", timeout=30).json()
    contacts = [c for tenant in state.get("tenants", {}).values() for c in tenant.get("contacts", [])]
    return Pushed(
        api_calls=sum(1 for r in log if r["path"].startswith("/api.xro/")),
        token_calls=sum(1 for r in log if r["path"].startswith("/connect/token")),
        connections_calls=sum(1 for r in log if r["path"].startswith("/connections")),
        faults=Counter(r["fault"] for r in log if r.get("fault")),
        statuses=Counter(outcome.values()),
        contacts_per_number=Counter(c.get("ContactNumber") for c in contacts
                                    if str(c.get("ContactNumber", "")).startswith("bench-")),
    )


def run() -> list[Row]:
    least = math.ceil(RECORDS / 50)
    clean = push_contacts(RECORDS)
    ratio = clean.api_calls / least
    rows = [Row("3", f"calls per record: {RECORDS} contact callouts through the local stack",
                f"{clean.api_calls} Xero API calls (+{clean.token_calls} token, "
                f"+{clean.connections_calls} /connections) ÷ {least}; "
                f"{clean.statuses['succeeded']}/{RECORDS} succeeded",
                ratio, f"≤ {TARGET:g}", ratio <= TARGET and clean.statuses["succeeded"] == RECORDS)]
    faulty = push_contacts(RECORDS, faults={"rate": FAULT_RATE, "seed": 7, "kinds": FAULT_KINDS,
                                            "retry_after": 1})
    landed = len(faulty.contacts_per_number)
    holds = (landed == RECORDS and faulty.duplicates == 0 and faulty.statuses["failed"] == 0
             and faulty.statuses["succeeded"] == RECORDS)
    injected = ", ".join(f"{kind}×{count}" for kind, count in sorted(faulty.faults.items()))
    rows.append(Row("3", f"faults: {RECORDS} callouts, {FAULT_RATE:.0%} of Xero answers faulty",
                    f"{landed} landed, {faulty.duplicates} twice, {faulty.statuses['failed']} failed; "
                    f"{faulty.api_calls} calls ÷ {least} (injected {injected})",
                    faulty.api_calls / least, "all land, none twice, 0 failed", holds))
    return rows
