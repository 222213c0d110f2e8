"""CRM customers → Xero contacts, in batches of up to 50 per call.

Matching, cheapest first: the stored mapping (update by ContactID), then ContactNumber = CRM id
(Xero's POST matches it itself). Only elements Xero refuses because the name is taken are
looked up, together: one ``GET /Contacts`` with a ``where`` OR-list per 25 records, by name,
account number and email. The contact holding the name is linked when its account number or
email confirms it is the same party; otherwise the configured ``name_conflict`` policy applies.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shared.chunking import chunks
from shared.errors import ConnectionNotReady, XeroError
from shared.mapping.settings import MappingConfig, mapping_file
from shared.mapping.xero_contacts import same_person, to_xero_contact, to_xero_person
from shared.models.documents import ContactDocument
from shared.observability import logger
from shared.ports import JobStore, MappingStore, XeroApi
from shared.state.records import Mapping
from shared.usecases.crash import NO_CRASH, STATE_WRITTEN, XERO_ANSWERED, CrashPoints
from shared.usecases.journal import Entry, Journal, query_chunks
from shared.usecases.versions import OLDER, SUPERSEDED, newest_per_record, version_of
from shared.usecases.work import BatchResult, WorkItem, content_hash, finish, requeue, retry_after_for
from shared.usecases.writeback import (
    WRITE_BACK_PENDING,
    CrmWriter,
    JobEnding,
    Outcome,
    Steps,
    end_after_write_back,
    step_module,
    unfinished_step,
    write_back,
    write_back_owed,
)
from shared.xero.client import validation_messages

KIND = "contact.upsert"
LOOKUPS_PER_CALL = 25
WRITE_BACK_RETRY_SECONDS = 120.0
MAX_ROUNDS = 3
# A Sugar Contact whose Account is not in Xero yet waits for it. The Account is usually being
# pushed at that very moment (saved together, delivered in another batch), so the first waits are
# short and grow with each delivery: 2, 4, 8 ... s, at most ACCOUNT_WAIT_SECONDS, so that the
# queue's maxReceiveCount (8) still covers an Account held up for minutes (e.g. Xero's 429s).
ACCOUNT_WAIT_FIRST_SECONDS = 2.0
ACCOUNT_WAIT_SECONDS = 60.0


def account_wait_seconds(receive_count: int) -> float:
    return min(ACCOUNT_WAIT_SECONDS, ACCOUNT_WAIT_FIRST_SECONDS * 2 ** max(0, receive_count - 1))
MAX_PERSONS = 5  # Xero keeps at most five contact persons on a contact
PERSONS_MODULE = "Accounts.Persons"  # per Account: the emails of the persons the connector pushed

Key = tuple[str, str]
Group = list[tuple[WorkItem, ContactDocument]]


def _newest_per_record(jobs: JobStore, items: list[tuple[WorkItem, ContactDocument]]
                       ) -> tuple[dict[Key, Group], dict[Key, str | None]]:
    """One Xero write per record per batch: the newest save (``shared.usecases.versions``) and
    the jobs that carry that same save; older saves' jobs end ``ignored`` (superseded)."""
    versions = {id(pair): version_of(pair[1].crm_modified, None if pair[1].crm_modified else
                                     _received_at(jobs, pair[0])) for pair in items}
    grouped = newest_per_record(items, key=lambda pair: (pair[1].crm_module, pair[1].crm_id),
                                version=lambda pair: versions[id(pair)])
    groups: dict[Key, Group] = {}
    newest: dict[Key, str | None] = {}
    for key, group in grouped.items():
        doc = group[0][1]
        groups[key] = [pair for pair in group if pair[1] == doc]
        newest[key] = versions[id(group[0])]
        kept = {item.message_id for item, _ in groups[key]}
        for item, _ in group:
            if item.message_id not in kept:
                finish(jobs, item.job_id, "ignored", warnings=[SUPERSEDED])
    return groups, newest


def _received_at(jobs: JobStore, item: WorkItem) -> str | None:
    job = jobs.get_job(item.job_id)
    return job.created_at if job else None


# ---- name matching ---------------------------------------------------------------------------
_LEGAL_WORDS = {"limited": "ltd", "incorporated": "inc", "corporation": "corp", "company": "co"}
_LEGAL_SUFFIX_TOKENS = {"pte", "ltd", "pty", "inc", "corp", "co", "llc", "plc", "gmbh", "sdn", "bhd",
                        "llp", "lp", "l.l.c", "bv", "ag", "sa", "srl", "kk"}


