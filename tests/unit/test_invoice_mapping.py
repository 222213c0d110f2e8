"""Trade documents → Xero bodies: Xero's arithmetic (per-line tax rounded to 2 places), the
rounding policy, quote lines, and every body valid against Xero's official spec."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.mapping.invoices import (
    DocumentRefused,
    cancellation,
    line_amount,
    line_tax,
    to_xero_document,
    xero_totals,
)
from shared.mapping.settings import InvoiceRules, MappingConfig, RoundingRules, TrackingField
from shared.mapping.sugar_quotes import quote_documents, quote_intent
from shared.models.invoices import (
    ContactRef,
    LineDocument,
    PurchaseDocument,
    QuoteDocument,
    SalesInvoiceDocument,
    XeroDocumentState,
)
from shared.models.sugar import QuoteHook
from shared.xero.client import encode_json
from sugar_xero import xero_spec
from sugar_xero.local.xero.store import _line_amounts  # the emulator's own model of Xero's arithmetic

CONTACT = "5b0e2c0c-4a0e-4a39-9c4e-0d6b0c3b7f11"
RATES = {"OUTPUT": Decimal("9"), "EXEMPTOUTPUT": Decimal("0"), "NONE": Decimal("0"), "INPUT": Decimal("9")}
TODAY = dt.date(2026, 11, 27)
INVOICE_QUERY = {"summarizeErrors": "false", "unitdp": "4"}


def _valid(resource: str, body: dict) -> None:
    sent = json.loads(encode_json({resource: [body]}))
    xero_spec.validate_request("POST", f"/api.xro/2.0/{resource}", sent, query=INVOICE_QUERY)


class _Txn:
    """What the emulator's line arithmetic reads from its transaction."""

    unitdp = 4
    tax_rates = RATES
    accounts: dict = {}


def _emulator_line(line: dict, amount_types: str) -> tuple[Decimal, Decimal]:
    amount, tax, _ = _line_amounts(_Txn(), dict(line), "ACCREC", amount_types)
    return amount, tax


money = st.decimals(min_value=Decimal("0"), max_value=Decimal("99999.9999"), places=4)
quantities = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("9999"), places=4)
lines = st.lists(st.builds(
    LineDocument, unit_amount=money, quantity=quantities,
    discount_rate=st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=2)),
    tax_type=st.sampled_from(["OUTPUT", "EXEMPTOUTPUT", "NONE"]),
    description=st.text(min_size=1, max_size=40).filter(str.strip)), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=lines, amount_types=st.sampled_from(["Exclusive", "Inclusive", "NoTax"]))
