"""Issue 4's promise through the whole local stack: re-sending every Sugar fixture, in any order
and any number of times, leaves one Xero contact per CRM record and one item per product; the
CRM record gets its Xero id back; the save that write-back causes in Sugar pushes nothing."""

from __future__ import annotations

import random
import time

import pytest
import requests

from bench.local_stack import running_stack, wait_for_jobs
from shared.config import LOCAL_SECRET_DEFAULTS
from tests.conftest import load_fixture

pytestmark = pytest.mark.e2e
TOKEN = LOCAL_SECRET_DEFAULTS["CRM_TOKEN"]
ROUTES = {"sugar/account_after_save.json": "/crm/contacts",
          "sugar/contact_after_save_v8.json": "/crm/contacts",
          "sugar/product_template_after_save.json": "/crm/products"}


def _xero_state(xero: str) -> dict:
    tenants = requests.get(f"{xero}/_emulator/state", timeout=10).json()["tenants"]
    return {kind: [r for tenant in tenants.values() for r in tenant.get(kind, [])]
            for kind in ("contacts", "items")}


def test_fixtures_in_any_order_any_number_of_times_land_once():
    bodies = [(ROUTES[name], load_fixture(name)) for name in ROUTES]
    sends = bodies * 3
    random.Random(11).shuffle(sends)
    with running_stack() as urls:
        api, xero, sugar = urls["gateway"], urls["xero"], urls["sugar"]
        job_ids = set()
        for route, body in sends:
            answer = requests.post(f"{api}{route}", params={"token": TOKEN}, json=body, timeout=30)
            assert answer.status_code == 202, answer.text
            job_ids.add(answer.json()["job_id"])
        assert len(job_ids) == 3  # a repeat answers with the first job
        outcome = wait_for_jobs(api, sorted(job_ids), TOKEN, deadline_seconds=60)
        assert set(outcome.values()) == {"succeeded"}, outcome

        account, contact, product = (body for _, body in bodies)
        state = _xero_state(xero)
        numbered = [c for c in state["contacts"] if c.get("ContactNumber") == account["data"]["id"]]
        assert len(numbered) == 1
        persons = [f"{p.get('FirstName')} {p.get('LastName')}" for p in numbered[0].get("ContactPersons") or []]
        assert persons == [f"{contact['data']['first_name']} {contact['data']['last_name']}"]
        assert [i["Code"] for i in state["items"]] == [product["data"]["mft_part_num"]]

        # The Xero id is written back onto the Sugar Account (bounded wait: write-back follows the job).
        deadline, record = time.monotonic() + 20, {}
        while time.monotonic() < deadline and not record.get("xero_id_c"):
            records = requests.get(f"{sugar}/_sugar/state", timeout=10).json()["records"]["Accounts"]
            record = next(r for r in records if r["id"] == account["data"]["id"])
            time.sleep(0.5)
        assert record["xero_id_c"] == numbered[0]["ContactID"]

        # Sugar's after_save for that write-back comes round: answered "ignored", nothing sent.
        writes_before = sum(1 for r in requests.get(f"{xero}/_emulator/requests", timeout=10).json()["requests"]
                            if r["method"] in {"POST", "PUT"})
        echo = {**account, "data": {**account["data"], "xero_id_c": record["xero_id_c"]},
                "dataChanges": {"xero_id_c": {"field_name": "xero_id_c", "data_type": "varchar",
                                              "before": "", "after": record["xero_id_c"]}}}
        answer = requests.post(f"{api}/crm/contacts", params={"token": TOKEN}, json=echo, timeout=30)
        assert answer.status_code == 200 and answer.json()["status"] == "ignored"
        time.sleep(6)  # longer than the workers' batching window
        writes_after = sum(1 for r in requests.get(f"{xero}/_emulator/requests", timeout=10).json()["requests"]
                           if r["method"] in {"POST", "PUT"})
        assert writes_after == writes_before
