"""Trade documents (sales invoices, purchases, quotes) from the CRM into Xero, with the result
back on the CRM record.

One batch of queue messages is worked in this order, so a whole batch costs about one Xero call
per 50 documents:
1. read: parse the documents; for Sugar quotes, read their bundles and lines through REST and
   turn them into documents (``shared.mapping.sugar_quotes``);
2. contacts first: a document whose customer or supplier has no Xero contact yet gets it pushed
   now, in the same run, through the contact use case (one call per 50 contacts), with a job of
   its own like a hook would have made;
3. map: each document to its Xero body (``shared.mapping.invoices``), refusing, before anything
   is sent, what Xero would refuse or compute differently than the CRM beyond rounding;
4. decide per record: unchanged (nothing sent), locked in Xero (not overwritten, the record says
   why), cancelled (DELETED, VOIDED or a credit note, by what Xero allows), or sent;
5. send in calls of up to 50 per collection; record each element's answer on its job, its
   mapping (with Xero's state of the document) and the CRM record (write-back).

Duplicates: the job id is a hash of the callout, the Idempotency-Key a hash of the chunk (for
network retries), and the mapping (CRM record → Xero document) makes a re-delivered or re-saved
document an update of the same Xero document. Between Xero's answer and the mapping write, the
write-ahead journal (``shared.usecases.journal``) covers the gap: an intent left unconfirmed
makes the next attempt look the document up by its marker instead of creating it again. A
record's content hash makes an unchanged re-save free; an older save than the one already sent
is ignored (``shared.usecases.versions``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from shared.chunking import chunks
from shared.errors import ConnectionNotReady, XeroError
from shared.mapping.invoices import (
    DocumentRefused,
    MappedDocument,
    cancellation,
    credit_note_body,
    target_of,
    to_xero_document,
)
from shared.mapping.items import hook_to_item_document
from shared.mapping.settings import MappingConfig, mapping_file
from shared.mapping.sugar_contacts import account_to_document, contact_to_document
from shared.mapping.sugar_quotes import MODULE as QUOTES
from shared.mapping.sugar_quotes import quote_documents, quote_intent
from shared.mapping.xero_documents import ID_FIELDS, document_state, is_newer, write_back_values
from shared.models.invoices import AnyTradeDocument, TradeDocument, XeroDocumentState
from shared.models.jobs import CrmRef, Job
from shared.models.sugar import AccountHook, ContactHook, ProductTemplateHook, SugarQuote
from shared.observability import logger
from shared.ports import JobStore, MappingStore, XeroApi
from shared.state.dynamo import now_iso
from shared.state.records import Mapping, document_module
from shared.sugar.errors import SugarError
from shared.usecases import contacts
from shared.usecases import items as catalogue
from shared.usecases.accept import job_id_for
from shared.usecases.crash import NO_CRASH, STATE_WRITTEN, XERO_ANSWERED, CrashPoints
from shared.usecases.journal import Entry, Journal, add_marker
from shared.usecases.organisations import organisation_job, without_write_back
from shared.usecases.versions import OLDER, SUPERSEDED, newest_per_record, version_of
from shared.usecases.work import BatchResult, WorkItem, content_hash, finish, requeue, retry_after_for
from shared.usecases.writeback import (
    JobEnding,
    Outcome,
    Steps,
    end_after_write_back,
    step_module,
    unfinished_step,
    write_back,
    write_back_owed,
    xero_version,
)
from shared.xero.client import validation_messages

KIND_DOCUMENT = "document.push"
KIND_QUOTE = "quote.push"
KINDS = frozenset({KIND_DOCUMENT, KIND_QUOTE})
UNIT_DECIMALS = {"unitdp": "4"}  # unit prices keep 4 decimals instead of Xero's default 2
INVOICE_LINES = {"page": "1", **UNIT_DECIMALS}  # invoices by IDs= with their lines, prices to 4 decimals
WRITE_BACK_PENDING = contacts.WRITE_BACK_PENDING
WRITE_BACK_RETRY_SECONDS = contacts.WRITE_BACK_RETRY_SECONDS
SUGAR_RETRY_SECONDS = 60.0
LOCKED_HINT = ("it is not overwritten. Change it in Xero, or cancel the CRM document (a paid invoice is then "
               "credited)")
_DOCUMENT = TypeAdapter(AnyTradeDocument)


class QuoteReader(Protocol):
    """The Sugar calls the worker makes (``shared.sugar.client.SugarClient``)."""

    def related(self, module: str, record_id: str, link: str, fields: Any = None, max_num: int = 100,
                order_by: str | None = None) -> list[dict[str, Any]]: ...

    def get_record(self, module: str, record_id: str, fields: Any = None) -> dict[str, Any]: ...

    def update_records_bulk(self, module: str, updates: dict[str, dict[str, Any]],
                            chunk_size: int = 20) -> dict[str, Any]: ...


ReferenceCheck = Callable[[dict[str, Any]], list[str]]


@dataclass
class _Record:
    """One CRM record's document on its way to Xero, with every job that carries it."""

    items: list[WorkItem]
    doc: TradeDocument
    resource: str
    target: str
    module: str
    warnings: list[str] = field(default_factory=list)
    state: XeroDocumentState | None = None
    mapping: Mapping | None = None
    contact_id: str | None = None
    mapped: MappedDocument | None = None
    digest: str = ""
    body: dict[str, Any] | None = None
    action: str = "push"  # push | delete | void | credit_note
    version: str | None = None
    superseded: list[WorkItem] = field(default_factory=list)  # older saves of the record in this batch
    entry: Entry | None = None
    accept_after: bool = False  # a quote sent as SENT now, ACCEPTED by its own journal step after

    @property
    def key(self) -> tuple[str, str]:
        return self.module, self.doc.crm_id

    @property
    def key_crm(self) -> tuple[str, str]:
        """The CRM record, as the write-back names it."""
        return self.doc.crm_module, self.doc.crm_id


