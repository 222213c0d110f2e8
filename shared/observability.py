"""One Logger, Tracer and Metrics for the whole process (Powertools)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

SERVICE = "sugar-xero"
METRICS_NAMESPACE = "SugarXero"


def tracing_active() -> bool:
    """Whether X-Ray tracing can record here: Powertools' own rule (inside Lambda, not under SAM
    local or Chalice, and POWERTOOLS_TRACE_DISABLED not true)."""
    if resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false")):
        return False
    in_lambda = bool(os.getenv(constants.LAMBDA_TASK_ROOT_ENV))
    emulated = bool(os.getenv(constants.SAM_LOCAL_ENV) or os.getenv(constants.CHALICE_LOCAL_ENV))
    return in_lambda and not emulated


class DisabledTracer:
    """Stands in for Powertools' Tracer where tracing cannot record. A disabled Tracer still imports
    the X-Ray SDK and botocore (about as long as importing boto3), a cold-start cost for nothing:
    this has the same decorators and calls, and does nothing."""

    disabled = True
    provider = None

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None, **_: Any) -> Any:
        return (lambda handler: handler) if lambda_handler is None else lambda_handler

    def capture_method(self, method: Callable[..., Any] | None = None, **_: Any) -> Any:
        return (lambda wrapped: wrapped) if method is None else method

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        return None

    def patch(self, modules: Any = None) -> None:
        return None


logger = Logger(service=SERVICE)
tracer: Tracer | DisabledTracer = Tracer(service=SERVICE) if tracing_active() else DisabledTracer()
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)


# ---- metric names -----------------------------------------------------------------------------
# One list, so that what the functions emit and what the template's dashboard and alarms read
# (infra/template.yaml, namespace POWERTOOLS_METRICS_NAMESPACE) cannot drift apart. Emit them with
# Powertools' default dimension only (service): the alarms match on exactly that dimension set.
class MetricNames:
    JOBS_PUSHED = "JobsPushed"  # a job's work reached Xero (created or updated)
    JOBS_FAILED = "JobsFailed"  # a job ended failed
    JOBS_RETRIED = "JobsRetried"  # a job went back to its queue to be tried again
    XERO_429 = "Xero429"  # Xero answered 429 Too Many Requests
    DRIFT_RECORDS = "DriftRecords"  # records a reconcile pass found differing (CRM, sync state, Xero)
    RECONCILE_FAILED = "ReconcileFailed"  # a reconcile pass for a tenant did not complete
    WEBHOOK_LATENCY = "WebhookLatency"  # milliseconds from a Xero event to its CRM write-back
    TOKEN_REFRESHES = "XeroTokenRefreshes"  # shared/xero/auth.py
    CONNECTION_DISCONNECTED = "XeroConnectionDisconnected"  # shared/xero/auth.py: invalid_grant
    CALLOUTS_ACCEPTED = "CalloutsAccepted"  # contact_sync, invoice_push
    WEBHOOK_EVENTS_QUEUED = "WebhookEventsQueued"  # payment_webhook
    WEBHOOK_SIGNATURE_REJECTED = "WebhookSignatureRejected"  # payment_webhook
    BATCHES_DEFERRED_NO_CONNECTION = "BatchesDeferredNoConnection"  # shared/api/sqs.py
    BILLING_RULES_FAILED = "BillingRulesFailed"
    RECONCILE_INCOMPLETE = "ReconcileIncomplete"
    RECONCILE_REPAIRED = "ReconcileRepaired"
    WEBHOOK_ENQUEUE_FAILED = "WebhookEnqueueFailed"
    WEBHOOK_EVENTS_DUPLICATE = "WebhookEventsDuplicate"
    WEBHOOK_EVENTS_REJECTED = "WebhookEventsRejected"
    WEBHOOK_KEY_MISSING = "WebhookKeyMissing"
    WEBHOOK_PAYLOAD_UNREADABLE = "WebhookPayloadUnreadable"
    WEBHOOK_RESOURCES_PENDING = "WebhookResourcesPending"
    XERO_CONNECTED = "XeroConnected"
    XERO_DOCUMENTS_IGNORED = "XeroDocumentsIgnored"
    XERO_DOCUMENTS_IMPORTED = "XeroDocumentsImported"
    XERO_DOCUMENTS_UPDATED = "XeroDocumentsUpdated"
    XERO_REFRESH_DEFERRED = "XeroRefreshDeferred"
    XERO_REFRESH_KEPT = "XeroRefreshKept"
    XERO_RESOURCES_REFRESHED = "XeroResourcesRefreshed"
