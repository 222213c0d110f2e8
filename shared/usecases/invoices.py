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

Duplicates: the job id is a hash of the callout, the Idempotency-Key a hash of the batch, and the
mapping (CRM record → Xero document) makes a re-delivered or re-saved document an update of the
same Xero document, never a second one. A record's content hash makes an unchanged re-save free.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

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
from shared.usecases.work import BatchResult, WorkItem, content_hash, finish, requeue, retry_after_for
from shared.usecases.writeback import Outcome, write_back
from shared.xero.client import validation_messages

KIND_DOCUMENT = "document.push"
KIND_QUOTE = "quote.push"
KINDS = frozenset({KIND_DOCUMENT, KIND_QUOTE})
UNIT_DECIMALS = {"unitdp": "4"}  # unit prices keep 4 decimals instead of Xero's default 2
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

    @property
    def key(self) -> tuple[str, str]:
        return self.module, self.doc.crm_id


class _Run:
    def __init__(self, *, xero: XeroApi, jobs: JobStore, mappings: MappingStore, crm: QuoteReader | None,
                 config: MappingConfig, result: BatchResult):
        self.xero, self.jobs, self.mappings, self.crm = xero, jobs, mappings, crm
        self.config, self.result = config, result
        self.outcomes: dict[tuple[str, str], tuple[list[WorkItem], Outcome]] = {}

    # ---- endings ---------------------------------------------------------------------------
    def finish_items(self, items: Iterable[WorkItem], status: str, *, xero: dict[str, Any] | None = None,
                     error: str | None = None, warnings: list[str] | None = None) -> None:
        for index, item in enumerate(items):
            note = [] if index == 0 else ["a newer save of the same record in this batch was pushed"]
            finish(self.jobs, item.job_id, status, xero=xero, error=error, warnings=(warnings or []) + note)

    def fail(self, record: _Record, error: str, *, write_back_failure: bool = True) -> None:
        self.finish_items(record.items, "failed", xero=_job_xero(record.state), error=error,
                          warnings=record.warnings)
        if write_back_failure and record.doc.write_back:
            values = write_back_values(record.state) if record.state else {}
            self.outcomes[(record.doc.crm_module, record.doc.crm_id)] = (record.items, Outcome(
                module=record.doc.crm_module, crm_id=record.doc.crm_id, sync_status="failed",
                xero_id=record.state.xero_id if record.state else None, last_error=error, synced_at=now_iso(),
                values=values))

    def defer(self, items: list[WorkItem], error: Exception, retry_after: float | None = None) -> None:
        requeue(self.jobs, [i.job_id for i in items], error)
        self.result.defer([i.message_id for i in items], retry_after if retry_after is not None
                          else retry_after_for(error))

    def succeed(self, record: _Record, state: XeroDocumentState, warnings: list[str]) -> None:
        self.finish_items(record.items, "succeeded", xero=_job_xero(state), warnings=warnings)
        if record.doc.write_back:
            self.outcomes[(record.doc.crm_module, record.doc.crm_id)] = (record.items, Outcome(
                module=record.doc.crm_module, crm_id=record.doc.crm_id,
                sync_status="warning" if warnings else "synced", xero_id=state.xero_id,
                last_error="; ".join(warnings) if warnings else None, synced_at=now_iso(),
                values=write_back_values(state)))


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
        documents += [(item, doc, warnings) for doc in docs]
    return documents


def _push_missing_items(run: _Run, template_ids: list[str], codes: dict[str, str]) -> list[str]:
    """Items before the documents that use them, in one batch as across batches: the catalogue
    entries the quotes' lines name that Xero lacks are read from the CRM and pushed first; their
    codes join ``codes``. What cannot be pushed leaves its lines without a code, with notes why."""
    if not template_ids or run.crm is None:
        return []
    documents, notes = [], []
    for template_id in template_ids:
        try:
            record = run.crm.get_record(catalogue.MODULE, template_id)
            hook = ProductTemplateHook.model_validate({"bean": "ProductTemplate", "event": "after_save",
                                                       "data": record})
            documents.append(hook_to_item_document(hook))
        except (SugarError, ValidationError) as error:
            notes.append(f"product {template_id}: not read from the CRM's catalogue: {str(error)[:200]}")
    if not documents:
        return notes
    try:
        pushed, refused = catalogue.push_missing_items(documents, xero=run.xero, mappings=run.mappings)
    except (XeroError, ConnectionNotReady) as error:
        logger.warning("missing catalogue items not pushed", extra={"count": len(documents), "error": str(error)})
        return [*notes, f"the catalogue's missing items were not pushed: {error}"]
    codes.update(pushed)
    return notes + refused


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
                parsed.append((item, _DOCUMENT.validate_python(item.document), []))
        except ValidationError as error:
            finish(run.jobs, item.job_id, "failed", error=f"unreadable document: {error.errors()[:3]}")
    return parsed + _read_quotes(run, quotes)


