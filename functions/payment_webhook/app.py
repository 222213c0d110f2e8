"""payment_webhook: Xero webhook deliveries in (API Gateway); the SQS worker deduplicates them into
pending refreshes, then re-reads those resources from Xero and brings the mappings and CRM
records up to date (``shared.usecases.xero_updates``); and the Xero OAuth2 onboarding routes."""

from __future__ import annotations

# First, before pydantic is loaded (see shared.api.sqs).
from shared.api.sqs import is_sqs_event, run_batch  # isort: skip

import html
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import wiring
from shared.api.http import (
    build_resolver,
    common_router,
    error_response,
    handle_http,
    raw_body,
    status_base_url,
)
from shared.config import settings
from shared.errors import XeroError
from shared.mapping.settings import mapping_file
from shared.observability import MetricNames, logger, metrics, tracer
from shared.secrets import MissingSecret, get_secret
from shared.usecases import onboarding, webhooks
from shared.usecases.work import BatchResult, WorkItem, retry_after_for
from shared.xero.webhooks import SIGNATURE_HEADER, header, signature_is_valid

router = Router()


def _empty(status: int) -> Response:
    # Xero wants an empty body (and no cookies) on both answers.
    return Response(status_code=status, body="", content_type=None)


@router.post("/xero/webhooks", summary="Xero webhook deliveries and Intent-to-Receive checks",
             enable_validation=False,
             responses={200: {"description": "signature verified (empty body)"},
                        401: {"description": "signature wrong or missing (empty body)"}})
def post_webhook():  # answers documented in `responses`; nothing for the resolver to validate
    """Verify ``x-xero-signature`` over the raw body exactly as received, then queue the events.

    No parameter is declared, so the resolver never parses the body: the signature is checked
    first, on the bytes Xero signed. Nothing else happens in the request (no Xero, CRM or
    DynamoDB call): deduplication is the worker's job, so the answer stays far inside Xero's
    5 seconds and a flood of forged requests costs one HMAC each.
    """
    event = router.current_event.raw_event
    body = raw_body(event)
    signature = header(event.get("headers"), event.get("multiValueHeaders"), SIGNATURE_HEADER)
    try:
        webhook_key = get_secret("XERO_WEBHOOK_KEY")
    except MissingSecret:
        # Nothing can be verified, so nothing is accepted; a non-200 keeps Xero retrying (for
        # 24 hours) while the operator sets the key, instead of losing the events.
        logger.error("XERO_WEBHOOK_KEY is not set: webhook deliveries are refused")
        metrics.add_metric(name=MetricNames.WEBHOOK_KEY_MISSING, unit="Count", value=1)
        return _empty(503)
    if not signature_is_valid(body, signature, webhook_key):
        metrics.add_metric(name=MetricNames.WEBHOOK_SIGNATURE_REJECTED, unit="Count", value=1)
        return _empty(401)
    try:
        delivery = webhooks.enqueue_delivery(body, queue=wiring.webhook_queue())
    except Exception:
        # Not accepted: a non-200 makes Xero deliver again later, which is what we want.
        logger.exception("webhook delivery could not be queued")
        metrics.add_metric(name=MetricNames.WEBHOOK_ENQUEUE_FAILED, unit="Count", value=1)
        return _empty(503)
    if not delivery.readable:
        # Correctly signed, so it is Xero's; a retry would send the same bytes and fail the same
        # way, and repeated non-200s make Xero disable the subscription. Answer 200, and make the
        # problem visible instead (log + metric) so that it is looked at.
        logger.error("signed webhook body is not a Xero delivery", extra={"bytes": len(body)})
        metrics.add_metric(name=MetricNames.WEBHOOK_PAYLOAD_UNREADABLE, unit="Count", value=1)
    elif delivery.rejected_events:
        logger.error("webhook events without the fields the connector needs were left out",
                     extra={"rejected": delivery.rejected_events, "accepted": delivery.events})
        metrics.add_metric(name=MetricNames.WEBHOOK_EVENTS_REJECTED, unit="Count", value=delivery.rejected_events)
    metrics.add_metric(name=MetricNames.WEBHOOK_EVENTS_QUEUED, unit="Count", value=delivery.events)
    return _empty(200)


