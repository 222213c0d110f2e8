"""Calls per record (connection-layer issue): 1,000 contact callouts through the local stack;
Xero calls made ÷ the least possible, ⌈1000/50⌉ = 20. Target at most 1.10."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.local_stack import running_stack, wait_for_jobs, xero_requests
from bench.report import Row
from shared.config import LOCAL_SECRET_DEFAULTS

RECORDS = 1000
TARGET = 1.10


def run() -> list[Row]:
    token = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
    with running_stack() as urls:
        api, xero = urls["gateway"], urls["xero"]
        session = requests.Session()

        def post(n: int) -> str:
            body = {"crm_id": f"bench-{n:05d}", "name": f"Bench Customer {n:05d}",
                    "email": f"customer{n}@example.com"}
            answer = session.post(f"{api}/crm/contacts", params={"token": token}, json=body, timeout=60)
            answer.raise_for_status()
            return answer.json()["job_id"]

        with ThreadPoolExecutor(8) as pool:
            job_ids = list(pool.map(post, range(RECORDS)))
        outcome = wait_for_jobs(api, job_ids, token, deadline_seconds=300)
        log = xero_requests(xero)
    api_calls = [r for r in log if r["path"].startswith(("/api.xro/", "/connections"))]
    token_calls = [r for r in log if r["path"].startswith("/connect/token")]
    least = math.ceil(RECORDS / 50)
    ratio = len(api_calls) / least
    succeeded = sum(1 for status in outcome.values() if status == "succeeded")
    return [Row("3", f"calls per record: {RECORDS} contact callouts through the local stack",
                f"{len(api_calls)} Xero calls (+{len(token_calls)} token) ÷ {least}; "
                f"{succeeded}/{RECORDS} jobs succeeded", ratio, f"≤ {TARGET:g}",
                ratio <= TARGET and succeeded == RECORDS)]