def normalised_name(name: str) -> str:
    """A conservative comparison key: "Acme Pte. Ltd." and "ACME  pte ltd" are alike; nothing
    but case, whitespace, HTML entities, trailing punctuation and legal-suffix spelling."""
    text = " ".join(html.unescape(name).casefold().split())
    text = text.rstrip(" .,;:!")
    words = text.split(" ")
    # Walk back over the legal suffix only: dots and commas there are spelling, not identity.
    index = len(words)
    while index > 1:
        bare = words[index - 1].strip(".,")
        bare = _LEGAL_WORDS.get(bare, bare)
        if bare.replace(".", "") not in {t.replace(".", "") for t in _LEGAL_SUFFIX_TOKENS}:
            break
        words[index - 1] = bare.replace(".", "")
        index -= 1
    if index < len(words):
        words[index - 1] = words[index - 1].rstrip(",")
    return " ".join(words)


def disambiguated_name(name: str, crm_id: str) -> str:
    """``<name> (<short CRM ref>)``, at most 255 characters, the same every time."""
    suffix = f" ({crm_id[:8]})"
    return name[:255 - len(suffix)].rstrip() + suffix


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_number_taken(messages: list[str]) -> bool:
    """Xero's refusal of a ContactNumber another contact holds ("The contact number … is already
    assigned to another contact. The contact number must be unique across all contacts.")."""
    return any("contact number" in m.lower() and "already" in m.lower() for m in messages)


def _is_name_taken(messages: list[str]) -> bool:
    """Xero's refusal of a name another active contact holds; a ContactNumber clash is not one."""
    return any("name" in m.lower() and "already" in m.lower() and "contact number" not in m.lower()
               for m in messages)


def _same(a: Any, b: Any) -> bool:
    return bool(a) and bool(b) and str(a).strip().casefold() == str(b).strip().casefold()


def _iso(xero_date: Any) -> str:
    """Xero's ``/Date(ms+0000)/`` or ISO text → ISO-8601 UTC; now when Xero gave none."""
    text = str(xero_date or "")
    match = re.match(r"/Date\((-?\d+)", text)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC).isoformat(timespec="seconds")
    return text or datetime.now(UTC).isoformat(timespec="seconds")


class _Pending:
    """One record on its way to Xero: the body being sent and what happened so far."""

    def __init__(self, key: Key, group: Group, body: dict[str, Any], digest: str, version: str | None = None):
        self.key, self.group, self.body, self.digest = key, group, body, digest
        self.version = version
        self.warnings: list[str] = []
        self.followed = False
        self.entry: Entry | None = None
        self.number: str | None = None  # what the mapping keeps as xero_number (a person's email)

    @property
    def doc(self) -> ContactDocument:
        return self.group[0][1]


def sync_contacts(items: list[WorkItem], *, xero: XeroApi, jobs: JobStore, mappings: MappingStore,
                  batch_size: int = 50, config: MappingConfig | None = None,
                  crm: CrmWriter | None = None, crash: CrashPoints = NO_CRASH) -> BatchResult:
    config = config or mapping_file().for_tenant(xero.tenant_id)
    run = _Run(xero, jobs, mappings, config, crash)
    run.writes_back = config.write_back.enabled and crm is not None
    parsed: list[tuple[WorkItem, ContactDocument]] = []
    for item in items:
        jobs.start_attempt(item.job_id)
        try:
            parsed.append((item, ContactDocument.model_validate(item.document)))
        except ValidationError as error:
            finish(jobs, item.job_id, "failed", error=f"unreadable document: {error.errors()[:3]}")

    groups, versions = _newest_per_record(jobs, parsed)
    known: dict[Key, Mapping] = {}
    for module in {module for module, _ in groups}:
        ids = [crm_id for (m, crm_id) in groups if m == module]
        for crm_id, mapping in mappings.get_mappings(xero.tenant_id, module, ids).items():
            known[(module, crm_id)] = mapping
        run.journal.load(module, ids)
        if config.write_back.enabled and crm is not None:  # unfinished write-back steps, one read
            run.journal.load(step_module(module), [i for i in ids if (module, i) in known])
    for key in [k for k in groups if run.journal.is_older(k[0], k[1], versions[k])]:
        for item, _ in groups.pop(key):
            finish(jobs, item.job_id, "ignored", warnings=[OLDER])

    person_groups = {key: group for key, group in groups.items()
                     if config.contacts.sugar_contacts_as == "contact_persons"
                     and key[0] == "Contacts" and group[0][1].parent_crm_id}
    to_send: list[_Pending] = []
    for key, group in groups.items():
        pending = _decide(run, key, group, known.get(key), versions[key], person_groups)
        if pending is not None:
            to_send.append(pending)

    result = BatchResult()
    # Round one is the plain batch POST; later rounds carry only what Xero refused or what
    # must be re-sent (restored, merged, linked, renamed). Bounded: each step happens once.
    for _ in range(MAX_ROUNDS):
        to_send = run.resolve(run.send(to_send, batch_size, result))
        if not to_send:
            break
    for pending in to_send:
        run.fail(pending, f"Xero: the contact could not be settled in {MAX_ROUNDS} rounds")
    if person_groups:
        # After the organisations: an Account pushed in this batch is mapped by now.
        _sync_persons(run, person_groups, known, batch_size, result)

    report = write_back([outcome for _, outcome in run.outcomes.values()], crm=crm, config=config,
                        steps=Steps(mappings, xero.tenant_id))  # type: ignore[arg-type]
    # The jobs held for their write-back end now (``shared.usecases.writeback``); one still
    # waiting for Sugar stays queued and its message comes back.
    waiting = end_after_write_back(jobs, run.endings, report)
    for key in set(report.pending) | set(waiting):
        group = run.outcomes[key][0] if key in run.outcomes else []
        result.defer([item.message_id for item, _ in group], WRITE_BACK_RETRY_SECONDS)
    return result


