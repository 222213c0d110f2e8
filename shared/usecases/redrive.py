"""Re-driving work: one stored job sent to its queue again, or a dead-letter queue moved back to
its work queue.

Neither can make a second Xero record: a worker dedupes by job id (the job record), by content
hash (a mapping whose ``payload_hash`` matches writes nothing to Xero) and by the mapping itself
(a record already pushed is updated by its Xero id, never created again); Xero's Idempotency-Key
covers a batch that was applied but never answered. So re-sending is always safe, and these
helpers only decide *what* to re-send and make sure nothing is lost on the way (a dead-letter
message is deleted only after its copy was sent).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.models.jobs import Job
from shared.observability import logger
from shared.ports import WorkQueue
from shared.state.dynamo import now_iso

# Job kind -> the short name of its work queue (CONTACT_QUEUE_URL, INVOICE_QUEUE_URL, ...).
KIND_QUEUES: dict[str, str] = {
    "contact.upsert": "contact",
    "item.upsert": "invoice",
    "document.push": "invoice",
    "quote.push": "invoice",
    "xero.webhook": "webhook",
}
# States a job is re-sent from without --force: it has not (yet) done its work.
REDRIVABLE = frozenset({"queued", "in_progress", "failed"})
LIVE = frozenset({"queued", "in_progress"})
# A queued or in-progress job touched more recently than this is a live attempt (its message is in
# the queue or a worker holds it): the work queues' visibility timeout (infra/template.yaml, 360 s).
# Older, it is stuck (never confirmed) and gets a new attempt.
LIVE_SECONDS = 360.0
RECEIVE_BATCH = 10  # SQS hands out at most 10 messages per receive
MOVE_VISIBILITY_SECONDS = 60  # a message being moved stays hidden from other readers meanwhile


class JobReader(Protocol):
    def get_job(self, job_id: str) -> Job | None: ...

    def get_job_payload(self, job_id: str) -> dict[str, Any] | None: ...

    def update_job(self, job_id: str, **changes: Any) -> None: ...


@dataclass(frozen=True)
class RedriveResult:
    """What happened to one job: ``sent`` says whether a message went to ``queue``."""

    job_id: str
    sent: bool
    reason: str
    kind: str | None = None
    status_before: str | None = None
    queue: str | None = None
    crm: dict[str, str] | None = None
    tenant_id: str | None = None  # the organisation a per-organisation job goes back to
    attempt: int | None = None  # the new attempt's number, when one was started

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_for(kind: str, queues: Mapping[str, WorkQueue]) -> tuple[str, WorkQueue] | None:
    """The queue of a job kind: ``queues`` may be keyed by kind or by queue short name."""
    if kind in queues:
        return kind, queues[kind]
    short = KIND_QUEUES.get(kind)
    if short and short in queues:
        return short, queues[short]
    return None


def _age_seconds(stamp: str | None, now: datetime | None = None) -> float:
    try:
        then = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - then).total_seconds()


def redrive_job(job_id: str, *, jobs: JobReader, queues: Mapping[str, WorkQueue], force: bool = False,
                reason: str = "re-driven by an operator", live_seconds: float = LIVE_SECONDS,
                now: datetime | None = None) -> RedriveResult:
    """Start a new attempt of a stored job: the same job id and CRM document, the next attempt
    number on the job, its payload sent to the queue of its kind again as ``{"job_id", "kind",
    "document"}`` (and ``tenant_id`` for a job of one organisation); the job goes back to
    ``queued`` with a note saying why. The journal counts the Xero write's attempt by itself.

    Started when the last attempt failed, or never finished (queued or in progress, untouched
    for ``live_seconds``: stuck), or, with ``force``, succeeded or was ignored (an operator
    knows it was overwritten since: the worker finds what changed, or nothing). A live attempt
    (queued or in progress, touched within ``live_seconds``) is refused even with ``force``:
    two messages for it would be two workers on one record."""
    job = jobs.get_job(job_id)
    if job is None:
        return RedriveResult(job_id, False, "no such job (never accepted, or expired)")
    crm = job.crm.model_dump()
    if job.status not in REDRIVABLE and not force:
        return RedriveResult(job_id, False, f"the job is {job.status}; pass force to send it again",
                             kind=job.kind, status_before=job.status, crm=crm)
    if job.status in LIVE and (age := _age_seconds(job.updated_at, now)) < live_seconds:
        return RedriveResult(job_id, False, f"attempt {job.attempt} is live ({job.status}, last touched "
                             f"{max(age, 0):.0f} s ago): a worker has it or its message waits in the queue; "
                             f"re-drive it if it is still {job.status} after {live_seconds:.0f} s",
                             kind=job.kind, status_before=job.status, crm=crm)
    found = queue_for(job.kind, queues)
    if found is None:
        return RedriveResult(job_id, False, f"no work queue known for job kind {job.kind!r}",
                             kind=job.kind, status_before=job.status, crm=crm)
    payload = jobs.get_job_payload(job_id)
    if payload is None:
        return RedriveResult(job_id, False, "the job's document is not stored: nothing to send",
                             kind=job.kind, status_before=job.status, crm=crm)
    name, queue = found
    attempt = job.attempt + 1
    note = f"{now_iso()} {reason}: attempt {attempt} (was {job.status}" + (f": {job.error}" if job.error else "") + ")"
    # Marked queued before the send: a fast worker may finish the job before this call returns,
    # and its answer must not be overwritten by ours.
    jobs.update_job(job_id, status="queued", attempt=attempt, warnings=[*job.warnings, note])
    try:
        # A per-organisation job goes back to its own organisation, never the default one.
        queue.send({"job_id": job_id, "kind": job.kind, "document": payload,
                    **({"tenant_id": job.tenant_id} if job.tenant_id else {})})
    except Exception:
        jobs.update_job(job_id, status=job.status, attempt=job.attempt, warnings=list(job.warnings))
        raise
    logger.info("job re-driven", extra={"job_id": job_id, "kind": job.kind, "crm_module": crm["module"],
                                        "crm_id": crm["id"], "status_before": job.status, "queue": name,
                                        "attempt": attempt})
    return RedriveResult(job_id, True, reason, kind=job.kind, status_before=job.status, queue=name, crm=crm,
                         tenant_id=job.tenant_id, attempt=attempt)


# ---- dead-letter queues --------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueMessage:
    receipt_handle: str
    body: str
    message_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)  # SQS MessageAttributes, kept as they are


class DeadLetterQueue(Protocol):
    def receive(self, max_messages: int, *, visibility_timeout: int) -> list[QueueMessage]: ...

    def delete(self, receipt_handle: str) -> None: ...


class RawQueue(Protocol):
    def send_raw(self, body: str, attributes: dict[str, Any] | None = None) -> None:
        """Send a body exactly as it was received (a DLQ may hold a message no worker could read)."""


def redrive_dlq(dlq: DeadLetterQueue, target: RawQueue, *, max_messages: int = 1000,
                on_moved: Callable[[QueueMessage], None] | None = None) -> int:
    """Move up to ``max_messages`` messages from ``dlq`` back to ``target`` (its work queue);
    returns how many moved.

    Each message is sent first and deleted after: a failure in between leaves a copy in both
    queues, which the worker's dedupe absorbs, and never loses one. Bounded: it stops at
    ``max_messages``, or when a receive comes back empty (a message moved in this run is gone
    from the DLQ, one being moved is hidden for ``MOVE_VISIBILITY_SECONDS``)."""
    moved = 0
    # Every pass either moves at least one message or ends the loop, so it ends.
    while moved < max_messages:
        batch = dlq.receive(min(RECEIVE_BATCH, max_messages - moved), visibility_timeout=MOVE_VISIBILITY_SECONDS)
        if not batch:
            break
        for message in batch:
            target.send_raw(message.body, message.attributes or None)
            dlq.delete(message.receipt_handle)
            moved += 1
            if on_moved:
                on_moved(message)
    return moved


def job_id_of(body: str) -> str | None:
    """The job id a queue message carries, when it is one of the connector's own messages."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    job_id = value.get("job_id") if isinstance(value, dict) else None
    return str(job_id) if job_id else None
