"""The write-ahead journal: every document sent to Xero is recorded before it is sent.

Why: an ``Idempotency-Key`` is per request, and Xero keeps it only minutes. A worker that dies
after Xero created a chunk's documents but before their mappings were stored is redelivered
with a chunk of another composition (or hours later, by a replay), so the key cannot be what
stops a second create. The journal is: before a chunk is sent, each document's intent (its
identity: tenant + CRM module and Xero target + CRM id; the body hash, the chunk's
Idempotency-Key, the attempt number and the CRM version) is stored; after Xero's answer is in
the mapping, the intent is ``confirmed``. A later attempt that finds an intent neither confirmed
nor failed, for a document it would *create* (no Xero id known), first looks the document up in
Xero by a marker the connector put on it, and updates what it finds instead of creating.

States (``docs/exactly-once.md``): ``intent`` → ``confirmed`` | ``failed``, or ``sent`` when the
call ended without an answer the worker could read (Xero may have acted).

Markers, from Xero's API reference (``xero_accounting.yaml`` 16.1.0 field descriptions and
``../shared/reference/xero-api.md``); each is asked for as its resource's GET allows (``_candidates``):
- Contacts: ``ContactNumber`` = CRM id ("used to identify contacts in external systems", unique
  across all contacts, archived ones included). POST does NOT update by it (a second create is
  refused as a duplicate number), hence the lookup, with ``includeArchived``.
- Items: ``Code`` ("User defined item code", unique in the organisation).
- Sales invoices (ACCREC): ``InvoiceNumber`` when the CRM gives one ("Unique alpha numeric code
  identifying invoice"); otherwise ``Reference`` (ACCREC only), set by the connector to
  ``CRM <id>`` when the CRM gives no reference either (Xero then numbers the invoice itself).
- Bills (ACCPAY): ``InvoiceNumber``, the only reference field a bill has (``Reference`` is
  ACCREC only, and bill numbers are not unique), so the match is also on Type and ContactID,
  and the connector sets ``CRM <id>`` when the CRM gives no number.
- Credit notes: ``CreditNoteNumber`` when set (ACCPAYCREDIT: ``Cancels <invoice>``), else
  ``Reference`` (ACCRECCREDIT: ``Cancels <invoice>``); one credit note per cancelled invoice.
- Quotes: ``QuoteNumber`` (unique) else ``Reference``; purchase orders: ``PurchaseOrderNumber``
  (unique) else ``Reference``.
A marker that matches more than one live Xero record is never guessed at: the document fails
visibly, naming them.

Resending the identical request with its identical key is the cheaper path (one call, Xero
answers what it answered the first time), taken only when it is certainly safe: every document
that would need a lookup was last sent in exactly this request (same Idempotency-Key, so same
chunk composition and bodies) less than ``IDENTICAL_RESEND_SECONDS`` ago, well inside the
minutes Xero keeps a key. Otherwise (another composition, or later: SQS redelivers a crashed
batch only after its visibility timeout) the marker lookup runs, which works at any age.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from shared.errors import ConnectionNotReady, XeroError
from shared.ports import JournalStore, XeroApi
from shared.state.dynamo import now_iso
from shared.state.records import Intent
from shared.usecases.work import content_hash

T = TypeVar("T")

ID_FIELDS = {"Contacts": "ContactID", "Items": "ItemID", "Invoices": "InvoiceID", "CreditNotes": "CreditNoteID",
             "Quotes": "QuoteID", "PurchaseOrders": "PurchaseOrderID"}
NUMBER_FIELDS = {"Invoices": "InvoiceNumber", "CreditNotes": "CreditNoteNumber", "Quotes": "QuoteNumber",
                 "PurchaseOrders": "PurchaseOrderNumber"}
UNCONFIRMED = ("intent", "sent")
GONE = {"DELETED", "VOIDED"}
# How many markers one lookup carries is set by the length of its query string, as sent
# (percent-encoded). Xero documents no limit. What is reported: Xero's gateway answers 404 "The
# resource you're looking for cannot be found" (IIS "404.15: the query string is too long",
# XeroAPI/Xero-Net#280) past 52 GUIDs in IDs= with encoded commas plus &page=1, a 2,036-character
# query (XeroAPI/Xero-OpenAPI#534, XeroAPI/xero-node#404), and past 55 with raw commas, 2,038
# (XeroAPI/Xero-NetStandard#413): both fit IIS's default maxQueryString of 2,048. The connector
# stays at or under the longest query reported accepted; the emulator refuses past 2,048.
MAX_QUERY_CHARS = 2036
NUMBERS_PER_CALL = 50  # invoice numbers per InvoiceNumbers list (a page=1 answer holds 100)
# Xero keeps an Idempotency-Key "about 6 minutes" (../shared/reference/xero-api.md, unconfirmed):
# an identical request is resent under its key only well inside that.
IDENTICAL_RESEND_SECONDS = 60.0
XERO_PAGE_SIZE = 100  # Xero's page when pageSize is not taken (Quotes, PurchaseOrders)
MAX_LOOKUP_PAGES = 100  # bounds a marker search that must page (10,000 records)


def connector_marker(crm_id: str) -> str:
    return f"CRM {crm_id}"


def add_marker(resource: str, body: dict[str, Any], crm_id: str) -> None:
    """Give a document about to be created a marker when the CRM gave it none (see above)."""
    if resource in ("Contacts", "Items") or ID_FIELDS[resource] in body:
        return
    number = NUMBER_FIELDS[resource]
    if body.get(number) or body.get("Reference"):
        return
    if body.get("Type") in ("ACCPAY", "ACCPAYCREDIT"):
        body[number] = connector_marker(crm_id)
    else:
        body["Reference"] = connector_marker(crm_id)


def marker_of(resource: str, body: dict[str, Any]) -> tuple[str, str] | None:
    if resource == "Contacts":
        value = body.get("ContactNumber")
        return ("ContactNumber", str(value)) if value else None
    if resource == "Items":
        return ("Code", str(body["Code"])) if body.get("Code") else None
    if resource not in NUMBER_FIELDS:  # a follow-up step (an allocation): checked by its own reader
        return None
    number = NUMBER_FIELDS.get(resource)
    if number and body.get(number):
        return number, str(body[number])
    if body.get("Reference") and body.get("Type") not in ("ACCPAY", "ACCPAYCREDIT"):
        return "Reference", str(body["Reference"])
    return None


def query_length(params: dict[str, str]) -> int:
    """The query string's length as requests sends it (``urlencode``: spaces as ``+``)."""
    return len(urlencode(params))


