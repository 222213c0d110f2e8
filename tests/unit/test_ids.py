"""Ids are ids: no value a caller sends can change the route of a Sugar call."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.mapping.settings import MappingFile
from shared.models.documents import ContactDocument, ItemDocument
from shared.models.ids import SUGAR_ID_PATTERN
from shared.models.invoices import PurchaseDocument, SalesInvoiceDocument
from shared.models.sugar import AccountHook
from shared.sugar.client import _segment, record_path

NOT_IDS = ["..", ".", "...", "a/b", "../Users", "a?b", "a#b", "a%2Fb", "a b", "", "x" * 37, "é"]


@pytest.mark.parametrize("value", NOT_IDS)
def test_documents_and_hooks_refuse_what_is_not_an_id(value):
    with pytest.raises(ValidationError):
        ContactDocument(crm_module="Accounts", crm_id=value, name="Acme")
    with pytest.raises(ValidationError):
        ItemDocument(crm_id=value, name="Thing")
    with pytest.raises(ValidationError):
        SalesInvoiceDocument(crm_module="Quotes", crm_id=value, contact={"crm_id": "acc-1"},
                             lines=[{"description": "x", "unit_amount": "1"}])
    with pytest.raises(ValidationError):
        SalesInvoiceDocument(crm_module="Quotes", crm_id="q-1", contact={"crm_id": value},
                             lines=[{"description": "x", "unit_amount": "1"}])
    with pytest.raises(ValidationError):
        AccountHook.model_validate({"bean": "Account", "event": "after_save", "data": {"id": value, "name": "Acme"}})


def test_a_key_without_write_back_is_not_an_id_but_is_still_safe():
    bill = {"crm_module": "Property_Sales", "crm_id": "ps-1:commission:rep", "contact": {"crm_id": "agent-1"},
            "lines": [{"description": "x", "unit_amount": "1"}], "write_back": False}
    assert PurchaseDocument.model_validate(bill).crm_id == "ps-1:commission:rep"
    with pytest.raises(ValidationError, match="write_back"):
        PurchaseDocument.model_validate({**bill, "write_back": True})
    for key in ("../x", "a/b", ".."):
        with pytest.raises(ValidationError):
            PurchaseDocument.model_validate({**bill, "crm_id": key})


@given(st.from_regex(SUGAR_ID_PATTERN, fullmatch=True))
def test_every_id_is_one_path_segment(record_id):
    path = record_path("Quotes", record_id)
    assert path.count("/") == 2 and path.split("/")[2] not in (".", "..")


@pytest.mark.parametrize("value", ["..", ".", "...", ""])
def test_the_sugar_client_refuses_dot_segments(value):
    with pytest.raises(ValueError):
        _segment(value)
    assert _segment("a/../b") == "a%2F..%2Fb"


def test_the_configured_modules_are_the_allow_list():
    configured = MappingFile.model_validate({"defaults": {"write_back": {"modules": ["Bookings"]},
                                                          "xero_updates": {"import_module": "Xero_Invoices"}},
                                             "tenants": {"t2": {"write_back": {"modules": ["Rentals"]}}}})
    assert configured.allowed_modules() == {"Accounts", "Contacts", "ProductTemplates", "Quotes", "Bookings",
                                            "Xero_Invoices", "Rentals"}
    with pytest.raises(ValidationError):
        MappingFile.model_validate({"defaults": {"write_back": {"modules": ["../Users"]}}})
