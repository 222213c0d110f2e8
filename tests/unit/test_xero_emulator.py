"""The Xero emulator over real HTTP on 127.0.0.1 (a free port per server)."""

from __future__ import annotations

import json
import re
import threading
import time
from decimal import Decimal

import pytest
import requests

from sugar_xero.local.xero_emulator import NOT_FOUND_TEXT, EmulatorConfig, FaultConfig, serve

API = "/api.xro/2.0"
NAME_TAKEN = (
    "The contact name {} is already assigned to another contact. "
    "The contact name must be unique across all active contacts."
)


class Xero:
    """A tiny client: JSON parsed with Decimal so amounts compare exactly."""

    def __init__(self, server, tenant: str | None = None):
        self.server = server
        self.url = server.url
        self.tenant = tenant or server.config.tenant_id
        self.session = requests.Session()

    def call(self, method: str, path: str, body=None, *, params=None, headers=None, timeout=10):
        all_headers = {
            "Authorization": "Bearer test-token",
            "xero-tenant-id": self.tenant,
            "Accept": "application/json",
            **(headers or {}),
        }
        return self.session.request(
            method, self.url + API + path, json=body, params=params, headers=all_headers, timeout=timeout
        )

    def ok(self, method: str, path: str, body=None, **kwargs) -> dict:
        response = self.call(method, path, body, **kwargs)
        assert response.status_code == 200, response.text
        return response.json(parse_float=Decimal)

    def control(self, method: str, action: str, body=None) -> requests.Response:
        return requests.request(method, f"{self.url}/_emulator/{action}", json=body, timeout=10)


@pytest.fixture(scope="module")
def server():
    running = serve(port=0, config=EmulatorConfig(minute_limit=100000, day_limit=100000))
    yield running
    running.shutdown()


@pytest.fixture
def xero(server):
    client = Xero(server)
    assert client.control("POST", "reset").status_code == 200
    return client


@pytest.fixture
def start():
    """Start extra servers with their own config; all are shut down after the test."""
    started = []

    def _start(**config) -> Xero:
        running = serve(port=0, config=EmulatorConfig(**config))
        started.append(running)
        return Xero(running)

    yield _start
    for running in started:
        running.shutdown()


def create_contact(xero: Xero, name: str, **fields) -> dict:
    answer = xero.ok("PUT", "/Contacts", {"Contacts": [{"Name": name, **fields}]})
    return answer["Contacts"][0]


def line(description: str, quantity, unit, tax_type="OUTPUT", **extra) -> dict:
    return {
        "Description": description,
        "Quantity": quantity,
        "UnitAmount": unit,
        "AccountCode": "200",
        "TaxType": tax_type,
        **extra,
    }


def invoice_body(contact_id: str, lines: list[dict], **fields) -> dict:
    return {
        "Invoices": [
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": contact_id},
                "LineItems": lines,
                "Date": "2026-11-01",
                "DueDate": "2026-12-01",
                **fields,
            }
        ]
    }


# ---- the server, auth, delegation -------------------------------------------------------------


def test_serve_binds_loopback_free_port_and_answers_with_rate_headers(xero):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", xero.url) and xero.server.port > 0
    response = xero.call("GET", "/Contacts")
    assert response.status_code == 200
    for header in ("X-MinLimit-Remaining", "X-DayLimit-Remaining", "X-AppMinLimit-Remaining"):
        assert response.headers[header].isdigit()


def test_bearer_token_and_tenant_header_are_required(xero, start):
    response = requests.get(xero.url + API + "/Contacts", timeout=5)
    assert response.status_code == 401
    no_tenant = requests.get(xero.url + API + "/Contacts", headers={"Authorization": "Bearer t"}, timeout=5)
    assert no_tenant.status_code == 403
    lenient = start(require_tenant_header=False)
    create_contact(lenient, "Default Tenant")
    answer = requests.get(lenient.url + API + "/Contacts", headers={"Authorization": "Bearer t"}, timeout=5)
    assert [c["Name"] for c in answer.json()["Contacts"]] == ["Default Tenant"]


def test_xero_local_routes_still_work_through_the_layer(start):
    xero = start(tenant_id="11111111-2222-4333-8444-555555555555")
    token = requests.post(xero.url + "/connect/token", data={"grant_type": "client_credentials"}, timeout=5)
    assert token.status_code == 200 and token.json()["token_type"] == "Bearer"
    connections = requests.get(xero.url + "/connections", headers={"Authorization": "Bearer x"}, timeout=5)
    assert [c["tenantId"] for c in connections.json()] == ["11111111-2222-4333-8444-555555555555"]
    assert requests.get(xero.url + "/_xero/health", timeout=5).json()["status"] == "ok"
    contact = create_contact(xero, "Credit Customer")
    credit = xero.call(
        "PUT",
        "/CreditNotes",
        {"CreditNotes": [{"Type": "ACCRECCREDIT", "Contact": {"ContactID": contact["ContactID"]}}]},
    )
    assert credit.status_code == 200, credit.text
    state = requests.get(xero.url + "/_xero/state", timeout=5).json()
    assert [c["Name"] for c in state["contacts"]] == ["Credit Customer"]
    assert len(state["credit_notes"]) == 1


def test_two_emulators_in_one_process_do_not_share_data(xero, start):
    other = start()
    create_contact(xero, "Only Here")
    assert xero.ok("GET", "/Contacts")["Contacts"][0]["Name"] == "Only Here"
    assert other.ok("GET", "/Contacts")["Contacts"] == []


# ---- contacts ---------------------------------------------------------------------------------