def query_chunks(values: list[T], params_for: Callable[[list[T]], dict[str, str]], *,
                 most: int | None = None) -> Iterator[list[T]]:
    """``values`` in order, in the fewest consecutive chunks whose query (``params_for(chunk)``)
    fits in ``MAX_QUERY_CHARS``, and of at most ``most`` each. A value too long to share a query
    goes alone (Xero's own limits keep a single marker far below it)."""
    chunk: list[T] = []
    for value in values:
        longer = chunk + [value]
        if chunk and ((most is not None and len(longer) > most) or query_length(params_for(longer)) > MAX_QUERY_CHARS):
            yield chunk
            longer = [value]
        chunk = longer
    if chunk:
        yield chunk


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(eq=False)
class Entry:
    """One document of a chunk about to be sent. ``body`` is the use case's own dict: a found
    Xero id is written into it."""

    module: str
    crm_id: str
    resource: str
    body: dict[str, Any]
    version: str | None = None
    job_ids: list[str] = field(default_factory=list)
    intent: Intent | None = None
    found: dict[str, Any] | None = None  # the Xero record the marker found, as Xero listed it
    adopt: bool = False  # found, and made from exactly this body: Xero's record is the answer

    @property
    def creates(self) -> bool:
        return self.resource in ID_FIELDS and ID_FIELDS[self.resource] not in self.body