class _Run:
    def __init__(self, *, xero: XeroApi, jobs: JobStore, mappings: MappingStore, crm: QuoteReader | None,
                 config: MappingConfig, result: BatchResult, crash: CrashPoints = NO_CRASH,
                 job_tenant: str | None = None):
        self.xero, self.jobs, self.mappings, self.crm = xero, jobs, mappings, crm
        self.job_tenant = job_tenant  # set when the organisation is not the default one
        self.answered: list[tuple[str, dict[str, Any]]] = []  # (resource, Xero's answer) of each document written
        self.config, self.result, self.crash = config, result, crash
        self.outcomes: dict[tuple[str, str], tuple[list[WorkItem], Outcome]] = {}
        self.today = dt.datetime.now(dt.UTC).date()
        self.journal = Journal(mappings, xero)  # type: ignore[arg-type]
        self.held: list[tuple[Any, ...]] | None = None  # job endings waiting for the state writes
        self.endings: dict[tuple[str, str], list[JobEnding]] = {}  # job endings waiting for the write-back

    # ---- endings ---------------------------------------------------------------------------
    def finish_items(self, items: Iterable[WorkItem], status: str, *, xero: dict[str, Any] | None = None,
                     error: str | None = None, warnings: list[str] | None = None) -> None:
        for item in items:
            if self.held is not None:  # a chunk's jobs are marked after all its state is written
                self.held.append((item.job_id, status, xero, error, warnings))
            else:
                finish(self.jobs, item.job_id, status, xero=xero, error=error, warnings=warnings or [])

    def release(self) -> None:
        held, self.held = self.held or [], None
        for job_id, status, xero, error, warnings in held:
            finish(self.jobs, job_id, status, xero=xero, error=error, warnings=warnings or [])

    def writes_back(self, record: _Record) -> bool:
        return record.doc.write_back and self.config.write_back.enabled and self.crm is not None

    def end_after_write_back(self, record: _Record, status: str, *, xero: dict[str, Any] | None = None,
                             error: str | None = None, warnings: list[str] | None = None) -> None:
        """The record's jobs end once its write-back ran (``shared.usecases.writeback``), never
        before: a job is not shown ``succeeded`` and then turned ``failed`` by Sugar's refusal."""
        self.endings.setdefault(record.key_crm, []).extend(
            JobEnding(item.job_id, status, xero=xero or {}, error=error, warnings=list(warnings or []))
            for item in record.items)

    def fail(self, record: _Record, error: str, *, write_back_failure: bool = True) -> None:
        if write_back_failure and self.writes_back(record):
            self.end_after_write_back(record, "failed", xero=_job_xero(record.state), error=error,
                                      warnings=record.warnings)
        else:
            self.finish_items(record.items, "failed", xero=_job_xero(record.state), error=error,
                              warnings=record.warnings)
        if write_back_failure and record.doc.write_back:
            values = write_back_values(record.state) if record.state else {}
            self.outcomes[(record.doc.crm_module, record.doc.crm_id)] = (record.items, Outcome(
                module=record.doc.crm_module, crm_id=record.doc.crm_id, sync_status="failed",
                xero_id=record.state.xero_id if record.state else None, last_error=error, synced_at=now_iso(),
                values=values, version=xero_version(record.state.updated_utc) if record.state else None))

    def defer(self, items: list[WorkItem], error: Exception, retry_after: float | None = None, *,
              waiting_for: str | None = None, xero: dict[str, Any] | None = None) -> None:
        requeue(self.jobs, [i.job_id for i in items], error)
        if waiting_for:  # a follow-up step waits: the job (not final) says which, and what Xero holds
            for item in items:
                self.jobs.update_job(item.job_id, error=f"will retry: {waiting_for} ({error})", xero=xero or {})
        self.result.defer([i.message_id for i in items], retry_after if retry_after is not None
                          else retry_after_for(error))

    def succeed(self, record: _Record, state: XeroDocumentState, warnings: list[str]) -> None:
        if self.writes_back(record):
            self.end_after_write_back(record, "succeeded", xero=_job_xero(state), warnings=warnings)
        else:
            self.finish_items(record.items, "succeeded", xero=_job_xero(state), warnings=warnings)
        if record.doc.write_back:
            self.outcomes[(record.doc.crm_module, record.doc.crm_id)] = (record.items, Outcome(
                module=record.doc.crm_module, crm_id=record.doc.crm_id,
                sync_status="warning" if warnings else "synced", xero_id=state.xero_id,
                last_error="; ".join(warnings) if warnings else None, synced_at=now_iso(),
                values=write_back_values(state), version=xero_version(state.updated_utc)))


def _job_xero(state: XeroDocumentState | None) -> dict[str, Any]:
    if state is None:
        return {}
    return {"id": state.xero_id, "type": state.target, "number": state.number, "status": state.status,
            "total": str(state.total), "amount_due": str(state.amount_due), "url": state.url}


def _stored_state(mapping: Mapping | None) -> XeroDocumentState | None:
    if mapping is None or not mapping.document:
        return None
    try:
        return XeroDocumentState.model_validate(mapping.document)
    except ValidationError:
        return None


def _document_digest(doc: TradeDocument, contact_id: str) -> str:
    """What the CRM asked for (not when): an unchanged re-save hashes the same."""
    return content_hash({"doc": doc.model_dump(mode="json", exclude={"crm_modified"}), "contact": contact_id})


# ---- step 1: reading --------------------------------------------------------------------------
def _read_quotes(run: _Run, quote_items: list[tuple[WorkItem, SugarQuote, bool]]
                 ) -> list[tuple[WorkItem, TradeDocument, list[str]]]:
    """Sugar quotes → documents. Lines are read through REST (the hook does not carry them)."""
    fetched: list[tuple[WorkItem, SugarQuote, bool, list[dict[str, Any]]]] = []
    for item, quote, deleted in quote_items:
        intent = quote_intent(quote, run.config, deleted=deleted)
        if intent.nothing_to_do:
            finish(run.jobs, item.job_id, "ignored", warnings=[intent.reason or "nothing to do"])
            continue
        if deleted or not (intent.invoice or intent.xero_quote_status):
            fetched.append((item, quote, deleted, []))  # ending a document needs no lines
            continue
        if run.crm is None:
            finish(run.jobs, item.job_id, "failed",
                   error="the quote's lines cannot be read: SUGAR_BASE_URL is not configured")
            continue
        try:
            bundles = run.crm.related(QUOTES, quote.id, "product_bundles")
            for bundle in bundles:
                bundle["products"] = run.crm.related("ProductBundles", str(bundle["id"]), "products")
        except SugarError as error:
            if error.retryable:
                run.defer([item], error, error.retry_after or SUGAR_RETRY_SECONDS)
            else:
                finish(run.jobs, item.job_id, "failed", error=f"Sugar: the quote's lines cannot be read: {error}")
            continue
        fetched.append((item, quote, deleted, bundles))

    templates = sorted({str(p.get("product_template_id")) for *_, bundles in fetched for b in bundles
                        for p in b.get("products") or [] if p.get("product_template_id")})
    known = run.mappings.get_mappings(run.xero.tenant_id, "ProductTemplates", templates) if templates else {}
    codes = {crm_id: m.xero_number for crm_id, m in known.items() if m.xero_number}
    notes = _push_missing_items(run, [t for t in templates if t not in codes], codes)
    documents: list[tuple[WorkItem, TradeDocument, list[str]]] = []
    for item, quote, deleted, bundles in fetched:
        try:
            docs, warnings = quote_documents(quote, bundles, run.config, deleted=deleted, item_codes=codes)
            if any("not in Xero's catalogue" in warning for warning in warnings):
                warnings = warnings + notes  # why those lines still have no item code
        except DocumentRefused as error:
            finish(run.jobs, item.job_id, "failed", error=str(error))
            run.outcomes[(QUOTES, quote.id)] = ([item], Outcome(module=QUOTES, crm_id=quote.id, sync_status="failed",
                                                                last_error=str(error), synced_at=now_iso()))
            continue
        documents += [(item, doc, doc.truncated + warnings) for doc in docs]
    return documents


