"""invoice_push: products, quotes, invoices and purchases from the CRM into Xero."""

from __future__ import annotations

# First, before pydantic is loaded (see shared.api.sqs).
from shared.api.sqs import is_sqs_event, run_batch  # isort: skip

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Discriminator, Tag

from shared import wiring
from shared.api.http import build_resolver, common_router, handle_http, status_base_url
from shared.batching import run_topped_up
from shared.config import settings
from shared.errors import BadInput, ConnectionNotReady
from shared.mapping.items import hook_to_item_document
from shared.mapping.settings import mapping_file
from shared.mapping.sugar_quotes import quote_intent
from shared.models.documents import ItemDocument
from shared.models.invoices import PurchaseDocument, SalesInvoiceDocument, TradeDocument
from shared.models.jobs import Accepted, CrmRef, Ignored
from shared.models.sugar import ProductTemplateHook, QuoteHook, core_bean
from shared.observability import MetricNames, logger, metrics, tracer
from shared.sugar.errors import SugarError
from shared.usecases import invoices, items, writeback
from shared.usecases.accept import accept
from shared.usecases.crash import from_environment as crash_points
from shared.usecases.metadata import load_metadata, unknown_references
from shared.usecases.organisations import by_tenant, fan_out, for_the_default
from shared.usecases.routing import Router as OrganisationRouter
from shared.usecases.work import BatchResult, WorkItem, requeue, retry_after_for

router = Router()


def _product_callout_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    bean = value.get("bean")
    if bean is None:
        return "document"
    return "ProductTemplate" if core_bean(bean, mapping_file().defaults.sugar_beans) == "ProductTemplate" else None


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
    metrics.add_metric(name=MetricNames.CALLOUTS_ACCEPTED, unit="Count", value=0 if accepted.duplicate else 1)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


_ACCEPTED = {202: {"description": "accepted", "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}}}
_IGNORED = {200: {"description": "nothing to do, with the reason", "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/Ignored"}}}}}


def _accepted(kind: str, crm: CrmRef, document: dict[str, Any]) -> Response[Accepted]:
    accepted = accept(kind=kind, crm=crm, document=document, jobs=wiring.job_store(), queue=wiring.invoice_queue(),
                      status_base_url=status_base_url(router.current_event))
    metrics.add_metric(name=MetricNames.CALLOUTS_ACCEPTED, unit="Count", value=0 if accepted.duplicate else 1)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


def _ignored(reason: str) -> Response[Ignored]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=Ignored(reason=reason))


@router.post("/crm/quotes", summary="A Sugar quote; one reaching the configured stage becomes a Xero sales invoice",
             responses={**_ACCEPTED, **_IGNORED})
def post_quote(hook: Annotated[QuoteHook, Body()]) -> Response[Accepted | Ignored]:
    config = mapping_file().for_tenant(settings().xero_tenant_id)
    if reason := writeback.own_write_back(hook, config):
        return _ignored(reason)  # the save made by the connector's own write-back: no loop
    deleted = hook.event == "after_delete" or str(hook.data.deleted).lower() in ("1", "true")
    if hook.event not in ("after_save", "after_delete"):
        return _ignored(f"{hook.event} on a quote changes nothing in Xero")
    intent = quote_intent(hook.data, config, deleted=deleted)
    if intent.nothing_to_do:
        return _ignored(intent.reason or "nothing to do")
    document = {"event": "after_delete" if deleted else "after_save", "quote": hook.data.model_dump(mode="json")}
    return _accepted(invoices.KIND_QUOTE, CrmRef(module="Quotes", id=hook.data.id), document)


def _document(doc: TradeDocument) -> Response[Accepted]:
    allowed = mapping_file().allowed_modules()
    if doc.crm_module not in allowed:
        # Write-back lands on the module the document names: only modules the configuration names.
        raise BadInput("unknown_module", f"crm_module {doc.crm_module!r} is not a module this connector "
                                         f"serves; configured: {', '.join(sorted(allowed))} "
                                         "(add custom modules to write_back.modules).", status=422,
                       details=[{"field": "crm_module", "problem": "not in the configured modules",
                                 "type": "unknown_module"}])
    return _accepted(invoices.KIND_DOCUMENT, CrmRef(module=doc.crm_module, id=doc.crm_id), doc.model_dump(mode="json"))


@router.post("/crm/invoices", summary="The connector's own sales invoice document (custom modules, automated "
                                      "billing): becomes a Xero sales invoice (ACCREC)", responses=_ACCEPTED)
def post_invoice(document: Annotated[SalesInvoiceDocument, Body()]) -> Response[Accepted]:
    return _document(document)


@router.post("/crm/purchases", summary="The connector's own purchase document (bills, commission bills): becomes "
                                       "a Xero bill (ACCPAY), or a purchase order when configured",
             responses=_ACCEPTED)
def post_purchase(document: Annotated[PurchaseDocument, Body()]) -> Response[Accepted]:
    return _document(document)


app = build_resolver()
app.include_router(router)
app.include_router(common_router)