def _records(run: _Run, parsed: list[tuple[WorkItem, TradeDocument, list[str]]]) -> list[_Record]:
    """One record per (CRM record, Xero target): the newest save wins, every job rides along.
    A quote can carry two documents (invoice and Xero quote): its job is finished by the last."""
    groups: dict[tuple[str, str], list[tuple[WorkItem, TradeDocument, list[str]]]] = {}
    for item, doc, warnings in parsed:
        resource, target = target_of(doc, run.config)
        groups.setdefault((document_module(doc.crm_module, target), doc.crm_id), []).append((item, doc, warnings))
    records = []
    for (module, _), group in groups.items():
        group.sort(key=lambda entry: entry[1].crm_modified or "", reverse=True)
        newest = group[0][1]
        resource, target = target_of(newest, run.config)
        unique = list({item.message_id: item for item, _, _ in group}.values())
        records.append(_Record(items=unique, doc=newest,
                               resource=resource, target=target, module=module, warnings=list(group[0][2])))
    by_module: dict[str, list[_Record]] = {}
    for record in records:
        by_module.setdefault(record.module, []).append(record)
    for module, members in by_module.items():
        found = run.mappings.get_mappings(run.xero.tenant_id, module, [r.doc.crm_id for r in members])
        for record in members:
            record.mapping = found.get(record.doc.crm_id)
            record.state = _stored_state(record.mapping)
    return records


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
    known: dict[tuple[str, str], str] = {}
    for module in {m for m, _ in keys}:
        for crm_id, mapping in run.mappings.get_mappings(run.xero.tenant_id, module,
                                                         [i for m, i in keys if m == module]).items():
            known[(module, crm_id)] = mapping.xero_id
    missing = sorted(key for key in keys if key not in known)
    problems: dict[tuple[str, str], str] = {}
    deferred: dict[tuple[str, str], tuple[Exception, float | None]] = {}
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
            payload = document.model_dump(mode="json")
            job_id = job_id_for(contacts.KIND, payload)
            stamp = now_iso()
            run.jobs.create_job(Job(job_id=job_id, status="queued", kind=contacts.KIND,
                                    crm=CrmRef(module=document.crm_module, id=document.crm_id),
                                    created_at=stamp, updated_at=stamp),
                                {"job_id": job_id, "kind": contacts.KIND, "document": payload})
            items.append(WorkItem(message_id=f"contact:{job_id}", job_id=job_id, kind=contacts.KIND, document=payload))
        if items:
            outcome = contacts.sync_contacts(items, xero=run.xero, jobs=run.jobs, mappings=run.mappings,
                                             batch_size=batch_size, config=run.config, crm=run.crm)
            pushed = {(i.document["crm_module"], i.document["crm_id"]): i for i in items}
            found: dict[tuple[str, str], str] = {}
            for module in {m for m, _ in pushed}:
                for crm_id, mapping in run.mappings.get_mappings(run.xero.tenant_id, module,
                                                                 [i for m, i in pushed if m == module]).items():
                    found[(module, crm_id)] = mapping.xero_id
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