# The cookie that binds an onboarding ``state`` to the browser that started it.
OAUTH_COOKIE = "sugar_xero_oauth"


def _cookie(event: dict[str, Any], name: str) -> str | None:
    """A cookie's value from a REST (v1) proxy event; None when absent or unreadable."""
    lines: list[str] = []
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if key.lower() == "cookie":
            lines.extend(str(v) for v in values or [])
    if not lines:
        lines = [str(v) for k, v in (event.get("headers") or {}).items() if k.lower() == "cookie"]
    for line in lines:
        for pair in line.split(";"):
            key, _, value = pair.strip().partition("=")
            if key == name and value:
                return value.strip('"')
    return None


def _set_cookie(value: str, path: str, max_age: int) -> str:
    # Secure + HttpOnly: never sent in clear or read by scripts; Lax: sent on Xero's top-level
    # redirect back to the callback, not on cross-site subrequests.
    return f"{OAUTH_COOKIE}={value}; Path={path}; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax"


@router.get("/xero/connect", summary="Start Xero OAuth2 onboarding (administrator; takes ADMIN_TOKEN)",
            enable_validation=False,
            responses={302: {"description": "redirect to Xero's sign-in (Location header, empty body); "
                                            "sets the cookie that the callback checks",
                             "content": {"text/plain": {"schema": {"type": "string", "maxLength": 0}}}},
                       401: {"description": "no valid admin token (the CRM token is never one)",
                             "content": {"application/json": {"schema": {
                                 "$ref": "#/components/schemas/ErrorBody"}}}},
                       503: {"description": "ADMIN_TOKEN is not configured",
                             "content": {"application/json": {"schema": {
                                 "$ref": "#/components/schemas/ErrorBody"}}}}})
def connect():  # answers documented in `responses`
    """Redirect the administrator's browser to Xero's sign-in with a fresh single-use ``state``
    and a PKCE challenge, and bind the state to this browser with a cookie.

    This starts an administrative flow that replaces the stored Xero token set, so it takes
    ``ADMIN_TOKEN`` (``Authorization: Bearer`` or, from a browser, ``?token=``), checked by
    ``shared.api.http`` before routing; the CRM token is refused here.
    """
    redirect_uri = f"{status_base_url(router.current_event).rstrip('/')}/xero/callback"
    started = onboarding.start(states=wiring.oauth_states(),
                               authorize_base_url=settings().xero_authorize_url,
                               client_id=get_secret("XERO_CLIENT_ID"), redirect_uri=redirect_uri,
                               connection_id=settings().connection_id)
    cookie = _set_cookie(started.browser_nonce, urlsplit(redirect_uri).path or "/", onboarding.STATE_TTL_SECONDS)
    return Response(status_code=302, body="", content_type=None,
                    headers={"Location": started.location, "Cache-Control": "no-store", "Set-Cookie": cookie})


@router.get("/xero/callback", summary="Xero OAuth2 redirect target", enable_validation=False,
            responses={200: {"description": "connected: the organisations (HTML when the browser asks "
                                            "for it, else JSON)",
                             "content": {"text/html": {"schema": {"type": "string"}},
                                         "application/json": {"schema": {"type": "object"}}}},
                       400: {"description": "state unknown, expired or used; code refused",
                             "content": {"application/json": {"schema": {
                                 "$ref": "#/components/schemas/ErrorBody"}}}},
                       403: {"description": "not the browser that opened /xero/connect (cookie missing "
                                            "or different)",
                             "content": {"application/json": {"schema": {
                                 "$ref": "#/components/schemas/ErrorBody"}}}},
                       502: {"description": "Xero could not be reached",
                             "content": {"application/json": {"schema": {
                                 "$ref": "#/components/schemas/ErrorBody"}}}}})