def _push_missing_items(run: _Run, template_ids: list[str], codes: dict[str, str]) -> list[str]:
    """Items before the documents that use them, in one batch as across batches: the catalogue
    entries the quotes' lines name that this organisation lacks are read from the CRM and pushed
    first, as ``item.upsert`` jobs through the item worker's own journalled write
    (``shared.usecases.items.sync_items``: journal entry marked by the item's Code, newest wins,
    mappings), so a worker killed between Xero's answer and the mapping write never makes a second
    item. Their codes join ``codes``; what cannot be pushed leaves its lines without a code, with
    notes why (it never blocks the document)."""
    if not template_ids or run.crm is None:
        return []
    work: list[WorkItem] = []
    notes: list[str] = []
    for template_id in template_ids:
        try:
            record = run.crm.get_record(catalogue.MODULE, template_id)
            hook = ProductTemplateHook.model_validate({"bean": "ProductTemplate", "event": "after_save",
                                                       "data": record})
            work.append(_item_job(run, hook_to_item_document(hook).model_dump(mode="json")))
        except (SugarError, ValidationError) as error:
            notes.append(f"product {template_id}: not read from the CRM's catalogue: {str(error)[:200]}")
    if not work:
        return notes
    outcome = catalogue.sync_items(work, xero=run.xero, jobs=run.jobs, mappings=run.mappings, crash=run.crash)
    pushed = run.mappings.get_mappings(run.xero.tenant_id, catalogue.MODULE, [w.document["crm_id"] for w in work])
    for item in work:
        mapping = pushed.get(item.document["crm_id"])
        if mapping and mapping.xero_number:
            codes[item.document["crm_id"]] = mapping.xero_number
            continue
        job = run.jobs.get_job(item.job_id)
        reason = (job.error if job else None) or "; ".join(job.warnings if job else []) or "not pushed yet"
        notes.append(f"product {item.document.get('name')!r} ({item.document['crm_id']}): not in Xero's catalogue"
                     f" ({'will be retried' if item.message_id in outcome.retry else 'see its job'} "
                     f"{item.job_id}): {reason}")
    return notes


def _item_job(run: _Run, payload: dict[str, Any]) -> WorkItem:
    """The job of a product pushed for a document (as a missing contact's): stamped with the
    organisation when it is not the default one, so `sugar-xero replay` sends it there again."""
    if run.job_tenant:
        return organisation_job(catalogue.KIND, payload, run.job_tenant, jobs=run.jobs, message_prefix="item")[0]
    job_id = job_id_for(catalogue.KIND, payload)
    stamp = now_iso()
    run.jobs.create_job(Job(job_id=job_id, status="queued", kind=catalogue.KIND,
                            crm=CrmRef(module=catalogue.MODULE, id=str(payload["crm_id"])),
                            created_at=stamp, updated_at=stamp),
                        payload)  # the bare document, as accept() stores it: what a replay sends
    return WorkItem(message_id=f"item:{job_id}", job_id=job_id, kind=catalogue.KIND, document=payload)


def _parse(run: _Run, items: list[WorkItem]) -> list[tuple[WorkItem, TradeDocument, list[str]]]:
    parsed: list[tuple[WorkItem, TradeDocument, list[str]]] = []
    quotes: list[tuple[WorkItem, SugarQuote, bool]] = []
    for item in items:
        run.jobs.start_attempt(item.job_id)
        try:
            if item.kind == KIND_QUOTE:
                body = item.document or {}
                quotes.append((item, SugarQuote.model_validate(body.get("quote") or {}),
                               body.get("event") == "after_delete"))
            else:
                document = _DOCUMENT.validate_python(item.document)
                parsed.append((item, document, list(document.truncated)))  # text cut to fit Xero
        except ValidationError as error:
            finish(run.jobs, item.job_id, "failed", error=f"unreadable document: {error.errors()[:3]}")
    return parsed + _read_quotes(run, quotes)


def received_at(jobs: JobStore, item: WorkItem) -> str | None:
    """When the connector accepted the callout (the job's creation): the version of a save that
    carries no ``crm_modified``."""
    job = jobs.get_job(item.job_id)
    return job.created_at if job else None


def _records(run: _Run, parsed: list[tuple[WorkItem, TradeDocument, list[str]]]) -> list[_Record]:
    """One record per (CRM record, Xero target): the newest save wins; the jobs of the same save
    ride along, older saves' jobs end ``ignored`` (superseded). A quote can carry two documents
    (invoice and Xero quote): its job is finished by the last."""
    versions = {id(entry): version_of(entry[1].crm_modified,
                                      None if entry[1].crm_modified else received_at(run.jobs, entry[0]))
                for entry in parsed}
    groups = newest_per_record(
        parsed, key=lambda e: (document_module(e[1].crm_module, target_of(e[1], run.config)[1]), e[1].crm_id),
        version=lambda e: versions[id(e)])
    records = []
    for (module, _), group in groups.items():
        newest = group[0][1]
        resource, target = target_of(newest, run.config)
        same = [item for item, doc, _ in group if doc == newest]
        unique = list({item.message_id: item for item in same}.values())
        older = [item for item, doc, _ in group if doc != newest and item.message_id not in
                 {i.message_id for i in unique}]
        records.append(_Record(items=unique, doc=newest, resource=resource, target=target, module=module,
                               warnings=list(group[0][2]), version=versions[id(group[0])],
                               superseded=list({i.message_id: i for i in older}.values())))
    by_module: dict[str, list[_Record]] = {}
    for record in records:
        by_module.setdefault(record.module, []).append(record)
    kept = []
    for module, members in by_module.items():
        found = run.mappings.get_mappings(run.xero.tenant_id, module, [r.doc.crm_id for r in members])
        run.journal.load(module, [r.doc.crm_id for r in members])
        for record in members:
            for item in record.superseded:
                finish(run.jobs, item.job_id, "ignored", warnings=[SUPERSEDED])
            if run.journal.is_older(module, record.doc.crm_id, record.version):
                run.finish_items(record.items, "ignored", warnings=[OLDER])
                continue
            record.mapping = found.get(record.doc.crm_id)
            record.state = _stored_state(record.mapping)
            kept.append(record)
    return kept


# ---- step 2: contacts first ---------------------------------------------------------------------
def _contact_document(run: _Run, module: str, crm_id: str):
    if run.crm is None:
        raise DocumentRefused(f"the {module[:-1].lower()} {crm_id} is not in Xero yet and cannot be read from the "
                              "CRM (SUGAR_BASE_URL is not configured)")
    record = run.crm.get_record(module, crm_id)
    if module == "Accounts":
        return account_to_document(AccountHook(bean="Account", event="after_save", data=record), run.config)
    return contact_to_document(ContactHook(bean="Contact", event="after_save", data=record))


def _settle_contacts(run: _Run, records: list[_Record], batch_size: int) -> list[_Record]:
    """Give every record its Xero ContactID, pushing missing contacts first. Returns the records
    that can go on."""
    needing = [r for r in records if not r.doc.cancelled]
    for record in needing:
        if record.doc.contact.xero_contact_id:
            record.contact_id = record.doc.contact.xero_contact_id
    keys = {r.doc.contact.key for r in needing if r.contact_id is None and r.doc.contact.key}
    known = _contact_ids(run, keys)
    missing = sorted(key for key in keys if key not in known)
    problems: dict[ContactKey, str] = {}
    deferred: dict[ContactKey, tuple[Exception, float | None]] = {}
    if missing:
        inline = {r.doc.contact.key: r.doc.contact.contact for r in needing if r.doc.contact.contact}
        items: list[WorkItem] = []
        for key in missing:
            try:
                document = inline.get(key) or _contact_document(run, *key)
            except SugarError as error:
                if error.retryable:
                    deferred[key] = (error, error.retry_after or SUGAR_RETRY_SECONDS)
                else:
                    problems[key] = f"the customer/supplier {key[1]} cannot be read from the CRM: {error}"
                continue
            except (DocumentRefused, ValidationError) as error:
                problems[key] = f"the customer/supplier {key[1]} cannot be pushed: {error}"
                continue
            items.append(_contact_work_item(run, document))
        if items:
            _push_contacts(run, items, batch_size, known, problems, deferred)
    ready = [r for r in records if r.doc.cancelled or r.contact_id]
    for record in needing:
        if record.contact_id:
            continue
        key = record.doc.contact.key
        if key in known:
            record.contact_id = known[key]
            ready.append(record)
        elif key in deferred:
            run.defer(record.items, *deferred[key])
        else:
            run.fail(record, problems.get(key, "the document's contact is not known"))
    return ready


