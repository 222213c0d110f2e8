"""Customers and products in every organisation that needs them (one CRM, several Xero
organisations; ``organisations`` in the mapping configuration).

A CRM save of an Account, Contact or ProductTemplate is accepted as one job. The worker first asks
which organisations need the save: each one already holding the record (a mapping for it under
that tenant id) and the one the record is routed to (``shared.usecases.routing``; products, which
have no Account, go to the default one unless ``route_by`` is a field of their own). The callout's
job itself is worked against the default organisation when that is among them (and ends
``ignored``, naming the others' jobs, when it is not). For every other organisation it makes a
job of its own, stamped with the tenant id (``Job.tenant_id``, the queue message's
``tenant_id``), its id salted with the organisation, and queues it; the ordinary worker
(``shared.usecases.contacts``/``items``, with their journal) then writes it to that organisation
exactly once, under that organisation's mappings and rate limits. Nothing here writes to Xero:
this is the one write path, fanned out.

Safe to repeat: a redelivered save makes the same job ids; a job already created is queued again
only while it has not ended (a lost send is then repaired, a duplicate message is absorbed by the
worker's journal and content hash), and one that ended is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.mapping.settings import MappingConfig, Organisations
from shared.models.jobs import TERMINAL_STATUSES, CrmRef, Job
from shared.observability import logger
from shared.ports import JobStore, MappingStore, WorkQueue
from shared.state.dynamo import now_iso
from shared.sugar.errors import SugarError
from shared.usecases.accept import job_id_for
from shared.usecases.routing import Router
from shared.usecases.work import WorkItem, finish


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


def targets(item: WorkItem, *, organisations: Organisations, holders: dict[str, set[str]],
            router: Router) -> list[str]:
    """Every organisation that needs this save: those holding the record and the one it is
    routed to. A CRM that cannot answer the route now is raised (retry)."""
    crm_id = str(item.document.get("crm_id"))
    wanted = [tenant for tenant in organisations.names.values() if crm_id in holders.get(tenant, set())]
    if not item.document.get("deleted"):  # a deletion goes only where the record is
        wanted.append(router.tenant_for(item))
    return list(dict.fromkeys(wanted))


@dataclass
class FanOut:
    queued: list[WorkItem] = field(default_factory=list)  # the other organisations' jobs, sent
    elsewhere: dict[str, list[str]] = field(default_factory=dict)  # root job id → its organisations' job ids,
    # for a save the default organisation neither holds nor is routed: nothing for it to do there


def fan_out(items: list[WorkItem], *, module_of: Callable[[WorkItem], str], organisations: Organisations | None,
            default_tenant: str, crm: Any, jobs: JobStore, mappings: MappingStore, queue: WorkQueue) -> FanOut:
    """Queue, for each CRM save among ``items`` (the callout's own jobs, without a tenant), the
    job of every other organisation that needs it; say which saves the default organisation does
    not need at all."""
    result = FanOut()
    roots = [item for item in items if item.tenant_id is None]
    if organisations is None or len(organisations.names) < 2 or not roots:
        return result
    holders: dict[str, set[str]] = {}
    for tenant in organisations.names.values():
        for module in sorted({module_of(item) for item in roots}):
            ids = sorted({str(item.document.get("crm_id")) for item in roots if module_of(item) == module})
            holders.setdefault(tenant, set()).update(mappings.get_mappings(tenant, module, ids))
    router = Router(organisations, crm)
    for item in roots:
        try:
            wanted = targets(item, organisations=organisations, holders=holders, router=router)
        except SugarError as error:
            # The route cannot be read now: the organisations holding it get it, and the default
            # one as before; the routed one is decided by the next save (or a redelivery).
            logger.warning("the organisation a CRM record is routed to cannot be read now",
                           extra={"job_id": item.job_id, "error": str(error)})
            crm_id = str(item.document.get("crm_id"))
            wanted = [default_tenant, *(t for t, ids in holders.items() if crm_id in ids)]
        children = []
        for tenant in [t for t in dict.fromkeys(wanted) if t != default_tenant]:
            child, stored, created = organisation_job(item.kind, item.document, tenant, jobs=jobs)
            children.append(child.job_id)
            if not created and stored.status in TERMINAL_STATUSES:
                continue  # this very save already reached that organisation (or failed visibly there)
            queue.send(queue_message(child))
            result.queued.append(child)
        if default_tenant not in wanted:
            result.elsewhere[item.job_id] = children
    if result.queued:
        logger.info("CRM saves queued for other organisations",
                    extra={"jobs": [{"job_id": q.job_id, "tenant_id": q.tenant_id,
                                     "crm_id": q.document.get("crm_id")} for q in result.queued]})
    return result


def for_the_default(items: list[WorkItem], fanned: FanOut, *, jobs: JobStore, organisations: Organisations | None
                    ) -> list[WorkItem]:
    """``items`` less the saves only other organisations need; those jobs end ``ignored``, naming
    the jobs that carry their work."""
    kept = []
    for item in items:
        children = fanned.elsewhere.get(item.job_id) if item.tenant_id is None else None
        if children is None:
            kept.append(item)
            continue
        names = ", ".join(sorted(filter(None, (organisations.name_of(t) if organisations else None
                                               for t in _tenants_of(children, jobs))))) or "another organisation"
        jobs.start_attempt(item.job_id)
        finish(jobs, item.job_id, "ignored",
               warnings=[f"not for the default organisation: pushed to {names} by job(s) {', '.join(children)}"])
    return kept


def _tenants_of(job_ids: list[str], jobs: JobStore) -> list[str]:
    return [job.tenant_id for job_id in job_ids if (job := jobs.get_job(job_id)) is not None and job.tenant_id]


def without_write_back(config: MappingConfig) -> MappingConfig:
    """The configuration for another organisation than the default: the CRM's ``xero_*`` fields
    name the default organisation's records, so its pushes write nothing back to the CRM."""
    return config.model_copy(update={"write_back": config.write_back.model_copy(update={"enabled": False})})
