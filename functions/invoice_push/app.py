"""invoice_push: products, quotes, invoices and purchases from the CRM into Xero."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.api.http import build_resolver, common_router, handle_http, not_yet_available
from shared.api.sqs import is_sqs_event, run_batch
from shared.models.jobs import ErrorBody
from shared.observability import logger, metrics, tracer
from shared.usecases.work import BatchResult

router = Router()


@router.post("/crm/products", summary="Push a CRM product (ProductTemplate) to Xero as an item")
def post_product() -> Response[ErrorBody]:
    return not_yet_available("Product sync")


@router.post("/crm/quotes", summary="A Sugar quote; one reaching the configured stage becomes an invoice")
def post_quote() -> Response[ErrorBody]:
    return not_yet_available("Quote to invoice")


@router.post("/crm/invoices", summary="The connector's own sales invoice document")
def post_invoice() -> Response[ErrorBody]:
    return not_yet_available("Sales invoices")


@router.post("/crm/purchases", summary="The connector's own purchase document (bills)")
def post_purchase() -> Response[ErrorBody]:
    return not_yet_available("Purchases")


app = build_resolver()
app.include_router(router)
app.include_router(common_router)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        # Nothing is queued here yet; any message is kept (and redriven to the DLQ), never dropped.
        return run_batch(event, context, lambda items: BatchResult(retry={i.message_id for i in items}))
    return handle_http(app, event, context)
