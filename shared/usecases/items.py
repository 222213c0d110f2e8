"""CRM products (Sugar ProductTemplates) → Xero items, in batches of up to 50 per call.

Code collisions: Xero matches an item sent without ItemID by its Code, so a second CRM product
carrying a code the first already uses would silently overwrite the first one's item. The
worker keeps a claim per code (a mapping record in module ``ProductTemplates.Code``: crm_id is
the code, xero_id the item, xero_number the CRM product owning it) and fails the later product's
job with an error naming the owner; nothing is sent for it. A claim whose owner has since moved
to another code is stale and is taken over. Within one batch the first product in queue order
keeps the code. (Two batches racing on a brand-new shared code can still both pass the check;
Xero then updates one item with the other's values and the next push of either reports it.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.chunking import chunks
from shared.errors import ConnectionNotReady, XeroError
from shared.mapping.items import to_xero_item
from shared.mapping.settings import CatalogueRules, mapping_file
from shared.models.documents import ItemDocument
from shared.observability import logger
from shared.ports import JobStore, MappingStore, XeroApi
from shared.state.records import Mapping
from shared.usecases.crash import NO_CRASH, STATE_WRITTEN, XERO_ANSWERED, CrashPoints
from shared.usecases.journal import Entry, Journal
from shared.usecases.versions import OLDER, SUPERSEDED, newest_per_record, version_of
from shared.usecases.work import BatchResult, WorkItem, content_hash, finish, requeue, retry_after_for
from shared.xero.client import validation_messages

KIND = "item.upsert"
MODULE = "ProductTemplates"
CODE_MODULE = "ProductTemplates.Code"
UNIT_DECIMALS = {"unitdp": "4"}  # prices keep 4 decimals instead of Xero's default 2

Group = list[tuple[WorkItem, ItemDocument]]



def _newest_per_record(jobs: JobStore, items: list[tuple[WorkItem, ItemDocument]]
                       ) -> tuple[dict[str, Group], dict[str, str | None]]:
    """Group by CRM record (first seen first): the newest save (``shared.usecases.versions``)
    and the jobs carrying that same save; older saves' jobs end ``ignored`` (superseded)."""
    versions: dict[int, str | None] = {}
    for pair in items:
        job = None if pair[1].crm_modified else jobs.get_job(pair[0].job_id)
        versions[id(pair)] = version_of(pair[1].crm_modified, job.created_at if job else None)
    grouped = newest_per_record(items, key=lambda pair: pair[1].crm_id, version=lambda pair: versions[id(pair)])
    groups: dict[str, Group] = {}
    newest: dict[str, str | None] = {}
    for crm_id, group in grouped.items():
        groups[crm_id] = [pair for pair in group if pair[1] == group[0][1]]
        newest[crm_id] = versions[id(group[0])]
        kept = {item.message_id for item, _ in groups[crm_id]}
        for item, _ in group:
            if item.message_id not in kept:
                finish(jobs, item.job_id, "ignored", warnings=[SUPERSEDED])
    return groups, newest


def _catalogue_for(tenant_id: str) -> CatalogueRules:
    return mapping_file().for_tenant(tenant_id).catalogue


def _finish_group(jobs: JobStore, group: Group, status: str, **outcome: Any) -> None:
    for item, _ in group:
        finish(jobs, item.job_id, status, **outcome)