ContactKey = tuple[str, str]  # (CRM module, CRM id) of a customer or supplier


def _contact_ids(run: _Run, keys: Iterable[ContactKey]) -> dict[ContactKey, str]:
    """The Xero ContactIDs the mappings already hold for these CRM records, one read a module."""
    keys = list(keys)
    known: dict[ContactKey, str] = {}
    for module in {m for m, _ in keys}:
        for crm_id, mapping in run.mappings.get_mappings(run.xero.tenant_id, module,
                                                         [i for m, i in keys if m == module]).items():
            known[(module, crm_id)] = mapping.xero_id
    return known


def _contact_work_item(run: _Run, document: Any) -> WorkItem:
    """A contact job for a customer/supplier the document needs, pushed in this same run."""
    payload = document.model_dump(mode="json")
    if run.job_tenant:  # another organisation than the default: a job of its own, stamped with it
        return organisation_job(contacts.KIND, payload, run.job_tenant, jobs=run.jobs, message_prefix="contact")[0]
    job_id = job_id_for(contacts.KIND, payload)
    stamp = now_iso()
    run.jobs.create_job(Job(job_id=job_id, status="queued", kind=contacts.KIND,
                            crm=CrmRef(module=document.crm_module, id=document.crm_id),
                            created_at=stamp, updated_at=stamp),
                        payload)  # the bare document, as accept() stores it: what a replay sends
    return WorkItem(message_id=f"contact:{job_id}", job_id=job_id, kind=contacts.KIND, document=payload)


def _push_contacts(run: _Run, items: list[WorkItem], batch_size: int, known: dict[ContactKey, str],
                   problems: dict[ContactKey, str], deferred: dict[ContactKey, tuple[Exception, float | None]]
                   ) -> None:
    """Push the missing customers/suppliers now; each ends known, deferred or a problem."""
    # The CRM's xero_* fields name the default organisation's contact: only its pushes write back.
    outcome = contacts.sync_contacts(items, xero=run.xero, jobs=run.jobs, mappings=run.mappings,
                                     crash=run.crash, batch_size=batch_size,
                                     config=without_write_back(run.config) if run.job_tenant else run.config,
                                     crm=None if run.job_tenant else run.crm)
    pushed = {(i.document["crm_module"], i.document["crm_id"]): i for i in items}
    found = _contact_ids(run, pushed)
    for key, item in pushed.items():
        if key in found:
            known[key] = found[key]
        elif item.message_id in outcome.retry:
            deferred[key] = (XeroError("the customer's Xero contact is waiting to be pushed", retryable=True),
                             outcome.retry_after)
        else:
            job = run.jobs.get_job(item.job_id)
            problems[key] = (f"the customer/supplier {key[1]} could not be pushed to Xero: "
                             f"{job.error if job else 'unknown error'} (job {item.job_id})")


# ---- step 3/4: mapping and deciding --------------------------------------------------------------
def _decide(run: _Run, records: list[_Record], *, tax_rates: MappingOf[str, Decimal],
            check_references: ReferenceCheck | None, today: dt.date) -> list[_Record]:
    """What each record needs: an end in Xero (cancelled), nothing (unchanged), or a body to send."""
    to_send: list[_Record] = []
    credit_with_payments = run.config.invoices.cancel_with_payments == "credit_note"
    if run.config.write_back.enabled and run.crm is not None:  # unfinished write-back steps, one read a module
        pushed: dict[str, list[str]] = {}
        for record in records:
            if record.mapping is not None and record.doc.write_back:
                pushed.setdefault(record.doc.crm_module, []).append(record.doc.crm_id)
        for module, crm_ids in pushed.items():
            run.journal.load(step_module(module), crm_ids)
    for record in records:
        if record.doc.cancelled:
            sends = _decide_cancelled(run, record, credit_with_payments, check_references)
        else:
            sends = _decide_push(run, record, tax_rates=tax_rates, check_references=check_references, today=today)
        if sends:
            to_send.append(record)
    return to_send


def _decide_cancelled(run: _Run, record: _Record, credit_with_payments: bool,
                      check_references: ReferenceCheck | None) -> bool:
    """A document cancelled in the CRM: nothing to end, already ended, refused, a credit note, or
    a DELETED/VOIDED update. True when something is to be sent."""
    if record.state is None:
        run.finish_items(record.items, "ignored",
                         warnings=["cancelled in the CRM before it was ever pushed: nothing to end in Xero"])
        return False
    action, why = cancellation(record.state, credit_with_payments=credit_with_payments)
    if action == "done":
        run.succeed(record, record.state, [why or "already ended in Xero"])
        return False
    if action == "refuse":
        run.fail(record, why or "cannot be ended in Xero")
        return False
    if action == "credit_note":
        record.action = action
        return True
    if (locked := _locked_period(record, check_references)) is not None:
        run.fail(record, locked)
        return False
    record.action = action
    status = "DELETED" if action == "delete" else "VOIDED"
    record.body = {ID_FIELDS[record.resource]: record.state.xero_id, "Status": status}
    if record.resource != "Invoices":  # Xero wants the contact and date on quote and order updates
        if record.state.contact_id:
            record.body["Contact"] = {"ContactID": record.state.contact_id}
        if record.state.date:
            record.body["Date"] = record.state.date.isoformat()
    return True


def _decide_push(run: _Run, record: _Record, *, tax_rates: MappingOf[str, Decimal],
                 check_references: ReferenceCheck | None, today: dt.date) -> bool:
    """A live document: unchanged since the last push (only an owed ACCEPTED step runs), locked,
    refused by the mapping or Xero's references, or mapped to a body. True when it is to be sent."""
    assert record.contact_id is not None
    record.digest = _document_digest(record.doc, record.contact_id)
    if record.mapping and record.mapping.payload_hash == record.digest and record.state is not None:
        if _wants_acceptance(record, record.state):  # the document is in Xero, its ACCEPTED step is not
            warnings = list(record.warnings)
            if (accepted := _settle_acceptance(run, record, record.state, record.mapping, warnings)):
                run.succeed(record, accepted, warnings)
            return False
        _unchanged(run, record)
        return False
    if record.state is not None and record.state.locked:
        run.fail(record, _locked_message(record.state))
        return False
    try:
        record.mapped = to_xero_document(record.doc, run.config, contact_id=record.contact_id,
                                         existing=record.state, tax_rates=tax_rates, today=today)
    except DocumentRefused as error:
        run.fail(record, str(error))
        return False
    body = record.mapped.body
    if check_references and "Date" not in body and record.state is not None and record.state.date:
        # an update keeps Xero's date, and Xero checks the lock against it all the same
        body = {**body, "Date": record.state.date.isoformat()}
    problems = check_references(body) if check_references else []
    if problems:
        run.fail(record, "not sent: " + "; ".join(problems))
        return False
    record.body = record.mapped.body
    record.warnings += record.mapped.warnings
    if (record.resource == "Quotes" and record.body.get("Status") == ACCEPTED and record.state is not None
            and record.state.status in THROUGH_SENT):
        # Xero refuses DRAFT → ACCEPTED and DECLINED → ACCEPTED: the quote goes as SENT, then
        # the ACCEPTED step of its own (_settle_acceptance) follows
        record.body["Status"] = "SENT"
        record.accept_after = True
    return True


