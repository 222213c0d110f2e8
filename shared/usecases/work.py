"""What every worker shares: a queued work item and how a job ends."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ConnectionNotReady
from shared.observability import MetricNames, logger, metrics
from shared.ports import JobStore
from shared.usecases.accept import canonical_json


@dataclass(frozen=True)
class WorkItem:
    """One queue message: the job it runs and the document it carries."""

    message_id: str
    job_id: str
    kind: str
    document: dict[str, Any]
    tenant_id: str | None = None  # the organisation the job writes to; None: the connection's default one
    receive_count: int = 1  # SQS's ApproximateReceiveCount: this delivery's number


@dataclass
class BatchResult:
    """Message ids whose work must be tried again (reported to SQS as batch item failures),
    and how long the caller should wait before they are retried."""

    retry: set[str] = field(default_factory=set)
    retry_after: float | None = None

    def defer(self, message_ids: list[str], retry_after: float | None) -> None:
        self.retry.update(message_ids)
        if retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after)


def content_hash(body: Any) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def finish(jobs: JobStore, job_id: str, status: str, *, xero: dict[str, Any] | None = None,
           error: str | None = None, warnings: list[str] | None = None) -> None:
    jobs.update_job(job_id, status=status, xero=xero or {}, error=error, warnings=warnings or [])
    if status in ("succeeded", "failed"):
        metrics.add_metric(name=MetricNames.JOBS_PUSHED if status == "succeeded" else MetricNames.JOBS_FAILED,
                           unit="Count", value=1)
    # With "batch received" (shared/api/sqs.py, job id → CRM id) this ties a job to its Xero ids.
    # Job errors are the connector's own messages about records; they never hold credentials.
    (logger.warning if status == "failed" else logger.info)(
        "job finished", extra={"job_id": job_id, "status": status, "xero": xero or {}, "error": error})


# A Xero connection that is not usable (never onboarded, or refused with invalid_grant) waits for
# an operator: its work is looked at again every few minutes instead of burning retries.
CONNECTION_RETRY_SECONDS = 300.0


def retry_after_for(error: Exception) -> float | None:
    if isinstance(error, ConnectionNotReady):
        return CONNECTION_RETRY_SECONDS
    return getattr(error, "retry_after", None)


def requeue(jobs: JobStore, job_ids: list[str], error: Exception) -> None:
    """A retryable failure: the job stays queued (the contract's 'waiting out a rate limit')."""
    for job_id in job_ids:
        jobs.update_job(job_id, status="queued", error=f"will retry: {error}")
    if job_ids:
        metrics.add_metric(name=MetricNames.JOBS_RETRIED, unit="Count", value=len(job_ids))
