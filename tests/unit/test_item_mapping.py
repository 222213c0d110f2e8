"""Sugar ProductTemplate hooks → ItemDocument → Xero Item bodies."""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
import responses as responses_lib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.mapping.items import fallback_code, hook_to_item_document, item_code, to_xero_item, truncate
from shared.mapping.settings import CatalogueRules
from shared.models.documents import ItemDocument
from shared.models.ids import SUGAR_ID_PATTERN
from shared.models.sugar import ProductTemplateHook
from shared.xero.client import XeroClient, encode_json
from sugar_xero import xero_spec

RULES = CatalogueRules()
ITEMS_QUERY = {"summarizeErrors": "false", "unitdp": "4"}


def hook(**data) -> ProductTemplateHook:
    base = {"id": "pt-1", "name": "Widget", "status": "Available"}
    return ProductTemplateHook.model_validate({"bean": "ProductTemplate", "event": "after_save",
                                               "data": {**base, **data}})


def test_fixture_maps_to_an_untracked_item_with_4_decimal_prices(fixture_body):
    body = to_xero_item(hook_to_item_document(ProductTemplateHook.model_validate(
        fixture_body("sugar/product_template_after_save.json"))), RULES)
    assert body == {
        "Code": "SVC-LIFT-02", "Name": "Lift inspection", "IsSold": True, "IsPurchased": True,
        "Description": "Statutory six-monthly lift inspection, per lift",
        "SalesDetails": {"UnitPrice": Decimal("1170.0000"), "AccountCode": "200", "TaxType": "OUTPUT"},
        "PurchaseDetails": {"UnitPrice": Decimal("640.0000"), "AccountCode": "300", "TaxType": "INPUT"},
    }
    assert "InventoryAssetAccountCode" not in body and "IsTrackedAsInventory" not in body
    assert json.loads(encode_json(body))["SalesDetails"]["UnitPrice"] == 1170


@pytest.mark.parametrize(("sugar", "xero"), [
    ("12.345650", Decimal("12.3457")), ("12.345649", Decimal("12.3456")), ("0.000050", Decimal("0.0001")),
    ("1170.000000", Decimal("1170.0000")), ("-3.000050", Decimal("-3.0001")),
])
def test_prices_round_half_up_to_4_decimals(sugar, xero):
    body = to_xero_item(hook_to_item_document(hook(discount_price=sugar, cost_price=sugar)), RULES)
    assert body["SalesDetails"]["UnitPrice"] == xero
    assert str(body["SalesDetails"]["UnitPrice"]) == str(xero)
    assert body["PurchaseDetails"]["UnitPrice"] == xero


def test_encoded_prices_are_json_numbers_digit_for_digit():
    raw = encode_json({"Items": [{"SalesDetails": {"UnitPrice": Decimal("0.1000")}, "Name": '"0.1"'}]})
    assert b'"UnitPrice": 0.1000' in raw
    assert json.loads(raw, parse_float=Decimal)["Items"][0]["SalesDetails"]["UnitPrice"] == Decimal("0.1")


@responses_lib.activate
def test_the_xero_client_sends_items_with_unitdp_4_and_prices_as_numbers(fixture_body):
    url = "http://127.0.0.1:9/api.xro/2.0/Items"
    responses_lib.add(responses_lib.POST, url, json={"Items": [{"ItemID": "i-1", "Code": "SVC-LIFT-02"}]})
    body = to_xero_item(hook_to_item_document(ProductTemplateHook.model_validate(
        fixture_body("sugar/product_template_after_save.json"))), RULES)
    client = XeroClient("http://127.0.0.1:9", "tenant", lambda _=False: "token", sleep=lambda _: None)
    (answer,) = client.upsert_batch("Items", [body], idempotency_key="items-1", params={"unitdp": "4"})
    assert answer["ItemID"] == "i-1"
    sent = responses_lib.calls[0].request
    assert parse_qs(urlparse(sent.url).query) == {"unitdp": ["4"], "summarizeErrors": ["false"]}
    assert sent.headers["Content-Type"] == "application/json" and sent.headers["Idempotency-Key"] == "items-1"
    assert b'"UnitPrice": 1170.0000' in sent.body
    element = json.loads(sent.body, parse_float=Decimal)["Items"][0]
    assert element["PurchaseDetails"]["UnitPrice"] == Decimal("640.0000")


def test_tax_types_and_accounts_come_from_the_catalogue_configuration():
    rules = CatalogueRules(sales_account_code="4000", purchase_account_code="5000",
                           sales_tax_types={"Taxable": "OUTPUT2"}, purchase_tax_types={"Taxable": "INPUT2"})
    body = to_xero_item(hook_to_item_document(hook(tax_class="Taxable", discount_price="1",
                                                   cost_price="1")), rules)
    assert body["SalesDetails"] == {"UnitPrice": Decimal("1.0000"), "AccountCode": "4000", "TaxType": "OUTPUT2"}
    assert body["PurchaseDetails"]["AccountCode"] == "5000" and body["PurchaseDetails"]["TaxType"] == "INPUT2"
    exempt = to_xero_item(hook_to_item_document(hook(tax_class="Non-Taxable", discount_price="1")), RULES)
    assert exempt["SalesDetails"]["TaxType"] == "EXEMPTOUTPUT"
    unknown = to_xero_item(hook_to_item_document(hook(tax_class="Zero-rated", discount_price="1")), RULES)
    assert "TaxType" not in unknown["SalesDetails"]  # Xero then uses the account's default