def _locked_period(record: _Record, check_references: ReferenceCheck | None) -> str | None:
    """Why a document dated in a locked period cannot be deleted or voided, else None."""
    if check_references is None or record.state is None or record.state.date is None:
        return None
    problems = [p for p in check_references({"Date": record.state.date.isoformat()}) if "locked" in p]
    return "not ended in Xero: " + "; ".join(problems) if problems else None


def _locked_message(state: XeroDocumentState) -> str:
    what = f"Xero {state.target} {state.number or state.xero_id}"
    if state.has_payments:
        reason = f"has payments applied ({state.amount_paid:,.2f} paid)"
    elif state.has_credit_allocated:
        reason = f"has credit allocated ({state.amount_credited:,.2f} credited)"
    else:
        reason = f"is {state.status}"
    return f"{what} {reason}: {LOCKED_HINT}"


def _unchanged(run: _Run, record: _Record) -> None:
    """Nothing to send. A job whose write-back is still pending writes it again, from the stored
    state (the same values); a plain re-save writes nothing, so the write-back cannot loop."""
    assert record.state is not None
    pending = False
    for item in record.items:
        job = run.jobs.get_job(item.job_id)
        pending |= bool(job and any(WRITE_BACK_PENDING in w for w in job.warnings))
    # a write-back step recorded and never confirmed (the worker died during the Sugar call)
    recorded = unfinished_step(run.journal, record.doc.crm_module, record.doc.crm_id) \
        if record.doc.write_back and run.config.write_back.enabled and run.crm is not None else None
    pending |= recorded is not None
    # never written back for this state (the worker died between the state write and the write-back)
    pending |= run.writes_back(record) and write_back_owed(run.journal, record.doc.crm_module, record.doc.crm_id,
                                                           xero_version(record.state.updated_utc))
    note = "xero done earlier: crm write-back retried" if pending else \
        "unchanged since the last push: nothing sent to Xero"
    if pending and record.mapping and run.writes_back(record):
        run.end_after_write_back(record, "succeeded", xero=_job_xero(record.state), warnings=[note])
    else:
        run.finish_items(record.items, "succeeded", xero=_job_xero(record.state), warnings=[note])
    if pending and record.doc.write_back and record.mapping:
        # redone as recorded: with the version of the Xero state the recorded values carry
        step = run.journal.load(step_module(record.doc.crm_module), [record.doc.crm_id]).get(record.doc.crm_id)
        version = step.version if recorded is not None and step is not None else xero_version(record.state.updated_utc)
        run.outcomes[(record.doc.crm_module, record.doc.crm_id)] = (record.items, Outcome(
            module=record.doc.crm_module, crm_id=record.doc.crm_id, sync_status=record.mapping.sync_status,
            xero_id=record.state.xero_id, last_error=record.mapping.last_error,
            synced_at=record.mapping.updated_at, values=write_back_values(record.state), recorded=recorded,
            version=version))


# ---- step 5: sending -------------------------------------------------------------------------------
def _send(run: _Run, records: list[_Record], batch_size: int) -> None:
    by_resource: dict[str, list[_Record]] = {}
    for record in records:
        if record.action == "credit_note":
            continue
        by_resource.setdefault(record.resource, []).append(record)
    for resource, members in by_resource.items():
        for chunk in chunks(members, batch_size):
            chunk = _journal_chunk(run, resource, chunk)
            if not chunk:
                continue
            bodies = [r.body for r in chunk]
            key = f"{resource.lower()}-{content_hash(bodies)}"
            for refused in run.journal.record([r.entry for r in chunk if r.entry], key):
                record = next(r for r in chunk if r.entry is refused)
                run.finish_items(record.items, "ignored", warnings=[OLDER])
                chunk.remove(record)
            if not chunk:
                continue
            if len(chunk) != len(bodies):
                bodies = [r.body for r in chunk]
                key = f"{resource.lower()}-{content_hash(bodies)}"
            try:
                answers = run.xero.upsert_batch(resource, bodies, params=UNIT_DECIMALS, idempotency_key=key)
            except (XeroError, ConnectionNotReady) as error:
                run.journal.call_failed([r.entry for r in chunk if r.entry], error)
                _batch_failed(run, chunk, error)
                continue
            run.crash.reached(XERO_ANSWERED)
            latest = _latest_states(run, chunk)
            run.held = []
            for record, answer in zip(chunk, answers, strict=True):
                _record_answer(run, record, answer, latest.get(record.key))
            run.crash.reached(STATE_WRITTEN)
            run.release()
    credits = [r for r in records if r.action == "credit_note"]
    if credits:
        _credit(run, credits, batch_size)


def _journal_chunk(run: _Run, resource: str, chunk: list[_Record]) -> list[_Record]:
    """Give each document of the chunk its journal entry and recover unconfirmed earlier
    attempts (see ``shared.usecases.journal``). Returns the records that can be sent."""
    for record in chunk:
        assert record.body is not None
        add_marker(resource, record.body, record.doc.crm_id)
        record.entry = Entry(module=record.module, crm_id=record.doc.crm_id, resource=resource, body=record.body,
                             version=record.version, job_ids=[i.job_id for i in record.items])
    key = f"{resource.lower()}-{content_hash([r.body for r in chunk])}"
    try:
        problems = run.journal.recover([r.entry for r in chunk if r.entry], key)
    except (XeroError, ConnectionNotReady) as error:
        _batch_failed(run, chunk, error)
        return []
    for record in chunk:
        if id(record.entry) in problems:
            run.fail(record, problems[id(record.entry)])
    chunk = [r for r in chunk if id(r.entry) not in problems]
    adopted = [r for r in chunk if r.entry and r.entry.adopt and r.entry.found]
    if adopted:  # made by an attempt that died before storing Xero's answer: stored now, not sent again
        run.held = []
        for record in adopted:
            _record_answer(run, record, record.entry.found)  # type: ignore[union-attr,arg-type]
        run.crash.reached(STATE_WRITTEN)
        run.release()
    return [r for r in chunk if r not in adopted]


def _batch_failed(run: _Run, chunk: list[_Record], error: Exception) -> None:
    if isinstance(error, ConnectionNotReady) or getattr(error, "retryable", False):
        logger.warning("Xero batch deferred", extra={"size": len(chunk), "error": str(error)})
        run.defer([i for r in chunk for i in r.items], error)
    else:
        for record in chunk:
            run.fail(record, f"Xero: {error}")


