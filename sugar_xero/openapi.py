"""The connector's own OpenAPI document: every function's routes in one spec.

Powertools generates each route from its pydantic models; this adds what Powertools cannot
know: the contract's JSON error shape for every refusal, the three ways to authenticate, and
the webhook's empty-bodied answers."""

from __future__ import annotations

import json
from importlib import import_module
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import Server

from shared.api.http import build_resolver
from shared.models.jobs import ErrorBody

API_FUNCTIONS = ("contact_sync", "invoice_push", "payment_webhook")
TITLE = "SugarCRM ⇄ Xero connector"

_ERRORS = {
    "400": "Malformed JSON", "401": "No valid CRM credential", "413": "Body over the size limit",
    "415": "Body is not JSON", "422": "Body does not match the schema",
}


def _version() -> str:
    from sugar_xero import __version__

    return __version__


# What Xero adds to the redirect (OAuth2 authorisation-code flow).
_CALLBACK_QUERY = {"code": "authorisation code", "state": "the state /xero/connect issued",
                   "error": "Xero's refusal (e.g. access_denied)"}


def _webhook_body(schemas: dict[str, Any]) -> dict[str, Any]:
    """The delivery Xero sends, as the receiver reads it (read only after the signature holds)."""
    from shared.xero.webhooks import WebhookEvent, WebhookPayload

    schemas["WebhookEvent"] = WebhookEvent.model_json_schema(by_alias=True)
    payload = WebhookPayload.model_json_schema(by_alias=True)
    payload["properties"]["events"]["items"] = {"$ref": "#/components/schemas/WebhookEvent"}
    schemas["WebhookPayload"] = payload
    return {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/WebhookPayload"}}}}


def build_spec(server_url: str = "/") -> dict[str, Any]:
    combined = build_resolver()
    for name in API_FUNCTIONS:
        module = import_module(f"functions.{name}.app")
        combined.include_router(module.router)
    from shared.api.http import common_router

    combined.include_router(common_router)
    spec = json.loads(combined.get_openapi_json_schema(
        title=TITLE, version=_version(), servers=[Server(url=server_url)],
        description="Routes, authentication and error shape of the connector (design/api-contract.md)."))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    spec["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "sugarSignature": {"type": "apiKey", "in": "header", "name": "X-Sugar-Signature",
                           "description": "hex HMAC-SHA256 of the raw body with the CRM signing secret"},
        "queryToken": {"type": "apiKey", "in": "query", "name": "token"},
        "adminBearer": {"type": "http", "scheme": "bearer",
                        "description": "ADMIN_TOKEN (the CRM token is refused here)"},
        "adminQueryToken": {"type": "apiKey", "in": "query", "name": "token",
                            "description": "ADMIN_TOKEN (the CRM token is refused here)"},
        "xeroSignature": {"type": "apiKey", "in": "header", "name": "x-xero-signature",
                          "description": "base64 HMAC-SHA256 of the raw body with the webhook key"},
    }
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if "422" in responses:  # Powertools' default shape is not what the connector answers
                responses["422"] = {"description": _ERRORS["422"], "content": error_ref}
            if path.startswith(("/crm/", "/jobs/")):
                operation["security"] = [{"bearer": []}, {"sugarSignature": []}, {"queryToken": []}]
                codes = _ERRORS if method == "post" else {"401": _ERRORS["401"]}
                for code, description in codes.items():
                    responses[code] = {"description": description, "content": error_ref}
            if path == "/xero/webhooks":
                responses.pop("422", None)
                responses["200"] = {"description": "signature verified (empty body)"}
                responses["401"] = {"description": "signature wrong or missing (empty body)"}
                operation["security"] = [{"xeroSignature": []}]
                operation["requestBody"] = _webhook_body(schemas)
            if path == "/xero/callback":
                operation["parameters"] = [
                    {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
                     "description": description} for name, description in _CALLBACK_QUERY.items()]
            if path.startswith("/jobs/"):
                responses.setdefault("404", {"description": "not found", "content": error_ref})
            if path == "/xero/connect":
                operation["security"] = [{"adminBearer": []}, {"adminQueryToken": []}]
    return spec


def run(argv: list[str] | None = None) -> int:
    """`sugar-xero openapi [--server-url URL]`: the document, as JSON, on standard output."""
    import argparse

    parser = argparse.ArgumentParser(prog="sugar-xero openapi",
                                     description="Print the connector's OpenAPI document (JSON).")
    parser.add_argument("--server-url", default="/", help="the servers[0].url to put in the document (default /)")
    args = parser.parse_args(argv)
    print(json.dumps(build_spec(args.server_url), indent=2, ensure_ascii=False))
    return 0
