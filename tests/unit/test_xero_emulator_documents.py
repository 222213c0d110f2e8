"""The Xero emulator's purchase orders, online invoices and credit notes (with allocations), over real
HTTP on 127.0.0.1 (a free port per server)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from sugar_xero import xero_spec
from sugar_xero.local.xero_emulator import NOT_FOUND_TEXT, EmulatorConfig, serve
from tests.unit.test_xero_emulator import Xero, create_contact, invoice_body, line

UNORDERED = {"summarizeErrors": "false"}


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


def purchase_line(description: str, quantity, unit, **extra) -> dict:
    return {
        "Description": description,
        "Quantity": quantity,
        "UnitAmount": unit,
        "AccountCode": "300",
        "TaxType": "INPUT",
        **extra,
    }


def purchase_order(contact_id: str, lines: list[dict], **fields) -> dict:
    return {"Contact": {"ContactID": contact_id}, "Date": "2026-11-02", "LineItems": lines, **fields}


def create_purchase_order(xero: Xero, contact_id: str, lines: list[dict], **fields) -> dict:
    body = {"PurchaseOrders": [purchase_order(contact_id, lines, **fields)]}
    return xero.ok("PUT", "/PurchaseOrders", body)["PurchaseOrders"][0]


def move_purchase_order(xero: Xero, order_id: str, **fields) -> requests.Response:
    return xero.call("POST", f"/PurchaseOrders/{order_id}", {"PurchaseOrders": [fields]})


def authorised_invoice(xero: Xero, contact_id: str, amount, **fields) -> dict:
    body = invoice_body(contact_id, [line("work", 1, amount)], Status="AUTHORISED", **fields)
    return xero.ok("PUT", "/Invoices", body)["Invoices"][0]


def credit_note(xero: Xero, contact_id: str, lines: list[dict], **fields) -> dict:
    body = {
        "CreditNotes": [
            {"Type": "ACCRECCREDIT", "Contact": {"ContactID": contact_id}, "Date": "2026-11-10", "LineItems": lines}
            | fields
        ]
    }
    return xero.ok("PUT", "/CreditNotes", body)["CreditNotes"][0]


def allocate(xero: Xero, note_id: str, invoice_id: str, amount, **kwargs) -> requests.Response:
    body = {"Allocations": [{"Invoice": {"InvoiceID": invoice_id}, "Amount": amount, "Date": "2026-11-12"}]}
    return xero.call("PUT", f"/CreditNotes/{note_id}/Allocations", body, **kwargs)


def get_invoice(xero: Xero, invoice_id: str) -> dict:
    return xero.ok("GET", f"/Invoices/{invoice_id}")["Invoices"][0]


def get_note(xero: Xero, note_id: str) -> dict:
    return xero.ok("GET", f"/CreditNotes/{note_id}")["CreditNotes"][0]


# ---- purchase orders --------------------------------------------------------------------------


def test_purchase_orders_number_themselves_and_use_xero_line_arithmetic(xero):
    supplier = create_contact(xero, "Timber Supplies")
    xero.ok(
        "PUT",
        "/Items",
        {"Items": [{"Code": "PLY", "Name": "Plywood", "PurchaseDescription": "Plywood sheet",
                    "PurchaseDetails": {"UnitPrice": 12.345, "AccountCode": "300", "TaxType": "INPUT"}}]},
    )
    answer = xero.ok(
        "PUT",
        "/PurchaseOrders",
        {
            "PurchaseOrders": [
                purchase_order(
                    supplier["ContactID"],
                    [purchase_line("beams", 3, 10.05, DiscountRate=10), {"ItemCode": "PLY", "Quantity": 2}],
                    DeliveryDate="2026-11-20",
                    AttentionTo="Yard",
                ),
                purchase_order(supplier["ContactID"], [purchase_line("nails", 1, 5)]),
            ]
        },
    )["PurchaseOrders"]
    first, second = answer
    assert (first["PurchaseOrderNumber"], second["PurchaseOrderNumber"]) == ("PO-0001", "PO-0002")
    assert first["Type"] == "PURCHASEORDER" and first["Status"] == "DRAFT"
    beams, plywood = first["LineItems"]
    # 3 x 10.05 = 30.15, less 10% = 27.135 -> 27.14; tax 9% = 2.4426 -> 2.44 (per line)
    assert (beams["LineAmount"], beams["TaxAmount"]) == (Decimal("27.14"), Decimal("2.44"))
    # item defaults: the purchase description, price (2 decimals without unitdp=4) and tax type
    assert (plywood["Description"], plywood["UnitAmount"], plywood["LineAmount"]) == (
        "Plywood sheet", Decimal("12.35"), Decimal("24.70"))
    assert plywood["TaxAmount"] == Decimal("2.22")
    assert (first["SubTotal"], first["TotalTax"], first["Total"]) == (
        Decimal("51.84"), Decimal("4.66"), Decimal("56.50"))
    assert first["TotalDiscount"] == Decimal("3.01") and first["IsDiscounted"] is True
    assert first["DeliveryDateString"] == "2026-11-20T00:00:00" and first["AttentionTo"] == "Yard"
    fetched = xero.ok("GET", f"/PurchaseOrders/{first['PurchaseOrderID']}")["PurchaseOrders"][0]
    assert fetched["Contact"]["Name"] == "Timber Supplies" and fetched["Total"] == Decimal("56.50")
    by_number = xero.ok("GET", "/PurchaseOrders/PO-0002")["PurchaseOrders"][0]
    assert by_number["PurchaseOrderID"] == second["PurchaseOrderID"]
    assert xero.call("GET", "/PurchaseOrders/00000000-0000-0000-0000-000000000000").text == NOT_FOUND_TEXT


def test_purchase_order_batch_answers_each_element_without_summarized_errors(xero):
    supplier = create_contact(xero, "Batch Supplier")
    create_purchase_order(xero, supplier["ContactID"], [purchase_line("a", 1, 1)], PurchaseOrderNumber="PO-9")
    answer = xero.ok(
        "PUT",
        "/PurchaseOrders",
        {
            "PurchaseOrders": [
                purchase_order(supplier["ContactID"], [purchase_line("dup", 1, 1)], PurchaseOrderNumber="po-9"),
                purchase_order(supplier["ContactID"], [purchase_line("ok", 1, 2)]),
                {"LineItems": [purchase_line("no contact", 1, 1)]},
            ]
        },
        params=UNORDERED,
    )["PurchaseOrders"]
    assert [e["StatusAttributeString"] for e in answer] == ["ERROR", "OK", "ERROR"]
    assert answer[0]["ValidationErrors"] == [{"Message": "Order number must be unique"}]
    assert "Contact" in answer[2]["ValidationErrors"][0]["Message"]
    stored = xero.ok("GET", "/PurchaseOrders")["PurchaseOrders"]
    assert sorted(o["PurchaseOrderNumber"] for o in stored) == ["PO-0001", "PO-9"]
    # the default (summarizeErrors=true) stores nothing when one element fails
    refused = xero.call(
        "PUT",
        "/PurchaseOrders",
        {"PurchaseOrders": [purchase_order(supplier["ContactID"], [purchase_line("x", 1, 1)]), {"LineItems": []}]},
    )
    assert refused.status_code == 400 and refused.json()["Type"] == "ValidationException"
    assert len(xero.ok("GET", "/PurchaseOrders")["PurchaseOrders"]) == 2


def test_purchase_order_statuses_follow_xero(xero):
    supplier = create_contact(xero, "Status Supplier")
    order = create_purchase_order(xero, supplier["ContactID"], [purchase_line("a", 1, 10)])
    order_id = order["PurchaseOrderID"]
    assert move_purchase_order(xero, order_id, Status="BILLED").status_code == 400  # not approved yet
    for status in ("SUBMITTED", "AUTHORISED", "BILLED"):
        moved = move_purchase_order(xero, order_id, Status=status)
        assert moved.status_code == 200 and moved.json()["PurchaseOrders"][0]["Status"] == status
    edited = move_purchase_order(xero, order_id, Reference="late change")
    assert edited.status_code == 400 and "not of valid status for modification" in edited.text
    assert move_purchase_order(xero, order_id, Status="DELETED").status_code == 400
    assert move_purchase_order(xero, order_id, Status="AUTHORISED").status_code == 200  # undo "billed"
    assert move_purchase_order(xero, order_id, Status="DELETED").status_code == 200
    assert move_purchase_order(xero, order_id, Status="DRAFT").status_code == 400
    created_billed = xero.call(
        "PUT",
        "/PurchaseOrders",
        {"PurchaseOrders": [purchase_order(supplier["ContactID"], [purchase_line("a", 1, 1)], Status="BILLED")]},
    )
    assert created_billed.status_code == 400
    empty = xero.call(
        "PUT", "/PurchaseOrders", {"PurchaseOrders": [purchase_order(supplier["ContactID"], [], Status="AUTHORISED")]}
    )
    assert empty.status_code == 400 and "at least one line item" in empty.text
    draft = xero.ok(
        "PUT",
        "/PurchaseOrders",
        {"PurchaseOrders": [purchase_order(supplier["ContactID"], [purchase_line("a", 1, 1)], SentToContact=True)]},
        params=UNORDERED,
    )["PurchaseOrders"][0]
    assert draft["StatusAttributeString"] == "WARNING" and draft["SentToContact"] is False
    warning = "Only AUTHORISED and BILLED purchase orders may have SentToContact updated."
    assert draft["Warnings"] == [{"Message": warning}]


def test_purchase_order_updates_keep_line_item_ids_and_move_updated_date(xero):
    supplier = create_contact(xero, "Update Supplier")
    order = create_purchase_order(
        xero, supplier["ContactID"], [purchase_line("keep", 1, 10), purchase_line("drop", 1, 20)], Status="AUTHORISED"
    )
    kept = order["LineItems"][0]["LineItemID"]
    since = order["UpdatedDateUTCString"]
    assert xero.ok("GET", "/PurchaseOrders", headers={"If-Modified-Since": since})["PurchaseOrders"] == []
    updated = move_purchase_order(
        xero,
        order["PurchaseOrderID"],
        LineItems=[purchase_line("keep", 2, 10, LineItemID=kept), purchase_line("new", 1, 1)],
    ).json(parse_float=Decimal)["PurchaseOrders"][0]
    ids = [li["LineItemID"] for li in updated["LineItems"]]
    assert ids[0] == kept and ids[1] not in (kept, order["LineItems"][1]["LineItemID"])
    assert updated["SubTotal"] == Decimal("21.00") and updated["Status"] == "AUTHORISED"
    changed = xero.ok("GET", "/PurchaseOrders", headers={"If-Modified-Since": since})["PurchaseOrders"]
    assert [o["PurchaseOrderID"] for o in changed] == [order["PurchaseOrderID"]]
    # POST without an id matches an existing order by its number
    renamed = xero.ok(
        "POST", "/PurchaseOrders", {"PurchaseOrders": [{"PurchaseOrderNumber": "PO-0001", "Reference": "R-7"}]}
    )["PurchaseOrders"][0]
    assert renamed["PurchaseOrderID"] == order["PurchaseOrderID"] and renamed["Reference"] == "R-7"


def test_purchase_order_list_filters_and_pages(xero):
    supplier = create_contact(xero, "List Supplier")
    other = create_contact(xero, "Other Supplier")
    made = [
        create_purchase_order(xero, contact["ContactID"], [purchase_line("a", 1, n + 1)], Date=day, Status=status)
        for n, (contact, day, status) in enumerate(
            (
                (supplier, "2026-10-01", "DRAFT"),
                (supplier, "2026-11-01", "AUTHORISED"),
                (other, "2026-11-15", "AUTHORISED"),
                (supplier, "2026-12-01", "SUBMITTED"),
            )
        )
    ]
    ids = [o["PurchaseOrderID"] for o in made]

    def listed(**params) -> list[str]:
        return [o["PurchaseOrderID"] for o in xero.ok("GET", "/PurchaseOrders", params=params)["PurchaseOrders"]]

    assert listed(Status="AUTHORISED") == ids[1:3]
    assert listed(DateFrom="2026-11-01", DateTo="2026-11-30") == ids[1:3]
    assert listed(DateFrom="2026-11-02") == ids[2:]
    # GET /PurchaseOrders takes no IDs or ContactIDs (spec 16.1.0): Xero ignores them
    assert listed(IDs=f"{ids[0]},{ids[3]}") == ids
    assert listed(ContactIDs=other["ContactID"]) == ids
    assert listed(order="PurchaseOrderNumber DESC") == ids[::-1]
    page = xero.ok("GET", "/PurchaseOrders", params={"page": 2, "pageSize": 3})
    assert [o["PurchaseOrderID"] for o in page["PurchaseOrders"]] == ids[3:]
    assert page["pagination"] == {"page": 2, "pageSize": 3, "pageCount": 2, "itemCount": 4}


# ---- online invoices --------------------------------------------------------------------------


def test_online_invoice_url_for_approved_sales_invoices_only(xero):
    customer = create_contact(xero, "Online Customer")
    draft = xero.ok("PUT", "/Invoices", invoice_body(customer["ContactID"], [line("a", 1, 10)]))["Invoices"][0]
    refused = xero.call("GET", f"/Invoices/{draft['InvoiceID']}/OnlineInvoice")
    assert refused.status_code == 400 and refused.json()["Type"] == "ValidationException"
    assert "DRAFT" in refused.json()["Elements"][0]["ValidationErrors"][0]["Message"]
    xero.ok("POST", f"/Invoices/{draft['InvoiceID']}", {"Invoices": [{"Status": "AUTHORISED"}]})
    answer = xero.ok("GET", f"/Invoices/{draft['InvoiceID']}/OnlineInvoice")
    url = answer["OnlineInvoices"][0]["OnlineInvoiceUrl"]
    assert set(answer["OnlineInvoices"][0]) == {"OnlineInvoiceUrl"}
    assert url.startswith(xero.url + "/") and "127.0.0.1" in url
    again = xero.ok("GET", f"/Invoices/{draft['InvoiceID']}/OnlineInvoice")["OnlineInvoices"][0]
    assert again["OnlineInvoiceUrl"] == url  # one invoice, one URL
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and draft["InvoiceNumber"] in page.text and "10.90" in page.text
    bill = xero.ok(
        "PUT",
        "/Invoices",
        invoice_body(customer["ContactID"], [line("b", 1, 5, AccountCode="300", TaxType="INPUT")],
                     Type="ACCPAY", Status="AUTHORISED"),
    )["Invoices"][0]
    assert xero.call("GET", f"/Invoices/{bill['InvoiceID']}/OnlineInvoice").status_code == 400
    assert xero.call("GET", "/Invoices/00000000-0000-0000-0000-000000000000/OnlineInvoice").status_code == 404
    assert requests.get(xero.url + "/_emulator/online-invoices/nothing", timeout=5).status_code == 404


# ---- credit notes -----------------------------------------------------------------------------


def test_credit_notes_number_themselves_and_compute_like_invoices(xero):
    customer = create_contact(xero, "Credit Customer")
    note = credit_note(xero, customer["ContactID"], [line("refund a", 3, 3.33), line("refund b", 1, 0.05)])
    assert note["CreditNoteNumber"] == "CN-0001" and note["Status"] == "DRAFT" and note["Type"] == "ACCRECCREDIT"
    # 9.99 -> tax 0.8991 -> 0.90; 0.05 -> tax 0.0045 -> 0.00: per-line rounding
    assert [li["TaxAmount"] for li in note["LineItems"]] == [Decimal("0.90"), Decimal("0.00")]
    assert (note["SubTotal"], note["TotalTax"], note["Total"], note["RemainingCredit"]) == (
        Decimal("10.04"), Decimal("0.90"), Decimal("10.94"), Decimal("10.94"))
    fetched = get_note(xero, note["CreditNoteID"])
    assert fetched["Contact"]["Name"] == "Credit Customer" and fetched["Total"] == Decimal("10.94")
    assert xero.ok("GET", "/CreditNotes/CN-0001")["CreditNotes"][0]["CreditNoteID"] == note["CreditNoteID"]
    supplier_credit = credit_note(
        xero, customer["ContactID"], [line("back", 1, 10, AccountCode="300", TaxType="INPUT")], Type="ACCPAYCREDIT"
    )
    assert supplier_credit["CreditNoteNumber"] == "" and supplier_credit["Total"] == Decimal("10.90")
    discounted = xero.call(
        "PUT",
        "/CreditNotes",
        {"CreditNotes": [{"Type": "ACCRECCREDIT", "Contact": {"ContactID": customer["ContactID"]},
                          "LineItems": [line("d", 1, 10, DiscountRate=10)]}]},
    )
    assert discounted.status_code == 400 and "Discounts" in discounted.text
    untyped = xero.call("PUT", "/CreditNotes", {"CreditNotes": [{"Contact": {"ContactID": customer["ContactID"]}}]})
    assert untyped.status_code == 400
    listed = xero.ok("GET", "/CreditNotes", params={"where": 'Type=="ACCPAYCREDIT"'})["CreditNotes"]
    assert [n["CreditNoteID"] for n in listed] == [supplier_credit["CreditNoteID"]]
    assert xero.call("GET", "/CreditNotes/00000000-0000-0000-0000-000000000000").text == NOT_FOUND_TEXT


def test_credit_note_statuses_follow_invoice_rules(xero):
    customer = create_contact(xero, "Note Statuses")
    note = credit_note(xero, customer["ContactID"], [line("a", 1, 10)])

    def move(note_id: str, status: str) -> requests.Response:
        return xero.call("POST", f"/CreditNotes/{note_id}", {"CreditNotes": [{"Status": status}]})

    assert move(note["CreditNoteID"], "VOIDED").status_code == 400
    assert move(note["CreditNoteID"], "PAID").status_code == 400
    assert move(note["CreditNoteID"], "AUTHORISED").status_code == 200
    assert move(note["CreditNoteID"], "DELETED").status_code == 400
    voided = move(note["CreditNoteID"], "VOIDED")
    assert voided.status_code == 200 and voided.json()["CreditNotes"][0]["RemainingCredit"] == 0
    again = xero.call("POST", f"/CreditNotes/{note['CreditNoteID']}", {"CreditNotes": [{"Reference": "x"}]})
    assert again.status_code == 400 and "not of valid status for modification" in again.text
    missing = xero.call("POST", "/CreditNotes/00000000-0000-0000-0000-000000000000", {"CreditNotes": [{}]})
    assert missing.status_code == 404


def test_allocating_credit_notes_settles_the_invoice(xero):
    customer = create_contact(xero, "Allocation Customer")
    invoice = authorised_invoice(xero, customer["ContactID"], 100)  # 109.00 with 9% tax
    since = invoice["UpdatedDateUTCString"]
    first = credit_note(xero, customer["ContactID"], [line("part", 1, 50)], Status="AUTHORISED")  # 54.50
    answer = allocate(xero, first["CreditNoteID"], invoice["InvoiceID"], 54.50)
    assert answer.status_code == 200, answer.text
    allocation = answer.json(parse_float=Decimal)["Allocations"][0]
    assert allocation["Amount"] == Decimal("54.50") and allocation["Invoice"]["InvoiceID"] == invoice["InvoiceID"]
    assert allocation["CreditNote"]["CreditNoteID"] == first["CreditNoteID"]
    credited = get_invoice(xero, invoice["InvoiceID"])
    assert (credited["Status"], credited["AmountCredited"], credited["AmountDue"]) == (
        "AUTHORISED", Decimal("54.50"), Decimal("54.50"))
    assert [c["CreditNoteID"] for c in credited["CreditNotes"]] == [first["CreditNoteID"]]
    assert credited["CreditNotes"][0]["AppliedAmount"] == Decimal("54.50")
    changed = xero.ok("GET", "/Invoices", headers={"If-Modified-Since": since})["Invoices"]
    assert [i["InvoiceID"] for i in changed] == [invoice["InvoiceID"]]
    spent = get_note(xero, first["CreditNoteID"])
    assert (spent["Status"], spent["RemainingCredit"]) == ("PAID", Decimal("0.00"))
    assert spent["Allocations"][0]["Invoice"]["InvoiceID"] == invoice["InvoiceID"]
    locked = xero.call("POST", f"/Invoices/{invoice['InvoiceID']}", {"Invoices": [{"Reference": "edit"}]})
    assert locked.status_code == 400
    assert "This document cannot be edited as it has a payment or credit note allocated to it." in locked.text
    assert xero.call(
        "POST", f"/Invoices/{invoice['InvoiceID']}", {"Invoices": [{"Status": "VOIDED"}]}
    ).status_code == 400
    second = credit_note(xero, customer["ContactID"], [line("rest", 1, 60)], Status="AUTHORISED")  # 65.40
    assert allocate(xero, second["CreditNoteID"], invoice["InvoiceID"], 54.51).status_code == 400  # > due
    assert allocate(xero, second["CreditNoteID"], invoice["InvoiceID"], 54.50).status_code == 200
    paid = get_invoice(xero, invoice["InvoiceID"])
    assert (paid["Status"], paid["AmountDue"], paid["AmountCredited"]) == ("PAID", 0, Decimal("109.00"))
    assert paid["FullyPaidOnDate"] == paid["CreditNotes"][1]["Date"]
    rest = get_note(xero, second["CreditNoteID"])
    assert (rest["Status"], rest["RemainingCredit"]) == ("AUTHORISED", Decimal("10.90"))
    paid_off = allocate(xero, second["CreditNoteID"], invoice["InvoiceID"], 1)
    assert paid_off.status_code == 400 and "already been paid off" in paid_off.text


def test_allocation_rules(xero):
    customer = create_contact(xero, "Rules Customer")
    stranger = create_contact(xero, "Someone Else")
    invoice = authorised_invoice(xero, customer["ContactID"], 100)
    draft_note = credit_note(xero, customer["ContactID"], [line("d", 1, 10)])
    small = credit_note(xero, customer["ContactID"], [line("s", 1, 10)], Status="AUTHORISED")  # 10.90
    foreign = credit_note(xero, stranger["ContactID"], [line("f", 1, 10)], Status="AUTHORISED")
    supplier = credit_note(
        xero, customer["ContactID"], [line("p", 1, 10, AccountCode="300", TaxType="INPUT")],
        Type="ACCPAYCREDIT", Status="AUTHORISED",
    )
    cases = {
        draft_note["CreditNoteID"]: "AUTHORISED",
        foreign["CreditNoteID"]: "same contact",
        supplier["CreditNoteID"]: "ACCPAY invoices",
    }
    for note_id, expected in cases.items():
        refused = allocate(xero, note_id, invoice["InvoiceID"], 1)
        assert refused.status_code == 400 and expected in refused.text, refused.text
    assert "remaining credit" in allocate(xero, small["CreditNoteID"], invoice["InvoiceID"], 10.91).text
    assert allocate(xero, small["CreditNoteID"], invoice["InvoiceID"], 0).status_code == 400
    element = allocate(
        xero, small["CreditNoteID"], "00000000-0000-0000-0000-000000000000", 1, params=UNORDERED
    ).json()["Allocations"][0]
    assert element["StatusAttributeString"] == "ERROR" and "InvoiceID" in element["ValidationErrors"][0]["Message"]
    assert allocate(xero, "00000000-0000-0000-0000-000000000000", invoice["InvoiceID"], 1).status_code == 404
    assert get_invoice(xero, invoice["InvoiceID"])["AmountDue"] == Decimal("109.00")  # nothing applied


def test_deleting_an_allocation_gives_the_credit_back(xero):
    customer = create_contact(xero, "Undo Customer")
    invoice = authorised_invoice(xero, customer["ContactID"], 10)  # 10.90
    note = credit_note(xero, customer["ContactID"], [line("all", 1, 10)], Status="AUTHORISED")
    allocation = allocate(xero, note["CreditNoteID"], invoice["InvoiceID"], 10.90).json()["Allocations"][0]
    assert get_invoice(xero, invoice["InvoiceID"])["Status"] == "PAID"
    removed = xero.call("DELETE", f"/CreditNotes/{note['CreditNoteID']}/Allocations/{allocation['AllocationID']}")
    assert removed.status_code == 200 and removed.json()["IsDeleted"] is True
    reopened = get_invoice(xero, invoice["InvoiceID"])
    assert (reopened["Status"], reopened["AmountDue"], reopened["CreditNotes"]) == ("AUTHORISED", Decimal("10.90"), [])
    assert "FullyPaidOnDate" not in reopened
    restored = get_note(xero, note["CreditNoteID"])
    assert (restored["Status"], restored["RemainingCredit"], restored["Allocations"]) == (
        "AUTHORISED", Decimal("10.90"), [])
    again = xero.call("DELETE", f"/CreditNotes/{note['CreditNoteID']}/Allocations/{allocation['AllocationID']}")
    assert again.status_code == 404


# ---- answers have the spec's shapes -----------------------------------------------------------


def test_answers_match_the_spec_response_schemas(xero):
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    uri = "urn:test:xero-accounting"
    registry = Registry().with_resource(uri, Resource.from_contents(xero_spec.load_spec(), DRAFT4))

    def check(schema_name: str, answer: dict) -> None:
        validator = OAS30Validator({"$ref": f"{uri}#/components/schemas/{schema_name}"}, registry=registry)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(answer)]
        assert errors == [], errors

    customer = create_contact(xero, "Shapes Customer")
    order = create_purchase_order(xero, customer["ContactID"], [purchase_line("a", 2, 5, DiscountRate=5)])
    check("PurchaseOrders", xero.ok("GET", f"/PurchaseOrders/{order['PurchaseOrderID']}", params={"page": 1}))
    invoice = authorised_invoice(xero, customer["ContactID"], 100)
    check("OnlineInvoices", xero.ok("GET", f"/Invoices/{invoice['InvoiceID']}/OnlineInvoice"))
    note = credit_note(xero, customer["ContactID"], [line("c", 1, 10)], Status="AUTHORISED")
    check("Allocations", allocate(xero, note["CreditNoteID"], invoice["InvoiceID"], 5).json())
    check("CreditNotes", xero.ok("GET", f"/CreditNotes/{note['CreditNoteID']}"))
    check("Invoices", xero.ok("GET", f"/Invoices/{invoice['InvoiceID']}"))