def _latest_states(run: _Run, chunk: list[_Record]) -> dict[tuple[str, str], XeroDocumentState]:
    """The stored states of a chunk's already-pushed documents as they are now, one read per
    module: a webhook may have stored a newer state (a payment) since this batch read them."""
    latest: dict[tuple[str, str], XeroDocumentState] = {}
    by_module: dict[str, list[str]] = {}
    for record in chunk:
        if record.mapping is not None:
            by_module.setdefault(record.module, []).append(record.doc.crm_id)
    for module, crm_ids in by_module.items():
        for crm_id, mapping in run.mappings.get_mappings(run.xero.tenant_id, module, crm_ids).items():
            if (state := _stored_state(mapping)) is not None:
                latest[(module, crm_id)] = state
    return latest


def _record_answer(run: _Run, record: _Record, answer: dict[str, Any],
                   latest: XeroDocumentState | None = None) -> None:
    status = (answer.get("StatusAttributeString") or "OK").upper()
    xero_id = answer.get(ID_FIELDS[record.resource])
    if status == "ERROR" or answer.get("HasValidationErrors") or not xero_id:
        message = "; ".join(validation_messages(answer)) or "Xero refused the document without a reason"
        if record.entry:
            run.journal.failed(record.entry, message)
        run.fail(record, f"Xero: {message}")
        return
    line_ids = record.mapped.line_crm_ids if record.mapped else []
    previous_url = record.state.url if record.state and "go.xero.com" not in (record.state.url or "") else None
    state = document_state(record.resource, answer, line_crm_ids=line_ids, online_url=previous_url)
    if record.action != "push" and record.state is not None:
        state = state.model_copy(update={"line_ids": record.state.line_ids})
    warnings = list(record.warnings)
    warnings += [w.get("Message", "") for w in answer.get("Warnings") or [] if w.get("Message")]
    expected = record.mapped.totals if record.mapped else None
    if expected is not None and state.total != expected.total:
        warnings.append(f"Xero computed a total of {state.total:,.2f}, the connector expected {expected.total:,.2f}")
    if record.action == "delete":
        warnings.append("cancelled in the CRM: deleted in Xero")
    elif record.action == "void":
        warnings.append("cancelled in the CRM: voided in Xero")
    if latest is not None and not is_newer(state, latest):
        state = latest  # a newer state stored meanwhile: the push never moves the record backwards
    else:
        run.answered.append((record.resource, answer))  # for the Xero Invoices module (_fill_invoice_records)
    mapping = Mapping(
        tenant_id=run.xero.tenant_id, module=record.module, crm_id=record.doc.crm_id, xero_id=state.xero_id,
        xero_number=state.number, payload_hash=record.digest or (record.mapping.payload_hash if record.mapping
                                                                  else None),
        crm_modified=record.doc.crm_modified, xero_updated=state.updated_utc,
        sync_status="warning" if warnings else "synced", last_error="; ".join(warnings) or None,
        document=state.model_dump(mode="json"), version=record.version)
    run.mappings.put_mapping(mapping)
    if record.entry:
        run.journal.confirmed(record.entry, state.xero_id)
    if record.accept_after or _wants_acceptance(record, state):
        accepted = _settle_acceptance(run, record, state, mapping, warnings)
        if accepted is None:
            return
        state = accepted
    run.succeed(record, state, warnings)


ACCEPTED = "ACCEPTED"
ACCEPT_STEP = "ACCEPT"  # the journal module suffix of a quote's move to ACCEPTED
# Quote statuses (../shared/reference/xero-api.md); the API reference lists them but not which
# moves it allows, so the least convenient reading holds, the path Xero's app offers (a quote is
# sent before it is accepted or declined; the emulator's QUOTE_TRANSITIONS): ACCEPTED from SENT only.
THROUGH_SENT = ("DRAFT", "DECLINED")


def _wants_acceptance(record: _Record, state: XeroDocumentState) -> bool:
    return (record.resource == "Quotes" and record.action == "push"
            and getattr(record.doc, "quote_status", None) == ACCEPTED and state.status != ACCEPTED)


def _settle_acceptance(run: _Run, record: _Record, state: XeroDocumentState, mapping: Mapping | Any,
                       warnings: list[str]) -> XeroDocumentState | None:
    """Quote → ACCEPTED as a journal step of its own (``{module}#ACCEPT``): recorded before the
    call, confirmed after, through SENT first where Xero requires it. Returns the accepted state
    (stored in the mapping), or None when the job was ended here: deferred (Xero busy: the message
    comes back and the step is retried) or failed visibly on the job and the CRM record (Xero
    refused the transition).

    An unconfirmed earlier attempt (the worker died after Xero's answer) reads the quote's Status
    in Xero first, so a transition Xero already made is never sent again."""
    module = f"{record.module}#{ACCEPT_STEP}"
    crm_id, quote_id = record.doc.crm_id, state.xero_id
    step = run.journal.load(module, [crm_id]).get(crm_id)
    current = state.status
    try:
        if step is not None and step.state in ("intent", "sent", "confirmed"):
            (quote,) = run.xero.get(f"Quotes/{quote_id}").get("Quotes") or [{}]
            current = str(quote.get("Status") or current).upper()
    except (XeroError, ConnectionNotReady) as error:
        return _acceptance_not_done(run, record, state, error)
    entry = Entry(module=module, crm_id=crm_id, resource="QuoteStatus",
                  body={"QuoteID": quote_id, "Status": ACCEPTED}, version=record.version,
                  job_ids=[i.job_id for i in record.items], intent=step)
    if current != ACCEPTED:
        entry.intent = None
        if run.journal.record([entry], f"quote-accept-{quote_id}-{content_hash(record.version or '')}"):
            run.finish_items(record.items, "ignored", warnings=[OLDER])
            return None
        common: dict[str, Any] = {"QuoteID": quote_id}
        if state.contact_id:  # Xero wants the contact and date on quote updates
            common["Contact"] = {"ContactID": state.contact_id}
        if state.date:
            common["Date"] = state.date.isoformat()
        path = (["SENT"] if current in THROUGH_SENT else []) + [ACCEPTED]
        try:
            for status in path:
                attempt = entry.intent.attempt if entry.intent else 0
                (answer,) = run.xero.upsert_batch("Quotes", [{**common, "Status": status}],
                                                  idempotency_key=f"quote-{quote_id}-{status.lower()}-{attempt}")
                refused = (answer.get("StatusAttributeString") or "OK").upper() == "ERROR"
                if refused or answer.get("HasValidationErrors"):
                    message = "; ".join(validation_messages(answer)) or "Xero refused the status change"
                    raise XeroError(message, status=400)
        except (XeroError, ConnectionNotReady) as error:
            run.journal.call_failed([entry], error)
            return _acceptance_not_done(run, record, state, error)
        run.crash.reached(XERO_ANSWERED)
    if entry.intent is not None and entry.intent.state != "confirmed":
        run.journal.confirmed(entry, quote_id)
    accepted = state.model_copy(update={"status": ACCEPTED})
    run.mappings.put_mapping(mapping.model_copy(update={"document": accepted.model_dump(mode="json")}))
    return accepted


