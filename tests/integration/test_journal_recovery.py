"""What a recovery learns is kept: a document found by its marker is not looked up twice.

A worker that looked a dead attempt's document up in Xero and was then killed (or deferred)
before writing its own intent used to lose what it found: the next attempt looked it up again,
one more call each time. The found Xero id is now stored on the intent at once (conditionally on
the same attempt), and every later attempt updates the record by id. Checked by the journal's
own counter and by the emulator's request log (what Xero was actually asked)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from shared.models.documents import ContactDocument
from shared.state.dynamo import now_iso
from shared.state.records import Intent
from shared.usecases import contacts
from shared.usecases.crash import STATE_WRITTEN, XERO_ANSWERED, CrashAt
from shared.usecases.journal import Entry, Journal
from shared.usecases.work import content_hash
from shared.xero.client import XeroClient
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.integration.test_exactly_once import World
from tests.support.fakes import FakeMappings


@pytest.fixture
def emulator():
    # keys forgotten at once: a redelivery comes after SQS's visibility timeout
    config = EmulatorConfig(idempotency_ttl_seconds=0.0)
    with serve(config=config) as server:
        yield server, XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


@pytest.fixture(autouse=True)
def redelivery_after_the_resend_window(monkeypatch):
    from shared.usecases import journal

    monkeypatch.setattr(journal, "IDENTICAL_RESEND_SECONDS", 0.0)


def _requests(server: Any) -> list[dict[str, Any]]:
    log = requests.get(f"{server.url}/_emulator/requests", params={"since": 0}, timeout=30).json()["requests"]
    return [r for r in log if r["path"].startswith("/api.xro/")]


def _dead_contact(store: FakeMappings, xero: XeroClient, crm_id: str, name: str) -> str:
    """Xero made the contact, the worker died before its mapping: the intent says ``sent``."""
    body = {"Name": name, "ContactNumber": crm_id}
    (made,) = xero.upsert_batch("Contacts", [body], idempotency_key=f"dead-{crm_id}")
    intent = store.record_intent(Intent(tenant_id=xero.tenant_id, module="Accounts", crm_id=crm_id,
                                        resource="Contacts", body_hash=content_hash(body), idempotency_key="k"))
    assert intent is not None
    store.settle_intent(intent, "sent")
    return made["ContactID"]


def test_a_found_id_is_stored_on_the_intent_and_the_next_attempt_makes_no_lookup(emulator):
    server, xero = emulator
    store = FakeMappings()
    made = _dead_contact(store, xero, "acc-1", "Harbour Foods")
    # a newer save (another name): found, it becomes an update of what the dead attempt made
    first = Entry(module="Accounts", crm_id="acc-1", resource="Contacts",
                  body={"Name": "Harbour Foods Pte Ltd", "ContactNumber": "acc-1"})
    journal = Journal(store, xero)
    assert journal.recover([first]) == {}
    assert journal.lookups == 1 and first.body["ContactID"] == made and not first.adopt
    (stored,) = store.get_intents(xero.tenant_id, "Accounts", ["acc-1"]).values()
    assert stored.found_id == made and stored.state == "sent"  # same attempt, only the id added

    # the worker dies before its own intent; the next invocation knows the id without asking Xero
    gets_before = sum(r["method"] == "GET" for r in _requests(server))
    again = Entry(module="Accounts", crm_id="acc-1", resource="Contacts",
                  body={"Name": "Harbour Foods Pte Ltd", "ContactNumber": "acc-1"})
    later = Journal(store, xero)
    assert later.recover([again]) == {}
    assert later.lookups == 0 and again.body["ContactID"] == made
    assert sum(r["method"] == "GET" for r in _requests(server)) == gets_before


def test_a_found_id_never_overwrites_a_newer_attempt(emulator):
    _, xero = emulator
    store = FakeMappings()
    made = _dead_contact(store, xero, "acc-2", "Marina Bay")
    entry = Entry(module="Accounts", crm_id="acc-2", resource="Contacts",
                  body={"Name": "Marina Bay Traders", "ContactNumber": "acc-2"})
    journal = Journal(store, xero)
    journal.load("Accounts", ["acc-2"])  # this worker read attempt 1 ...
    newer = store.record_intent(Intent(tenant_id=xero.tenant_id, module="Accounts", crm_id="acc-2",
                                       resource="Contacts", body_hash="other", idempotency_key="k2"))
    assert newer is not None and newer.attempt == 2  # ... another worker wrote attempt 2 meanwhile
    journal.recover([entry])
    assert entry.body["ContactID"] == made
    (stored,) = store.get_intents(xero.tenant_id, "Accounts", ["acc-2"]).values()
    assert stored.attempt == 2 and stored.found_id is None  # the newer attempt is left as it was


def test_an_adopted_record_is_not_noted_as_found(emulator):
    """Made from exactly this body: Xero's record is stored as the answer (nothing sent), which
    needs the record itself, not only its id."""
    _, xero = emulator
    store = FakeMappings()
    _dead_contact(store, xero, "acc-3", "Raffles Supplies")
    entry = Entry(module="Accounts", crm_id="acc-3", resource="Contacts",
                  body={"Name": "Raffles Supplies", "ContactNumber": "acc-3"})
    journal = Journal(store, xero)
    journal.recover([entry])
    assert entry.adopt and entry.found is not None
    (stored,) = store.get_intents(xero.tenant_id, "Accounts", ["acc-3"]).values()
    assert stored.found_id is None


def test_after_a_failed_update_of_a_found_record_the_next_attempt_updates_it_again(emulator):
    """Found, its update refused before Xero acted (a 429): the intent is ``failed`` but the record
    the dead attempt made is still in Xero. The next attempt must update it, never create it
    (a bill's number is not unique: a create would be a second bill)."""
    _, xero = emulator
    store = FakeMappings()
    made = _dead_contact(store, xero, "acc-4", "Tan Realty")
    (intent,) = store.get_intents(xero.tenant_id, "Accounts", ["acc-4"]).values()
    store.settle_intent(intent, "failed", found_id=made, error="Xero answered 429")
    entry = Entry(module="Accounts", crm_id="acc-4", resource="Contacts",
                  body={"Name": "Tan Realty Agency", "ContactNumber": "acc-4"})
    journal = Journal(store, xero)
    assert journal.recover([entry]) == {}
    assert entry.body.get("ContactID") == made and journal.lookups == 0


def _contact(crm_id: str, name: str, day: int) -> ContactDocument:
    return ContactDocument(crm_module="Accounts", crm_id=crm_id, name=name, crm_modified=f"2026-12-0{day}T09:00:00Z")


def test_a_batch_killed_twice_after_its_lookup_is_looked_up_once(emulator):
    """Two contacts made by a worker killed after Xero answered; one is saved again meanwhile. The
    redelivery looks both up: one is adopted, the other becomes an update, and the worker is
    killed again once the adopted one is stored. The third delivery asks Xero nothing but the
    update: the found id was kept."""
    server, xero = emulator
    world = World(xero)
    world.accept(contacts.KIND, _contact("acc-5", "Orchard Florists", 1))
    world.accept(contacts.KIND, _contact("acc-6", "Keppel Marine", 1))
    assert world.deliver(CrashAt(XERO_ANSWERED)) is False
    world.accept(contacts.KIND, _contact("acc-6", "Keppel Marine Pte Ltd", 2))
    assert world.deliver(CrashAt(STATE_WRITTEN)) is False  # killed after the lookup and the adoption
    assert [r["method"] for r in _requests(server)] == ["POST", "GET"]
    world.drain()
    calls = _requests(server)
    assert [r["method"] for r in calls[2:]] == ["POST"]  # the update by id, no second lookup
    found = [c for c in world.records("Contacts") if c.get("ContactNumber") in ("acc-5", "acc-6")]
    assert sorted(c["Name"] for c in found) == ["Keppel Marine Pte Ltd", "Orchard Florists"]


def test_no_identical_resend_when_a_found_id_changes_the_request(emulator, monkeypatch):
    """U and F were sent together moments ago under key K (answer lost). A later attempt found F
    (its id is on F's intent) and was killed. Now U and F come back together: the request sent
    carries F's id, so its key is not K, and Xero would run it afresh: U must be looked up, not
    trusted to an "identical" resend (which would create U a second time)."""
    from shared.usecases import journal as journal_module

    monkeypatch.setattr(journal_module, "IDENTICAL_RESEND_SECONDS", 60.0)
    _, xero = emulator
    store = FakeMappings()
    u_body = {"Name": "Orchard Florists", "ContactNumber": "acc-u"}
    f_body = {"Name": "Keppel Marine", "ContactNumber": "acc-f"}
    key = f"contacts-{content_hash([u_body, f_body])}"
    made = {c["ContactNumber"]: c["ContactID"] for c in xero.upsert_batch("Contacts", [u_body, f_body],
                                                                          idempotency_key=key)}
    for crm_id, body in (("acc-u", u_body), ("acc-f", f_body)):
        intent = store.record_intent(Intent(tenant_id=xero.tenant_id, module="Accounts", crm_id=crm_id,
                                            resource="Contacts", body_hash=content_hash(body), idempotency_key=key,
                                            updated_at=now_iso()))
        assert intent is not None
        store.settle_intent(intent, "sent", found_id=made["acc-f"] if crm_id == "acc-f" else None)
    entries = [Entry(module="Accounts", crm_id="acc-u", resource="Contacts", body=dict(u_body)),
               Entry(module="Accounts", crm_id="acc-f", resource="Contacts", body=dict(f_body))]
    journal = Journal(store, xero)
    assert journal.recover(entries, key) == {}
    assert journal.resends == 0 and journal.lookups == 1
    assert entries[0].body["ContactID"] == made["acc-u"] and entries[1].body["ContactID"] == made["acc-f"]


def test_an_identical_request_moments_later_is_resent_without_a_lookup(emulator, monkeypatch):
    """The same two contacts, sent moments ago in exactly this request: the resend is safe."""
    from shared.usecases import journal as journal_module

    monkeypatch.setattr(journal_module, "IDENTICAL_RESEND_SECONDS", 60.0)
    _, xero = emulator
    store = FakeMappings()
    bodies = [{"Name": "Orchard Florists", "ContactNumber": "acc-u"},
              {"Name": "Keppel Marine", "ContactNumber": "acc-f"}]
    key = f"contacts-{content_hash(bodies)}"
    for body in bodies:
        store.record_intent(Intent(tenant_id=xero.tenant_id, module="Accounts", crm_id=body["ContactNumber"],
                                   resource="Contacts", body_hash=content_hash(body), idempotency_key=key,
                                   updated_at=now_iso()))
    journal = Journal(store, xero)
    entries = [Entry(module="Accounts", crm_id=b["ContactNumber"], resource="Contacts", body=dict(b)) for b in bodies]
    assert journal.recover(entries, key) == {}
    assert journal.resends == 1 and journal.lookups == 0


def test_a_resend_broken_up_by_a_newer_save_looks_the_rest_up(emulator, monkeypatch):
    """U and F were sent together moments ago under key K, Xero made both, the answer was lost.
    The redelivery chooses the identical resend; then, before its intents are written, a newer
    save of F is intended by another worker: F leaves the chunk, so U would go alone under another
    key, which Xero runs afresh (a second U). U is looked up instead and sent as an update."""
    from shared.usecases import journal as journal_module

    monkeypatch.setattr(journal_module, "IDENTICAL_RESEND_SECONDS", 60.0)
    server, xero = emulator
    store = FakeMappings()
    bodies = [{"Name": "Orchard Florists", "ContactNumber": "acc-u"},
              {"Name": "Keppel Marine", "ContactNumber": "acc-f"}]
    key = f"contacts-{content_hash(bodies)}"
    made = {c["ContactNumber"]: c["ContactID"] for c in xero.upsert_batch("Contacts", bodies, idempotency_key=key)}
    older = "2026-12-03T01:00:00.000000Z"
    for body in bodies:
        intent = store.record_intent(Intent(tenant_id=xero.tenant_id, module="Accounts", crm_id=body["ContactNumber"],
                                            resource="Contacts", body_hash=content_hash(body), idempotency_key=key,
                                            version=older, updated_at=now_iso()))
        assert intent is not None
        store.settle_intent(intent, "sent")
    entries = [Entry(module="Accounts", crm_id=b["ContactNumber"], resource="Contacts", body=dict(b), version=older)
               for b in bodies]
    journal = Journal(store, xero)
    assert journal.recover(entries, key) == {} and journal.resends == 1

    newer = store.record_intent(Intent(tenant_id=xero.tenant_id, module="Accounts", crm_id="acc-f",
                                       resource="Contacts", body_hash="newer", idempotency_key="other-worker",
                                       version="2026-12-03T02:00:00.000000Z", updated_at=now_iso()))
    assert newer is not None
    refused = journal.record(entries, key)
    assert refused == [entries[1]]
    assert journal.lookups == 1 and entries[0].body["ContactID"] == made["acc-u"]
    (answer,) = xero.upsert_batch("Contacts", [entries[0].body],
                                  idempotency_key=f"contacts-{content_hash([entries[0].body])}")
    assert answer["ContactID"] == made["acc-u"]
    numbers = [c.get("ContactNumber") for c in xero.iter_pages("Contacts")]
    assert numbers.count("acc-u") == 1