def callback():  # answers documented in `responses`
    """Check the browser's cookie, consume the state, exchange the code with the PKCE verifier,
    store the token set, record the organisations. The code and the tokens are never logged."""
    current = router.current_event
    try:
        connected = onboarding.finish(
            code=current.get_query_string_value("code"), state=current.get_query_string_value("state"),
            browser_nonce=_cookie(current.raw_event, OAUTH_COOKIE),
            xero_error=current.get_query_string_value("error"),
            states=wiring.oauth_states(), identity=wiring.xero_identity(),
            store=wiring.job_store(), connection_id=settings().connection_id,
            preferred_tenant_id=settings().xero_tenant_id or _default_organisation())
    except XeroError as error:
        logger.warning("Xero onboarding call failed", extra={"error": str(error)})
        return error_response(502, "xero_unavailable",
                              f"Xero did not complete the connection ({error}). "
                              "Start again at /xero/connect.")
    metrics.add_metric(name=MetricNames.XERO_CONNECTED, unit="Count", value=1)
    if missing := _organisations_not_connected(connected):
        connected.problem = " ".join(p for p in (connected.problem, missing) if p)
    page = _connected_page(connected, current.headers.get("accept") or current.headers.get("Accept") or "")
    path = urlsplit(f"{status_base_url(current).rstrip('/')}/xero/callback").path or "/"
    page.headers["Set-Cookie"] = _set_cookie("", path, 0)  # used: the browser forgets it
    return page


def _default_organisation() -> str | None:
    """One CRM, several organisations: the mapping configuration's default one is the CRM's own."""
    organisations = mapping_file().organisations
    return organisations.names[organisations.default] if organisations is not None else None


def _organisations_not_connected(connected: onboarding.Connected) -> str | None:
    """The organisations the mapping configuration names that this consent did not connect."""
    organisations = mapping_file().organisations
    if organisations is None or not connected.tenants:
        return None
    ids = {t.tenant_id for t in connected.tenants}
    missing = [f"{name} ({tenant_id})" for name, tenant_id in organisations.names.items() if tenant_id not in ids]
    if not missing:
        return None
    return (f"The mapping configuration names organisations Xero did not connect: {', '.join(missing)}; their "
            "documents wait. Connect again and allow them in Xero's consent screen.")


def _connected_page(connected: onboarding.Connected, accept: str) -> Response:
    tenants = [{"tenant_id": t.tenant_id, "tenant_name": t.tenant_name, "tenant_type": t.tenant_type,
                "selected": t.selected} for t in connected.tenants]
    status = "connected" if tenants else "no_organisation"
    headers = {"Cache-Control": "no-store"}
    if "text/html" in accept:
        rows = "".join(f"<li>{html.escape(t['tenant_name'] or t['tenant_id'])} "
                       f"<code>{html.escape(t['tenant_id'])}</code>"
                       f"{' (used by this CRM)' if t['selected'] else ''}</li>" for t in tenants)
        note = f"<p>{html.escape(connected.problem)}</p>" if connected.problem else ""
        page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Xero connection</title></head>"
                f"<body><h1>{'Connected to Xero' if tenants else 'Xero connected no organisation'}</h1>"
                f"<ul>{rows}</ul>{note}<p>You can close this window.</p></body></html>")
        return Response(status_code=200, content_type=content_types.TEXT_HTML, body=page, headers=headers)
    body = {"status": status, "connection_id": connected.connection_id, "tenants": tenants,
            "message": connected.problem or ("Connected." if tenants else "")}
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=json.dumps(body),
                    headers=headers)


app = build_resolver()
app.include_router(router)
app.include_router(common_router)


# A refresh that failed (Xero 429/5xx, Sugar down, rules failing) is tried again after this
# long unless the error says when; its pending items stay, so nothing is lost meanwhile, and a
# message failing for good ends in the DLQ, from which `sugar-xero replay` brings it back.
REFRESH_RETRY_SECONDS = 60.0
# Pending resources one run refreshes per organisation (5 Xero GETs of 50 invoices); more are
# taken by a continuation message, so a run stays well inside the function's timeout.
REFRESH_LIMIT = 250