def _acceptance_not_done(run: _Run, record: _Record, state: XeroDocumentState, error: Exception) -> None:
    if isinstance(error, ConnectionNotReady) or getattr(error, "retryable", False):
        run.defer(record.items, error, waiting_for=f"the Xero quote {state.number or state.xero_id} is pushed; "
                                                   "its move to ACCEPTED waits", xero=_job_xero(state))
    else:
        record.state = state
        run.fail(record, f"Xero quote {state.number or state.xero_id} is {state.status} in Xero and could not be "
                         f"moved to ACCEPTED ({error}); fix it in Xero, then replay the job")
    return None


def _credit(run: _Run, records: list[_Record], batch_size: int) -> None:
    """Paid documents cancelled in the CRM: a credit note for what was invoiced, allocated to
    what is still due. A credit note raised before (its own mapping) is never raised again."""
    credit_modules = {r.key: document_module(r.doc.crm_module, f"{r.target}CREDIT") for r in records}
    raised: dict[tuple[str, str], Mapping] = {}
    for module in set(credit_modules.values()):
        ids = [r.doc.crm_id for r in records if credit_modules[r.key] == module]
        for crm_id, mapping in run.mappings.get_mappings(run.xero.tenant_id, module, ids).items():
            raised[(module, crm_id)] = mapping
    fresh = []
    for record in records:
        earlier = raised.get((credit_modules[record.key], record.doc.crm_id))
        if earlier is not None:
            assert record.state is not None
            warnings = [f"credited earlier by Xero credit note {earlier.xero_number}"]
            # The allocation is a step of its own: one that did not land is retried now.
            if _settle_allocation(run, record, credit_modules[record.key], earlier.xero_id, earlier.xero_number,
                                  None, warnings):
                run.succeed(record, record.state, warnings)
        else:
            fresh.append(record)
    if not fresh:
        return
    try:
        # page=1: an IDs= list without page is a summary without LineItems (Xero's Invoices
        # documentation); unitdp=4 keeps 4-decimal unit prices, so the credit matches to the cent.
        invoices = {i["InvoiceID"]: i for i in run.xero.get_by_ids("Invoices", [r.state.xero_id for r in fresh
                                                                                if r.state],
                                                                   params=INVOICE_LINES)}
    except (XeroError, ConnectionNotReady) as error:
        _batch_failed(run, fresh, error)
        return
    for chunk in chunks(fresh, batch_size):
        _credit_chunk(run, chunk, invoices, credit_modules)


def _credit_chunk(run: _Run, chunk: list[_Record], invoices: dict[str, dict[str, Any]],
                  credit_modules: dict[Any, str]) -> None:
    """One chunk of credit notes: built from the invoices as Xero holds them, recovered and
    journalled, sent, then each one's state stored and its allocation settled."""
    ready = [r for r in chunk if r.state and r.state.xero_id in invoices]
    for record in chunk:
        if record not in ready:
            run.fail(record, "the Xero invoice to credit was not found")
    ready = _credit_note_bodies(run, ready, invoices, credit_modules)
    if not ready:
        return
    try:
        problems = run.journal.recover([r.entry for r in ready if r.entry],
                                       f"creditnotes-{content_hash([r.body for r in ready])}")
    except (XeroError, ConnectionNotReady) as error:
        _batch_failed(run, ready, error)
        return
    for record in ready:
        if id(record.entry) in problems:
            run.fail(record, problems[id(record.entry)])
    # A credit note an unconfirmed earlier attempt raised is taken as it is, never sent again.
    found = {id(r): r.entry.found for r in ready if r.entry and r.entry.found}
    to_send = [r for r in ready if id(r.entry) not in problems and id(r) not in found]
    settled = _send_credit_notes(run, to_send) + \
        [(r, {**found[id(r)], "StatusAttributeString": "OK"}) for r in ready if id(r) in found]
    run.held = []
    for record, answer in settled:
        _settle_credit_note(run, record, answer, credit_modules[record.key])
    run.crash.reached(STATE_WRITTEN)
    run.release()


def _credit_note_bodies(run: _Run, ready: list[_Record], invoices: dict[str, dict[str, Any]],
                        credit_modules: dict[Any, str]) -> list[_Record]:
    """Each record's credit note body and journal entry; a note that cannot be built fails its job."""
    built = []
    for record in ready:
        assert record.state is not None
        try:
            record.body = credit_note_body(record.state, invoices[record.state.xero_id])
        except DocumentRefused as error:
            run.fail(record, str(error))
            continue
        record.entry = Entry(module=credit_modules[record.key], crm_id=record.doc.crm_id, resource="CreditNotes",
                             body=record.body, version=record.version, job_ids=[i.job_id for i in record.items])
        built.append(record)
    return built


def _send_credit_notes(run: _Run, to_send: list[_Record]) -> list[tuple[_Record, dict[str, Any]]]:
    """Record the intents (an older save ends ignored), then one call; Xero's answer per record
    (none when the call failed: the records are deferred or failed by ``_batch_failed``)."""
    if not to_send:
        return []
    key = f"creditnotes-{content_hash([r.body for r in to_send])}"
    refused = run.journal.record([r.entry for r in to_send if r.entry], key)
    for record in [r for r in to_send if r.entry in refused]:
        run.finish_items(record.items, "ignored", warnings=[OLDER])
    to_send = [r for r in to_send if r.entry not in refused]
    if not to_send:
        return []
    if refused:  # another request than the one recorded: a key of its own
        key = f"creditnotes-{content_hash([r.body for r in to_send])}"
    try:
        answers = run.xero.upsert_batch("CreditNotes", [r.body for r in to_send], params=UNIT_DECIMALS,
                                        idempotency_key=key)
    except (XeroError, ConnectionNotReady) as error:
        run.journal.call_failed([r.entry for r in to_send if r.entry], error)
        _batch_failed(run, to_send, error)
        return []
    run.crash.reached(XERO_ANSWERED)
    return list(zip(to_send, answers, strict=True))


def _settle_credit_note(run: _Run, record: _Record, answer: dict[str, Any], module: str) -> None:
    """Store the credit note Xero answered (or fail the job with Xero's reasons), then allocate it."""
    assert record.state is not None
    note_id = answer.get("CreditNoteID")
    if (answer.get("StatusAttributeString") or "OK").upper() == "ERROR" or not note_id:
        message = "; ".join(validation_messages(answer)) or "no reason given"
        if record.entry:
            run.journal.failed(record.entry, message)
        run.fail(record, "Xero refused the credit note: " + message)
        return
    note = document_state("CreditNotes", answer)
    run.mappings.put_mapping(Mapping(
        tenant_id=run.xero.tenant_id, module=module, crm_id=record.doc.crm_id,
        xero_id=note.xero_id, xero_number=note.number, xero_updated=note.updated_utc,
        document=note.model_dump(mode="json"), version=record.version))
    if record.entry:
        run.journal.confirmed(record.entry, note.xero_id)
    warnings = [f"cancelled in the CRM after payment: credited by Xero credit note {note.number or note_id} "
                f"for {note.total:,.2f}"]
    if _settle_allocation(run, record, module, note_id, note.number, note.total, warnings):
        run.succeed(record, record.state, warnings)


ALLOCATION = "ALLOCATION"  # the journal module suffix of a credit note's allocation step


