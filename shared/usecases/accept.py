"""Accepting a CRM callout: one job per distinct callout, one queue message per job."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from shared.models.jobs import Accepted, CrmRef, Job
from shared.ports import JobStore, WorkQueue
from shared.state.dynamo import now_iso

# Fixed namespace: a job id is a pure function of what was sent, so a repeat finds the first job.
JOB_NAMESPACE = uuid.UUID("6b1f0c1e-4a52-4f0b-9a57-5c0a3e6f2d10")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def job_id_for(kind: str, document: dict[str, Any]) -> str:
    digest = hashlib.sha256(f"{kind}\n{canonical_json(document)}".encode()).hexdigest()
    return str(uuid.uuid5(JOB_NAMESPACE, digest))


# A job in these states is a live attempt: a repair never queues it a second time.
LIVE = frozenset({"queued", "in_progress"})


def accept(*, kind: str, crm: CrmRef, document: dict[str, Any], jobs: JobStore, queue: WorkQueue,
           status_base_url: str, repair: str | None = None) -> Accepted:
    """Store the job (unless the same callout already made one) and queue it.

    The conditional create is the single point that decides: of any number of identical
    callouts arriving at once, exactly one creates the job and sends the message.

    ``repair`` (who repairs: "reconcile"): the caller found the record not in Xero as the CRM
    has it. When the same document already had a job that is no longer live (it failed, or
    succeeded and was overwritten since, or was ignored), that job gets a new attempt (the same
    job and document identity; the journal counts the attempt) instead of being counted as a
    duplicate. A live job (queued, in progress) is never queued twice.
    """
    job_id = job_id_for(kind, document)
    stamp = now_iso()
    job = Job(job_id=job_id, status="queued", kind=kind, crm=crm, created_at=stamp, updated_at=stamp)
    stored, created = jobs.create_job(job, document)
    if created:
        try:
            queue.send({"job_id": job_id, "kind": kind, "document": document})
        except Exception:
            jobs.delete_job(job_id)  # so that the caller's retry is not taken for a duplicate
            raise
    elif repair and stored.status not in LIVE:
        attempt = stored.attempt + 1
        note = f"{stamp} a new attempt, queued by {repair}: the last one was {stored.status}" + \
            (f" ({stored.error})" if stored.error else "") + f"; this is attempt {attempt}"
        jobs.update_job(job_id, status="queued", error=None, attempt=attempt, warnings=[*stored.warnings, note][-20:])
        try:
            queue.send({"job_id": job_id, "kind": kind, "document": document})
        except Exception:
            jobs.update_job(job_id, status=stored.status, error=stored.error, attempt=stored.attempt,
                            warnings=list(stored.warnings))
            raise
        return Accepted(job_id=job_id, status="queued", duplicate=False,
                        status_url=f"{status_base_url.rstrip('/')}/jobs/{job_id}")
    return Accepted(job_id=stored.job_id, status=stored.status, duplicate=not created,
                    status_url=f"{status_base_url.rstrip('/')}/jobs/{stored.job_id}")