def test_put_creates_and_post_updates_by_contact_id_keeping_fields(xero):
    created = create_contact(
        xero,
        "Harbour View",
        ContactNumber="crm-acc-1",
        EmailAddress="ap@harbour.example",
        TaxNumber="201912345K",
    )
    assert created["ContactStatus"] == "ACTIVE"
    assert re.fullmatch(r"/Date\(\d+\+0000\)/", created["UpdatedDateUTC"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created["UpdatedDateUTCString"])
    updated = xero.ok(
        "POST", "/Contacts", {"Contacts": [{"ContactID": created["ContactID"], "Name": "Harbour View Pte"}]}
    )["Contacts"][0]
    assert updated["ContactID"] == created["ContactID"]
    assert (updated["Name"], updated["ContactNumber"], updated["EmailAddress"], updated["TaxNumber"]) == (
        "Harbour View Pte",
        "crm-acc-1",
        "ap@harbour.example",
        "201912345K",
    )
    assert updated["UpdatedDateUTC"] != created["UpdatedDateUTC"]
    assert len(xero.ok("GET", "/Contacts")["Contacts"]) == 1


def test_post_never_updates_a_contact_found_by_its_number(xero):
    """Xero documents no upsert by ContactNumber: a second contact with a number in use is refused,
    whether PUT or POST, and the holder is unchanged; updates go by ContactID."""
    created = create_contact(xero, "Acme", ContactNumber="crm-7")
    for method in ("POST", "PUT"):
        again = xero.call(method, "/Contacts", {"Contacts": [{"ContactNumber": "crm-7", "Name": "Acme Ltd"}]})
        assert again.status_code == 400
        assert again.json()["Elements"][0]["ValidationErrors"][0]["Message"] == (
            "The contact number crm-7 is already assigned to another contact. "
            "The contact number must be unique across all contacts."
        )
    fetched = xero.ok("GET", "/Contacts/crm-7")["Contacts"][0]  # Xero finds a contact by its number
    assert (fetched["ContactID"], fetched["Name"]) == (created["ContactID"], "Acme")
    update = {"ContactID": created["ContactID"], "ContactNumber": "crm-7", "Name": "Acme Ltd"}
    by_id = xero.ok("POST", "/Contacts", {"Contacts": [update]})["Contacts"][0]
    assert (by_id["ContactID"], by_id["Name"]) == (created["ContactID"], "Acme Ltd")
    archived = create_contact(xero, "Old", ContactNumber="crm-8")
    xero.ok("POST", "/Contacts", {"Contacts": [{"ContactID": archived["ContactID"], "ContactStatus": "ARCHIVED"}]})
    reuse = xero.call("POST", "/Contacts", {"Contacts": [{"ContactNumber": "crm-8", "Name": "New"}]})
    assert reuse.status_code == 400  # unique across all contacts, archived ones included


def test_read_only_contact_fields_are_dropped_not_echoed(xero):
    made = xero.ok(
        "POST",
        "/Contacts",
        {"Contacts": [{"Name": "Shop", "IsSupplier": True, "IsCustomer": True, "Website": "https://shop.test"}]},
        params={"summarizeErrors": "false"},
    )["Contacts"][0]
    assert made["StatusAttributeString"] == "OK"
    stored = xero.ok("GET", f"/Contacts/{made['ContactID']}")["Contacts"][0]
    for answer in (made, stored):
        assert answer["IsSupplier"] is False and answer["IsCustomer"] is False
        assert "Website" not in answer


def test_a_contact_has_at_most_five_contact_persons(xero):
    persons = [{"FirstName": f"P{n}", "EmailAddress": f"p{n}@x.test"} for n in range(6)]
    refused = xero.call("PUT", "/Contacts", {"Contacts": [{"Name": "Crowd", "ContactPersons": persons}]})
    assert refused.status_code == 400 and "maximum of 5 contact persons" in refused.text
    create_contact(xero, "Crowd", ContactPersons=persons[:5])


def test_contact_names_are_unique_among_active_contacts_ignoring_case(xero):
    create_contact(xero, "Harbour View")
    clash = xero.call("PUT", "/Contacts", {"Contacts": [{"Name": "HARBOUR view"}]})
    assert clash.status_code == 400
    body = clash.json()
    assert body["ErrorNumber"] == 10 and body["Type"] == "ValidationException"
    assert body["Elements"][0]["ValidationErrors"][0]["Message"] == NAME_TAKEN.format("HARBOUR view")


def test_archived_contacts_free_their_name_and_are_hidden_unless_asked(xero):
    first = create_contact(xero, "Old Name")
    xero.ok("POST", f"/Contacts/{first['ContactID']}", {"Contacts": [{"ContactStatus": "ARCHIVED"}]})
    second = create_contact(xero, "Old Name")
    assert second["ContactID"] != first["ContactID"]
    listed = xero.ok("GET", "/Contacts")["Contacts"]
    assert [c["ContactID"] for c in listed] == [second["ContactID"]]
    everything = xero.ok("GET", "/Contacts", params={"includeArchived": "true"})["Contacts"]
    assert {c["ContactStatus"] for c in everything} == {"ACTIVE", "ARCHIVED"}
    revive = xero.call(
        "POST", "/Contacts", {"Contacts": [{"ContactID": first["ContactID"], "ContactStatus": "ACTIVE"}]}
    )
    assert revive.status_code == 400 and "must be unique across all active contacts" in revive.text


def test_where_ids_paging_summary_and_if_modified_since(xero):
    made = [
        create_contact(
            xero,
            f"Customer {n:02d}",
            ContactNumber=f"n-{n}",
            EmailAddress=f"c{n}@x.example",
            Addresses=[{"AddressType": "POBOX", "City": "Singapore"}],
        )
        for n in range(5)
    ]
    where = 'ContactNumber=="n-1" OR EmailAddress=="C3@X.EXAMPLE" OR Name=="Customer 04"'
    found = xero.ok("GET", "/Contacts", params={"where": where})["Contacts"]
    assert sorted(c["ContactNumber"] for c in found) == ["n-1", "n-3", "n-4"]
    ids = ",".join(c["ContactID"] for c in made[:2])
    assert len(xero.ok("GET", "/Contacts", params={"IDs": ids})["Contacts"]) == 2
    page = xero.ok("GET", "/Contacts", params={"page": 2, "pageSize": 2})
    assert [c["Name"] for c in page["Contacts"]] == ["Customer 02", "Customer 03"]
    assert page["pagination"] == {"page": 2, "pageSize": 2, "pageCount": 3, "itemCount": 5}
    summary = xero.ok("GET", "/Contacts", params={"summaryOnly": "true"})["Contacts"][0]
    assert "Addresses" not in summary and summary["ContactNumber"] == "n-0"
    time.sleep(0.01)
    since = made[-1]["UpdatedDateUTCString"]
    assert xero.ok("GET", "/Contacts", headers={"If-Modified-Since": since})["Contacts"] == []
    time.sleep(0.01)
    xero.ok("POST", "/Contacts", {"Contacts": [{"ContactID": made[0]["ContactID"], "Phones": []}]})
    changed = xero.ok("GET", "/Contacts", headers={"If-Modified-Since": since})["Contacts"]
    assert [c["ContactID"] for c in changed] == [made[0]["ContactID"]]
    bad = xero.call("GET", "/Contacts", params={"where": 'Name=="unterminated'})
    assert bad.status_code == 400


def test_page_size_is_capped_at_1000(xero):
    create_contact(xero, "Solo")
    page = xero.ok("GET", "/Contacts", params={"page": 1, "pageSize": 5000})
    assert page["pagination"]["pageSize"] == 1000


# ---- summarizeErrors --------------------------------------------------------------------------


def test_summarize_errors_false_answers_200_per_element_and_stores_the_good_ones(xero):
    create_contact(xero, "Taken")
    answer = xero.ok(
        "POST",
        "/Contacts",
        {"Contacts": [{"Name": "Fresh"}, {"Name": "taken"}, {"Name": "Also Fresh", "ContactNumber": "x"}]},
        params={"summarizeErrors": "false"},
    )["Contacts"]
    assert [c["StatusAttributeString"] for c in answer] == ["OK", "ERROR", "OK"]
    assert answer[1]["ValidationErrors"] == [{"Message": NAME_TAKEN.format("taken")}]
    assert answer[1]["HasValidationErrors"] is True
    names = sorted(c["Name"] for c in xero.ok("GET", "/Contacts")["Contacts"])
    assert names == ["Also Fresh", "Fresh", "Taken"]


def test_summarize_errors_true_is_the_default_and_stores_nothing_on_one_bad_element(xero):
    create_contact(xero, "Taken")
    for params in ({}, {"summarizeErrors": "true"}):
        response = xero.call(
            "POST", "/Contacts", {"Contacts": [{"Name": "Fresh"}, {"Name": "TAKEN"}]}, params=params
        )
        assert response.status_code == 400
        body = response.json()
        assert body["ErrorNumber"] == 10 and body["Type"] == "ValidationException"
        assert body["Elements"][0]["ValidationErrors"][0]["Message"] == NAME_TAKEN.format("TAKEN")
    assert [c["Name"] for c in xero.ok("GET", "/Contacts")["Contacts"]] == ["Taken"]


def test_duplicate_names_inside_one_batch_are_caught(xero):
    answer = xero.ok(
        "POST",
        "/Contacts",
        {"Contacts": [{"Name": "Twin"}, {"Name": "twin"}]},
        params={"summarizeErrors": "false"},
    )["Contacts"]
    assert [c["StatusAttributeString"] for c in answer] == ["OK", "ERROR"]


# ---- items, quotes, settings ------------------------------------------------------------------


def test_items_create_update_by_code_and_code_uniqueness(xero):
    item = xero.ok(
        "PUT",
        "/Items",
        {
            "Items": [
                {
                    "Code": "MAINT-YR",
                    "Name": "Annual maintenance",
                    "SalesDetails": {"UnitPrice": 650, "AccountCode": "200", "TaxType": "OUTPUT"},
                }
            ]
        },
    )["Items"][0]
    assert item["IsSold"] is True and item["IsTrackedAsInventory"] is False
    updated = xero.ok("POST", "/Items", {"Items": [{"Code": "MAINT-YR", "Name": "Annual maintenance plan"}]})
    assert updated["Items"][0]["ItemID"] == item["ItemID"]
    assert updated["Items"][0]["SalesDetails"]["UnitPrice"] == Decimal("650")
    duplicate = xero.call("PUT", "/Items", {"Items": [{"Code": "maint-yr"}]})
    assert duplicate.status_code == 400 and "already exists" in duplicate.text
    assert xero.ok("GET", f"/Items/{item['ItemID']}")["Items"][0]["Name"] == "Annual maintenance plan"
    assert xero.ok("GET", "/Items/MAINT-YR")["Items"][0]["ItemID"] == item["ItemID"]
    too_long = xero.call("PUT", "/Items", {"Items": [{"Code": "X" * 31}]})
    assert too_long.status_code == 400
    # refused by the spec check, which runs first (the emulator's own rule is tested without it below)
    assert "maxLength" in too_long.text


def test_item_rules_hold_without_spec_validation(start):
    xero = start(validate_spec=False)
    answer = xero.ok(
        "PUT",
        "/Items",
        {"Items": [{"Code": "X" * 31}, {"Code": "OK", "Name": "N" * 51}, {}]},
        params={"summarizeErrors": "false"},
    )["Items"]
    messages = [e["ValidationErrors"][0]["Message"] for e in answer]
    assert messages == [
        "Item code must be 30 characters or fewer",
        "Item name must be 50 characters or fewer",
        "Item code must be specified",
    ]


def test_invoice_lines_take_item_defaults(xero):
    contact = create_contact(xero, "Item Buyer")
    xero.ok(
        "PUT",
        "/Items",
        {
            "Items": [
                {
                    "Code": "SVC",
                    "Description": "Service visit",
                    "SalesDetails": {"UnitPrice": 100.5, "AccountCode": "200", "TaxType": "OUTPUT"},
                }
            ]
        },
    )
    invoice = xero.ok(
        "PUT", "/Invoices", invoice_body(contact["ContactID"], [{"ItemCode": "SVC", "Quantity": 2}])
    )["Invoices"][0]
    only = invoice["LineItems"][0]
    assert (only["Description"], only["UnitAmount"], only["LineAmount"], only["TaxAmount"]) == (
        "Service visit",
        Decimal("100.5"),
        Decimal("201"),
        Decimal("18.09"),
    )


def test_quotes_number_themselves_compute_totals_and_follow_statuses(xero):
    contact = create_contact(xero, "Quote Customer")
    quote = xero.ok(
        "PUT",
        "/Quotes",
        {
            "Quotes": [
                {
                    "Contact": {"ContactID": contact["ContactID"]},
                    "Date": "2026-11-20",
                    "Title": "Maintenance",
                    "LineItems": [line("x", 2, 10.00)],
                }
            ]
        },
    )["Quotes"][0]
    assert quote["QuoteNumber"] == "QU-0001" and quote["Status"] == "DRAFT"
    assert (quote["SubTotal"], quote["TotalTax"], quote["Total"]) == (
        Decimal("20"),
        Decimal("1.8"),
        Decimal("21.8"),
    )
    early = xero.call("POST", f"/Quotes/{quote['QuoteID']}", {"Quotes": [{"Status": "INVOICED"}]})
    assert early.status_code == 400 and "ACCEPTED" in early.text
    for status in ("SENT", "ACCEPTED", "INVOICED"):
        moved = xero.ok("POST", f"/Quotes/{quote['QuoteID']}", {"Quotes": [{"Status": status}]})["Quotes"][0]
        assert moved["Status"] == status
    frozen = xero.call("POST", "/Quotes", {"Quotes": [{"QuoteID": quote["QuoteID"], "Title": "changed"}]})
    assert frozen.status_code == 400
    listed = xero.ok("GET", "/Quotes", params={"Status": "INVOICED"})["Quotes"]
    assert [q["QuoteID"] for q in listed] == [quote["QuoteID"]]
    assert xero.ok("GET", f"/Quotes/{quote['QuoteID']}")["Quotes"][0]["Contact"]["Name"] == "Quote Customer"


def test_settings_lists(xero, start):
    tax = xero.ok("GET", "/TaxRates")["TaxRates"]
    assert {t["TaxType"] for t in tax} >= {"OUTPUT", "INPUT", "NONE", "EXEMPTOUTPUT"}
    assert next(t for t in tax if t["TaxType"] == "OUTPUT")["EffectiveRate"] == "9"
    accounts = xero.ok("GET", "/Accounts", params={"where": 'Code=="200"'})["Accounts"]
    assert [(a["Code"], a["Name"]) for a in accounts] == [("200", "Sales")]
    assert {a["Code"] for a in xero.ok("GET", "/Accounts")["Accounts"]} >= {"090", "200", "300"}
    assert {c["Code"] for c in xero.ok("GET", "/Currencies")["Currencies"]} == {"SGD", "USD"}
    assert xero.ok("GET", "/TrackingCategories")["TrackingCategories"] == []
    custom = start(
        tax_rates=[{"Name": "VAT 20", "TaxType": "OUTPUT2", "EffectiveRate": "20", "Status": "ACTIVE"}]
    )
    assert [t["TaxType"] for t in custom.ok("GET", "/TaxRates")["TaxRates"]] == ["OUTPUT2"]


# ---- invoices ---------------------------------------------------------------------------------


def test_invoice_arithmetic_matches_xero_per_line_rounding(xero):
    contact = create_contact(xero, "Harbour View Properties Pte Ltd")
    lines = [
        line("Maintenance visits", 12, 650.00),
        line("Filter sets", 4, 1170.00, DiscountRate=10),
        line("Call-out fee", 1, 468.00, tax_type="NONE"),
    ]
    body = invoice_body(contact["ContactID"], lines, Status="AUTHORISED", SubTotal=1, Total=2)
    invoice = xero.ok("POST", "/Invoices", body, params={"summarizeErrors": "false"})["Invoices"][0]
    assert (invoice["SubTotal"], invoice["TotalTax"], invoice["Total"]) == (
        Decimal("12480.00"),
        Decimal("1081.08"),
        Decimal("13561.08"),
    )
    assert invoice["AmountDue"] == Decimal("13561.08") and invoice["AmountPaid"] == 0
    assert [li["LineAmount"] for li in invoice["LineItems"]] == [
        Decimal("7800"),
        Decimal("4212"),
        Decimal("468"),
    ]
    assert [li["TaxAmount"] for li in invoice["LineItems"]] == [
        Decimal("702"),
        Decimal("379.08"),
        Decimal("0"),
    ]
    assert invoice["StatusAttributeString"] == "WARNING"  # the totals sent were ignored
    assert invoice["Contact"]["Name"] == "Harbour View Properties Pte Ltd"


def test_per_line_tax_rounding_differs_from_taxing_the_total(xero):
    contact = create_contact(xero, "Cents")
    lines = [line(f"l{n}", 1, 0.05) for n in range(3)]  # 0.0045 tax each rounds to 0.00
    invoice = xero.ok("PUT", "/Invoices", invoice_body(contact["ContactID"], lines))["Invoices"][0]
    assert (invoice["SubTotal"], invoice["TotalTax"]) == (Decimal("0.15"), Decimal("0"))


def test_inclusive_and_no_tax_invoices(xero):
    contact = create_contact(xero, "Inclusive Co")
    inclusive = xero.ok(
        "PUT",
        "/Invoices",
        invoice_body(contact["ContactID"], [line("a", 1, 109.00)], LineAmountTypes="Inclusive"),
    )["Invoices"][0]
    assert (inclusive["SubTotal"], inclusive["TotalTax"], inclusive["Total"]) == (
        Decimal("100"),
        Decimal("9"),
        Decimal("109"),
    )
    no_tax = xero.ok(
        "PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 3, 33.33)], LineAmountTypes="NoTax")
    )["Invoices"][0]
    assert (no_tax["SubTotal"], no_tax["TotalTax"], no_tax["Total"]) == (
        Decimal("99.99"),
        0,
        Decimal("99.99"),
    )


def test_unitdp_4_keeps_four_decimals_else_two(xero):
    contact = create_contact(xero, "Precise")
    four = xero.ok(
        "PUT",
        "/Invoices",
        invoice_body(contact["ContactID"], [line("a", 3, 1.23456)]),
        params={"unitdp": "4"},
    )["Invoices"][0]
    assert four["LineItems"][0]["UnitAmount"] == Decimal("1.2346")
    assert four["LineItems"][0]["LineAmount"] == Decimal("3.7")  # 3 x 1.2346 = 3.7038
    two = xero.ok("PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 3, 1.23456)]))[
        "Invoices"
    ][0]
    assert two["LineItems"][0]["UnitAmount"] == Decimal("1.23") and two["SubTotal"] == Decimal("3.69")
    shown = xero.ok("GET", f"/Invoices/{four['InvoiceID']}")["Invoices"][0]["LineItems"][0]
    assert shown["UnitAmount"] == Decimal("1.23")
    assert xero.ok("GET", f"/Invoices/{four['InvoiceID']}", params={"unitdp": 4})["Invoices"][0]["LineItems"][
        0
    ]["UnitAmount"] == Decimal("1.2346")


def test_accrec_numbers_are_unique_and_automatic_accpay_numbers_are_not(xero):
    contact = create_contact(xero, "Numbers")
    first = xero.ok("PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 1)]))["Invoices"][0]
    second = xero.ok("PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 1)]))["Invoices"][0]
    assert (first["InvoiceNumber"], second["InvoiceNumber"]) == ("INV-0001", "INV-0002")
    taken = xero.call(
        "PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 1)], InvoiceNumber="inv-0001")
    )
    assert taken.status_code == 400 and "Invoice # must be unique." in taken.text
    bills = [
        xero.ok(
            "PUT",
            "/Invoices",
            invoice_body(
                contact["ContactID"], [line("b", 1, 5, "INPUT")], Type="ACCPAY", InvoiceNumber="SUP-1"
            ),
        )["Invoices"][0]
        for _ in range(2)
    ]
    assert bills[0]["InvoiceID"] != bills[1]["InvoiceID"]
    assert xero.ok("GET", "/Contacts/" + contact["ContactID"])["Contacts"][0]["IsSupplier"] is True


def test_update_by_invoice_id_keeps_line_item_ids(xero):
    contact = create_contact(xero, "Lines")
    invoice = xero.ok(
        "PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 10), line("b", 1, 20)])
    )
    invoice = invoice["Invoices"][0]
    kept = invoice["LineItems"][0]
    body = {
        "Invoices": [
            {
                "InvoiceID": invoice["InvoiceID"],
                "LineItems": [
                    {
                        "LineItemID": kept["LineItemID"],
                        "Description": "a2",
                        "Quantity": 2,
                        "UnitAmount": 10,
                        "AccountCode": "200",
                        "TaxType": "OUTPUT",
                    }
                ],
            }
        ]
    }
    updated = xero.ok("POST", "/Invoices", body)["Invoices"][0]
    assert (
        updated["InvoiceID"] == invoice["InvoiceID"] and updated["InvoiceNumber"] == invoice["InvoiceNumber"]
    )
    assert [li["LineItemID"] for li in updated["LineItems"]] == [kept["LineItemID"]]
    assert updated["SubTotal"] == Decimal("20")


def test_status_transitions(xero):
    contact = create_contact(xero, "Statuses")

    def make(status):
        return xero.ok(
            "PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 10)], Status=status)
        )["Invoices"][0]["InvoiceID"]

    def move(invoice_id, status):
        return xero.call("POST", f"/Invoices/{invoice_id}", {"Invoices": [{"Status": status}]})

    assert move(make("AUTHORISED"), "DELETED").status_code == 400
    assert move(make("DRAFT"), "VOIDED").status_code == 400
    assert move(make("AUTHORISED"), "PAID").status_code == 400
    assert (
        xero.call(
            "PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 1)], Status="PAID")
        ).status_code
        == 400
    )
    for start_status, end_status in (
        ("DRAFT", "DELETED"),
        ("SUBMITTED", "DELETED"),
        ("AUTHORISED", "VOIDED"),
    ):
        response = move(make(start_status), end_status)
        assert response.status_code == 200 and response.json()["Invoices"][0]["Status"] == end_status
    deleted = make("DRAFT")
    move(deleted, "DELETED")
    assert move(deleted, "AUTHORISED").status_code == 400


def test_payments_settle_invoices_and_lock_them(xero):
    contact = create_contact(xero, "Payer")
    invoice = xero.ok(
        "PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 100.00)], Status="AUTHORISED")
    )["Invoices"][0]
    before = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))

    def pay(amount):
        return xero.call(
            "PUT",
            "/Payments",
            {
                "Payments": [
                    {
                        "Invoice": {"InvoiceID": invoice["InvoiceID"]},
                        "Account": {"Code": "090"},
                        "Amount": amount,
                        "Date": "2026-11-15",
                        "Reference": "r",
                    }
                ]
            },
        )

    first = pay(40)
    assert first.status_code == 200 and first.json()["Payments"][0]["Invoice"]["AmountDue"] == 69
    assert (
        xero.call(
            "POST", f"/Invoices/{invoice['InvoiceID']}", {"Invoices": [{"Status": "VOIDED"}]}
        ).status_code
        == 400
    )
    assert pay("69.01").status_code == 400  # more than is due
    assert pay(69).status_code == 200
    paid = xero.ok("GET", f"/Invoices/{invoice['InvoiceID']}")["Invoices"][0]
    assert (paid["Status"], paid["AmountPaid"], paid["AmountDue"]) == ("PAID", Decimal("109"), 0)
    assert paid["FullyPaidOnDate"] == paid["Payments"][1]["Date"]
    edited = xero.call("POST", f"/Invoices/{invoice['InvoiceID']}", {"Invoices": [{"Reference": "late"}]})
    assert edited.status_code == 400 and "payment" in edited.text
    payments = xero.ok("GET", "/Payments", headers={"If-Modified-Since": before})["Payments"]
    assert len(payments) == 2 and payments[0]["Invoice"]["InvoiceNumber"] == invoice["InvoiceNumber"]
    future = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 60))
    assert xero.ok("GET", "/Payments", headers={"If-Modified-Since": future})["Payments"] == []
    removed = xero.ok("POST", f"/Payments/{payments[1]['PaymentID']}", {"Status": "DELETED"})
    assert removed["Payments"][0]["Status"] == "DELETED"
    reopened = xero.ok("GET", f"/Invoices/{invoice['InvoiceID']}")["Invoices"][0]
    assert (reopened["Status"], reopened["AmountDue"]) == ("AUTHORISED", Decimal("69"))
    assert "FullyPaidOnDate" not in reopened