def sync_items(items: list[WorkItem], *, xero: XeroApi, jobs: JobStore, mappings: MappingStore,
               catalogue: CatalogueRules | Callable[[str], CatalogueRules] = _catalogue_for,
               batch_size: int = 50, crash: CrashPoints = NO_CRASH) -> BatchResult:
    """Steps: read the documents, keep the newest save per product, skip what Xero already holds
    unchanged, drop code collisions, then send the rest in chunks through the journal."""
    result = BatchResult()
    rules = catalogue(xero.tenant_id) if callable(catalogue) else catalogue
    parsed: list[tuple[WorkItem, ItemDocument]] = []
    for item in items:
        jobs.start_attempt(item.job_id)
        try:
            parsed.append((item, ItemDocument.model_validate(item.document)))
        except ValidationError as error:
            finish(jobs, item.job_id, "failed", error=f"unreadable document: {error.errors()[:3]}")

    groups, versions = _newest_per_record(jobs, parsed)
    known = mappings.get_mappings(xero.tenant_id, MODULE, list(groups))
    journal = Journal(mappings, xero)  # type: ignore[arg-type]
    journal.load(MODULE, list(groups))
    for crm_id in [c for c in groups if journal.is_older(MODULE, c, versions[c])]:
        _finish_group(jobs, groups.pop(crm_id), "ignored", warnings=[OLDER])

    candidates: list[tuple[str, dict[str, Any], str]] = []
    for crm_id, group in groups.items():
        body = to_xero_item(group[0][1], rules)
        digest = content_hash(body)
        mapping = known.get(crm_id)
        if mapping and mapping.payload_hash == digest:
            _finish_group(jobs, group, "succeeded", xero={"item_id": mapping.xero_id, "code": body["Code"]},
                          warnings=["unchanged since the last push: nothing sent to Xero"])
            continue
        if mapping:
            body["ItemID"] = mapping.xero_id
        candidates.append((crm_id, body, digest))

    run = _ItemRun(xero=xero, jobs=jobs, mappings=mappings, journal=journal, groups=groups, versions=versions,
                   crash=crash, result=result)
    for chunk in chunks(_without_code_collisions(candidates, groups, xero.tenant_id, jobs, mappings), batch_size):
        run.send(chunk)
    return result


Candidate = tuple[str, dict[str, Any], str]  # (CRM id, Xero body, its content hash)


@dataclass
class _ItemRun:
    """One worker run's sending of item chunks: journal first, then Xero, then state, then jobs."""

    xero: XeroApi
    jobs: JobStore
    mappings: MappingStore
    journal: Journal
    groups: dict[str, Group]
    versions: dict[str, str | None]
    crash: CrashPoints
    result: BatchResult

    def send(self, chunk: list[Candidate]) -> None:
        entries = {crm_id: Entry(module=MODULE, crm_id=crm_id, resource="Items", body=body,
                                 version=self.versions[crm_id],
                                 job_ids=[item.job_id for item, _ in self.groups[crm_id]])
                   for crm_id, body, _ in chunk}
        bodies = [body for _, body, _ in chunk]
        chunk_items = [item for crm_id, _, _ in chunk for item, _ in self.groups[crm_id]]
        try:
            chunk = self._journalled(chunk, entries)
            if not chunk:
                return
            bodies = [body for _, body, _ in chunk]
            chunk_items = [item for crm_id, _, _ in chunk for item, _ in self.groups[crm_id]]
            answers = self.xero.upsert_batch("Items", bodies, idempotency_key=f"items-{content_hash(bodies)}",
                                             params=UNIT_DECIMALS)
        except (XeroError, ConnectionNotReady) as error:
            self.journal.call_failed([entries[c[0]] for c in chunk if entries[c[0]].intent], error)
            if isinstance(error, ConnectionNotReady) or error.retryable:
                logger.warning("Xero batch deferred", extra={"size": len(bodies), "error": str(error)})
                requeue(self.jobs, [i.job_id for i in chunk_items], error)
                self.result.defer([i.message_id for i in chunk_items], retry_after_for(error))
            else:
                for item in chunk_items:
                    finish(self.jobs, item.job_id, "failed", error=str(error))
            return
        self.crash.reached(XERO_ANSWERED)
        self._store_and_finish([(c, answer, entries[c[0]]) for c, answer in zip(chunk, answers, strict=True)])

    def _journalled(self, chunk: list[Candidate], entries: dict[str, Entry]) -> list[Candidate]:
        """Recover (an item whose earlier attempt was never confirmed is found by its Code first)
        and record the intents; returns what is still to send. Ambiguous markers fail their jobs,
        older saves end ignored, items found made from this very body are stored without a call."""
        problems = self.journal.recover(list(entries.values()), f"items-{content_hash([b for _, b, _ in chunk])}")
        refused = self.journal.record(list(entries.values()), f"items-{content_hash([b for _, b, _ in chunk])}")
        for crm_id in [c for c, e in entries.items() if id(e) in problems or e in refused]:
            reason = problems.get(id(entries[crm_id]))
            _finish_group(self.jobs, self.groups[crm_id], "failed" if reason else "ignored", error=reason,
                          warnings=[] if reason else [OLDER])
        chunk = [c for c in chunk if id(entries[c[0]]) not in problems and entries[c[0]] not in refused]
        adopted = [c for c in chunk if entries[c[0]].adopt and entries[c[0]].found]
        if adopted:  # made by an attempt that died before storing Xero's answer: stored now
            self._store_and_finish([(c, entries[c[0]].found or {}, entries[c[0]]) for c in adopted])
        return [c for c in chunk if c not in adopted]

    def _store_and_finish(self, answered: list[tuple[Candidate, dict[str, Any], Entry]]) -> None:
        endings = [_record_answer(crm_id, self.groups[crm_id], body["Code"], answer, digest, self.xero.tenant_id,
                                  self.mappings, self.journal, entry)
                   for (crm_id, body, digest), answer, entry in answered]
        self.crash.reached(STATE_WRITTEN)  # every mapping of the chunk is written; no job is marked yet
        for group, status, outcome in endings:
            _finish_group(self.jobs, group, status, **outcome)