def work(items: list[WorkItem]) -> BatchResult:
    store = wiring.webhook_events()
    recorded = webhooks.record_events(items, store=store)
    metrics.add_metric(name=MetricNames.WEBHOOK_EVENTS_DUPLICATE, unit="Count", value=recorded.duplicates)
    metrics.add_metric(name=MetricNames.WEBHOOK_RESOURCES_PENDING, unit="Count", value=recorded.pending_written)
    logger.info("webhook events recorded", extra={
        "fresh": recorded.fresh, "duplicates": recorded.duplicates, "pending": recorded.pending_written,
        "superseded": recorded.superseded, "invalid": recorded.invalid, "retry": len(recorded.result.retry)})
    refresh_tenants(items, recorded.result, store=store)
    return recorded.result


def refresh_tenants(items: list[WorkItem], result: BatchResult, *, store: Any) -> None:
    """Refresh the pending resources of every organisation the batch's messages name, even when
    all their events were redeliveries: a retried message is how a failed refresh is retried.
    Imported here: the receiver's cold start (Xero's 5 seconds) never pays for it."""
    from shared.mapping.settings import mapping_file
    from shared.usecases import xero_updates

    tenants: dict[str, list[str]] = {}
    for item in items:
        tenant_id = (item.document or {}).get("tenant_id")
        if isinstance(tenant_id, str) and tenant_id:
            tenants.setdefault(tenant_id, []).append(item.message_id)
    for tenant_id, message_ids in tenants.items():
        try:
            crm = wiring.sugar_client() if settings().sugar_base_url else None
            refreshed = xero_updates.refresh_pending(
                tenant_id, store=store, xero=wiring.xero_client_for(tenant_id), mappings=wiring.job_store(),
                crm=crm, config=mapping_file().for_tenant(tenant_id), on_changes=wiring.billing_rules(tenant_id),
                limit=REFRESH_LIMIT, jobs=wiring.job_store())
        except Exception as error:  # noqa: BLE001 - every failure waits in the queue, then the DLQ
            wait = retry_after_for(error) or REFRESH_RETRY_SECONDS
            logger.warning("refresh of changed Xero resources deferred",
                           extra={"tenant_id": tenant_id, "error": str(error), "retry_in": wait})
            metrics.add_metric(name=MetricNames.XERO_REFRESH_DEFERRED, unit="Count", value=1)
            result.defer(message_ids, wait)
            continue
        applied = [r for r in (refreshed.invoices, refreshed.credit_notes) if r is not None]
        metrics.add_metric(name=MetricNames.XERO_DOCUMENTS_UPDATED, unit="Count",
                           value=sum(len(r.changes) for r in applied))
        metrics.add_metric(name=MetricNames.XERO_DOCUMENTS_IGNORED, unit="Count",
                           value=sum(len(r.ignored) for r in applied))
        metrics.add_metric(name=MetricNames.XERO_DOCUMENTS_IMPORTED, unit="Count",
                           value=sum(len(r.imported) for r in applied))
        metrics.add_metric(name=MetricNames.XERO_RESOURCES_REFRESHED, unit="Count", value=refreshed.cleared)
        if refreshed.retry:
            metrics.add_metric(name=MetricNames.XERO_REFRESH_KEPT, unit="Count", value=len(refreshed.kept))
            result.defer(message_ids, REFRESH_RETRY_SECONDS)
        elif refreshed.more:
            _continue_later(tenant_id, message_ids, result)


def _continue_later(tenant_id: str, message_ids: list[str], result: BatchResult) -> None:
    """More pending than one run takes: a message with no events asks the next run to go on."""
    try:
        wiring.webhook_queue().send({"job_id": f"xero-refresh-{tenant_id}-{uuid.uuid4().hex[:12]}",
                                     "kind": webhooks.KIND, "document": {"tenant_id": tenant_id, "events": []}})
    except Exception as error:  # noqa: BLE001 - the message itself then comes back instead
        logger.warning("continuation not queued; the message is retried", extra={"error": str(error)})
        result.defer(message_ids, REFRESH_RETRY_SECONDS)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry states, URLs, job data
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        return run_batch(event, context, work, defer=wiring.webhook_queue().defer)
    return handle_http(app, event, context)
