from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from shared.mapping.sugar_contacts import hook_to_document
from shared.mapping.text import clean, split_lines
from shared.mapping.xero_contacts import to_xero_contact
from shared.models.callouts import ContactCallout
from shared.models.documents import ContactDocument
from shared.models.sugar import AccountHook, ContactHook
from sugar_xero import xero_spec

callout = TypeAdapter(ContactCallout)


def test_account_fixture_maps_to_an_organisation_contact(fixture_body):
    hook = callout.validate_python(fixture_body("sugar/account_after_save.json"))
    assert isinstance(hook, AccountHook)
    body = to_xero_contact(hook_to_document(hook))
    assert body["Name"] == "Harbour View Properties Pte Ltd"
    assert body["ContactNumber"] == "4f1e6a7c-2b3d-11ef-9a1c-0242ac120002"
    assert body["EmailAddress"] == "accounts@harbourview.example.sg"
    # read only in Xero's Contacts documentation: never sent (Xero would drop them silently)
    assert not {"Website", "IsSupplier", "IsCustomer"} & set(body)
    assert body["Phones"] == [{"PhoneType": "DEFAULT", "PhoneNumber": "+65 6221 0400"}]
    # billing → POBOX, street split into lines; the empty shipping address is left out
    assert body["Addresses"] == [{"AddressType": "POBOX", "AddressLine1": "10 Marina Boulevard",
                                  "AddressLine2": "#12-01 Tower 2", "City": "Singapore",
                                  "PostalCode": "018983", "Country": "Singapore"}]
    assert "ContactStatus" not in body


def test_sugar8_contact_fixture_maps_to_a_person(fixture_body):
    hook = callout.validate_python(fixture_body("sugar/contact_after_save_v8.json"))
    assert isinstance(hook, ContactHook)
    doc = hook_to_document(hook)
    assert doc.crm_module == "Contacts" and doc.parent_crm_id == "4f1e6a7c-2b3d-11ef-9a1c-0242ac120002"
    body = to_xero_contact(doc)
    assert body["Name"] == "Mei Ling Tan"
    assert (body["FirstName"], body["LastName"]) == ("Mei Ling", "Tan")
    assert {"PhoneType": "MOBILE", "PhoneNumber": "+65 9123 4567"} in body["Phones"]


def test_own_document_is_accepted_and_unknown_beans_are_refused():
    doc = callout.validate_python({"crm_id": "A-1", "name": "Acme"})
    assert isinstance(doc, ContactDocument)
    with pytest.raises(ValidationError) as refused:
        callout.validate_python({"bean": "Opportunity", "event": "after_save", "data": {"id": "x"}})
    assert "bean must be Account or Contact" in str(refused.value)


def test_deleted_record_archives_and_html_entities_are_unescaped():
    hook = AccountHook.model_validate({"bean": "Account", "event": "after_delete",
                                       "data": {"id": "a1", "name": "Smith &amp; Sons &#039;Ltd&#039;"}})
    body = to_xero_contact(hook_to_document(hook))
    assert body["Name"] == "Smith & Sons 'Ltd'"
    assert body["ContactStatus"] == "ARCHIVED"


def test_existing_contact_id_is_sent_for_updates():
    body = to_xero_contact(ContactDocument(crm_id="a", name="A"), xero_contact_id="c-1")
    assert body["ContactID"] == "c-1"


def test_clean_and_split_lines():
    assert clean("  \x00a\x07b  ") == "ab"
    assert clean("   ") is None
    assert clean("x" * 300, 255) == "x" * 255
    assert split_lines("1\n2\n3\n4\n5\n6") == ["1", "2", "3", "4, 5, 6"]


sugar_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)


@settings(max_examples=150, deadline=None)
@given(name=sugar_text.filter(lambda s: s.strip()), street=sugar_text, city=sugar_text, phone=sugar_text,
       email=st.emails())
def test_any_valid_account_maps_within_xero_limits(name, street, city, phone, email):
    hook = AccountHook.model_validate({"bean": "Account", "event": "after_save", "data": {
        "id": "a-1", "name": name[:255], "billing_address_street": street, "billing_address_city": city,
        "phone_office": phone, "email": [{"email_address": email[:255], "primary_address": True}]}})
    body = to_xero_contact(hook_to_document(hook))
    assert 1 <= len(body["Name"]) <= 255
    for address in body.get("Addresses", []):
        assert all(len(address.get(f"AddressLine{i}", "")) <= 500 for i in range(1, 5))
        assert len(address.get("City", "")) <= 255
    for phone_entry in body.get("Phones", []):
        assert len(phone_entry["PhoneNumber"]) <= 50
    xero_spec.validate_request("POST", "/api.xro/2.0/Contacts", {"Contacts": [body]},
                               query={"summarizeErrors": "false"})