def test_mapped_totals_are_xeros_arithmetic_for_any_lines(lines, amount_types):
    doc = SalesInvoiceDocument(crm_module="Bookings", crm_id="b-1", contact=ContactRef(crm_id="acc-1"), lines=lines,
                               line_amount_types=amount_types)
    mapped = to_xero_document(doc, MappingConfig(), contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    emulated = [_emulator_line(line, amount_types) for line in mapped.body["LineItems"]]
    line_sum = sum((amount for amount, _ in emulated), Decimal("0"))
    tax = sum((t for _, t in emulated), Decimal("0"))
    total = line_sum if amount_types == "Inclusive" else line_sum + tax
    assert mapped.totals is not None
    assert (mapped.totals.total, mapped.totals.total_tax) == (total, tax)
    assert all(t == t.quantize(Decimal("0.01")) for _, t in emulated)  # per line, to the cent
    _valid("Invoices", mapped.body)


@settings(max_examples=100, deadline=None)
@given(lines=lines, crm_extra=st.decimals(min_value=Decimal("-0.99"), max_value=Decimal("0.99"), places=2))
def test_with_a_rounding_line_xeros_total_is_the_crms_to_the_cent(lines, crm_extra):
    exact = xero_totals([(line_amount(line.quantity, line.unit_amount, discount_rate=line.discount_rate),
                          RATES[line.tax_type]) for line in lines], "Exclusive").total
    crm_total = exact + crm_extra
    doc = SalesInvoiceDocument(crm_module="Bookings", crm_id="b-1", contact=ContactRef(crm_id="acc-1"), lines=lines,
                               expected_total=crm_total)
    mapped = to_xero_document(doc, MappingConfig(), contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    assert mapped.totals is not None and mapped.totals.total == crm_total
    rounding = [line for line in mapped.body["LineItems"] if line.get("Description") == "Rounding"]
    assert len(rounding) == (1 if crm_extra else 0)
    if rounding:
        assert rounding[0]["UnitAmount"] == crm_extra and rounding[0]["TaxType"] == "NONE"
        assert any("Rounding line" in w for w in mapped.warnings)
    _valid("Invoices", mapped.body)


def test_per_line_rounding_differs_from_taxing_the_total_and_the_policy_says_what_happens():
    lines = [LineDocument(description=f"seat {n}", unit_amount=Decimal("0.35"), tax_type="OUTPUT") for n in range(7)]
    assert line_tax(Decimal("0.35"), Decimal("9"), "Exclusive") == Decimal("0.03")
    doc = SalesInvoiceDocument(crm_module="B", crm_id="1", contact=ContactRef(crm_id="a"), lines=lines,
                               expected_total=Decimal("2.67"))
    warn = MappingConfig(invoices=InvoiceRules(rounding=RoundingRules(policy="warn")))
    mapped = to_xero_document(doc, warn, contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    assert mapped.totals.total == Decimal("2.66") and len(mapped.body["LineItems"]) == 7
    assert "difference +0.01" in mapped.warnings[0]
    with pytest.raises(DocumentRefused, match="more than rounding"):
        to_xero_document(doc.model_copy(update={"expected_total": Decimal("4.00")}), MappingConfig(),
                         contact_id=CONTACT, tax_rates=RATES, today=TODAY)


def test_an_unknown_tax_rate_is_said_not_guessed():
    doc = SalesInvoiceDocument(crm_module="B", crm_id="1", contact=ContactRef(crm_id="a"),
                               lines=[LineDocument(unit_amount=Decimal("10"), tax_type="ZERORATED")],
                               expected_total=Decimal("10.00"))
    mapped = to_xero_document(doc, MappingConfig(), contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    assert mapped.totals is None and "could not be checked" in mapped.warnings[0]


def test_a_crm_rate_that_differs_from_xeros_is_warned_and_xeros_applies():
    doc = SalesInvoiceDocument(crm_module="B", crm_id="1", contact=ContactRef(crm_id="a"),
                               lines=[LineDocument(unit_amount=Decimal("100"), tax_type="OUTPUT",
                                                   tax_rate=Decimal("8"))])
    mapped = to_xero_document(doc, MappingConfig(), contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    assert mapped.totals.total == Decimal("109.00") and "Xero's rate applies" in mapped.warnings[0]


def test_quote_fixture_lines_total_13561_08_with_tax_1081_08(fixture_body):
    hook = QuoteHook.model_validate(fixture_body("sugar/quote_closed_accepted.json"))
    bundles = fixture_body("sugar/quote_product_bundles.json")["records"]
    (doc,), warnings = quote_documents(hook.data, bundles, MappingConfig(), deleted=False, item_codes={})
    assert doc.expected_total == Decimal("13561.08") and doc.expected_tax == Decimal("1081.08")
    mapped = to_xero_document(doc, MappingConfig(), contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    assert (mapped.totals.sub_total, mapped.totals.total_tax, mapped.totals.total) == (
        Decimal("12480.00"), Decimal("1081.08"), Decimal("13561.08"))
    assert mapped.warnings == []  # equal to the cent: no rounding line
    assert mapped.body["DueDate"] == "2026-12-27"  # Net 30
    assert mapped.body["LineItems"][1]["DiscountRate"] == Decimal("10.00")
    assert [line["TaxType"] for line in mapped.body["LineItems"]] == ["OUTPUT", "OUTPUT", "EXEMPTOUTPUT"]
    _valid("Invoices", mapped.body)


def test_quote_shipping_discount_amounts_tracking_and_tax_rate_mapping(fixture_body):
    raw = fixture_body("sugar/quote_closed_accepted.json")
    raw["data"].update(shipping="25.000000", region_c="Central", taxrate_id="gst-9", total="", tax="")
    hook = QuoteHook.model_validate(raw)
    bundles = fixture_body("sugar/quote_product_bundles.json")["records"]
    bundles[0]["products"][0].update(discount_select=False, discount_amount="100.000000")
    bundles[0]["products"].append({"_module": "ProductBundleNotes", "id": "note-1", "description": "comment"})
    config = MappingConfig(invoices=InvoiceRules(tax_rates={"gst-9": "OUTPUTSG"},
                                                 tracking=[TrackingField(category="Region", crm_field="region_c")]))
    (doc,), _ = quote_documents(hook.data, bundles, config, deleted=False, item_codes={})
    assert [line.crm_id for line in doc.lines] == ["p-001", "p-002", "p-003", "shipping"]
    assert doc.lines[0].discount_amount == Decimal("100.00") and doc.lines[0].discount_rate is None
    assert doc.lines[0].tax_type == "OUTPUTSG" and doc.lines[2].tax_type == "EXEMPTOUTPUT"
    assert doc.lines[3].unit_amount == Decimal("25.0000") and doc.lines[3].tax_type == "EXEMPTOUTPUT"
    assert all(line.tracking[0].option == "Central" for line in doc.lines)
    mapped = to_xero_document(doc, config, contact_id=CONTACT, tax_rates={**RATES, "OUTPUTSG": Decimal("9")},
                              today=TODAY)
    assert mapped.body["LineItems"][0]["Tracking"] == [{"Name": "Region", "Option": "Central"}]
    _valid("Invoices", mapped.body)


@pytest.mark.parametrize(("stage", "xero_quotes", "expected"), [
    ("Closed Accepted", False, (True, False, None)),
    ("Negotiation", False, (False, False, None)),
    ("Closed Lost", False, (False, True, None)),
    ("Delivered", True, (False, False, "SENT")),
    ("Closed Accepted", True, (True, False, "ACCEPTED")),
    ("Closed Dead", True, (False, True, "DECLINED")),
])
def test_quote_stages_decide_what_happens(fixture_body, stage, xero_quotes, expected):
    raw = fixture_body("sugar/quote_closed_accepted.json")
    raw["data"]["quote_stage"] = stage
    intent = quote_intent(QuoteHook.model_validate(raw).data,
                          MappingConfig(invoices=InvoiceRules(xero_quotes=xero_quotes)), deleted=False)
    assert (intent.invoice, intent.cancel_invoice, intent.xero_quote_status) == expected
    assert intent.nothing_to_do == (expected == (False, False, None))


def test_a_sent_quote_becomes_a_xero_quote_when_configured(fixture_body):
    raw = fixture_body("sugar/quote_closed_accepted.json")
    raw["data"]["quote_stage"] = "Delivered"
    config = MappingConfig(invoices=InvoiceRules(xero_quotes=True))
    (doc,), _ = quote_documents(QuoteHook.model_validate(raw).data,
                                fixture_body("sugar/quote_product_bundles.json")["records"], config,
                                deleted=False, item_codes={})
    assert isinstance(doc, QuoteDocument) and doc.quote_status == "SENT"
    mapped = to_xero_document(doc, config, contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    assert mapped.resource == "Quotes" and mapped.body["Status"] == "SENT"
    assert mapped.body["ExpiryDate"] == "2026-12-15" and "DueDate" not in mapped.body
    _valid("Quotes", mapped.body)


def test_purchases_become_bills_or_purchase_orders():
    bill = PurchaseDocument.model_validate(PurchaseDocument.model_config["json_schema_extra"]["examples"][0])
    mapped = to_xero_document(bill, MappingConfig(), contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    assert mapped.target == "ACCPAY" and mapped.body["InvoiceNumber"] == "Commission 14 Harbour Road"
    assert "Reference" not in mapped.body and mapped.body["Status"] == "SUBMITTED"
    _valid("Invoices", mapped.body)
    order = to_xero_document(bill.model_copy(update={"deliver_as": "purchase_order"}), MappingConfig(),
                             contact_id=CONTACT, tax_rates=RATES, today=TODAY)
    assert order.resource == "PurchaseOrders" and order.body["Reference"] == "Commission 14 Harbour Road"
    _valid("PurchaseOrders", order.body)
    configured = MappingConfig(invoices=InvoiceRules(purchases_as="purchase_order"))
    assert to_xero_document(bill, configured, contact_id=CONTACT, today=TODAY).resource == "PurchaseOrders"


def test_an_update_keeps_line_ids_and_dates_and_never_goes_back_to_draft():
    doc = SalesInvoiceDocument(crm_module="B", crm_id="1", contact=ContactRef(crm_id="a"), status="DRAFT",
                               lines=[LineDocument(crm_id="l1", unit_amount=Decimal("1")),
                                      LineDocument(crm_id="l-new", unit_amount=Decimal("2"))])
    existing = XeroDocumentState(target="ACCREC", xero_id="inv-1", status="AUTHORISED", line_ids={"l1": "line-1"})
    mapped = to_xero_document(doc, MappingConfig(), contact_id=CONTACT, existing=existing, today=TODAY)
    assert mapped.body["InvoiceID"] == "inv-1" and mapped.body["Status"] == "AUTHORISED"
    assert mapped.body["LineItems"][0]["LineItemID"] == "line-1" and "LineItemID" not in mapped.body["LineItems"][1]
    assert "Date" not in mapped.body and "DueDate" not in mapped.body


@pytest.mark.parametrize(("status", "paid", "credit", "expected"), [
    ("DRAFT", "0", True, "delete"), ("SUBMITTED", "0", True, "delete"), ("AUTHORISED", "0", True, "void"),
    ("AUTHORISED", "5", True, "credit_note"), ("PAID", "10", True, "credit_note"), ("PAID", "10", False, "refuse"),
    ("VOIDED", "0", True, "done"), ("DELETED", "0", True, "done"),
])
def test_cancellation_follows_what_xero_allows(status, paid, credit, expected):
    state = XeroDocumentState(target="ACCREC", xero_id="i", status=status, amount_paid=Decimal(paid))
    assert cancellation(state, credit_with_payments=credit)[0] == expected


def test_line_amounts_round_half_up_like_xero():
    assert line_amount(Decimal("3"), Decimal("0.3350")) == Decimal("1.01")
    assert line_amount(Decimal("1"), Decimal("100"), discount_rate=Decimal("12.5")) == Decimal("87.50")
    assert line_amount(Decimal("2"), Decimal("10"), discount_amount=Decimal("3")) == Decimal("17.00")
    assert line_tax(Decimal("109.00"), Decimal("9"), "Inclusive") == Decimal("9.00")