def _decide(run: _Run, key: Key, group: Group, mapping: Mapping | None, version: str | None,
            person_groups: dict[Key, Group]) -> _Pending | None:
    """What one record needs: nothing (deletion ignored, an erasure of a record never pushed,
    unchanged), its persons' round (``person_groups``), or a contact body to send."""
    config, doc = run.config, group[0][1]
    if doc.deleted and config.contacts.on_crm_delete == "ignore":
        person_groups.pop(key, None)
        for item, _ in group:
            finish(run.jobs, item.job_id, "ignored",
                   warnings=["deleted in the CRM; on_crm_delete is 'ignore': Xero left as it is"])
        return None
    if doc.erased and mapping is None:
        person_groups.pop(key, None)
        for item, _ in group:
            finish(run.jobs, item.job_id, "ignored", warnings=[
                "a Data Privacy erasure in the CRM of a record never pushed: nothing in Xero to erase"])
        return None
    if key in person_groups:
        return None
    body = to_xero_contact(doc)
    if doc.erased and config.contacts.on_erasure == "archive":
        body["ContactStatus"] = "ARCHIVED"
    digest = content_hash(body)
    if mapping and mapping.payload_hash == digest:
        _unchanged(run, key, group, mapping)
        return None
    if mapping:
        body = {**to_xero_contact(doc, xero_contact_id=mapping.xero_id),
                **({"ContactStatus": body["ContactStatus"]} if "ContactStatus" in body else {})}
    pending = _Pending(key, group, body, digest, version)
    if doc.erased:
        pending.warnings.append(
            f"Data Privacy erasure in the CRM: {', '.join(doc.erased)} erased on the Xero contact"
            + (" and the contact archived" if body.get("ContactStatus") == "ARCHIVED" else "")
            + "; its invoices and payments are kept")
    return pending


def _unchanged(run: _Run, key: Key, group: Group, mapping: Mapping) -> None:
    """Nothing to send to Xero. Only a message whose write-back is still pending writes back
    again, from the stored outcome (the same values): a fresh save that changed nothing Xero
    sees writes nothing, so the connector's own write-back can never start a loop."""
    pending_write_back = False
    for item, _ in group:
        job = run.jobs.get_job(item.job_id)
        pending_write_back |= bool(job and any(WRITE_BACK_PENDING in w for w in job.warnings))
    # a write-back step recorded and never confirmed (the worker died during the Sugar call)
    recorded = unfinished_step(run.journal, key[0], key[1]) if run.config.write_back.enabled else None
    pending_write_back |= recorded is not None
    # never written back (the worker died between the state write and the write-back)
    pending_write_back |= run.writes_back and write_back_owed(run.journal, key[0], key[1])
    note = "xero done earlier: crm write-back retried" if pending_write_back else \
        "unchanged since the last push: nothing sent to Xero"
    for item, _ in group:
        if pending_write_back and run.writes_back:
            run.endings.setdefault(key, []).append(JobEnding(item.job_id, "succeeded",
                                                             xero={"contact_id": mapping.xero_id}, warnings=[note]))
        else:
            finish(run.jobs, item.job_id, "succeeded", xero={"contact_id": mapping.xero_id}, warnings=[note])
    if pending_write_back:
        run.outcomes[key] = (group, Outcome(module=key[0], crm_id=key[1], xero_id=mapping.xero_id,
                                            sync_status=mapping.sync_status or "synced",
                                            last_error=mapping.last_error,
                                            synced_at=_iso(mapping.xero_updated), recorded=recorded))


