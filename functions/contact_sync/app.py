"""contact_sync: Sugar Account/Contact callouts in (API Gateway), Xero contacts out (SQS worker)."""

from __future__ import annotations

# First, before pydantic is loaded (see shared.api.sqs).
from shared.api.sqs import is_sqs_event, run_batch  # isort: skip

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import wiring
from shared.api.http import build_resolver, common_router, handle_http, status_base_url
from shared.batching import run_topped_up
from shared.config import settings
from shared.errors import ConnectionNotReady
from shared.mapping.settings import mapping_file
from shared.mapping.sugar_contacts import hook_to_document
from shared.models.callouts import ContactCallout
from shared.models.documents import ContactDocument
from shared.models.jobs import Accepted, CrmRef, Ignored
from shared.models.sugar import AccountHook, ContactHook
from shared.observability import MetricNames, logger, metrics, tracer
from shared.usecases import contacts, writeback
from shared.usecases.accept import accept
from shared.usecases.crash import from_environment as crash_points
from shared.usecases.organisations import by_tenant, fan_out, for_the_default, without_write_back
from shared.usecases.work import BatchResult, WorkItem, requeue, retry_after_for

router = Router()


@router.post("/crm/contacts", summary="Push a CRM customer to Xero",
             responses={202: {"description": "accepted", "content": {
                 "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                        200: {"description": "nothing to do (e.g. the CRM save made by the connector's "
                                             "own write-back)", "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Ignored"}}}}})
def post_contact(callout: Annotated[ContactCallout, Body()]) -> Response[Accepted | Ignored]:
    config = mapping_file().for_tenant(settings().xero_tenant_id)
    if not isinstance(callout, ContactDocument) and (reason := writeback.own_write_back(callout, config)):
        # The after_save that the connector's own write-back causes in Sugar: no loop.
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON,
                        body=Ignored(reason=reason))
    if not isinstance(callout, ContactDocument) and (reason := _ignored_event(callout)):
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=Ignored(reason=reason))
    document = callout if isinstance(callout, ContactDocument) else hook_to_document(callout, config)
    accepted = accept(kind=contacts.KIND, crm=CrmRef(module=document.crm_module, id=document.crm_id),
                      document=document.model_dump(mode="json"), jobs=wiring.job_store(),
                      queue=wiring.contact_queue(), status_base_url=status_base_url(router.current_event))
    metrics.add_metric(name=MetricNames.CALLOUTS_ACCEPTED, unit="Count", value=0 if accepted.duplicate else 1)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


def _ignored_event(hook: AccountHook | ContactHook) -> str | None:
    """Relationship events change nothing on a Xero contact, except a Sugar Contact linked to or
    unlinked from its Account (its contact person moves): that one is pushed like a save."""
    if not hook.event.startswith("after_relationship"):
        return None
    if isinstance(hook, ContactHook) and (hook.related_module or "").lower() == "accounts":
        return None
    return (f"{hook.event} ({hook.link or hook.related_module or 'a link'}) on a Sugar {hook.bean} changes "
            "nothing on its Xero contact; the related record's own saves are pushed")


app = build_resolver()
app.include_router(router)
app.include_router(common_router)


def work(items: list[WorkItem]) -> BatchResult:
    """Each job against its organisation: the callout's own jobs against the default one (when it
    needs the save), after queuing the same save for every other organisation that holds the
    customer or is routed it (``shared.usecases.organisations``); those jobs come back here
    carrying their tenant id."""
    crm = wiring.sugar_client() if settings().sugar_base_url else None
    organisations = mapping_file().organisations
    default = wiring.tenant_id() if organisations is not None else None
    fanned = fan_out(items, module_of=lambda item: str(item.document.get("crm_module")),
                     organisations=organisations, default_tenant=str(default), crm=crm, jobs=wiring.job_store(),
                     mappings=wiring.job_store(), queue=wiring.contact_queue())
    items = for_the_default(items, fanned, jobs=wiring.job_store(), organisations=organisations)
    result = BatchResult()
    for tenant_id, group in by_tenant(items).items():
        own = tenant_id is None or tenant_id == default
        try:
            xero = wiring.xero_client() if tenant_id is None else wiring.xero_client_for(tenant_id)
        except ConnectionNotReady as error:  # that organisation waits; the others go on
            logger.warning("an organisation's work waits for its connection",
                           extra={"tenant_id": tenant_id, "error": str(error)})
            requeue(wiring.job_store(), [item.job_id for item in group], error)
            result.defer([item.message_id for item in group], retry_after_for(error))
            continue
        # The CRM's xero_* fields name the default organisation's contact: only its jobs write back.
        config = mapping_file().for_tenant(xero.tenant_id)
        outcome = contacts.sync_contacts(group, xero=xero, jobs=wiring.job_store(), mappings=wiring.job_store(),
                                         config=config if own else without_write_back(config),
                                         crm=crm if own else None, crash=crash_points())
        result.defer(sorted(outcome.retry), outcome.retry_after)
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry states, URLs, job data
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        queue = wiring.contact_queue()
        return run_topped_up(event, queue, lambda full: run_batch(full, context, work, defer=queue.defer),
                             jobs=wiring.job_store(), headroom=wiring.xero_headroom)
    return handle_http(app, event, context)