# ---- step 3/4: mapping and deciding --------------------------------------------------------------
def _decide(run: _Run, records: list[_Record], *, tax_rates: MappingOf[str, Decimal],
            check_references: ReferenceCheck | None, today: dt.date) -> list[_Record]:
    to_send: list[_Record] = []
    credit_with_payments = run.config.invoices.cancel_with_payments == "credit_note"
    for record in records:
        if record.doc.cancelled:
            if record.state is None:
                run.finish_items(record.items, "ignored",
                                 warnings=["cancelled in the CRM before it was ever pushed: nothing to end in Xero"])
                continue
            action, why = cancellation(record.state, credit_with_payments=credit_with_payments)
            if action == "done":
                run.succeed(record, record.state, [why or "already ended in Xero"])
            elif action == "refuse":
                run.fail(record, why or "cannot be ended in Xero")
            elif action == "credit_note":
                record.action = action
                to_send.append(record)
            else:
                record.action = action
                status = "DELETED" if action == "delete" else "VOIDED"
                record.body = {ID_FIELDS[record.resource]: record.state.xero_id, "Status": status}
                if record.resource != "Invoices":  # Xero wants the contact and date on quote and order updates
                    if record.state.contact_id:
                        record.body["Contact"] = {"ContactID": record.state.contact_id}
                    if record.state.date:
                        record.body["Date"] = record.state.date.isoformat()
                to_send.append(record)
            continue
        assert record.contact_id is not None
        record.digest = _document_digest(record.doc, record.contact_id)
        if record.mapping and record.mapping.payload_hash == record.digest and record.state is not None:
            _unchanged(run, record)
            continue
        if record.state is not None and record.state.locked:
            run.fail(record, _locked_message(record.state))
            continue
        try:
            record.mapped = to_xero_document(record.doc, run.config, contact_id=record.contact_id,
                                             existing=record.state, tax_rates=tax_rates, today=today)
        except DocumentRefused as error:
            run.fail(record, str(error))
            continue
        problems = check_references(record.mapped.body) if check_references else []
        if problems:
            run.fail(record, "not sent: " + "; ".join(problems))
            continue
        record.body = record.mapped.body
        record.warnings += record.mapped.warnings
        to_send.append(record)
    return to_send


def _locked_message(state: XeroDocumentState) -> str:
    what = f"Xero {state.target} {state.number or state.xero_id}"
    if state.has_payments:
        reason = f"has payments applied ({state.amount_paid:,.2f} paid)"
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
    note = "xero done earlier: crm write-back retried" if pending else \
        "unchanged since the last push: nothing sent to Xero"
    run.finish_items(record.items, "succeeded", xero=_job_xero(record.state), warnings=[note])
    if pending and record.doc.write_back and record.mapping:
        run.outcomes[(record.doc.crm_module, record.doc.crm_id)] = (record.items, Outcome(
            module=record.doc.crm_module, crm_id=record.doc.crm_id, sync_status=record.mapping.sync_status,
            xero_id=record.state.xero_id, last_error=record.mapping.last_error,
            synced_at=record.mapping.updated_at, values=write_back_values(record.state)))


