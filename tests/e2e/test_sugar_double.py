"""The Sugar REST v11 double: what the connector's Sugar client relies on."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from shared.config import LOCAL_SECRET_DEFAULTS
from sugar_xero.local.samples import fixtures_dir
from sugar_xero.local.sugar_double import SugarDouble, SugarDoubleConfig, fixture_seed


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def double(clock):
    app = SugarDouble(SugarDoubleConfig(clock=clock))
    app.seed(
        {
            "records": {
                "Accounts": [
                    {
                        "id": "a1",
                        "name": "Alpha",
                        "date_modified": "2026-11-01T00:00:00+00:00",
                        "account_type": "Customer",
                    },
                    {
                        "id": "a2",
                        "name": "Beta",
                        "date_modified": "2026-11-02T00:00:00+00:00",
                        "account_type": "Supplier",
                    },
                    {
                        "id": "a3",
                        "name": "Gamma",
                        "date_modified": "2026-11-03T00:00:00+00:00",
                        "account_type": "Customer",
                    },
                ]
            }
        }
    )
    return app


def login(client, **overrides):
    body = {
        "grant_type": "password",
        "client_id": "sugar",
        "client_secret": "",
        "username": LOCAL_SECRET_DEFAULTS["SUGAR_USERNAME"],
        "password": LOCAL_SECRET_DEFAULTS["SUGAR_PASSWORD"],
        "platform": LOCAL_SECRET_DEFAULTS["SUGAR_PLATFORM"],
        **overrides,
    }
    return client.post("/rest/v11/oauth2/token", json=body)


def authed(double):
    client = Client(double)
    token = login(client).get_json()["access_token"]
    return client, {"OAuth-Token": token}


def test_password_grant_checks_the_local_credentials_and_platform(double):
    client = Client(double)
    answer = login(client)
    assert answer.status_code == 200
    assert {"access_token", "expires_in", "refresh_token", "refresh_expires_in"} <= set(answer.get_json())
    assert login(client, password="wrong").status_code == 401
    refused = login(client, platform="base")
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_grant"


def test_calls_need_a_live_token_and_a_second_login_ends_the_first(double, clock):
    client = Client(double)
    missing = client.get("/rest/v11/Accounts/a1")
    assert missing.status_code == 401 and missing.get_json()["error"] == "need_login"
    first = login(client).get_json()
    assert (
        client.get("/rest/v11/Accounts/a1", headers={"OAuth-Token": first["access_token"]}).status_code == 200
    )
    second = login(client).get_json()
    stale = client.get("/rest/v11/Accounts/a1", headers={"OAuth-Token": first["access_token"]})
    assert stale.status_code == 401 and stale.get_json()["error"] == "invalid_grant"
    clock.now += second["expires_in"] + 1
    assert (
        client.get("/rest/v11/Accounts/a1", headers={"OAuth-Token": second["access_token"]}).status_code
        == 401
    )
    refreshed = client.post(
        "/rest/v11/oauth2/token",
        json={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
    )
    assert refreshed.status_code == 200
    token = refreshed.get_json()["access_token"]
    assert client.get("/rest/v11/Accounts/a1", headers={"OAuth-Token": token}).status_code == 200


def test_put_merges_and_sets_date_modified_and_unknown_records_are_404(double):
    client, headers = authed(double)
    answer = client.put("/rest/v11/Accounts/a1", json={"xero_id_c": "X-1"}, headers=headers)
    record = answer.get_json()
    assert answer.status_code == 200 and record["xero_id_c"] == "X-1" and record["name"] == "Alpha"
    assert record["date_modified"] > "2026-11-01T00:00:00+00:00"
    assert client.get("/rest/v11/Accounts/zzz", headers=headers).get_json()["error"] == "not_found"
    created = client.post("/rest/v11/Contacts", json={"first_name": "New"}, headers=headers).get_json()
    assert (
        client.get(f"/rest/v11/Contacts/{created['id']}", headers=headers).get_json()["first_name"] == "New"
    )


def test_filter_pages_in_date_modified_order(double):
    client, headers = authed(double)
    body = {
        "filter": [
            {"account_type": {"$in": ["Customer", "Supplier"]}},
            {"date_modified": {"$gte": "2026-11-02T00:00:00+00:00"}},
        ],
        "max_num": 1,
        "offset": 0,
        "order_by": "date_modified:ASC",
        "fields": "name",
    }
    first = client.post("/rest/v11/Accounts/filter", json=body, headers=headers).get_json()
    assert [r["name"] for r in first["records"]] == ["Beta"] and first["next_offset"] == 1
    assert set(first["records"][0]) == {"id", "name", "date_modified", "_module"}
    second = client.post("/rest/v11/Accounts/filter", json={**body, "offset": 1}, headers=headers).get_json()
    assert [r["name"] for r in second["records"]] == ["Gamma"] and second["next_offset"] == -1
    equals = client.post(
        "/rest/v11/Accounts/filter", json={"filter": [{"name": {"$equals": "Alpha"}}]}, headers=headers
    ).get_json()
    assert [r["id"] for r in equals["records"]] == ["a1"]


def test_bulk_runs_each_request_and_one_failure_does_not_fail_the_rest(double):
    client, headers = authed(double)
    answer = client.post(
        "/rest/v11/bulk",
        headers=headers,
        json={
            "requests": [
                {"url": "/v11/Accounts/a1", "method": "PUT", "data": json.dumps({"xero_status_c": "PAID"})},
                {"url": "/v11/Accounts/missing", "method": "PUT", "data": json.dumps({"x": 1})},
            ]
        },
    )
    results = answer.get_json()
    assert answer.status_code == 200 and [r["status"] for r in results] == [200, 404]
    assert results[0]["contents"]["xero_status_c"] == "PAID" and "headers" in results[0]
    assert double.store.records["Accounts"]["a1"]["xero_status_c"] == "PAID"


def test_faults_fail_the_next_calls_and_the_log_and_reset_work(double):
    client, headers = authed(double)
    client.post("/_sugar/faults", json={"count": 2, "status": 503})
    assert [client.get("/rest/v11/Accounts/a1", headers=headers).status_code for _ in range(3)] == [
        503,
        503,
        200,
    ]
    log = client.get("/_sugar/requests").get_json()["requests"]
    assert [entry["status"] for entry in log][-3:] == [503, 503, 200]
    assert all(
        entry["body"] is None for entry in log if entry["path"].endswith("/token")
    )  # no credentials kept
    client.post("/_sugar/reset")
    assert client.get("/_sugar/state").get_json()["records"] == {}


def test_the_shared_fixtures_seed_a_quote_with_bundles_and_products():
    fixtures = fixtures_dir()
    if not (fixtures / "sugar").is_dir():
        pytest.skip(f"shared fixtures not found at {fixtures}")
    double = SugarDouble()
    double.seed(fixture_seed(fixtures))
    client, headers = authed(double)
    quote = json.loads((fixtures / "sugar" / "quote_closed_accepted.json").read_text())["data"]
    bundles = client.get(f"/rest/v11/Quotes/{quote['id']}/link/product_bundles", headers=headers).get_json()
    assert len(bundles["records"]) == 1 and bundles["next_offset"] == -1
    products = client.get(
        f"/rest/v11/ProductBundles/{bundles['records'][0]['id']}/link/products", headers=headers
    ).get_json()
    assert [p["id"] for p in products["records"]] == ["p-001", "p-002", "p-003"]
    assert client.get(f"/rest/v11/Accounts/{quote['billing_account_id']}", headers=headers).status_code == 200