def _organisation_checks(tenant_id: str) -> dict[str, Any]:
    """The organisation's tax rates and a reference check from the nightly metadata cache, so
    totals are checked with Xero's own rates and unknown account codes or tax types are refused
    before anything is sent. Before the first refresh there is nothing to check against."""
    metadata = load_metadata(wiring.reconcile_state(), tenant_id)
    if metadata is None:
        return {}
    rates = {tax_type: rate for tax_type in metadata.tax_rates if (rate := metadata.tax_rate(tax_type)) is not None}
    return {"tax_rates": rates, "check_references": lambda body: unknown_references(body, metadata),
            "today": metadata.today()}  # the organisation's day, as Xero dates documents


def _by_organisation(documents: list[WorkItem], crm: Any, result: BatchResult) -> dict[str | None, list[WorkItem]]:
    """Documents by the Xero organisation they go to (``organisations`` in the mapping
    configuration); one organisation (None: the connection's) when it is not configured. A CRM
    that cannot say now defers the batch."""
    organisations = mapping_file().organisations
    if organisations is None:
        return {None: documents}
    try:
        return dict(OrganisationRouter(organisations, crm).split(documents))
    except SugarError as error:
        logger.warning("routing documents to organisations deferred: the CRM cannot answer now",
                       extra={"error": str(error)})
        result.defer([item.message_id for item in documents], error.retry_after or 30.0)
        return {}


def _client_or_wait(tenant_id: str | None, group: list[WorkItem], result: BatchResult) -> Any:
    """The organisation's Xero client; None (its work waits, the other organisations' goes on)
    when that organisation is not connected."""
    try:
        return wiring.xero_client() if tenant_id is None else wiring.xero_client_for(tenant_id)
    except ConnectionNotReady as error:
        logger.warning("an organisation's work waits for its connection", extra={"tenant_id": tenant_id,
                                                                                   "error": str(error)})
        requeue(wiring.job_store(), [item.job_id for item in group], error)
        result.defer([item.message_id for item in group], retry_after_for(error))
        return None


def _work_products(products: list[WorkItem], crm: Any, result: BatchResult) -> None:
    """Each product job against its organisation: the callout's own against the default one,
    after queuing the same save for every other organisation holding the product or routed it
    (``shared.usecases.organisations``); those jobs come back here carrying their tenant id."""
    organisations = mapping_file().organisations
    default = wiring.tenant_id() if organisations is not None else None
    if organisations is None:
        crm = None  # one organisation: nothing to route, no CRM read
    fanned = fan_out(products, module_of=lambda item: items.MODULE, organisations=organisations,
                     default_tenant=str(default), crm=crm, jobs=wiring.job_store(), mappings=wiring.job_store(),
                     queue=wiring.invoice_queue())
    products = for_the_default(products, fanned, jobs=wiring.job_store(), organisations=organisations)
    for tenant_id, group in by_tenant(products).items():
        xero = _client_or_wait(tenant_id, group, result)
        if xero is None:
            continue
        outcome = items.sync_items(group, xero=xero, jobs=wiring.job_store(), mappings=wiring.job_store(),
                                   crash=crash_points())
        result.defer(sorted(outcome.retry), outcome.retry_after)


def work(queued: list[WorkItem]) -> BatchResult:
    """Each kind to its worker. A kind nobody here handles is kept (retried, and in the end
    redriven to the DLQ), never dropped."""
    products = [item for item in queued if item.kind == items.KIND]
    documents = [item for item in queued if item.kind in invoices.KINDS]
    unknown = [item for item in queued if item.kind != items.KIND and item.kind not in invoices.KINDS]
    result = BatchResult()
    routed = documents or mapping_file().organisations is not None
    crm = wiring.sugar_client() if settings().sugar_base_url and routed else None
    if products:  # products first: a quote in the same batch then finds its item codes
        _work_products(products, crm, result)
    if documents:
        for tenant_id, group in _by_organisation(documents, crm, result).items():
            xero = _client_or_wait(tenant_id, group, result)
            if xero is None:
                continue
            # The products its quotes need and it lacks go to this organisation first, through the
            # item worker's journalled write (``invoices._push_missing_items``).
            other = tenant_id is not None and tenant_id != wiring.tenant_id()
            pushed = invoices.push_documents(group, xero=xero, jobs=wiring.job_store(),
                                             mappings=wiring.job_store(), crm=crm, crash=crash_points(),
                                             job_tenant=tenant_id if other else None,
                                             **_organisation_checks(xero.tenant_id))
            result.defer(sorted(pushed.retry), pushed.retry_after)
    if unknown:
        logger.error("queue messages of a kind this function does not handle",
                     extra={"kinds": sorted({item.kind for item in unknown})})
        result.retry.update(item.message_id for item in unknown)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry states, URLs, job data
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        queue = wiring.invoice_queue()
        return run_topped_up(event, queue, lambda full: run_batch(full, context, work, defer=queue.defer),
                             jobs=wiring.job_store(), headroom=wiring.xero_headroom)
    return handle_http(app, event, context)