# ---- step 5: sending -------------------------------------------------------------------------------
def _chunks(values: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _send(run: _Run, records: list[_Record], batch_size: int) -> None:
    by_resource: dict[str, list[_Record]] = {}
    for record in records:
        if record.action == "credit_note":
            continue
        by_resource.setdefault(record.resource, []).append(record)
    for resource, members in by_resource.items():
        for chunk in _chunks(members, batch_size):
            bodies = [r.body for r in chunk]
            try:
                answers = run.xero.upsert_batch(resource, bodies, params=UNIT_DECIMALS,
                                                idempotency_key=f"{resource.lower()}-{content_hash(bodies)}")
            except (XeroError, ConnectionNotReady) as error:
                _batch_failed(run, chunk, error)
                continue
            latest = _latest_states(run, chunk)
            for record, answer in zip(chunk, answers, strict=True):
                _record_answer(run, record, answer, latest.get(record.key))
    credits = [r for r in records if r.action == "credit_note"]
    if credits:
        _credit(run, credits, batch_size)


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
    run.mappings.put_mapping(Mapping(
        tenant_id=run.xero.tenant_id, module=record.module, crm_id=record.doc.crm_id, xero_id=state.xero_id,
        xero_number=state.number, payload_hash=record.digest or (record.mapping.payload_hash if record.mapping
                                                                  else None),
        crm_modified=record.doc.crm_modified, xero_updated=state.updated_utc,
        sync_status="warning" if warnings else "synced", last_error="; ".join(warnings) or None,
        document=state.model_dump(mode="json")))
    run.succeed(record, state, warnings)


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
            run.succeed(record, record.state, [f"credited earlier by Xero credit note {earlier.xero_number}"])
        else:
            fresh.append(record)
    if not fresh:
        return
    try:
        invoices = {i["InvoiceID"]: i for i in run.xero.get_by_ids("Invoices", [r.state.xero_id for r in fresh
                                                                                if r.state])}
    except (XeroError, ConnectionNotReady) as error:
        _batch_failed(run, fresh, error)
        return
    for chunk in _chunks(fresh, batch_size):
        ready = [r for r in chunk if r.state and r.state.xero_id in invoices]
        for record in chunk:
            if record not in ready:
                run.fail(record, "the Xero invoice to credit was not found")
        if not ready:
            continue
        bodies = [credit_note_body(r.state, invoices[r.state.xero_id]) for r in ready]  # type: ignore[union-attr]
        try:
            answers = run.xero.upsert_batch("CreditNotes", bodies, params=UNIT_DECIMALS,
                                            idempotency_key=f"creditnotes-{content_hash(bodies)}")
        except (XeroError, ConnectionNotReady) as error:
            _batch_failed(run, ready, error)
            continue
        for record, answer in zip(ready, answers, strict=True):
            assert record.state is not None
            note_id = answer.get("CreditNoteID")
            if (answer.get("StatusAttributeString") or "OK").upper() == "ERROR" or not note_id:
                run.fail(record, "Xero refused the credit note: " + ("; ".join(validation_messages(answer))
                                                                    or "no reason given"))
                continue
            note = document_state("CreditNotes", answer)
            run.mappings.put_mapping(Mapping(
                tenant_id=run.xero.tenant_id, module=credit_modules[record.key], crm_id=record.doc.crm_id,
                xero_id=note.xero_id, xero_number=note.number, xero_updated=note.updated_utc,
                document=note.model_dump(mode="json")))
            warnings = [f"cancelled in the CRM after payment: credited by Xero credit note {note.number or note_id} "
                        f"for {note.total:,.2f}"]
            due = record.state.amount_due
            if due > 0:
                warnings.append(_allocate(run, note_id, record.state, min(due, note.total)))
            run.succeed(record, record.state, warnings)


def _allocate(run: _Run, credit_note_id: str, invoice: XeroDocumentState, amount: Decimal) -> str:
    allocate = getattr(run.xero, "allocate_credit_note", None)
    if allocate is None:
        return f"allocate {amount:,.2f} of the credit note to the invoice in Xero"
    try:
        allocate(credit_note_id, invoice.xero_id, amount)
    except (XeroError, ConnectionNotReady) as error:
        return f"the credit note could not be allocated to the invoice ({error}); allocate {amount:,.2f} in Xero"
    return f"{amount:,.2f} of it allocated to what was still due"


# ---- the use case --------------------------------------------------------------------------------
def push_documents(items: list[WorkItem], *, xero: XeroApi, jobs: JobStore, mappings: MappingStore,
                   crm: QuoteReader | None = None, config: MappingConfig | None = None,
                   tax_rates: MappingOf[str, Decimal] | None = None,
                   check_references: ReferenceCheck | None = None, today: dt.date | None = None,
                   batch_size: int = 50) -> BatchResult:
    """Work one batch of ``document.push`` and ``quote.push`` messages (see the module docstring).

    ``tax_rates`` (Xero TaxType → percent) and ``check_references`` (names account codes, tax
    types, tracking or currencies the organisation lacks) come from the cached organisation
    metadata when there is one."""
    config = config or mapping_file().for_tenant(xero.tenant_id)
    result = BatchResult()
    run = _Run(xero=xero, jobs=jobs, mappings=mappings, crm=crm, config=config, result=result)
    records = _records(run, _parse(run, items))
    records = _settle_contacts(run, records, batch_size)
    to_send = _decide(run, records, tax_rates=tax_rates or {}, check_references=check_references,
                      today=today or dt.date.today())
    _send(run, to_send, batch_size)
    _write_back(run)
    return result


def _write_back(run: _Run) -> None:
    report = write_back([outcome for _, outcome in run.outcomes.values()], crm=run.crm, config=run.config)
    for key, error in report.pending.items():
        items = run.outcomes[key][0]
        for item in items:
            job = run.jobs.get_job(item.job_id)
            run.jobs.update_job(item.job_id,
                                warnings=[*(job.warnings if job else []), f"{WRITE_BACK_PENDING}: {error}"])
        run.result.defer([item.message_id for item in items], WRITE_BACK_RETRY_SECONDS)
    for key, error in report.failed.items():
        for item in run.outcomes[key][0]:
            job = run.jobs.get_job(item.job_id)
            run.jobs.update_job(item.job_id, warnings=[*(job.warnings if job else []),
                                                       f"crm write-back refused: {error}"])