def test_payment_on_a_draft_invoice_is_refused(xero):
    contact = create_contact(xero, "Drafty")
    invoice = xero.ok("PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 1)]))["Invoices"][
        0
    ]
    answer = xero.ok(
        "PUT",
        "/Payments",
        {
            "Payments": [
                {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Amount": 1}
            ]
        },
        params={"summarizeErrors": "false"},
    )["Payments"][0]
    assert (
        answer["StatusAttributeString"] == "ERROR"
        and "AUTHORISED" in answer["ValidationErrors"][0]["Message"]
    )


def test_invoice_list_filters_and_omits_lines_unless_paged(xero):
    contact = create_contact(xero, "Lister")
    ids = [
        xero.ok("PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, n + 1)], Status=status))[
            "Invoices"
        ][0]["InvoiceID"]
        for n, status in enumerate(("DRAFT", "AUTHORISED", "AUTHORISED"))
    ]
    plain = xero.ok("GET", "/Invoices", params={"Statuses": "AUTHORISED"})["Invoices"]
    assert [i["InvoiceID"] for i in plain] == ids[1:] and "LineItems" not in plain[0]
    paged = xero.ok("GET", "/Invoices", params={"page": 1, "ContactIDs": contact["ContactID"]})
    assert len(paged["Invoices"]) == 3 and paged["Invoices"][0]["LineItems"]
    by_number = xero.ok("GET", "/Invoices", params={"InvoiceNumbers": "INV-0002"})["Invoices"]
    assert [i["InvoiceID"] for i in by_number] == [ids[1]]
    where = xero.ok("GET", "/Invoices", params={"where": 'Status=="DRAFT" AND Total>=1'})["Invoices"]
    assert [i["InvoiceID"] for i in where] == [ids[0]]
    assert xero.call("GET", "/Invoices/00000000-0000-0000-0000-000000000000").text == NOT_FOUND_TEXT


def test_invoice_for_an_archived_or_unknown_contact_fails(xero):
    contact = create_contact(xero, "Gone")
    xero.ok("POST", f"/Contacts/{contact['ContactID']}", {"Contacts": [{"ContactStatus": "ARCHIVED"}]})
    archived = xero.call("PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 1)]))
    assert archived.status_code == 400 and "ARCHIVED" in archived.text
    unknown = xero.call(
        "PUT", "/Invoices", invoice_body("11111111-1111-4111-8111-111111111111", [line("a", 1, 1)])
    )
    assert unknown.status_code == 400 and "was not found" in unknown.text


# ---- idempotency ------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer(xero):
    body = {"Contacts": [{"Name": "Once Only"}]}
    first = xero.call("POST", "/Contacts", body, headers={"Idempotency-Key": "key-1"})
    replay = xero.call("POST", "/Contacts", body, headers={"Idempotency-Key": "key-1"})
    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json()
    assert len(xero.ok("GET", "/Contacts")["Contacts"]) == 1
    different = xero.call(
        "POST", "/Contacts", {"Contacts": [{"Name": "Other"}]}, headers={"Idempotency-Key": "key-1"}
    )
    assert different.status_code == 400 and "Idempotency-Key" in different.text
    log = xero.control("GET", "requests").json()["requests"]
    assert [e["replayed"] for e in log if e["idempotency_key"] == "key-1"] == [False, True, False]


def test_idempotency_keys_expire(start):
    now = [1000.0]
    xero = start(clock=lambda: now[0], idempotency_ttl_seconds=360)
    body = {"Contacts": [{"Name": "Expiring"}]}
    assert xero.call("POST", "/Contacts", body, headers={"Idempotency-Key": "k"}).status_code == 200
    now[0] += 359
    assert xero.call("POST", "/Contacts", body, headers={"Idempotency-Key": "k"}).status_code == 200
    now[0] += 2
    late = xero.call(
        "POST", "/Contacts", {"Contacts": [{"Name": "Expiring"}]}, headers={"Idempotency-Key": "k"}
    )
    assert late.status_code == 400 and "already assigned" in late.text  # ran again, hit the unique name


# ---- rate limits ------------------------------------------------------------------------------


def test_minute_limit_answers_429_with_retry_after(start):
    now = [0.0]
    xero = start(minute_limit=3, clock=lambda: now[0])
    remaining = [xero.call("GET", "/Contacts").headers["X-MinLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    now[0] = 20.0
    limited = xero.call("GET", "/Contacts")
    assert limited.status_code == 429
    assert limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert limited.headers["Retry-After"] == "40"
    other_tenant = Xero(xero.server, tenant="99999999-9999-4999-8999-999999999999")
    assert other_tenant.call("GET", "/Contacts").status_code == 200  # limits are per tenant
    now[0] = 60.0  # a rolling minute after the first three: all three have aged out
    assert xero.call("GET", "/Contacts").status_code == 200


def test_the_minute_is_rolling_so_a_window_boundary_lets_nothing_extra_through(start):
    now = [59.0]
    xero = start(minute_limit=3, clock=lambda: now[0])
    assert [xero.call("GET", "/Contacts").status_code for _ in range(3)] == [200] * 3
    now[0] = 60.5  # an epoch-minute boundary has passed, the rolling minute has not
    limited = xero.call("GET", "/Contacts")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "59"
    now[0] = 119.0
    assert xero.call("GET", "/Contacts").status_code == 200


def test_latency_is_drawn_from_a_range(start):
    xero = start(latency_seconds=0.05, latency_max_seconds=0.25, latency_seed=3)
    draws = [xero.server.app.latency.draw() for _ in range(200)]
    assert 0.05 <= min(draws) < 0.07 and 0.23 < max(draws) <= 0.25


def test_sixty_calls_a_minute_by_default(start):
    xero = start()
    statuses = [xero.call("GET", "/TaxRates").status_code for _ in range(61)]
    assert statuses[:60] == [200] * 60 and statuses[60] == 429


def test_day_limit(start):
    xero = start(day_limit=2)
    assert [xero.call("GET", "/Contacts").status_code for _ in range(2)] == [200, 200]
    limited = xero.call("GET", "/Contacts")
    assert limited.status_code == 429 and limited.headers["X-Rate-Limit-Problem"] == "day"
    assert int(limited.headers["Retry-After"]) > 80000


def test_concurrent_limit_answers_429_without_retry_after(start):
    xero = start(concurrent_limit=2, latency_seconds=1.0)
    barrier = threading.Barrier(5)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def call():
        barrier.wait(timeout=5)
        response = Xero(xero.server).call("GET", "/Contacts")
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(200) >= 2 and statuses.count(429) >= 1, statuses
    for limited in (r for r in answers if r.status_code == 429):
        assert limited.headers["X-Rate-Limit-Problem"] == "concurrent"
        assert "Retry-After" not in limited.headers


def test_limits_can_be_changed_at_run_time(xero):
    changed = xero.control("POST", "limits", {"minute_limit": 1})
    try:
        assert changed.json()["minute_limit"] == 1
        assert xero.call("GET", "/Contacts").status_code == 200
        assert xero.call("GET", "/Contacts").status_code == 429
        assert xero.control("POST", "limits", {"nonsense": 1}).status_code == 400
    finally:
        xero.control("POST", "limits", {"minute_limit": 100000})


# ---- faults -----------------------------------------------------------------------------------


def _fault_sequence(xero: Xero, seed: int) -> list[int]:
    assert xero.control("POST", "faults", {"rate": 0.5, "seed": seed, "kinds": ["429", "500", "503"]}).ok
    return [xero.call("GET", "/Accounts").status_code for _ in range(20)]


def test_faults_are_deterministic_for_a_seed(xero, start):
    first = _fault_sequence(xero, 7)
    second = _fault_sequence(start(), 7)
    assert first == second
    assert set(first) - {200} and 200 in first
    injected_429 = xero.control("POST", "faults", {"next": ["429"], "retry_after": 3})
    assert injected_429.ok
    response = xero.call("GET", "/Accounts")
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")


def test_next_faults_apply_in_order_then_stop(xero):
    xero.control("POST", "faults", {"next": ["503", "ok", "500"]})
    assert [xero.call("GET", "/Contacts").status_code for _ in range(4)] == [503, 200, 500, 200]
    assert xero.control("GET", "faults").json()["injected"] == 2
    assert xero.control("POST", "faults", {"next": ["explode"]}).status_code == 400


def test_dropped_connection_before_and_after_the_work(xero):
    body = {"Contacts": [{"Name": "Dropped"}]}
    xero.control("POST", "faults", {"next": ["dropped"]})
    with pytest.raises(requests.ConnectionError):
        xero.call("POST", "/Contacts", body, headers={"Idempotency-Key": "d-1"})
    assert xero.ok("GET", "/Contacts")["Contacts"] == []
    xero.control("POST", "faults", {"next": ["dropped_after"]})
    with pytest.raises(requests.ConnectionError):
        xero.call("POST", "/Contacts", body, headers={"Idempotency-Key": "d-2"})
    assert len(xero.ok("GET", "/Contacts")["Contacts"]) == 1  # the work was done, the answer lost
    retry = xero.call("POST", "/Contacts", body, headers={"Idempotency-Key": "d-2"})
    assert retry.status_code == 200 and retry.json()["Contacts"][0]["Name"] == "Dropped"
    assert len(xero.ok("GET", "/Contacts")["Contacts"]) == 1
    statuses = [
        e["status"] for e in xero.control("GET", "requests").json()["requests"] if e["method"] == "POST"
    ]
    assert statuses == ["dropped", "dropped", 200]


def test_slow_fault_sleeps_a_bounded_time(xero):
    xero.control("POST", "faults", {"next": ["slow"], "slow_seconds": 0.3})
    started = time.monotonic()
    assert xero.call("GET", "/Contacts").status_code == 200
    assert time.monotonic() - started >= 0.3
    assert xero.control("POST", "faults", {"slow_seconds": 600}).status_code == 400


# ---- controls and spec validation -------------------------------------------------------------


def test_request_log_since_reset_and_state(xero):
    create_contact(xero, "Logged")
    xero.call("GET", "/Contacts", params={"where": 'Name=="Logged"'})
    log = xero.control("GET", "requests").json()
    first, second = log["requests"]
    assert (first["method"], first["path"], first["status"], first["tenant"]) == (
        "PUT",
        "/api.xro/2.0/Contacts",
        200,
        xero.tenant,
    )
    assert second["query"] == {"where": 'Name=="Logged"'} and "time" in second
    later = xero.control("GET", f"requests?since={first['seq']}").json()["requests"]
    assert [e["seq"] for e in later] == [second["seq"]]
    state = xero.control("GET", "state").json()
    assert [c["Name"] for c in state["tenants"][xero.tenant]["contacts"]] == ["Logged"]
    assert xero.control("POST", "reset").ok
    assert xero.control("GET", "requests").json()["requests"] == []
    assert xero.control("GET", "state").json()["tenants"][xero.tenant]["contacts"] == []


def test_bodies_that_break_the_spec_are_refused_and_logged(xero):
    response = xero.call("POST", "/Contacts", {"Contacts": [{"Name": "Bad", "ContactStatus": "SLEEPING"}]})
    assert response.status_code == 400
    assert "ContactStatus" in response.json()["Message"] and "enum" in response.json()["Message"]
    entry = xero.control("GET", "requests").json()["requests"][-1]
    assert "SLEEPING" in entry["spec_violation"]
    assert xero.ok("GET", "/Contacts")["Contacts"] == []
    undeclared = xero.call(
        "POST", "/Contacts/anything", {"Contacts": [{"Name": "x"}]}, params={"summarizeErrors": "false"}
    )
    assert undeclared.status_code == 400 and "summarizeErrors" in undeclared.text


def test_invalid_json_is_a_400(xero):
    response = xero.session.post(
        xero.url + API + "/Contacts",
        data=b"{not json",
        headers={
            "Authorization": "Bearer t",
            "Content-Type": "application/json",
            "xero-tenant-id": xero.tenant,
        },
        timeout=5,
    )
    assert response.status_code == 400
    assert json.loads(response.text)["Type"] == "PostDataInvalidException"


def test_fault_config_is_validated():
    with pytest.raises(ValueError):
        FaultConfig.from_json({"rate": 2})
    with pytest.raises(ValueError):
        FaultConfig.from_json({"surprise": True})


def test_faults_from_the_config_apply_from_the_start_and_after_reset(start):
    xero = start(faults=FaultConfig(next=["503"]))
    assert [xero.call("GET", "/Contacts").status_code for _ in range(2)] == [503, 200]
    assert xero.control("POST", "reset").ok
    assert xero.call("GET", "/Contacts").status_code == 503


# ---- invoice and quote fidelity the connector depends on --------------------------------------


def test_authorised_invoice_update_keeps_sent_line_ids_and_replaces_the_rest(xero):
    contact = create_contact(xero, "Authorised Lines")
    invoice = xero.ok(
        "PUT",
        "/Invoices",
        invoice_body(contact["ContactID"], [line("a", 1, 10), line("b", 1, 20)], Status="AUTHORISED"),
    )["Invoices"][0]
    kept, dropped = (li["LineItemID"] for li in invoice["LineItems"])
    updated = xero.ok(
        "POST",
        f"/Invoices/{invoice['InvoiceID']}",
        {"Invoices": [{"LineItems": [line("c", 1, 5), line("a", 3, 10, LineItemID=kept)]}]},
    )["Invoices"][0]
    ids = [li["LineItemID"] for li in updated["LineItems"]]
    assert ids[1] == kept and ids[0] not in (kept, dropped) and len(ids) == 2
    assert (updated["Status"], updated["Total"]) == ("AUTHORISED", Decimal("38.15"))
    # a LineItemID the invoice never had is not adopted: the line is new
    foreign = xero.ok(
        "POST",
        f"/Invoices/{invoice['InvoiceID']}",
        {"Invoices": [{"LineItems": [line("d", 1, 1, LineItemID=dropped)]}]},
    )["Invoices"][0]
    assert foreign["LineItems"][0]["LineItemID"] != dropped


def test_voided_and_deleted_invoices_are_not_of_valid_status_for_modification(xero):
    contact = create_contact(xero, "Ended")
    for start_status, end_status in (("AUTHORISED", "VOIDED"), ("DRAFT", "DELETED")):
        invoice = xero.ok(
            "PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 1)], Status=start_status)
        )["Invoices"][0]
        ended = xero.ok("POST", f"/Invoices/{invoice['InvoiceID']}", {"Invoices": [{"Status": end_status}]})
        assert ended["Invoices"][0]["Status"] == end_status
        edited = xero.call("POST", f"/Invoices/{invoice['InvoiceID']}", {"Invoices": [{"Reference": "again"}]})
        assert edited.status_code == 400 and "Invoice not of valid status for modification" in edited.text


def test_payments_move_the_invoice_updated_date_both_ways(xero):
    contact = create_contact(xero, "Moving Dates")
    invoice = xero.ok(
        "PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 100)], Status="AUTHORISED")
    )["Invoices"][0]
    since = invoice["UpdatedDateUTCString"]
    assert xero.ok("GET", "/Invoices", headers={"If-Modified-Since": since})["Invoices"] == []
    payment = xero.ok(
        "PUT",
        "/Payments",
        {"Payments": [{"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"},
                       "Amount": 109, "Date": "2026-11-20"}]},
    )["Payments"][0]
    paid = xero.ok("GET", "/Invoices", headers={"If-Modified-Since": since}, params={"page": 1})["Invoices"]
    assert [i["InvoiceID"] for i in paid] == [invoice["InvoiceID"]]
    assert paid[0]["Status"] == "PAID" and paid[0]["FullyPaidOnDate"] == paid[0]["Payments"][0]["Date"]
    assert paid[0]["Payments"][0]["PaymentID"] == payment["PaymentID"]
    assert paid[0]["Payments"][0]["Amount"] == Decimal("109")
    paid_since = paid[0]["UpdatedDateUTCString"]
    xero.ok("POST", f"/Payments/{payment['PaymentID']}", {"Status": "DELETED"})
    reopened = xero.ok("GET", "/Invoices", headers={"If-Modified-Since": paid_since})["Invoices"]
    assert [(i["InvoiceID"], i["Status"], i["AmountDue"]) for i in reopened] == [
        (invoice["InvoiceID"], "AUTHORISED", Decimal("109"))
    ]
    assert xero.ok("GET", f"/Invoices/{invoice['InvoiceID']}")["Invoices"][0]["Payments"] == []


def test_invoice_id_and_status_lists_filter_together(xero):
    contact = create_contact(xero, "Filters")
    made = [
        xero.ok("PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 1)], Status=status))[
            "Invoices"
        ][0]
        for status in ("DRAFT", "AUTHORISED", "SUBMITTED", "AUTHORISED")
    ]
    ids = [i["InvoiceID"] for i in made]
    by_ids = xero.ok("GET", "/Invoices", params={"IDs": ",".join(ids[:3])})["Invoices"]
    # Xero's Invoices documentation: a list is a summary without lines, IDs= included; page= has them
    assert [i["InvoiceID"] for i in by_ids] == ids[:3] and all("LineItems" not in i for i in by_ids)
    paged = xero.ok("GET", "/Invoices", params={"IDs": ",".join(ids[:3]), "page": 1})["Invoices"]
    assert [i["InvoiceID"] for i in paged] == ids[:3] and all(i["LineItems"] for i in paged)
    assert xero.ok("GET", f"/Invoices/{ids[0]}")["Invoices"][0]["LineItems"]
    both = xero.ok("GET", "/Invoices", params={"IDs": ",".join(ids[:3]), "Statuses": "AUTHORISED,SUBMITTED"})
    assert [i["InvoiceID"] for i in both["Invoices"]] == ids[1:3]
    numbers = ",".join(i["InvoiceNumber"] for i in made[2:])
    assert [i["InvoiceID"] for i in xero.ok("GET", "/Invoices", params={"InvoiceNumbers": numbers})["Invoices"]] == (
        ids[2:]
    )


def test_quote_statuses_go_through_sent(xero):
    contact = create_contact(xero, "Quote Path")

    def make(status="DRAFT"):
        body = {"Quotes": [{"Contact": {"ContactID": contact["ContactID"]}, "Status": status,
                            "LineItems": [line("x", 1, 10)]}]}
        return xero.call("PUT", "/Quotes", body)

    def move(quote_id, status):
        return xero.call("POST", f"/Quotes/{quote_id}", {"Quotes": [{"Status": status}]})

    draft = make().json()["Quotes"][0]["QuoteID"]
    assert move(draft, "ACCEPTED").status_code == 400
    assert move(draft, "DECLINED").status_code == 400
    assert move(draft, "SENT").status_code == 200
    assert move(draft, "DECLINED").status_code == 200
    assert move(draft, "SENT").status_code == 200 and move(draft, "ACCEPTED").status_code == 200
    refused = move(draft, "DECLINED")
    assert refused.status_code == 400 and "from ACCEPTED to DECLINED" in refused.text
    before = xero.ok("GET", f"/Quotes/{draft}")["Quotes"][0]["UpdatedDateUTCString"]
    assert move(draft, "INVOICED").status_code == 200
    assert [q["QuoteID"] for q in xero.ok("GET", "/Quotes", headers={"If-Modified-Since": before})["Quotes"]] == [
        draft
    ]
    assert make("INVOICED").status_code == 400 and make("DELETED").status_code == 400
    assert make("SENT").status_code == 200
