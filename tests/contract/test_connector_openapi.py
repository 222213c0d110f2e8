"""The connector's own OpenAPI document: valid, complete, and true to the contract."""

from __future__ import annotations

from openapi_spec_validator import validate

from sugar_xero.openapi import build_spec

CONTRACT_ROUTES = {
    ("post", "/crm/contacts"), ("post", "/crm/products"), ("post", "/crm/quotes"),
    ("post", "/crm/invoices"), ("post", "/crm/purchases"), ("post", "/xero/webhooks"),
    ("get", "/jobs/{job_id}"), ("get", "/health"), ("get", "/xero/connect"), ("get", "/xero/callback"),
}


def test_spec_is_valid_openapi():
    validate(build_spec())


def test_every_contract_route_is_published():
    spec = build_spec()
    published = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert CONTRACT_ROUTES <= published


def test_crm_routes_document_auth_and_the_error_shape():
    spec = build_spec()
    post = spec["paths"]["/crm/contacts"]["post"]
    assert len(post["security"]) == 3
    for code in ("400", "401", "413", "415", "422"):
        schema = post["responses"][code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "message"}
    body = post["requestBody"]["content"]["application/json"]["schema"]
    refs = {entry["$ref"].rsplit("/", 1)[1] for entry in body["oneOf"]}
    assert refs == {"AccountHook", "ContactHook", "ContactDocument"}
