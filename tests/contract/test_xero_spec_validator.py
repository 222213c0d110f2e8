"""The contract validator against Xero's official OpenAPI file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import responses

from sugar_xero import xero_spec
from sugar_xero.xero_spec import ContractViolation, validate_request

CONTACT_ID = "430fa14a-f945-44d3-9f97-5df5e28441b8"


def test_default_spec_path_is_beside_the_repository(monkeypatch):
    monkeypatch.delenv(xero_spec.SPEC_ENV_VAR, raising=False)
    repo = Path(xero_spec.__file__).resolve().parents[1]
    assert (
        xero_spec.spec_path() == (repo.parent / "shared" / "xero-openapi" / "xero_accounting.yaml").resolve()
    )


def test_a_missing_spec_raises_naming_where_and_the_variable(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "xero_accounting.yaml"
    monkeypatch.setenv(xero_spec.SPEC_ENV_VAR, str(missing))
    assert xero_spec.spec_path() == missing
    with pytest.raises(xero_spec.SpecNotFound, match="set XERO_OPENAPI_SPEC"):
        xero_spec.load_spec()
    with pytest.raises(xero_spec.SpecNotFound):
        validate_request("POST", "/api.xro/2.0/Contacts", {"Contacts": [{"Name": "x"}]})
    with pytest.raises(xero_spec.SpecNotFound, match=str(missing)):
        xero_spec.assert_calls_match_spec([SimpleNamespace(
            method="POST", url="https://api.xero.com/api.xro/2.0/Contacts", body=b'{"Contacts": []}')])


def test_a_valid_contacts_body_passes():
    body = {
        "Contacts": [
            {
                "Name": "Harbour View Properties Pte Ltd",
                "ContactNumber": "crm-4f1e6a7c",
                "EmailAddress": "ap@harbour.example",
                "ContactStatus": "ACTIVE",
                "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": "6123 4567"}],
                "Addresses": [{"AddressType": "POBOX", "City": "Singapore", "PostalCode": "018989"}],
            }
        ]
    }
    assert (
        validate_request(
            "POST",
            "https://api.xero.com/api.xro/2.0/Contacts?summarizeErrors=false",
            json.dumps(body).encode(),
        )
        == "updateOrCreateContacts"
    )
    assert (
        validate_request("PUT", "/api.xro/2.0/Contacts", body, {"summarizeErrors": "false"})
        == "createContacts"
    )


def test_a_too_long_name_and_a_wrong_enum_fail_readably():
    body = {"Contacts": [{"Name": "N" * 256, "ContactStatus": "SLEEPING"}]}
    with pytest.raises(ContractViolation) as caught:
        validate_request("POST", "/api.xro/2.0/Contacts", body)
    violation = caught.value
    assert isinstance(violation, AssertionError)
    assert violation.operation_id == "updateOrCreateContacts"
    paths = dict(violation.errors)
    assert "256 characters long; the maximum is 255" in paths["$.Contacts[0].Name"]
    assert (
        "'SLEEPING' is not one of ['ACTIVE', 'ARCHIVED', 'GDPRREQUEST']"
        in paths["$.Contacts[0].ContactStatus"]
    )
    text = str(violation)
    assert text.startswith(
        "POST /api.xro/2.0/Contacts (updateOrCreateContacts) breaks the Xero OpenAPI contract"
    )
    assert "NNNN..." in text and "N" * 100 not in text  # long values are shortened


def test_invoice_bodies_follow_refs_into_components():
    good = {
        "Invoices": [
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": CONTACT_ID},
                "Status": "AUTHORISED",
                "LineAmountTypes": "Exclusive",
                "Date": "2026-11-01",
                "LineItems": [
                    {
                        "Description": "x",
                        "Quantity": 2,
                        "UnitAmount": 10.5,
                        "AccountCode": "200",
                        "TaxType": "OUTPUT",
                        "DiscountRate": 10,
                    }
                ],
            }
        ]
    }
    assert (
        validate_request("POST", "/api.xro/2.0/Invoices", good, {"summarizeErrors": "false", "unitdp": "4"})
        == "updateOrCreateInvoices"
    )
    bad = json.loads(json.dumps(good))
    bad["Invoices"][0]["LineAmountTypes"] = "Gross"
    bad["Invoices"][0]["LineItems"][0]["Quantity"] = "2"
    with pytest.raises(ContractViolation) as caught:
        validate_request("POST", "/api.xro/2.0/Invoices", bad)
    assert [path for path, _ in caught.value.errors] == [
        "$.Invoices[0].LineAmountTypes",
        "$.Invoices[0].LineItems[0].Quantity",
    ]


def test_query_parameters_are_checked():
    with pytest.raises(
        ContractViolation, match="summarizeErrors is not a declared parameter of updateContact"
    ):
        validate_request(
            "POST", f"/api.xro/2.0/Contacts/{CONTACT_ID}?summarizeErrors=false", {"Contacts": [{"Name": "x"}]}
        )
    with pytest.raises(ContractViolation, match="is not a boolean"):
        validate_request("POST", "/api.xro/2.0/Items", {"Items": [{"Code": "A"}]}, {"summarizeErrors": "no"})


def test_unknown_operations_and_bad_bodies_are_violations():
    with pytest.raises(ContractViolation, match="no such path"):
        validate_request("GET", "/api.xro/2.0/Nothing")
    with pytest.raises(ContractViolation, match="method not allowed"):
        validate_request("DELETE", "/api.xro/2.0/Contacts")
    with pytest.raises(ContractViolation, match="not valid JSON"):
        validate_request("POST", "/api.xro/2.0/Contacts", b"{nope")
    with pytest.raises(ContractViolation, match="request body is required"):
        validate_request("POST", "/api.xro/2.0/Contacts", None)
    with pytest.raises(ContractViolation, match="not an Accounting API path"):
        validate_request("GET", "https://api.xero.com/connections")


def test_assert_calls_match_spec_checks_recorded_xero_calls():
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, "https://api.xero.com/api.xro/2.0/Contacts", json={"Contacts": []})
        mock.add(responses.GET, "https://api.xero.com/api.xro/2.0/Invoices", json={"Invoices": []})
        mock.add(responses.POST, "https://identity.xero.com/connect/token", json={})
        requests.post(
            "https://api.xero.com/api.xro/2.0/Contacts?summarizeErrors=false",
            json={"Contacts": [{"Name": "Fine"}]},
            timeout=5,
        )
        requests.get("https://api.xero.com/api.xro/2.0/Invoices", params={"page": 1}, timeout=5)
        requests.post("https://identity.xero.com/connect/token", data={"grant_type": "x"}, timeout=5)
        assert xero_spec.assert_calls_match_spec(mock.calls) == 2
        requests.post(
            "https://api.xero.com/api.xro/2.0/Contacts", json={"Contacts": [{"Name": 7}]}, timeout=5
        )
        with pytest.raises(ContractViolation) as caught:
            xero_spec.assert_calls_match_spec(mock.calls)
    assert "1 of 3 recorded Xero calls" in str(caught.value)
    assert "POST /api.xro/2.0/Contacts $.Contacts[0].Name" in str(caught.value)


def test_validators_are_built_once_and_fast():
    contract = xero_spec.contract()
    operation = contract.operation("post", "/Contacts")
    assert operation is contract.operation("POST", "/contacts")
    assert contract.body_validator(operation) is contract.body_validator(operation)
    bodies = [
        json.dumps({"Contacts": [{"Name": f"Customer {n}", "ContactNumber": f"crm-{n}"}]}).encode()
        for n in range(1000)
    ]
    started = time.perf_counter()
    for body in bodies:
        validate_request("POST", "/api.xro/2.0/Contacts?summarizeErrors=false", body)
    assert time.perf_counter() - started < 10.0