class _Run:
    def __init__(self, xero: XeroApi, jobs: JobStore, mappings: MappingStore, config: MappingConfig,
                 crash: CrashPoints = NO_CRASH):
        self.xero, self.jobs, self.mappings, self.config = xero, jobs, mappings, config
        self.crash = crash
        self.journal = Journal(mappings, xero)  # type: ignore[arg-type]
        self.held: list[tuple[str, str, dict[str, Any]]] | None = None
        self.outcomes: dict[Key, tuple[Group, Outcome]] = {}
        # Job endings waiting for their record's write-back (never marked final before it ran).
        self.endings: dict[Key, list[JobEnding]] = {}
        self.writes_back = False  # set by sync_contacts: a CRM and write-back configured
        self.conflicts: list[tuple[_Pending, list[str]]] = []
        self.broken_links: list[tuple[_Pending, list[str]]] = []
        self.number_clashes: list[tuple[_Pending, list[str]]] = []

    # ---- sending ---------------------------------------------------------------------------
    def send(self, pendings: list[_Pending], batch_size: int, result: BatchResult) -> list[_Pending]:
        """POST in batches; returns the records that need another round (archived, merged)."""
        again: list[_Pending] = []
        for chunk in chunks(pendings, batch_size):
            chunk = self._journal_chunk(chunk, result)
            if not chunk:
                continue
            bodies = [p.body for p in chunk]
            chunk_items = [item for p in chunk for item, _ in p.group]
            try:
                answers = self.xero.upsert_batch("Contacts", bodies,
                                                 idempotency_key=f"contacts-{content_hash(bodies)}")
            except (XeroError, ConnectionNotReady) as error:
                self.journal.call_failed([p.entry for p in chunk if p.entry], error)
                if isinstance(error, ConnectionNotReady) or error.retryable:
                    logger.warning("Xero batch deferred", extra={"size": len(bodies), "error": str(error)})
                    requeue(self.jobs, [i.job_id for i in chunk_items], error)
                    result.defer([i.message_id for i in chunk_items], retry_after_for(error))
                else:
                    for pending in chunk:
                        self.fail(pending, str(error))
                continue
            self.crash.reached(XERO_ANSWERED)
            self.held = []
            for pending, answer in zip(chunk, answers, strict=True):
                if self._answer(pending, answer):
                    again.append(pending)
            self.crash.reached(STATE_WRITTEN)
            self.release()
        return again

    def _journal_chunk(self, chunk: list[_Pending], result: BatchResult) -> list[_Pending]:
        """Record each contact's intent before the call; a contact whose earlier attempt was
        never confirmed is first looked up by ContactNumber (``shared.usecases.journal``)."""
        for pending in chunk:
            pending.entry = Entry(module=pending.key[0], crm_id=pending.key[1], resource="Contacts",
                                  body=pending.body, version=pending.version,
                                  job_ids=[item.job_id for item, _ in pending.group])
        try:
            problems = self.journal.recover([p.entry for p in chunk if p.entry],
                                            f"contacts-{content_hash([p.body for p in chunk])}")
        except (XeroError, ConnectionNotReady) as error:
            items = [item for p in chunk for item, _ in p.group]
            if isinstance(error, ConnectionNotReady) or error.retryable:
                requeue(self.jobs, [i.job_id for i in items], error)
                result.defer([i.message_id for i in items], retry_after_for(error))
            else:
                for pending in chunk:
                    self.fail(pending, f"Xero: looking the contact up failed: {error}")
            return []
        for pending in chunk:
            if id(pending.entry) in problems:
                self.fail(pending, problems[id(pending.entry)])
        chunk = [p for p in chunk if id(p.entry) not in problems]
        adopted = [p for p in chunk if p.entry and p.entry.adopt and p.entry.found]
        if adopted:  # made by an attempt that died before storing Xero's answer: stored now
            self.held = []
            for pending in adopted:
                self._answer(pending, pending.entry.found)  # type: ignore[union-attr,arg-type]
            self.crash.reached(STATE_WRITTEN)
            self.release()
            chunk = [p for p in chunk if p not in adopted]
        bodies = [p.body for p in chunk]
        refused = self.journal.record([p.entry for p in chunk if p.entry], f"contacts-{content_hash(bodies)}")
        for pending in [p for p in chunk if p.entry in refused]:
            for item, _ in pending.group:
                self._finish(item.job_id, "ignored", {"warnings": [OLDER]})
        return [p for p in chunk if p.entry not in refused]

    def _finish(self, job_id: str, status: str, outcome: dict[str, Any]) -> None:
        if self.held is not None:  # a chunk's jobs are marked after all its state is written
            self.held.append((job_id, status, outcome))
        else:
            finish(self.jobs, job_id, status, **outcome)

    def _end(self, key: Key, job_id: str, status: str, outcome: dict[str, Any]) -> None:
        """A job of a record that is written back ends after the write-back ran, else now."""
        if self.writes_back:
            self.endings.setdefault(key, []).append(JobEnding(job_id, status, **outcome))
        else:
            self._finish(job_id, status, outcome)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for job_id, status, outcome in held:
            finish(self.jobs, job_id, status, **outcome)

    def _answer(self, pending: _Pending, answer: dict[str, Any]) -> bool:
        """Record Xero's answer; True when the record must be sent again."""
        status = (answer.get("StatusAttributeString") or "OK").upper()
        errors = validation_messages(answer)
        contact_id = answer.get("ContactID")
        if status == "ERROR" or answer.get("HasValidationErrors") or not contact_id:
            message = "; ".join(errors) or "Xero refused the contact without a reason"
            if pending.entry:
                self.journal.failed(pending.entry, message)
            if pending.followed:  # already re-sent once for a refusal: no second guess
                self.fail(pending, f"Xero: {message}")
            elif "ContactID" in pending.body:
                self.broken_links.append((pending, errors))
            elif _is_number_taken(errors) and pending.body.get("ContactNumber"):
                self.number_clashes.append((pending, errors))
            elif _is_name_taken(errors):
                self.conflicts.append((pending, errors))
            else:
                self.fail(pending, f"Xero: {message}")
            return False
        survivor = answer.get("MergedToContactID")
        if survivor and survivor != contact_id and survivor != pending.body.get("ContactID"):
            return self._follow_merge(pending, survivor)
        if answer.get("ContactStatus") == "ARCHIVED" and not pending.doc.deleted and \
                pending.body.get("ContactStatus") != "ARCHIVED":  # archived on purpose (an erasure)
            if self._archived(pending, contact_id):
                return True
        warnings = [w.get("Message", "") for w in answer.get("Warnings") or [] if w.get("Message")]
        self.succeed(pending, contact_id, answer.get("UpdatedDateUTC"), warnings)
        return False

    def _follow_merge(self, pending: _Pending, survivor: str) -> bool:
        pending.warnings.append(f"the Xero contact was merged into {survivor}: re-mapped to it")
        # The merged (archived) contact keeps its ContactNumber, and a number is unique across all
        # contacts: sending it with the survivor would be refused. The number stays where it is and
        # still leads here through the merged contact's MergedToContactID.
        pending.body = {k: v for k, v in pending.body.items() if k != "ContactNumber"} | {"ContactID": survivor}
        return True

    def _archived(self, pending: _Pending, contact_id: str) -> bool:
        if self.config.contacts.archived_contact == "restore" and \
                pending.body.get("ContactStatus") != "ACTIVE":
            pending.warnings.append(f"the Xero contact {contact_id} was archived: restored")
            pending.body = {**pending.body, "ContactID": contact_id, "ContactStatus": "ACTIVE"}
            return True
        if self.config.contacts.archived_contact == "report":
            pending.warnings.append(f"the Xero contact {contact_id} is archived in Xero; "
                                    "archived_contact is 'report': left archived")
        return False

    # ---- resolving refusals ----------------------------------------------------------------
    def resolve(self, again: list[_Pending]) -> list[_Pending]:
        """Look up, in few calls, what Xero refused; returns what to send in the next round."""
        again = list(again)
        if self.broken_links:
            again += self._resolve_links()
        if self.conflicts:
            again += self._resolve_conflicts()
        if self.number_clashes:
            again += self._resolve_numbers()
        return again

    def _resolve_numbers(self) -> list[_Pending]:
        """A ContactNumber is unique across all Xero contacts and POST never updates by it: the
        contact holding the CRM record's number is this record's contact. Find it by number
        (archived ones too) and send again by its ContactID."""
        clashes, self.number_clashes = self.number_clashes, []
        numbers = [str(p.body["ContactNumber"]) for p, _ in clashes]
        try:
            holders: dict[str, dict[str, Any]] = {}
            def by_number(chunk: list[str]) -> dict[str, str]:
                return {"where": " OR ".join(f"ContactNumber=={_quoted(n)}" for n in chunk), "includeArchived": "true"}

            for chunk in query_chunks(list(dict.fromkeys(numbers)), by_number, most=LOOKUPS_PER_CALL):
                for contact in self.xero.get("Contacts", by_number(chunk)).get("Contacts") or []:
                    holders[str(contact.get("ContactNumber"))] = contact
        except (XeroError, ConnectionNotReady) as error:
            for pending, errors in clashes:
                self.fail(pending, "Xero: " + "; ".join(errors) + f" (and looking it up failed: {error})")
            return []
        again = []
        for pending, errors in clashes:
            holder = holders.get(str(pending.body["ContactNumber"]))
            if holder is None:
                self.fail(pending, "Xero: " + "; ".join(errors) + " (and no contact with that number was found)")
                continue
            pending.followed = True
            pending.warnings.append(f"the Xero contact {holder['ContactID']} already carries this record's "
                                    f"contact number {pending.body['ContactNumber']}: updated it")
            pending.body = {**pending.body, "ContactID": holder["ContactID"]}
            survivor = holder.get("MergedToContactID")
            if survivor and survivor != holder["ContactID"]:
                self._follow_merge(pending, survivor)
            elif holder.get("ContactStatus") == "ARCHIVED" and not pending.doc.deleted:
                self._archived(pending, holder["ContactID"])
            again.append(pending)
        return again

    def _resolve_links(self) -> list[_Pending]:
        broken, self.broken_links = self.broken_links, []
        ids = [p.body["ContactID"] for p, _ in broken]
        found = {c.get("ContactID"): c for c in self._lookup_ids(ids)}
        again = []
        for pending, errors in broken:
            contact = found.get(pending.body["ContactID"]) or {}
            survivor = contact.get("MergedToContactID")
            if survivor and survivor != contact.get("ContactID"):
                pending.followed = True
                self._follow_merge(pending, survivor)
                again.append(pending)
            elif contact.get("ContactStatus") == "ARCHIVED" and not pending.doc.deleted and \
                    self._archived(pending, contact["ContactID"]):
                pending.followed = True
                again.append(pending)
            elif contact and _is_name_taken(errors):
                # A mapped record renamed to a name another contact holds: never re-linked,
                # only the policy's fail or rename applies.
                if self._name_policy(pending, errors):
                    again.append(pending)
            else:
                self.fail(pending, "Xero: " + ("; ".join(errors) or "Xero refused the contact"))
        return again

    def _lookup_ids(self, ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for chunk in chunks(list(dict.fromkeys(ids)), 50):
            answer = self.xero.get("Contacts", {"IDs": ",".join(chunk), "includeArchived": "true"})
            found += answer.get("Contacts") or []
        return found

    def _lookup_candidates(self, pendings: list[_Pending]) -> list[dict[str, Any]]:
        account_field = bool(self.config.contacts.account_number_field)
        found: list[dict[str, Any]] = []

        def by_candidates(chunk: list[_Pending]) -> dict[str, str]:
            terms: list[str] = []
            for pending in chunk:
                doc = pending.doc
                terms.append(f"Name=={_quoted(doc.name)}")
                if doc.account_number and account_field:
                    terms.append(f"AccountNumber=={_quoted(doc.account_number)}")
                if doc.email:
                    terms.append(f"EmailAddress=={_quoted(doc.email)}")
            return {"where": " OR ".join(dict.fromkeys(terms)), "includeArchived": "true"}

        # as many as fit in a query string Xero's gateway accepts (journal.MAX_QUERY_CHARS)
        for chunk in query_chunks(pendings, by_candidates, most=LOOKUPS_PER_CALL):
            answer = self.xero.get("Contacts", by_candidates(chunk))
            found += answer.get("Contacts") or []
        return found

    def _resolve_conflicts(self) -> list[_Pending]:
        conflicts, self.conflicts = self.conflicts, []
        try:
            candidates = self._lookup_candidates([p for p, _ in conflicts])
        except (XeroError, ConnectionNotReady) as error:
            for pending, errors in conflicts:
                self.fail(pending, "Xero: " + "; ".join(errors) + f" (and looking it up failed: {error})")
            return []
        again = []
        for pending, errors in conflicts:
            target = self._same_party(pending.doc, candidates)
            if target is not None:
                pending.followed = True
                pending.warnings.append(f"linked to the existing Xero contact {target['ContactID']} "
                                        f"({target.get('Name')!r}), confirmed by email or account number")
                pending.body = {**pending.body, "ContactID": target["ContactID"]}
                if target.get("ContactStatus") == "ARCHIVED" and not pending.doc.deleted:
                    if self.config.contacts.archived_contact == "restore":
                        pending.body["ContactStatus"] = "ACTIVE"
                        pending.warnings.append(f"the Xero contact {target['ContactID']} was archived: restored")
                    else:
                        pending.warnings.append(f"the Xero contact {target['ContactID']} is archived in "
                                                "Xero; archived_contact is 'report': left archived")
                again.append(pending)
            elif self._name_policy(pending, errors):
                again.append(pending)
        return again

    def _name_policy(self, pending: _Pending, errors: list[str]) -> bool:
        """``fail``: the job fails with Xero's message; else rename. True when it is re-sent."""
        if self.config.contacts.name_conflict == "fail":
            self.fail(pending, "Xero: " + "; ".join(errors))
            return False
        name = disambiguated_name(pending.doc.name, pending.doc.crm_id)
        pending.followed = True
        pending.warnings.append(f"the name {pending.doc.name!r} is used by another Xero contact: "
                                f"pushed as {name!r}")
        pending.body = {**pending.body, "Name": name}
        return True

    def _same_party(self, doc: ContactDocument, candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The existing contact that is certainly this record's party, else None. A contact
        that carries another CRM record's ContactNumber is never taken over."""
        free = [c for c in candidates
                if not c.get("MergedToContactID") and (not c.get("ContactNumber") or c["ContactNumber"] == doc.crm_id)]
        if self.config.contacts.account_number_field and doc.account_number:
            by_account = [c for c in free if _same(c.get("AccountNumber"), doc.account_number)]
            if len(by_account) == 1:
                return by_account[0]
        wanted = normalised_name(doc.name)
        by_name = [c for c in free if normalised_name(str(c.get("Name") or "")) == wanted]
        for contact in by_name:
            if _same(contact.get("EmailAddress"), doc.email):
                return contact
        return None

    # ---- endings ---------------------------------------------------------------------------
    def fail(self, pending: _Pending, error: str) -> None:
        for item, _ in pending.group:
            self._end(pending.key, item.job_id, "failed", {"error": error, "warnings": list(pending.warnings)})
        self.outcomes[pending.key] = (pending.group, Outcome(module=pending.key[0], crm_id=pending.key[1],
                                                             sync_status="failed", last_error=error))

    def succeed(self, pending: _Pending, contact_id: str, updated: Any, xero_warnings: list[str]) -> None:
        module, crm_id = pending.key
        warnings = pending.doc.truncated + pending.warnings + xero_warnings  # text cut to fit Xero first
        status = "warning" if warnings else "synced"
        synced_at = _iso(updated)
        self.mappings.put_mapping(Mapping(tenant_id=self.xero.tenant_id, module=module, crm_id=crm_id,
                                          xero_id=contact_id, payload_hash=pending.digest,
                                          xero_number=pending.number,
                                          crm_modified=pending.doc.crm_modified, xero_updated=synced_at,
                                          sync_status=status, version=pending.version,
                                          last_error="; ".join(warnings)[:1000] or None))
        if pending.entry:
            self.journal.confirmed(pending.entry, contact_id)
        for item, _ in pending.group:
            self._end(pending.key, item.job_id, "succeeded", {"xero": {"contact_id": contact_id},
                                                              "warnings": warnings})
        self.outcomes[pending.key] = (pending.group, Outcome(
            module=module, crm_id=crm_id, xero_id=contact_id, sync_status=status,
            last_error="; ".join(warnings) or None, synced_at=synced_at))


# ---- Sugar Contacts as contact persons on their Account's Xero contact -------------------------
def _erased_person(gone: Any) -> dict[str, Any]:
    """The contact person as the CRM had it before a Data Privacy erasure (from dataChanges)."""
    return {k: v for k, v in {"FirstName": gone.first_name, "LastName": gone.last_name,
                              "EmailAddress": gone.email}.items() if v}



def _sync_persons(run: _Run, groups: dict[Key, Group], known: dict[Key, Mapping], batch_size: int,
                  result: BatchResult) -> None:
    """Sugar Contacts as contact persons on their Account's Xero contact. Steps: which Account
    contacts change (waiting for an Account not in Xero yet), read them, merge the persons the
    connector owns with those entered in Xero, send, record who is owned now."""
    parents = sorted({group[0][1].parent_crm_id or "" for group in groups.values()})
    accounts = run.mappings.get_mappings(run.xero.tenant_id, "Accounts", parents)
    waiting = _persons_waiting(run, groups, known, accounts, result)
    if not waiting:
        return
    try:
        current = {c["ContactID"]: c for c in run._lookup_ids(list(waiting))}
    except (XeroError, ConnectionNotReady) as error:
        _persons_not_sent(run, [entry for entries in waiting.values() for entry in entries], error, result)
        return
    # Which persons on each Xero contact the connector owns: those it pushed, by email (a record
    # per Account, plus each pushed person's last email on its own mapping). The others were
    # entered in Xero and are never touched.
    account_of = {account.xero_id: crm_id for crm_id, account in accounts.items()}
    owned_records = run.mappings.get_mappings(run.xero.tenant_id, PERSONS_MODULE, sorted(set(account_of.values())))
    bodies: list[tuple[str, dict[str, Any], list[str]]] = []
    owned_after: dict[str, list[str]] = {}
    for contact_id, entries in waiting.items():
        contact = current.get(contact_id)
        if contact is None:
            for key, group, _ in entries:
                run.fail(_Pending(key, group, {}, ""), f"the Account's Xero contact {contact_id} was not found")
            continue
        record = owned_records.get(account_of.get(contact_id, ""))
        owned = {_email(e) for e in ((record.document or {}).get("owned") or [] if record else [])}
        body, left_out, owned_after[contact_id] = _merged_persons(contact, entries, known, owned)
        bodies.append((contact_id, body, left_out))
    for chunk in chunks(bodies, batch_size):
        _send_persons(run, chunk, waiting, account_of, owned_after, result)


PersonEntry = tuple[Key, Group, str]  # (record, its saves, the content hash of what is pushed)


def _persons_waiting(run: _Run, groups: dict[Key, Group], known: dict[Key, Mapping], accounts: dict[str, Mapping],
                     result: BatchResult) -> dict[str, list[PersonEntry]]:
    """The changed persons by their Account's Xero ContactID, oldest save first; a person whose
    Account is not in Xero yet waits for it (deferred, not failed)."""
    waiting: dict[str, list[PersonEntry]] = {}
    for key, group in sorted(groups.items(), key=lambda kv: (kv[1][0][1].crm_modified or "", kv[0][1])):
        doc = group[0][1]
        account = accounts.get(doc.parent_crm_id or "")
        if account is None:
            # The Account is not in Xero yet: wait for it rather than fail.
            reason = f"will retry: the Account {doc.parent_crm_id} is not synced to Xero yet"
            for item, _ in group:
                run.jobs.update_job(item.job_id, status="queued", error=reason)
            result.defer([item.message_id for item, _ in group],
                         account_wait_seconds(max(item.receive_count for item, _ in group)))
            continue
        digest = content_hash({"parent": account.xero_id, "person": to_xero_person(doc), "deleted": doc.deleted})
        mapping = known.get(key)
        if mapping and mapping.payload_hash == digest and mapping.xero_id == account.xero_id:
            _unchanged(run, key, group, mapping)
            continue
        waiting.setdefault(account.xero_id, []).append((key, group, digest))
    return waiting


def _merged_persons(contact: dict[str, Any], entries: list[PersonEntry], known: dict[Key, Mapping],
                    owned: set[str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """The contact's new ContactPersons: the CRM's persons (newest first) in place of those the
    connector owns, then every person entered in Xero; at most Xero's 5, the CRM's oldest left
    out first. Returns (body, names left out, emails owned after)."""
    contact_id = contact["ContactID"]
    for key, group, _ in entries:
        previous = known.get(key)
        owned |= {_email(group[0][1].email), _email(previous.xero_number if previous else None)}
    owned.discard("")
    batch_persons = [_erased_person(group[0][1].erased_person) if group[0][1].erased_person
                     else to_xero_person(group[0][1]) for _, group, _ in entries]
    persons = [dict(p) for p in contact.get("ContactPersons") or []]
    ours = [p for p in persons if _email(p.get("EmailAddress")) in owned
            or any(same_person(p, mine) for mine in batch_persons)]
    theirs = [p for p in persons if p not in ours]
    for key, group, _ in entries:  # oldest save first: the newest ends up first in the list
        doc = group[0][1]
        person = to_xero_person(doc)
        if doc.erased and doc.erased_person:  # erased in the CRM: find the person as it was, remove it
            person = _erased_person(doc.erased_person)
        previous = known.get(key)
        old_email = _email(previous.xero_number if previous else None)
        ours = [p for p in ours if not same_person(p, person)
                and not (old_email and _email(p.get("EmailAddress")) == old_email)]
        if not doc.deleted and not doc.erased:
            ours.insert(0, person)
    room = max(0, MAX_PERSONS - len(theirs))
    left_out = [" ".join(filter(None, (p.get("FirstName"), p.get("LastName")))) or str(p.get("EmailAddress"))
                for p in ours[room:]]
    body = {"ContactID": contact_id, "Name": contact.get("Name"), "ContactPersons": ours[:room] + theirs}
    return body, left_out, [e for p in ours[:room] if (e := _email(p.get("EmailAddress")))]


def _send_persons(run: _Run, chunk: list[tuple[str, dict[str, Any], list[str]]],
                  waiting: dict[str, list[PersonEntry]], account_of: dict[str, str],
                  owned_after: dict[str, list[str]], result: BatchResult) -> None:
    """One call for a chunk of Account contacts; each person's job ends by Xero's answer, and the
    persons the connector owns on each contact are recorded."""
    xero = run.xero
    sent = [body for _, body, _ in chunk]
    try:
        answers = xero.upsert_batch("Contacts", sent, idempotency_key=f"persons-{content_hash(sent)}")
    except (XeroError, ConnectionNotReady) as error:
        _persons_not_sent(run, [e for contact_id, _, _ in chunk for e in waiting[contact_id]], error, result)
        return
    for (contact_id, _, dropped), answer in zip(chunk, answers, strict=True):
        errors = validation_messages(answer)
        for key, group, digest in waiting[contact_id]:
            pending = _Pending(key, group, {}, digest)
            if (answer.get("StatusAttributeString") or "OK").upper() == "ERROR" or errors:
                run.fail(pending, "Xero: " + ("; ".join(errors) or "Xero refused the contact persons"))
                continue
            if dropped:
                pending.warnings.append(f"Xero keeps {MAX_PERSONS} contact persons, and the persons entered "
                                        "in Xero are kept: the least recently sent CRM contacts were left out "
                                        f"({', '.join(dropped)})")
            if group[0][1].erased:
                pending.warnings.append("Data Privacy erasure in the CRM: the contact person was removed from "
                                        f"the Xero contact {contact_id}")
            pending.number = _email(group[0][1].email) or None
            run.succeed(pending, contact_id, answer.get("UpdatedDateUTC"), [])
        if not errors and account_of.get(contact_id):
            run.mappings.put_mapping(Mapping(tenant_id=xero.tenant_id, module=PERSONS_MODULE,
                                             crm_id=account_of[contact_id], xero_id=contact_id,
                                             document={"owned": owned_after.get(contact_id, [])}))



def _email(value: Any) -> str:
    return str(value or "").strip().casefold()


def _persons_not_sent(run: _Run, entries: list[tuple[Key, Group, str]], error: Exception,
                      result: BatchResult) -> None:
    retryable = isinstance(error, ConnectionNotReady) or getattr(error, "retryable", False)
    for key, group, digest in entries:
        if retryable:
            requeue(run.jobs, [item.job_id for item, _ in group], error)
            result.defer([item.message_id for item, _ in group], retry_after_for(error))
        else:
            run.fail(_Pending(key, group, {}, digest), str(error))
