"""The pieces every API handler shares: the resolver with the contract's error shape, the
pre-routing checks (size, authentication, content type) and the common routes."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.router import Router

from shared import wiring
from shared.api.auth import crm_request_is_authentic, token_is_presented
from shared.config import settings
from shared.errors import BadInput, NotFound
from shared.models.jobs import Job
from shared.observability import logger
from shared.secrets import optional_secret

# What the CRM calls (its token or signing secret): never the admin secret.
AUTHENTICATED_PREFIXES = ("/crm/", "/jobs/")
# /xero/connect starts the flow that replaces the stored Xero token set: an administrator's action,
# with its own secret (ADMIN_TOKEN), never the CRM token that Sugar's hook URLs carry.
ADMIN_PREFIXES = ("/xero/connect",)


# Deeper JSON than any CRM record or connector document (a quote with lines is about 6 levels);
# Python's parser recurses per level and fails with RecursionError around 1,000.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when brackets outside strings nest deeper than ``limit``: checked on the bytes before
    any parser recurses, in linear time (strings are skipped first, so their brackets never count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(0, depth - 1)
    return False


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps({"error": code, "message": message, "details": details or []}))


def _readable(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        details.append({"field": location or "body", "problem": error.get("msg", ""),
                        "type": error.get("type", "")})
    first = details[0] if details else {"field": "body", "problem": "invalid"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{first['field']}: {first['problem']}{more}", details


def build_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response:
        errors = list(error.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "The request body is not valid JSON.")
        message, details = _readable(errors)
        return error_response(422, "invalid_body", f"The request body is not acceptable: {message}",
                              details)

    @app.exception_handler(RecursionError)
    def _too_deep(_: RecursionError) -> Response:  # any body the pre-routing check did not see
        return error_response(400, "too_deeply_nested", "The JSON body nests too deeply to read.")

    @app.exception_handler(BadInput)
    def _bad_input(error: BadInput) -> Response:
        return error_response(error.status, error.code, error.message, error.details)

    @app.exception_handler(NotFound)
    def _not_found(error: NotFound) -> Response:
        return error_response(404, "not_found", f"{error.what} was not found.")

    @app.not_found
    def _no_route(_: NotFoundError) -> Response:
        return error_response(404, "no_such_route",
                              f"No route {app.current_event.http_method} {app.current_event.path}.")

    return app


def raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body)
        except ValueError:
            return b""
    return body.encode() if isinstance(body, str) else bytes(body)


def _crm_refusal(event: dict[str, Any], body: bytes) -> Response | None:
    """None when the caller holds either CRM secret; either one alone is enough to configure."""
    token, secret = optional_secret("CRM_TOKEN"), optional_secret("CRM_SIGNING_SECRET")
    if not token and not secret:
        logger.error("CRM_TOKEN and CRM_SIGNING_SECRET are both missing from the connector's secret: "
                     "every CRM request is refused until one is set")
        return error_response(503, "not_configured",
                              "The connector has no CRM credential yet (CRM_TOKEN or CRM_SIGNING_SECRET); "
                              "an operator must set one in the connector's secret.")
    if crm_request_is_authentic(headers=event.get("headers"), query=event.get("queryStringParameters"),
                                raw_body=body, crm_token=token, signing_secret=secret):
        return None
    ways = " or ".join(w for w, on in (("the CRM token as a Bearer header or ?token=", bool(token)),
                                       ("the body signed with X-Sugar-Signature", bool(secret))) if on)
    return error_response(401, "unauthorized", f"Send {ways}.")


def _admin_refusal(event: dict[str, Any]) -> Response | None:
    admin = optional_secret("ADMIN_TOKEN")
    if not admin:
        logger.error("ADMIN_TOKEN is missing from the connector's secret: Xero onboarding is refused")
        return error_response(503, "not_configured",
                              "Xero onboarding needs ADMIN_TOKEN; an operator must set it in the "
                              "connector's secret.")
    if admin == optional_secret("CRM_TOKEN"):
        # Whoever holds a hook URL would be an administrator.
        logger.error("ADMIN_TOKEN equals CRM_TOKEN: Xero onboarding is refused until they differ")
        return error_response(503, "not_configured",
                              "ADMIN_TOKEN must differ from CRM_TOKEN; an operator must change it.")
    if token_is_presented(headers=event.get("headers"), query=event.get("queryStringParameters"), token=admin):
        return None
    return error_response(401, "unauthorized",
                          "Send the administrator's token (ADMIN_TOKEN) as a Bearer header or ?token=.")


def _check_before_routing(event: dict[str, Any]) -> Response | None:
    """Size, credentials and content type, in that order, before anything parses the body."""
    path = event.get("path") or ""
    body = raw_body(event)
    if len(body) > settings().max_body_bytes:
        return error_response(413, "body_too_large",
                              f"The body is {len(body)} bytes; the limit is {settings().max_body_bytes}.")
    refusal = (_crm_refusal(event, body) if path.startswith(AUTHENTICATED_PREFIXES)
               else _admin_refusal(event) if path.startswith(ADMIN_PREFIXES) else None)
    if refusal is not None:
        return refusal
    if path.startswith("/crm/") and (event.get("httpMethod") or "").upper() in {"POST", "PUT"}:
        if json_depth_exceeds(body):
            return error_response(400, "too_deeply_nested",
                                  f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels; no CRM record does.")
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        content_type = headers.get("content-type", "")
        # Sugar's Enhanced Web Logic Hooks label their JSON body as a form: read it as JSON.
        if not content_type or "x-www-form-urlencoded" in content_type or "text/plain" in content_type:
            headers["content-type"] = "application/json"
        elif "json" not in content_type:
            return error_response(415, "unsupported_media_type",
                                  f"Send JSON (Content-Type: application/json), not {content_type}.")
        event["headers"] = headers
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        if event.get("isBase64Encoded"):
            event["body"], event["isBase64Encoded"] = body.decode("utf-8", "replace"), False
    return None


def handle_http(app: APIGatewayRestResolver, event: dict[str, Any], context: Any) -> dict[str, Any]:
    refusal = _check_before_routing(event)
    if refusal is not None:
        logger.info("request refused before routing",
                    extra={"path": event.get("path"), "status": refusal.status_code})
        return {"statusCode": refusal.status_code,
                "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "multiValueHeaders": {}, "body": refusal.body or "", "isBase64Encoded": False}
    return app.resolve(event, context)


def status_base_url(event: Any) -> str:
    configured = settings().public_base_url
    if configured:
        return configured
    context = event.request_context
    host = event.headers.get("Host") or event.headers.get("host") or context.domain_name or "localhost"
    stage = context.stage
    return f"https://{host}/{stage}" if stage and stage != "$default" else f"https://{host}"


common_router = Router()


@common_router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@common_router.get("/jobs/<job_id>")
def get_job(job_id: str) -> Job:
    job = wiring.job_store().get_job(job_id) if len(job_id) <= 64 else None
    if job is None:
        raise NotFound(f"Job {job_id}")
    return job
