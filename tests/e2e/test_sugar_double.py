"""The Sugar REST v11 double: what the connector's Sugar client relies on."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from werkzeug.test import Client

from shared.config import LOCAL_SECRET_DEFAULTS
from sugar_xero.local.samples import fixtures_dir
from sugar_xero.local.sugar_double import SugarDouble, SugarDoubleConfig, benchmark_quotes, fixture_seed


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
    fixtures = fixtures_dir()  # present: the test session refuses to start without them
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
    # every line's catalogue entry exists, as in Sugar (the fixtures hold one; the others come from the lines)
    for template_id in ("pt-chiller-visit", "pt-lift-insp", "pt-cert-fee"):
        template = client.get(f"/rest/v11/ProductTemplates/{template_id}", headers=headers)
        assert template.status_code == 200 and template.get_json()["id"] == template_id
    assert client.get(f"/rest/v11/Accounts/{quote['billing_account_id']}", headers=headers).status_code == 200


# ---- quotes with lines, for any quote ---------------------------------------------------------


def _lines(client, headers, quote_id, **params):
    bundles = client.get(f"/rest/v11/Quotes/{quote_id}/link/product_bundles", headers=headers, query_string=params)
    records = []
    for bundle in bundles.get_json()["records"]:
        offset = 0
        for _ in range(100):  # bounded: a bundle never has that many pages here
            page = client.get(
                f"/rest/v11/ProductBundles/{bundle['id']}/link/products",
                headers=headers,
                query_string={"max_num": 2, "offset": offset},
            ).get_json()
            records += page["records"]
            if page["next_offset"] == -1:
                break
            offset = page["next_offset"]
    return bundles.get_json(), records


def test_seed_quotes_links_bundles_and_products_for_any_quote(double):
    answer = double.seed_quotes(
        [
            {
                "id": "q-1",
                "name": "Two bundles",
                "quote_stage": "Negotiation",
                "billing_account_id": "a1",
                "bundles": [
                    {"name": "Hardware", "products": [{"name": f"Part {n}", "quantity": "1"} for n in range(5)]},
                    {"name": "Labour", "products": [{"id": "lab-1", "name": "Install"}],
                     "notes": [{"description": "Weekend work"}]},
                ],
            },
            {"name": "No lines yet", "billing_account_id": "a2"},
        ]
    )
    assert (answer["quotes"], answer["bundles"], answer["products"]) == (2, 2, 6)
    assert answer["quote_ids"][0] == "q-1" and answer["quote_ids"][1]
    client, headers = authed(double)
    bundles, products = _lines(client, headers, "q-1")
    assert [b["name"] for b in bundles["records"]] == ["Hardware", "Labour"] and bundles["next_offset"] == -1
    assert [p["name"] for p in products] == ["Part 0", "Part 1", "Part 2", "Part 3", "Part 4", "Install"]
    assert all(p["quote_id"] == "q-1" for p in products)
    first_page = client.get(
        "/rest/v11/Quotes/q-1/link/product_bundles", headers=headers, query_string={"max_num": 1}
    ).get_json()
    assert [b["name"] for b in first_page["records"]] == ["Hardware"] and first_page["next_offset"] == 1
    notes = client.get(
        f"/rest/v11/ProductBundles/{bundles['records'][1]['id']}/link/product_bundle_notes", headers=headers
    ).get_json()
    assert [n["description"] for n in notes["records"]] == ["Weekend work"]
    collection = client.get("/rest/v11/Quotes/q-1", headers=headers, query_string={"fields": "name,bundles"})
    items = collection.get_json()["bundles"]["records"][1]["product_bundle_items"]["records"]
    assert [(i["_module"], i.get("name") or i.get("description")) for i in items] == [
        ("Products", "Install"), ("ProductBundleNotes", "Weekend work")]
    empty = client.get(f"/rest/v11/Quotes/{answer['quote_ids'][1]}/link/product_bundles", headers=headers)
    assert empty.get_json() == {"next_offset": -1, "records": []}


def test_seed_quotes_over_http_and_the_benchmark_payload_adds_up():
    payload = benchmark_quotes(accounts=3, quotes=7, lines=3)
    assert len(payload["accounts"]) == 3 and len(payload["quotes"]) == 7
    assert [q["billing_account_id"] for q in payload["quotes"]][:4] == [
        "bench-account-0000", "bench-account-0001", "bench-account-0002", "bench-account-0000"]
    for quote in payload["quotes"]:
        products = quote["bundles"][0]["products"]
        lines = [Decimal(p["total_amount"]) for p in products]
        taxable = sum(Decimal(p["total_amount"]) for p in products if p["tax_class"] == "Taxable")
        assert Decimal(quote["new_sub"]) == sum(lines)
        assert Decimal(quote["tax"]) == taxable * Decimal("0.09")  # exact: no rounding anywhere
        # Xero's per-line tax, rounded to cents, sums to the same tax
        assert sum((Decimal(p["total_amount"]) * Decimal("0.09")).quantize(Decimal("0.01"))
                   for p in products if p["tax_class"] == "Taxable") == Decimal(quote["tax"])
        assert Decimal(quote["total"]) == Decimal(quote["new_sub"]) + Decimal(quote["tax"])
    double = SugarDouble()
    client = Client(double)
    seeded = client.post("/_sugar/seed/quotes", json=payload).get_json()
    assert (seeded["quotes"], seeded["accounts"], seeded["products"]) == (7, 3, 21)
    assert client.post("/_sugar/seed/quotes", json={"quotes": "no"}).status_code == 400
    _, headers = authed(double)
    _, products = _lines(client, headers, "bench-quote-0005")
    assert [p["id"] for p in products] == [f"bench-product-0004-{n}" for n in range(3)]
    with pytest.raises(ValueError):
        benchmark_quotes(accounts=0)


def test_benchmark_seed_of_a_thousand_quotes_is_quick():
    started = time.monotonic()
    double = SugarDouble()
    payload = benchmark_quotes(accounts=200, quotes=1000)
    seeded = double.seed_quotes(payload["quotes"], payload["accounts"])
    assert (seeded["quotes"], seeded["accounts"], seeded["products"]) == (1000, 200, 3000)
    client, headers = authed(double)
    _, products = _lines(client, headers, "bench-quote-1000")
    assert len(products) == 3
    assert time.monotonic() - started < 20


def test_quote_custom_fields_persist_and_date_modified_moves(double):
    double.seed_quotes([{"id": "q-9", "name": "Custom", "quote_stage": "Draft",
                         "date_modified": "2026-01-01T00:00:00+00:00"}])
    client, headers = authed(double)
    first = client.put("/rest/v11/Quotes/q-9", json={"xero_id_c": "inv-1", "xero_status_c": "DRAFT"},
                       headers=headers).get_json()
    assert first["date_modified"] > "2026-01-01T00:00:00+00:00"
    second = client.put("/rest/v11/Quotes/q-9", json={"xero_status_c": "AUTHORISED"}, headers=headers).get_json()
    assert second["date_modified"] > first["date_modified"]  # even within the same second
    bulk = client.post(
        "/rest/v11/bulk",
        headers=headers,
        json={"requests": [{"url": "/v11/Quotes/q-9", "method": "PUT",
                            "data": json.dumps({"xero_amount_due_c": "10.90", "xero_status_c": "PAID"})}]},
    ).get_json()
    assert bulk[0]["status"] == 200 and bulk[0]["contents"]["date_modified"] > second["date_modified"]
    read = client.get("/rest/v11/Quotes/q-9", headers=headers).get_json()
    assert (read["xero_id_c"], read["xero_status_c"], read["xero_amount_due_c"]) == ("inv-1", "PAID", "10.90")


def test_quote_filter_by_date_modified_and_stage(double):
    double.seed_quotes(
        [
            {"id": "old", "quote_stage": "Closed Accepted", "date_modified": "2026-11-01T00:00:00+00:00"},
            {"id": "new", "quote_stage": "Closed Accepted", "date_modified": "2026-11-20T00:00:00+00:00"},
            {"id": "lost", "quote_stage": "Closed Lost", "date_modified": "2026-11-21T00:00:00+00:00"},
        ]
    )
    client, headers = authed(double)
    body = {"filter": [{"date_modified": {"$gte": "2026-11-10T00:00:00+00:00"}},
                       {"quote_stage": {"$in": ["Closed Accepted", "Closed Lost"]}}],
            "order_by": "date_modified:ASC", "max_num": 1}
    first = client.post("/rest/v11/Quotes/filter", json=body, headers=headers).get_json()
    second = client.post("/rest/v11/Quotes/filter", json={**body, "offset": first["next_offset"]},
                         headers=headers).get_json()
    assert [r["id"] for r in first["records"] + second["records"]] == ["new", "lost"]
    assert second["next_offset"] == -1
    accepted = client.get(
        "/rest/v11/Quotes/filter",
        headers=headers,
        query_string={"filter[0][quote_stage]": "Closed Accepted",
                      "filter[1][date_modified][$gte]": "2026-11-10T00:00:00Z"},
    ).get_json()
    assert [r["id"] for r in accepted["records"]] == ["new"]
    updated = client.put("/rest/v11/Quotes/old", json={"xero_status_c": "PAID"}, headers=headers).get_json()
    since = client.post("/rest/v11/Quotes/filter", json={"filter": [
        {"date_modified": {"$gte": updated["date_modified"]}}]}, headers=headers).get_json()
    assert [r["id"] for r in since["records"]] == ["old"]


def test_request_counts_by_route(double):
    double.seed_quotes([{"id": "q-c", "bundles": [{"id": "b-c", "products": [{"name": "x"}]}]}])
    client, headers = authed(double)
    client.get("/rest/v11/Quotes/q-c/link/product_bundles", headers=headers)
    client.get("/rest/v11/ProductBundles/b-c/link/products", headers=headers)
    client.get("/rest/v11/ProductBundles/b-c/link/products", headers=headers)
    client.post("/rest/v11/Quotes/filter", json={}, headers=headers)
    client.post("/rest/v11/bulk", headers=headers, json={"requests": [
        {"url": "/v11/Quotes/q-c", "method": "PUT", "data": "{}"}, {"url": "/v11/Quotes/q-c", "method": "GET"}]})
    counts = client.get("/_sugar/requests/counts").get_json()
    assert counts["by_route"] == {
        "POST /rest/v11/oauth2/token": 1,
        "GET /rest/v11/Quotes/{id}/link/product_bundles": 1,
        "GET /rest/v11/ProductBundles/{id}/link/products": 2,
        "POST /rest/v11/Quotes/filter": 1,
        "POST /rest/v11/bulk": 1,
        "bulk: PUT /rest/v11/Quotes/{id}": 1,
        "bulk: GET /rest/v11/Quotes/{id}": 1,
    }
    assert (counts["total"], counts["bulk_items"]) == (6, 2)
    assert client.post("/_sugar/requests/reset").status_code == 200
    assert client.get("/_sugar/requests/counts").get_json() == {"total": 0, "bulk_items": 0, "by_route": {}}
    assert double.store.records["Quotes"]["q-c"]  # the data stays
