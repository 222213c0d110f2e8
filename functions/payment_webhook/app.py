"""payment_webhook: Xero webhook deliveries in; invoice and payment status back to the CRM."""

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


@router.post("/xero/webhooks", summary="Xero webhook deliveries and Intent-to-Receive checks")
def post_webhook() -> Response[ErrorBody]:
    return not_yet_available("Xero webhooks")


@router.get("/xero/connect", summary="Start Xero OAuth2 onboarding")
def connect() -> Response[ErrorBody]:
    return not_yet_available("Xero onboarding")


@router.get("/xero/callback", summary="Xero OAuth2 redirect target")
def callback() -> Response[ErrorBody]:
    return not_yet_available("Xero onboarding")


app = build_resolver()
app.include_router(router)
app.include_router(common_router)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        return run_batch(event, context, lambda items: BatchResult(retry={i.message_id for i in items}))
    return handle_http(app, event, context)
