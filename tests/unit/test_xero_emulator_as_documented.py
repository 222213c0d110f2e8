"""Emulator behaviours taken from Xero's documentation (issue 12); each row of the behaviour
table in sugar_xero/local/xero/README.md names the test here (or elsewhere) that pins it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import requests

from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.unit.test_xero_emulator import Xero, create_contact, invoice_body, line


@pytest.fixture
def start():
    """Servers with their own config; all are shut down after the test."""
    started = []

    def _start(**config) -> Xero:
        running = serve(port=0, config=EmulatorConfig(minute_limit=100000, day_limit=100000, **config))
        started.append(running)
        return Xero(running)

    yield _start
    for running in started:
        running.shutdown()


@pytest.fixture
def xero(start):
    return start()


def _credit_note(xero, contact_id: str, amount: str) -> dict:
    note = {"Type": "ACCRECCREDIT", "Contact": {"ContactID": contact_id}, "Status": "AUTHORISED",
            "Date": "2026-11-01", "LineItems": [line("credit", 1, float(amount))]}
    return xero.ok("PUT", "/CreditNotes", {"CreditNotes": [note]})["CreditNotes"][0]


def test_unknown_query_parameters_are_ignored_so_ids_on_credit_notes_answers_all(xero):
    contact = create_contact(xero, "Params")
    notes = [_credit_note(xero, contact["ContactID"], str(n + 1)) for n in range(3)]
    listed = xero.ok("GET", "/CreditNotes", params={"IDs": notes[0]["CreditNoteID"]})["CreditNotes"]
    assert len(listed) == 3  # Xero's GET /CreditNotes has no IDs parameter
    where = f'CreditNoteID==Guid("{notes[0]["CreditNoteID"]}")'
    assert [n["CreditNoteID"] for n in xero.ok("GET", "/CreditNotes", params={"where": where})["CreditNotes"]] == [
        notes[0]["CreditNoteID"]]
    made = xero.ok("PUT", "/Quotes", {"Quotes": [{"Contact": {"ContactID": contact["ContactID"]}, "Date": "2026-11-01",
                                                  "LineItems": [line("q", 1, 1.2345)]}]},
                   params={"unitdp": "4"})["Quotes"][0]
    # POST/PUT /Quotes take no unitdp: the unit price is kept to Xero's default 2 places
    assert made["LineItems"][0]["UnitAmount"] == Decimal("1.23")


def test_a_new_document_without_date_is_dated_today_in_the_organisation_timezone(start):
    # 2026-11-30T20:00Z is already 1 December in Singapore (UTC+8) and in Auckland (UTC+13)
    instant = dt.datetime(2026, 11, 30, 20, 0, tzinfo=dt.UTC).timestamp()
    for zone, expected in (("SINGAPORESTANDARDTIME", "2026-12-01"), ("NEWZEALANDSTANDARDTIME", "2026-12-01"),
                           ("PACIFICSTANDARDTIME", "2026-11-30")):
        xero = start(timezone=zone, wall_clock=lambda: instant)
        contact = create_contact(xero, "Dated")
        body = invoice_body(contact["ContactID"], [line("a", 1, 1)])
        del body["Invoices"][0]["Date"]
        made = xero.ok("PUT", "/Invoices", body)["Invoices"][0]
        assert made["DateString"].startswith(expected), zone
        assert xero.ok("GET", "/Organisation")["Organisations"][0]["Timezone"] == zone


def test_an_invoice_with_a_credit_note_allocated_cannot_be_edited_or_voided(xero):
    contact = create_contact(xero, "Allocated")
    invoice = xero.ok("PUT", "/Invoices", invoice_body(contact["ContactID"], [line("a", 1, 100)],
                                                       Status="AUTHORISED"))["Invoices"][0]
    note = _credit_note(xero, contact["ContactID"], "10")
    xero.ok("PUT", f"/CreditNotes/{note['CreditNoteID']}/Allocations",
            {"Allocations": [{"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Amount": 10, "Date": "2026-11-02"}]})
    for change in ({"Status": "VOIDED"}, {"Reference": "edited"}):
        refused = xero.call("POST", "/Invoices", {"Invoices": [{"InvoiceID": invoice["InvoiceID"], **change}]})
        assert refused.status_code == 400
        assert "has a payment or credit note allocated" in refused.text


def test_a_fault_after_the_work_answers_500_with_the_work_done(xero):
    xero.control("POST", "faults", {"next": ["500_after"]})
    answer = xero.call("POST", "/Contacts", {"Contacts": [{"Name": "Done Anyway"}]}, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 500
    assert [c["Name"] for c in xero.ok("GET", "/Contacts")["Contacts"]] == ["Done Anyway"]
    with pytest.raises(requests.ConnectionError):
        xero.control("POST", "faults", {"next": ["dropped_after"]})
        xero.call("POST", "/Contacts", {"Contacts": [{"Name": "Lost Answer"}]})
    assert len(xero.ok("GET", "/Contacts")["Contacts"]) == 2


def test_a_merged_contact_points_to_its_survivor_on_single_and_paged_reads_only(xero):
    merged, survivor = create_contact(xero, "Twin A"), create_contact(xero, "Twin B")
    invoice = xero.ok("PUT", "/Invoices", invoice_body(merged["ContactID"], [line("a", 1, 1)]))["Invoices"][0]
    assert xero.control("POST", "merge", {"from": merged["ContactID"], "into": survivor["ContactID"]}).ok
    single = xero.ok("GET", f"/Contacts/{merged['ContactID']}")["Contacts"][0]
    assert (single["ContactStatus"], single["MergedToContactID"]) == ("ARCHIVED", survivor["ContactID"])
    listed = xero.ok("GET", "/Contacts", params={"includeArchived": "true"})["Contacts"]
    assert all("MergedToContactID" not in c for c in listed)
    paged = xero.ok("GET", "/Contacts", params={"includeArchived": "true", "page": 1})["Contacts"]
    assert any(c.get("MergedToContactID") == survivor["ContactID"] for c in paged)
    moved = xero.ok("GET", f"/Invoices/{invoice['InvoiceID']}")["Invoices"][0]
    assert moved["Contact"]["ContactID"] == survivor["ContactID"]
