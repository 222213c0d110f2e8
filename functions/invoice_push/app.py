"""invoice_push: products, quotes, invoices and purchases from the CRM into Xero."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Discriminator, Tag

from shared import wiring
from shared.api.http import build_resolver, common_router, handle_http, not_yet_available, status_base_url
from shared.api.sqs import is_sqs_event, run_batch
from shared.mapping.items import hook_to_item_document
from shared.models.documents import ItemDocument
from shared.models.jobs import Accepted, CrmRef, ErrorBody
from shared.models.sugar import ProductTemplateHook
from shared.observability import logger, metrics, tracer
from shared.usecases import items
from shared.usecases.accept import accept
from shared.usecases.work import BatchResult, WorkItem

router = Router()


def _product_callout_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    bean = value.get("bean")
    if bean is None:
        return "document"
    return "ProductTemplate" if bean == "ProductTemplate" else None


ProductCallout = Annotated[
    Annotated[ProductTemplateHook, Tag("ProductTemplate")] | Annotated[ItemDocument, Tag("document")],
    Discriminator(_product_callout_kind, custom_error_type="unknown_module",
                  custom_error_message="bean must be ProductTemplate (Sugar hook), or the body must "
                                       "be an item document with crm_id and name"),
]


@router.post("/crm/products", summary="Push a CRM product (ProductTemplate) to Xero as an item",
             responses={202: {"description": "accepted", "content": {
                 "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}}})
def post_product(callout: Annotated[ProductCallout, Body()]) -> Response[Accepted]:
    document = callout if isinstance(callout, ItemDocument) else hook_to_item_document(callout)
    accepted = accept(kind=items.KIND, crm=CrmRef(module=document.crm_module, id=document.crm_id),
                      document=document.model_dump(mode="json"), jobs=wiring.job_store(),
                      queue=wiring.invoice_queue(), status_base_url=status_base_url(router.current_event))
    metrics.add_metric(name="CalloutsAccepted", unit="Count", value=0 if accepted.duplicate else 1)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


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


def work(queued: list[WorkItem]) -> BatchResult:
    """Each kind to its worker. A kind nobody here handles yet is kept (retried, and in the end
    redriven to the DLQ), never dropped."""
    products = [item for item in queued if item.kind == items.KIND]
    unknown = [item for item in queued if item.kind != items.KIND]
    result = BatchResult()
    if products:
        result = items.sync_items(products, xero=wiring.xero_client(), jobs=wiring.job_store(),
                                  mappings=wiring.job_store())
    if unknown:
        logger.error("queue messages of a kind this function does not handle",
                     extra={"kinds": sorted({item.kind for item in unknown})})
        result.retry.update(item.message_id for item in unknown)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        return run_batch(event, context, work, defer=wiring.invoice_queue().defer)
    return handle_http(app, event, context)