def test_no_cost_price_means_not_purchased_and_blank_prices_are_absent():
    body = to_xero_item(hook_to_item_document(hook(discount_price="", cost_price="")), RULES)
    assert body["IsPurchased"] is False and "PurchaseDetails" not in body
    assert body["SalesDetails"] == {"AccountCode": "200"}


@pytest.mark.parametrize("change", [{"status": "Unavailable"}, {"deleted": "1"}, {"event": "after_delete"}])
def test_inactive_or_deleted_products_are_marked_not_sold(change):
    event = change.pop("event", "after_save")
    raw = {"bean": "ProductTemplate", "event": event,
           "data": {"id": "pt-1", "name": "Widget", "status": "Available", "discount_price": "5",
                    "description": "words", **change}}
    body = to_xero_item(hook_to_item_document(ProductTemplateHook.model_validate(raw)), RULES)
    assert body["IsSold"] is False
    assert "SalesDetails" not in body and "Description" not in body  # Xero clears them anyway


def test_part_number_is_the_code_else_a_stable_fallback():
    assert item_code("SVC-1", "Name", "id-1") == "SVC-1"
    long_part = "X" * 31
    code = item_code(long_part, "Name", "id-1")
    assert len(code) <= 30 and code.startswith("XXXX") and code == item_code(long_part, "Name", "id-1")
    assert code != item_code(long_part, "Name", "id-2")
    fallback = item_code(None, "Lift inspection (annual)", "id-1")
    assert fallback.startswith("LIFT-INSPECTION-ANNUA-") and len(fallback) == 30
    assert item_code("  ", None, "id-1").startswith("CRM-")
    assert len(fallback_code("ä" * 80, "x")) <= 30
    assert item_code("A\tB", None, "id-1").startswith("A-B-")


def test_names_are_truncated_cleanly_to_50():
    name = "Annual maintenance contract for passenger lifts in residential towers"
    document = hook_to_item_document(hook(name=name))
    assert len(document.name) <= 50 and not document.name.endswith(" ")
    assert name.startswith(document.name) and document.name.endswith("lifts")
    assert truncate("x" * 60, 50) == "x" * 50


def test_own_document_without_code_gets_the_fallback_and_strict_limits():
    body = to_xero_item(ItemDocument(crm_id="abc", name="Thing", sales_price=Decimal("2.5")), RULES)
    assert body["Code"] == fallback_code("Thing", "abc")
    with pytest.raises(ValidationError):
        ItemDocument(crm_id="abc", name="Thing", sales_price=Decimal("2.12345"))
    # Longer than Xero takes: cut (or a derived code), with a note that becomes the job's warning.
    assert ItemDocument(crm_id="abc", name="x" * 51).name == "x" * 50
    long_code = ItemDocument(crm_id="abc", name="Thing", code="c" * 31)
    assert long_code.code == fallback_code("c" * 31, "abc") and "30 characters" in long_code.truncated[0]
    with pytest.raises(ValidationError):
        ItemDocument(crm_id="abc", name="Thing", code="   ")


def test_item_id_is_sent_when_known():
    body = to_xero_item(ItemDocument(crm_id="abc", name="Thing"), RULES, xero_item_id="id-9")
    assert body["ItemID"] == "id-9"


sugar_amount = st.one_of(
    st.none(), st.just(""),
    st.decimals(min_value=Decimal("-99999999"), max_value=Decimal("999999999"), places=6,
                allow_nan=False, allow_infinity=False).map(lambda d: format(d, "f")),
)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=text.filter(lambda s: s.strip()), part=st.one_of(st.none(), text), sales=sugar_amount,
       cost=sugar_amount, tax=st.sampled_from([None, "", "Taxable", "Non-Taxable", "Other"]),
       status=st.sampled_from([None, "Available", "Unavailable", "Orders"]),
       description=st.one_of(st.none(), st.text(max_size=4100)),
       event=st.sampled_from(["after_save", "after_delete"]),
       crm_id=st.from_regex(SUGAR_ID_PATTERN, fullmatch=True))
def test_any_product_template_maps_to_an_item_xero_accepts(name, part, sales, cost, tax, status,
                                                           description, event, crm_id):
    hook_body = {"bean": "ProductTemplate", "event": event, "data": {
        "id": crm_id, "name": name, "mft_part_num": part, "discount_price": sales, "cost_price": cost,
        "tax_class": tax, "status": status, "description": description}}
    document = hook_to_item_document(ProductTemplateHook.model_validate(hook_body))
    # The document survives the queue (JSON mode) unchanged.
    assert ItemDocument.model_validate(document.model_dump(mode="json")) == document
    body = to_xero_item(document, RULES)
    assert 1 <= len(body["Code"]) <= 30 and body["Code"].strip()
    assert 1 <= len(body["Name"]) <= 50
    assert len(body.get("Description", "")) <= 4000
    assert "InventoryAssetAccountCode" not in body
    for details in (body.get("SalesDetails"), body.get("PurchaseDetails")):
        if details and "UnitPrice" in details:
            assert isinstance(details["UnitPrice"], Decimal)
            assert details["UnitPrice"].as_tuple().exponent == -4
    sent = json.loads(encode_json({"Items": [body]}))
    xero_spec.validate_request("POST", "/api.xro/2.0/Items", sent, query=ITEMS_QUERY)