class Journal:
    """One worker run's view of the journal (read once per record, kept up to date)."""

    def __init__(self, store: JournalStore, xero: XeroApi):
        self.store, self.xero = store, xero
        self._known: dict[tuple[str, str], Intent | None] = {}
        self._resending: set[int] = set()  # entries ``recover`` left to an identical resend
        self.lookups = self.resends = 0

    def load(self, module: str, crm_ids: Iterable[str]) -> dict[str, Intent]:
        wanted = [i for i in dict.fromkeys(crm_ids) if (module, i) not in self._known]
        if wanted:
            found = self.store.get_intents(self.xero.tenant_id, module, wanted)
            for crm_id in wanted:
                self._known[(module, crm_id)] = found.get(crm_id)
        return {i: intent for i in crm_ids if (intent := self._known.get((module, i))) is not None}

    def is_older(self, module: str, crm_id: str, version: str | None) -> bool:
        """A newer CRM save of this record was already sent (or is being sent) to Xero."""
        intent = self.load(module, [crm_id]).get(crm_id)
        return bool(version and intent and intent.version and intent.version > version)

    # ---- before the call ---------------------------------------------------------------------
    def recover(self, entries: list[Entry], request_key: str | None = None) -> dict[int, str]:
        """For every entry that would create a document whose last intent is unconfirmed, find
        the document in Xero by its marker and turn the create into an update of it; unless all
        of them were sent moments ago in this very request (``request_key``, the key the chunk
        would be sent under now): then the identical resend is safe and costs no lookup.
        Returns problems by ``id(entry)`` (ambiguous markers); raises XeroError when the lookup
        fails."""
        self._resending = set()
        unconfirmed: list[tuple[Entry, Intent]] = []
        for entry in entries:
            intent = self.load(entry.module, [entry.crm_id]).get(entry.crm_id)
            if not entry.creates or intent is None or intent.state == "confirmed":
                continue
            if intent.found_id:
                # An earlier attempt found (or updated) this very record in Xero: update it by id, no
                # lookup. Also after a ``failed`` attempt: a 429 or a 4xx refusing the update does
                # not remove the record an earlier attempt made.
                entry.body[ID_FIELDS[entry.resource]] = intent.found_id
                continue
            if intent.state in UNCONFIRMED:
                unconfirmed.append((entry, intent))
        if request_key and any(ID_FIELDS.get(e.resource, "") in e.body for e in entries):
            # The request is sent with the key of the bodies as they are now (a found id added
            # above changes one): only that request's key says whether it was sent before.
            request_key = f"{request_key.rsplit('-', 1)[0]}-{content_hash([e.body for e in entries])}"
        if unconfirmed and request_key and all(
                intent.idempotency_key == request_key and _age_seconds(intent.updated_at) < IDENTICAL_RESEND_SECONDS
                for _, intent in unconfirmed):
            self.resends += 1
            self._resending = {id(entry) for entry, _ in unconfirmed}
            return {}
        return self._look_up([entry for entry, _ in unconfirmed])

    def _look_up(self, unconfirmed: list[Entry]) -> dict[int, str]:
        """Find each entry's document in Xero by its marker; a found one becomes an update of it
        (``adopt`` when made from this very body). Returns ambiguous markers by ``id(entry)``."""
        problems: dict[int, str] = {}
        by_field: dict[tuple[str, str], list[tuple[Entry, str]]] = {}
        for entry in unconfirmed:
            marker = marker_of(entry.resource, entry.body)
            if marker is None:
                continue
            by_field.setdefault((entry.resource, marker[0]), []).append((entry, marker[1]))
        for (resource, name), wanted in by_field.items():
            # Invoice numbers go in Xero's explicit InvoiceNumbers list, which the spec recommends
            # over OR-ed where terms (50 a call); other markers in where, as many as fit in the
            # query string Xero accepts (MAX_QUERY_CHARS).
            for chunk, found in self._candidates(resource, name, wanted):
                for entry, value in chunk:
                    matches = [c for c in found if _same_document(entry, name, value, c)]
                    if len(matches) > 1:
                        ids = ", ".join(str(c.get(ID_FIELDS[resource])) for c in matches)
                        problems[id(entry)] = (f"Xero holds {len(matches)} {resource} with {name} {value!r} "
                                               f"({ids}); the connector will not guess which one is this "
                                               "record's: remove the duplicate in Xero, then replay the job")
                    elif matches:
                        entry.found = matches[0]
                        intent = self.load(entry.module, [entry.crm_id])[entry.crm_id]
                        # Made from this very body: nothing to send again, Xero's record is the
                        # answer the crashed attempt never stored (a merged or archived contact
                        # is sent again, so that the usual rules apply to it).
                        entry.adopt = (content_hash(entry.body) == intent.body_hash
                                       and not matches[0].get("MergedToContactID")
                                       and matches[0].get("ContactStatus", "ACTIVE") == "ACTIVE")
                        if entry.adopt:
                            entry.intent = intent
                        else:
                            self._remember_found(entry, intent, matches[0][ID_FIELDS[resource]])
                        entry.body[ID_FIELDS[resource]] = matches[0][ID_FIELDS[resource]]
        return problems

    def _remember_found(self, entry: Entry, intent: Intent, xero_id: str) -> None:
        """Store the found Xero id on the intent at once, so that an attempt killed (or deferred)
        before its own intent is written updates it by id next time, without a second lookup.
        Conditional on the same attempt: a newer intent written meanwhile is never overwritten.
        (An adopted record needs no such note: its mapping is written before anything else runs.)"""
        if self.store.settle_intent(intent, intent.state, found_id=xero_id):
            self._known[(entry.module, entry.crm_id)] = intent.model_copy(update={"found_id": xero_id})

    def _candidates(self, resource: str, name: str, wanted: list[tuple[Entry, str]]
                    ) -> Iterable[tuple[list[tuple[Entry, str]], list[dict[str, Any]]]]:
        """Xero's records that may carry these markers, a chunk of markers at a time, asked the
        way each resource's GET allows (``xero_accounting.yaml`` 16.1.0). Xero ignores a parameter
        an operation does not take, so asking Quotes or PurchaseOrders with ``where`` would
        silently answer their first page only."""
        if resource == "Quotes":
            # GET /Quotes takes neither IDs nor where: it filters by QuoteNumber, or by ContactID
            for pair in wanted:
                if name == "QuoteNumber":
                    yield [pair], self._listing(resource, {"QuoteNumber": pair[1], "page": "1"})
                else:
                    contact = (pair[0].body.get("Contact") or {}).get("ContactID")
                    yield [pair], self._every_page(resource, {"ContactID": contact} if contact else {})
            return
        if resource == "PurchaseOrders":
            # GET /PurchaseOrders filters by no marker; GET /PurchaseOrders/{PurchaseOrderNumber}
            # (getPurchaseOrderByNumber) finds one by its number
            for pair in wanted:
                if name == "PurchaseOrderNumber":
                    yield [pair], self._one(f"PurchaseOrders/{quote(pair[1], safe='')}", resource)
                else:
                    yield [pair], self._every_page(resource, {})
            return
        listed = resource == "Invoices" and name == "InvoiceNumber" and not any("," in value for _, value in wanted)

        def params_for(chunk: list[tuple[Entry, str]]) -> dict[str, str]:
            params: dict[str, str]
            if listed:
                params = {"InvoiceNumbers": ",".join(dict.fromkeys(value for _, value in chunk))}
            else:
                params = {"where": " OR ".join(dict.fromkeys(f"{name}=={_quoted(value)}" for _, value in chunk))}
            if resource == "Contacts":
                params["includeArchived"] = "true"
            elif resource in NUMBER_FIELDS:
                params["page"] = "1"  # a page carries the documents' lines (their LineItemIDs)
            return params

        for chunk in query_chunks(wanted, params_for, most=NUMBERS_PER_CALL if listed else None):
            yield chunk, self._listing(resource, params_for(chunk))

    def _listing(self, resource: str, params: dict[str, str]) -> list[dict[str, Any]]:
        self.lookups += 1
        return self.xero.get(resource, params).get(resource) or []

    def _every_page(self, resource: str, params: dict[str, str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in range(1, MAX_LOOKUP_PAGES + 1):
            listing = self._listing(resource, {**params, "page": str(page)})
            found += listing
            if len(listing) < XERO_PAGE_SIZE:
                break
        return found

    def _one(self, path: str, resource: str) -> list[dict[str, Any]]:
        self.lookups += 1
        try:
            return self.xero.get(path).get(resource) or []
        except XeroError as error:
            if error.status == 404:  # "The resource you're looking for cannot be found"
                return []
            raise

    def record(self, entries: list[Entry], idempotency_key: str) -> list[Entry]:
        """Store each entry's intent before the call. Returns the entries refused because a
        newer save of the same record was intended meanwhile (newest wins; nothing is sent)."""
        refused = []
        for entry in entries:
            intent = self.store.record_intent(Intent(
                tenant_id=self.xero.tenant_id, module=entry.module, crm_id=entry.crm_id, resource=entry.resource,
                body_hash=content_hash(entry.body), idempotency_key=idempotency_key,
                marker_field=(marker_of(entry.resource, entry.body) or (None, None))[0],
                marker_value=(marker_of(entry.resource, entry.body) or (None, None))[1],
                version=entry.version, found_id=entry.body.get(ID_FIELDS.get(entry.resource, "")),
                job_ids=entry.job_ids, updated_at=now_iso()))
            if intent is None:
                refused.append(entry)
                self._known.pop((entry.module, entry.crm_id), None)  # read again when asked
                continue
            entry.intent = intent
            self._known[(entry.module, entry.crm_id)] = intent
        resending = [e for e in entries if id(e) in self._resending and e not in refused]
        if refused and resending:
            # The identical resend ``recover`` chose cannot happen: a newer save took one of its
            # documents out, so the rest go under another key, which Xero would run afresh and
            # create them twice. They are looked up by their markers instead.
            self._resending = set()
            problems = self._look_up(resending)
            if problems:
                raise XeroError("; ".join(problems.values()), retryable=True)
        return refused

    # ---- after the call ----------------------------------------------------------------------
    def _settle(self, entry: Entry, state: str, *, found_id: str | None = None, error: str | None = None) -> None:
        if entry.intent is None:
            return
        if self.store.settle_intent(entry.intent, state, found_id=found_id, error=error):
            entry.intent = entry.intent.model_copy(update={"state": state,
                                                           "found_id": found_id or entry.intent.found_id})
            self._known[(entry.module, entry.crm_id)] = entry.intent

    def confirmed(self, entry: Entry, xero_id: str) -> None:
        self._settle(entry, "confirmed", found_id=xero_id)

    def failed(self, entry: Entry, error: str) -> None:
        """Xero refused this document: nothing of this attempt exists in Xero."""
        self._settle(entry, "failed", error=error)

    def call_failed(self, entries: list[Entry], error: Exception) -> None:
        """The whole call failed: refused before Xero acted (429, 4xx) → failed; otherwise
        (5xx, timeout, connection lost) Xero may have acted → sent, and the next attempt looks."""
        status = getattr(error, "status", None)
        before_acting = isinstance(error, ConnectionNotReady) or (
            isinstance(error, XeroError) and status is not None and 400 <= int(status) < 500)
        for entry in entries:
            self._settle(entry, "failed" if before_acting else "sent", error=str(error))


def _utc_now() -> datetime:
    return datetime.now(UTC)  # the benchmark moves it on by SQS's visibility timeout at each crash


def _age_seconds(stamp: str | None) -> float:
    if not stamp:
        return float("inf")
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (_utc_now() - then).total_seconds()


def _same_document(entry: Entry, name: str, value: str, candidate: dict[str, Any]) -> bool:
    if str(candidate.get(name) or "").casefold() != value.casefold():
        return False
    if entry.resource == "Contacts" or entry.resource == "Items":
        return True
    if str(candidate.get("Status") or "").upper() in GONE:
        return False
    wanted_type = entry.body.get("Type")
    if wanted_type and candidate.get("Type") and candidate["Type"] != wanted_type:
        return False
    wanted_contact = (entry.body.get("Contact") or {}).get("ContactID")
    found_contact = (candidate.get("Contact") or {}).get("ContactID")
    return not (wanted_contact and found_contact and wanted_contact.lower() != found_contact.lower())