def _settle_allocation(run: _Run, record: _Record, note_module: str, note_id: str, note_number: str | None,
                       note_total: Decimal | None, warnings: list[str]) -> bool:
    """The credit note's allocation to what is still due on the invoice, as a journal step of
    its own (``{note module}#ALLOCATION``): recorded before the call, confirmed after. True when
    the job can succeed (allocated now or before, or nothing due); otherwise the job was ended
    here: deferred (Xero busy: the message comes back and this step is retried, the credit note
    is not raised again) or failed visibly on the job and the CRM record.

    An attempt left unconfirmed (the worker died after Xero's answer) is checked against the
    credit note's Allocations in Xero before anything is sent again: never allocated twice."""
    assert record.state is not None
    module = f"{note_module}#{ALLOCATION}"
    crm_id = record.doc.crm_id
    invoice_id = record.state.xero_id
    step = run.journal.load(module, [crm_id]).get(crm_id)
    if step is not None and step.state == "confirmed":
        return True
    allocate = getattr(run.xero, "allocate_credit_note", None)
    due = record.state.amount_due
    amount = min(due, note_total) if note_total is not None else due
    if amount <= 0:
        return True
    if allocate is None:
        warnings.append(f"allocate {amount:,.2f} of the credit note to the invoice in Xero")
        return True
    try:
        if step is not None or note_total is None:  # an earlier attempt, or a note raised before
            (note,) = run.xero.get(f"CreditNotes/{note_id}").get("CreditNotes") or [{}]
            applied = [a for a in note.get("Allocations") or []
                       if str((a.get("Invoice") or {}).get("InvoiceID", "")).lower() == invoice_id.lower()]
            if applied:
                if step is not None:
                    entry = Entry(module=module, crm_id=crm_id, resource="Allocations", body={}, intent=step)
                    run.journal.confirmed(entry, note_id)
                warnings.append(f"{amount:,.2f} of it allocated to what was still due")
                return True
            remaining = Decimal(str(note.get("RemainingCredit", amount)))
            amount = min(amount, remaining)
            if amount <= 0:
                return True
    except (XeroError, ConnectionNotReady) as error:
        return _allocation_not_done(run, record, note_number or note_id, amount, error)
    entry = Entry(module=module, crm_id=crm_id, resource="Allocations",
                  body={"CreditNoteID": note_id, "InvoiceID": invoice_id, "Amount": str(amount)},
                  version=record.version, job_ids=[i.job_id for i in record.items])
    if run.journal.record([entry], f"allocation-{note_id}-{invoice_id}"):
        run.finish_items(record.items, "ignored", warnings=[OLDER])
        return False
    try:
        allocate(note_id, invoice_id, amount, on=run.today)
    except (XeroError, ConnectionNotReady) as error:
        run.journal.call_failed([entry], error)
        return _allocation_not_done(run, record, note_number or note_id, amount, error)
    run.crash.reached(XERO_ANSWERED)
    run.journal.confirmed(entry, note_id)
    warnings.append(f"{amount:,.2f} of it allocated to what was still due")
    return True


def _allocation_not_done(run: _Run, record: _Record, note: str, amount: Decimal, error: Exception) -> bool:
    if isinstance(error, ConnectionNotReady) or getattr(error, "retryable", False):
        run.defer(record.items, error, waiting_for=f"Xero credit note {note} is raised; its allocation of "
                                                   f"{amount:,.2f} to the invoice waits", xero=_job_xero(record.state))
    else:
        run.fail(record, f"Xero credit note {note} was raised but could not be allocated to the invoice "
                         f"({error}); allocate {amount:,.2f} in Xero, then replay the job")
    return False


# ---- the use case --------------------------------------------------------------------------------
def push_documents(items: list[WorkItem], *, xero: XeroApi, jobs: JobStore, mappings: MappingStore,
                   crm: QuoteReader | None = None, config: MappingConfig | None = None,
                   tax_rates: MappingOf[str, Decimal] | None = None,
                   check_references: ReferenceCheck | None = None, today: dt.date | None = None,
                   batch_size: int = 50, crash: CrashPoints = NO_CRASH, job_tenant: str | None = None) -> BatchResult:
    """Work one batch of ``document.push`` and ``quote.push`` messages (see the module docstring).

    ``job_tenant``: ``xero``'s organisation when it is not the default one; the customers pushed
    there first then get jobs of their own stamped with it (``shared.usecases.organisations``).

    ``tax_rates`` (Xero TaxType → percent) and ``check_references`` (names account codes, tax
    types, tracking or currencies the organisation lacks) come from the cached organisation
    metadata when there is one."""
    config = config or mapping_file().for_tenant(xero.tenant_id)
    result = BatchResult()
    run = _Run(xero=xero, jobs=jobs, mappings=mappings, crm=crm, config=config, result=result, crash=crash,
               job_tenant=job_tenant)
    # ``today`` is the organisation's day (``OrganisationMetadata.today``); UTC only before the
    # first metadata refresh has read the organisation's timezone.
    run.today = today or dt.datetime.now(dt.UTC).date()
    records = _records(run, _parse(run, items))
    records = _settle_contacts(run, records, batch_size)
    to_send = _decide(run, records, tax_rates=tax_rates or {}, check_references=check_references,
                      today=run.today)
    _send(run, to_send, batch_size)
    _write_back(run)
    _fill_invoice_records(run)
    return result


def _fill_invoice_records(run: _Run) -> None:
    """The documents just written, as records of the CRM's Xero Invoices module at once (when it
    is enabled), from Xero's own answers: the same idempotent upsert by Xero id the webhook
    worker and reconcile make later (``shared.usecases.invoice_records``). What Sugar does not
    take now is left to them: the push itself is done, so nothing is retried for it."""
    if not run.config.xero_invoices.enabled or run.crm is None or not run.answered:
        return
    from shared.usecases.invoice_records import fill_invoice_records

    by_resource: dict[str, list[dict[str, Any]]] = {}
    for resource, answer in run.answered:
        by_resource.setdefault(resource, []).append(answer)
    for resource, answers in by_resource.items():
        try:
            report = fill_invoice_records(resource, answers, tenant_id=run.xero.tenant_id, crm=run.crm,
                                          mappings=run.mappings, config=run.config)
        except Exception as error:  # noqa: BLE001 - the push is done; the webhook or reconcile fills later
            logger.warning("Xero Invoices records not written at push time; the webhook or reconcile writes them",
                           extra={"resource": resource, "error": str(error)[:300]})
            continue
        if report.pending:
            logger.warning("Xero Invoices records not written at push time; the webhook or reconcile writes them",
                           extra={"resource": resource, "pending": dict(list(report.pending.items())[:10])})


def _write_back(run: _Run) -> None:
    report = write_back([outcome for _, outcome in run.outcomes.values()], crm=run.crm, config=run.config,
                        steps=Steps(run.mappings, run.xero.tenant_id))  # type: ignore[arg-type]
    # The jobs held for their write-back end now; one still waiting for Sugar stays queued and
    # its message comes back (the write-back is redone from the recorded step or the stored state).
    waiting = end_after_write_back(run.jobs, run.endings, report)
    for key in set(report.pending) | set(waiting):
        items = run.outcomes[key][0] if key in run.outcomes else []
        run.result.defer([item.message_id for item in items], WRITE_BACK_RETRY_SECONDS)