def _without_code_collisions(candidates: list[tuple[str, dict[str, Any], str]], groups: dict[str, Group],
                             tenant_id: str, jobs: JobStore, mappings: MappingStore
                             ) -> list[tuple[str, dict[str, Any], str]]:
    """Drop (and fail) every product whose code another CRM product already holds."""
    codes = list(dict.fromkeys(body["Code"].upper() for _, body, _ in candidates))
    claims = mappings.get_mappings(tenant_id, CODE_MODULE, codes) if codes else {}
    owners = {c.xero_number for c in claims.values() if c.xero_number}
    owner_mappings = mappings.get_mappings(tenant_id, MODULE, sorted(owners)) if owners else {}
    taken_in_batch: dict[str, str] = {}
    kept = []
    for crm_id, body, digest in candidates:
        code = body["Code"].upper()
        claim = claims.get(code)
        owner = claim.xero_number if claim else None
        owner_mapping = owner_mappings.get(owner or "")
        # A claim only counts while its owner still uses that code (a renamed code frees it).
        still_owned = bool(owner and owner != crm_id and owner_mapping
                           and (owner_mapping.xero_number or "").upper() == code)
        if still_owned:
            _finish_group(jobs, groups[crm_id], "failed", xero={"code": body["Code"]},
                          error=f"the item code {body['Code']} is already used by CRM product {owner} "
                                f"(Xero item {claim.xero_id}); give this product another part "
                                f"number (mft_part_num)")
            continue
        if code in taken_in_batch:
            _finish_group(jobs, groups[crm_id], "failed", xero={"code": body["Code"]},
                          error=f"the item code {body['Code']} is also the code of CRM product "
                                f"{taken_in_batch[code]}, pushed first in the same batch; give this "
                                f"product another part number (mft_part_num)")
            continue
        taken_in_batch[code] = crm_id
        kept.append((crm_id, body, digest))
    return kept


def _record_answer(crm_id: str, group: Group, code: str, answer: dict[str, Any], digest: str,
                   tenant_id: str, mappings: MappingStore, journal: Journal, entry: Entry
                   ) -> tuple[Group, str, dict[str, Any]]:
    """Store Xero's answer; returns how the group's jobs end (marked once the chunk is stored)."""
    status = (answer.get("StatusAttributeString") or "OK").upper()
    item_id = answer.get("ItemID")
    if status == "ERROR" or answer.get("HasValidationErrors") or not item_id:
        message = "; ".join(validation_messages(answer)) or "Xero refused the item without a reason"
        journal.failed(entry, message)
        return group, "failed", {"xero": {"code": code}, "error": f"Xero: {message}"}
    doc = group[0][1]
    mappings.put_mapping(Mapping(tenant_id=tenant_id, module=MODULE, crm_id=crm_id, xero_id=item_id,
                                 xero_number=code, payload_hash=digest, crm_modified=doc.crm_modified,
                                 xero_updated=answer.get("UpdatedDateUTC"), version=entry.version))
    mappings.put_mapping(Mapping(tenant_id=tenant_id, module=CODE_MODULE, crm_id=code.upper(),
                                 xero_id=item_id, xero_number=crm_id))
    journal.confirmed(entry, item_id)
    # Text cut to fit Xero first, then Xero's own warnings.
    warnings = doc.truncated + [w.get("Message", "") for w in answer.get("Warnings") or [] if w.get("Message")]
    return group, "succeeded", {"xero": {"item_id": item_id, "code": code}, "warnings": warnings}

