"""Customers and products in every organisation that needs them (one CRM, several Xero
organisations; ``organisations`` in the mapping configuration).

A CRM save of an Account, Contact or ProductTemplate is accepted as one job, worked against the
default organisation as always. Before that, the worker asks which other organisations need the
save too: each one already holding the record (a mapping for it under that tenant id) and the one
the record is routed to (``shared.usecases.routing``). For each it makes a job of its own, stamped
with the tenant id (``Job.tenant_id``, the queue message's ``tenant_id``), its id salted with the
organisation, and queues it; the ordinary worker (``shared.usecases.contacts``/``items``, with
their journal) then writes it to that organisation exactly once, under that organisation's
mappings and rate limits. Nothing here writes to Xero: this is the one write path, fanned out.

Safe to repeat: a redelivered save makes the same job ids; a job already created is queued again
only while it has not ended (a lost send is then repaired, a duplicate message is absorbed by the
worker's journal and content hash), and one that ended is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shared.mapping.settings import Organisations
from shared.models.jobs import TERMINAL_STATUSES, CrmRef, Job
from shared.observability import logger
from shared.ports import JobStore, MappingStore, WorkQueue
from shared.state.dynamo import now_iso
from shared.sugar.errors import SugarError
from shared.usecases.accept import job_id_for
from shared.usecases.routing import Router
from shared.usecases.work import WorkItem


def organisation_job_id(kind: str, document: dict[str, Any], tenant_id: str) -> str:
    """The job of one document for one organisation: the same document for two organisations
    is two jobs, and neither is the job the CRM's callout made."""
    return job_id_for(kind, {"organisation": tenant_id, **document})


def organisation_job(kind: str, document: dict[str, Any], tenant_id: str, *, jobs: JobStore,
                     message_prefix: str = "org") -> tuple[WorkItem, Job, bool]:
    """Store (conditionally) the job of ``document`` for organisation ``tenant_id``, its payload
    the bare document as ``accept()`` stores it, so ``sugar-xero replay`` sends it again to the
    same organisation. Returns the work item, the stored job and whether it was created now."""
    job_id = organisation_job_id(kind, document, tenant_id)
    stamp = now_iso()
    job = Job(job_id=job_id, status="queued", kind=kind, tenant_id=tenant_id,
              crm=CrmRef(module=str(document.get("crm_module")), id=str(document.get("crm_id"))),
              created_at=stamp, updated_at=stamp)
    stored, created = jobs.create_job(job, document)
    item = WorkItem(message_id=f"{message_prefix}:{tenant_id}:{job_id}", job_id=job_id, kind=kind,
                    document=document, tenant_id=tenant_id)
    return item, stored, created


def queue_message(item: WorkItem) -> dict[str, Any]:
    return {"job_id": item.job_id, "kind": item.kind, "document": item.document, "tenant_id": item.tenant_id}


def by_tenant(items: Iterable[WorkItem]) -> dict[str | None, list[WorkItem]]:
    """Work items by the organisation their job names (None: the default one), in arrival order."""
    groups: dict[str | None, list[WorkItem]] = {}
    for item in items:
        groups.setdefault(item.tenant_id, []).append(item)
    return groups


def targets(item: WorkItem, *, organisations: Organisations, default_tenant: str,
            holders: dict[str, set[str]], router: Router) -> list[str]:
    """The organisations other than the default that need this save: those holding the record
    and the one it is routed to. A CRM that cannot answer the route now is raised (retry)."""
    crm_id = str(item.document.get("crm_id"))
    wanted = [tenant for tenant in organisations.names.values() if crm_id in holders.get(tenant, set())]
    if not item.document.get("deleted"):  # a deletion goes only where the record is
        routed = router.tenant_for(item)
        if routed not in wanted:
            wanted.append(routed)
    return [tenant for tenant in dict.fromkeys(wanted) if tenant != default_tenant]


def fan_out(items: list[WorkItem], *, module_of: Callable[[WorkItem], str], organisations: Organisations | None,
            default_tenant: str, crm: Any, jobs: JobStore, mappings: MappingStore, queue: WorkQueue
            ) -> list[WorkItem]:
    """Queue, for each CRM save among ``items`` (the callout's own jobs, without a tenant), the
    job of every other organisation that needs it. Returns the items queued."""
    roots = [item for item in items if item.tenant_id is None]
    if organisations is None or len(organisations.names) < 2 or not roots:
        return []
    holders: dict[str, set[str]] = {}
    for tenant in organisations.names.values():
        if tenant == default_tenant:
            continue
        for module in sorted({module_of(item) for item in roots}):
            ids = sorted({str(item.document.get("crm_id")) for item in roots if module_of(item) == module})
            holders.setdefault(tenant, set()).update(mappings.get_mappings(tenant, module, ids))
    router = Router(organisations, crm)
    queued: list[WorkItem] = []
    for item in roots:
        try:
            wanted = targets(item, organisations=organisations,
                             default_tenant=default_tenant, holders=holders, router=router)
        except SugarError as error:
            # The route cannot be read now: the organisations already holding it still get it;
            # the routed one is decided by the next save (or this job's redelivery).
            logger.warning("the organisation a CRM record is routed to cannot be read now",
                           extra={"job_id": item.job_id, "error": str(error)})
            crm_id = str(item.document.get("crm_id"))
            wanted = [t for t, ids in holders.items() if crm_id in ids]
        for tenant in wanted:
            child, stored, created = organisation_job(item.kind, item.document, tenant, jobs=jobs)
            if not created and stored.status in TERMINAL_STATUSES:
                continue  # this very save already reached that organisation (or failed visibly there)
            queue.send(queue_message(child))
            queued.append(child)
    if queued:
        logger.info("CRM saves queued for other organisations",
                    extra={"jobs": [{"job_id": q.job_id, "tenant_id": q.tenant_id,
                                     "crm_id": q.document.get("crm_id")} for q in queued]})
    return queued
