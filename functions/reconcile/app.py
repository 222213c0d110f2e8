"""reconcile: the scheduled EventBridge pass that repairs drift between the CRM, state and Xero."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.info("reconcile fired", extra={"source": event.get("source"),
                                          "scheduled_at": event.get("time")})
    return {"status": "not_implemented", "repaired": []}
