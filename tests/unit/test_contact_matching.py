"""Matching a CRM customer to a Xero contact, and Xero's rules on names, archives and merges."""

from __future__ import annotations

import pytest

from shared.mapping.settings import ContactRules, MappingConfig
from shared.models.documents import ContactDocument
from shared.models.jobs import CrmRef
from shared.state.records import Mapping
from shared.usecases.accept import accept
from shared.usecases.contacts import KIND, disambiguated_name, normalised_name, sync_contacts
from shared.usecases.work import WorkItem
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue, FakeXero

X1 = "00000000-0000-4000-8000-000000000001"
X2 = "00000000-0000-4000-8000-000000000002"
LINK = MappingConfig(contacts=ContactRules(account_number_field="account_number_c"))


class World:
    def __init__(self) -> None:
        self.jobs, self.queue, self.mappings, self.xero = FakeJobs(), FakeQueue(), FakeMappings(), FakeXero()

    def push(self, *docs: ContactDocument, config: MappingConfig = LINK):
        self.queue.sent.clear()
        job_ids = [accept(kind=KIND, crm=CrmRef(module=d.crm_module, id=d.crm_id),
                          document=d.model_dump(mode="json"), jobs=self.jobs, queue=self.queue,
                          status_base_url="https://x/prod").job_id for d in docs]
        items = [WorkItem(message_id=f"m{i}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
                 for i, m in enumerate(self.queue.sent)]
        sync_contacts(items, xero=self.xero, jobs=self.jobs, mappings=self.mappings, config=config)
        return [self.jobs.jobs[j] for j in job_ids]

    def existing(self, contact_id: str, name: str, **fields) -> dict:
        self.xero.contacts[contact_id] = {"ContactID": contact_id, "Name": name, **fields}
        return self.xero.contacts[contact_id]

    def mapped(self, crm_id: str) -> str:
        return self.mappings.items[("tenant-1", "Accounts", crm_id)].xero_id


@pytest.mark.parametrize(("a", "b"), [
    ("Acme Pte. Ltd.", "ACME  pte ltd"),
    ("Harbour &amp; Co", "Harbour & Co."),
    ("Acme Limited", "Acme Ltd"),
    ("Acme, Inc.", "acme inc"),
    ("  Blue   Sky Pty Ltd!", "Blue Sky Pty. Ltd."),
])
def test_names_alike(a, b):
    assert normalised_name(a) == normalised_name(b)


@pytest.mark.parametrize(("a", "b"), [
    ("Acme Pte Ltd", "Acme Holdings Pte Ltd"), ("A.B.C. Trading", "ABC Trading"), ("Co-op", "Coop"),
])
def test_names_not_alike(a, b):
    assert normalised_name(a) != normalised_name(b)


def test_disambiguated_name_is_deterministic_and_fits():
    assert disambiguated_name("Acme", "4f1e6a7c-2b3d") == "Acme (4f1e6a7c)"
    long = disambiguated_name("x" * 255, "abcdefghij")
    assert len(long) == 255 and long.endswith(" (abcdefgh)") and long == disambiguated_name("x" * 255, "abcdefghij")


def test_stored_mapping_updates_by_contact_id_without_lookups():
    world = World()
    world.existing(X1, "Old name")
    world.mappings.put_mapping(Mapping(tenant_id="tenant-1", module="Accounts", crm_id="a1", xero_id=X1))
    (job,) = world.push(ContactDocument(crm_id="a1", name="New name"))
    assert job.status == "succeeded" and job.xero == {"contact_id": X1}
    assert world.xero.calls[0][1][0]["ContactID"] == X1 and world.xero.gets == []


def test_contact_number_match_adopts_the_xero_contact_without_lookups():
    world = World()
    world.existing(X1, "Acme", ContactNumber="a1")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme"))
    assert job.status == "succeeded" and world.mapped("a1") == X1
    assert len(world.xero.contacts) == 1 and world.xero.gets == []


def test_name_taken_confirmed_by_account_number_links_and_sets_our_contact_number():
    world = World()
    world.existing(X1, "Acme Pte. Ltd.", AccountNumber="ACC-7")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme Pte. Ltd.", account_number="ACC-7"))
    assert job.status == "succeeded" and world.mapped("a1") == X1
    assert world.xero.contacts[X1]["ContactNumber"] == "a1" and len(world.xero.contacts) == 1
    assert any(f"linked to the existing Xero contact {X1}" in w for w in job.warnings)
    # one lookup, by name and account number together
    assert len(world.xero.gets) == 1 and "AccountNumber==\"ACC-7\"" in world.xero.gets[0][1]["where"]


def test_name_taken_confirmed_by_email_links():
    world = World()
    world.existing(X1, "Acme", EmailAddress="Accounts@Acme.example")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme", email="accounts@acme.example"))
    assert job.status == "succeeded" and world.mapped("a1") == X1
    assert world.mappings.items[("tenant-1", "Accounts", "a1")].sync_status == "warning"


def test_account_number_is_not_used_when_no_field_is_configured():
    world = World()
    world.existing(X1, "Acme", AccountNumber="ACC-7")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme", account_number="ACC-7"),
                        config=MappingConfig())
    assert job.status == "succeeded" and world.mapped("a1") != X1
    assert world.xero.contacts[world.mapped("a1")]["Name"] == "Acme (a1)"


def test_unconfirmed_name_clash_is_pushed_under_a_disambiguated_name_with_a_warning():
    world = World()
    world.existing(X1, "Acme", EmailAddress="other@example.com")
    (job,) = world.push(ContactDocument(crm_id="4f1e6a7c-2b3d", name="Acme", email="me@example.com"))
    assert job.status == "succeeded"
    new = world.xero.contacts[job.xero["contact_id"]]
    assert new["Name"] == "Acme (4f1e6a7c)" and new["ContactNumber"] == "4f1e6a7c-2b3d"
    assert any("pushed as 'Acme (4f1e6a7c)'" in w for w in job.warnings)
    assert world.xero.contacts[X1]["Name"] == "Acme"


def test_a_contact_owned_by_another_crm_record_is_never_linked():
    world = World()
    world.existing(X1, "Acme", EmailAddress="me@example.com", ContactNumber="someone-else")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme", email="me@example.com"))
    assert job.status == "succeeded" and world.mapped("a1") != X1
    assert world.xero.contacts[X1]["ContactNumber"] == "someone-else"


def test_fail_policy_fails_the_job_with_xeros_message():
    world = World()
    world.existing(X1, "Acme")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme"),
                        config=MappingConfig(contacts=ContactRules(name_conflict="fail")))
    assert job.status == "failed" and "already assigned to another contact" in job.error
    assert len(world.xero.contacts) == 1


def test_an_archived_namesake_does_not_block_the_name():
    world = World()
    world.existing(X1, "Acme", ContactStatus="ARCHIVED")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme"))
    assert job.status == "succeeded" and world.xero.contacts[world.mapped("a1")]["Name"] == "Acme"


def test_archived_mapped_contact_is_restored():
    world = World()
    world.existing(X1, "Acme", ContactNumber="a1", ContactStatus="ARCHIVED")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme Ltd"))
    assert job.status == "succeeded" and world.xero.contacts[X1]["ContactStatus"] == "ACTIVE"
    assert any("archived: restored" in w for w in job.warnings)
    assert len(world.xero.calls) == 2


def test_archived_mapped_contact_is_reported_when_configured():
    world = World()
    world.existing(X1, "Acme", ContactNumber="a1", ContactStatus="ARCHIVED")
    config = MappingConfig(contacts=ContactRules(archived_contact="report"))
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme Ltd"), config=config)
    assert job.status == "succeeded" and world.xero.contacts[X1]["ContactStatus"] == "ARCHIVED"
    assert any("left archived" in w for w in job.warnings) and len(world.xero.calls) == 1


def test_crm_delete_archives_and_is_not_restored():
    world = World()
    world.existing(X1, "Acme", ContactNumber="a1")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme", deleted=True))
    assert job.status == "succeeded" and world.xero.contacts[X1]["ContactStatus"] == "ARCHIVED"


def test_crm_delete_is_ignored_when_configured():
    world = World()
    world.existing(X1, "Acme", ContactNumber="a1")
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme", deleted=True),
                        config=MappingConfig(contacts=ContactRules(on_crm_delete="ignore")))
    assert job.status == "ignored" and world.xero.calls == []


def test_merged_contact_is_followed_to_the_survivor_and_remapped():
    world = World()
    world.existing(X1, "Acme", ContactNumber="a1", MergedToContactID=X2, ContactStatus="ARCHIVED")
    world.existing(X2, "Acme Holdings")
    world.mappings.put_mapping(Mapping(tenant_id="tenant-1", module="Accounts", crm_id="a1", xero_id=X1))
    (job,) = world.push(ContactDocument(crm_id="a1", name="Acme Holdings"))
    assert job.status == "succeeded" and job.xero == {"contact_id": X2} and world.mapped("a1") == X2
    # The merged contact keeps the number (unique across all contacts): the survivor is not sent it
    assert "ContactNumber" not in world.xero.contacts[X2] and world.xero.contacts[X1]["ContactNumber"] == "a1"
    assert any(f"merged into {X2}" in w for w in job.warnings)
    assert world.xero.gets == [("Contacts", {"IDs": X1, "includeArchived": "true"})]


def test_one_crm_record_never_gets_a_second_xero_contact():
    world = World()
    doc = ContactDocument(crm_id="a1", name="Acme", crm_modified="t1")
    world.push(doc)
    first = world.mapped("a1")
    world.mappings.items.clear()  # a lost mapping: ContactNumber still finds the contact
    world.push(doc.model_copy(update={"name": "Acme Ltd", "crm_modified": "t2"}))
    assert world.mapped("a1") == first and len(world.xero.contacts) == 1


def test_conflict_lookups_are_batched_25_records_a_call():
    world = World()
    for n in range(60):
        world.existing(f"x{n}", f"Taken {n}", ContactNumber=f"other-{n}")
    jobs = world.push(*[ContactDocument(crm_id=f"a{n}", name=f"Taken {n}") for n in range(60)]
                      + [ContactDocument(crm_id=f"b{n}", name=f"Free {n}") for n in range(40)])
    assert {job.status for job in jobs} == {"succeeded"}
    assert len(world.xero.gets) == 3  # ⌈60/25⌉
    assert [len(c[1]) for c in world.xero.calls] == [50, 50, 50, 10]
    assert len(world.xero.contacts) == 160


def test_new_records_cost_one_call_per_50_and_no_lookups():
    world = World()
    world.push(*[ContactDocument(crm_id=f"a{n}", name=f"Customer {n}") for n in range(100)])
    assert len(world.xero.calls) == 2 and world.xero.gets == []


def person(n: int, account: str | None = "acc1", **fields) -> ContactDocument:
    values = {"crm_module": "Contacts", "crm_id": f"p{n}", "name": f"Person {n}", "first_name": "Person",
              "last_name": str(n), "email": f"p{n}@example.com", "parent_crm_id": account,
              "crm_modified": f"2026-11-27T10:{n:02d}:00Z", **fields}
    return ContactDocument(**values)


def test_a_sugar_contact_becomes_a_contact_person_on_its_accounts_xero_contact():
    world = World()
    account_job, person_job = world.push(ContactDocument(crm_id="acc1", name="Acme"), person(1))
    org = world.xero.contacts[account_job.xero["contact_id"]]
    assert person_job.status == "succeeded" and person_job.xero == account_job.xero
    assert org["ContactPersons"] == [{"FirstName": "Person", "LastName": "1", "EmailAddress": "p1@example.com",
                                      "IncludeInEmails": True}]
    assert len(world.xero.contacts) == 1  # the person is no contact of its own
    assert world.mappings.items[("tenant-1", "Contacts", "p1")].xero_id == org["ContactID"]


def test_xero_keeps_the_five_most_recently_sent_persons():
    world = World()
    world.push(ContactDocument(crm_id="acc1", name="Acme"))
    world.push(*[person(n) for n in range(1, 5)])
    jobs = world.push(person(6), person(5))  # 5 is older than 6: 6 ends first
    (org,) = world.xero.contacts.values()
    assert [p["LastName"] for p in org["ContactPersons"]] == ["6", "5", "4", "3", "2"]
    assert any("were left out (Person 1)" in w for w in jobs[1].warnings + jobs[0].warnings)
    # an update of a kept person moves it to the front without a duplicate
    world.push(person(3, first_name="Pers", crm_modified="2026-11-27T11:00:00Z"))
    (org,) = world.xero.contacts.values()
    assert [p["LastName"] for p in org["ContactPersons"]][:2] == ["3", "6"] and len(org["ContactPersons"]) == 5


def test_persons_added_in_xero_survive_a_crm_push():
    world = World()
    world.push(ContactDocument(crm_id="acc1", name="Acme"))
    world.push(person(1))
    (org,) = world.xero.contacts.values()
    finance = {"FirstName": "Fiona", "LastName": "Accounts", "EmailAddress": "ap@acme.example", "IncludeInEmails": True}
    org["ContactPersons"].append(finance)  # entered in Xero by the finance team
    world.push(person(2), person(1, first_name="Per", crm_modified="2026-11-27T11:00:00Z"))
    (org,) = world.xero.contacts.values()
    assert finance in org["ContactPersons"]
    assert sorted(p["EmailAddress"] for p in org["ContactPersons"]) == ["ap@acme.example", "p1@example.com",
                                                                        "p2@example.com"]
    assert [p["FirstName"] for p in org["ContactPersons"] if p["EmailAddress"] == "p1@example.com"] == ["Per"]


def test_a_crm_person_whose_email_changed_replaces_what_the_connector_pushed_not_xeros_people():
    world = World()
    world.push(ContactDocument(crm_id="acc1", name="Acme"))
    world.push(person(1))
    (org,) = world.xero.contacts.values()
    org["ContactPersons"].append({"FirstName": "Xero", "LastName": "Only", "EmailAddress": "x@acme.example"})
    world.push(person(1, email="new-p1@example.com", crm_modified="2026-11-27T11:00:00Z"))
    (org,) = world.xero.contacts.values()
    assert sorted(p["EmailAddress"] for p in org["ContactPersons"]) == ["new-p1@example.com", "x@acme.example"]


def test_over_five_the_xero_persons_stay_and_the_job_names_who_was_left_out():
    world = World()
    world.push(ContactDocument(crm_id="acc1", name="Acme"))
    world.push(person(1))
    (org,) = world.xero.contacts.values()
    org["ContactPersons"] += [{"FirstName": "X", "LastName": str(n), "EmailAddress": f"x{n}@acme.example"}
                              for n in range(3)]
    jobs = world.push(person(2), person(3))
    (org,) = world.xero.contacts.values()
    assert len(org["ContactPersons"]) == 5
    assert {f"x{n}@acme.example" for n in range(3)} <= {p["EmailAddress"] for p in org["ContactPersons"]}
    assert [p["LastName"] for p in org["ContactPersons"][:2]] == ["3", "2"]
    assert any("left out (Person 1)" in w for job in jobs for w in job.warnings)


def test_a_person_whose_account_is_not_synced_waits():
    world = World()
    world.queue.sent.clear()
    (job,) = world.push(person(1, account="acc-not-yet"))
    assert job.status == "queued" and "not synced to Xero yet" in job.error
    assert world.xero.calls == []


def test_a_person_waits_for_its_account_briefly_at_first_then_longer():
    """The Account is usually being pushed in another batch at that moment: the first wait is
    seconds, not a minute; later deliveries wait longer, so that maxReceiveCount covers minutes."""
    from shared.usecases.contacts import ACCOUNT_WAIT_SECONDS, account_wait_seconds

    waits = [account_wait_seconds(n) for n in range(1, 9)]
    assert waits[0] <= 2 and waits == sorted(waits) and waits[-1] == ACCOUNT_WAIT_SECONDS
    assert sum(waits[:-1]) >= 120  # the 7 waits before the 8th (last) delivery
    world = World()
    accept(kind=KIND, crm=CrmRef(module="Contacts", id="p1"), document=person(1, account="acc-not-yet")
           .model_dump(mode="json"), jobs=world.jobs, queue=world.queue, status_base_url="https://x/prod")
    [message] = world.queue.sent
    for delivery in (1, 3):
        item = WorkItem(message_id="m1", job_id=message["job_id"], kind=KIND, document=message["document"],
                        receive_count=delivery)
        result = sync_contacts([item], xero=world.xero, jobs=world.jobs, mappings=world.mappings, config=LINK)
        assert result.retry == {"m1"} and result.retry_after == account_wait_seconds(delivery)


def test_a_deleted_sugar_contact_leaves_the_accounts_persons():
    world = World()
    world.push(ContactDocument(crm_id="acc1", name="Acme"))
    world.push(person(1), person(2))
    world.push(person(1, deleted=True))
    (org,) = world.xero.contacts.values()
    assert [p["LastName"] for p in org["ContactPersons"]] == ["2"]


def test_without_an_account_or_as_own_contacts_a_sugar_contact_is_a_xero_contact():
    world = World()
    (job,) = world.push(person(1, account=None))
    assert world.xero.contacts[job.xero["contact_id"]]["Name"] == "Person 1"
    own = MappingConfig(contacts=ContactRules(sugar_contacts_as="own_contacts"))
    (job,) = world.push(person(2), config=own)
    assert world.xero.contacts[job.xero["contact_id"]]["Name"] == "Person 2"


def test_account_tax_number_account_number_and_currency_come_from_the_configuration():
    from shared.mapping.sugar_contacts import hook_to_document
    from shared.models.sugar import AccountHook

    hook = AccountHook.model_validate({"bean": "Account", "event": "after_save", "data": {
        "id": "a1", "name": "Acme", "vat_c": "GST-123", "acct_no_c": "ACC-9", "currency_id": "cur-sgd"}})
    config = MappingConfig(contacts=ContactRules(tax_number_field="vat_c", account_number_field="acct_no_c"),
                           currencies={"-99": "", "cur-sgd": "SGD"})
    doc = hook_to_document(hook, config)
    assert (doc.tax_number, doc.account_number, doc.currency) == ("GST-123", "ACC-9", "SGD")
    plain = hook_to_document(hook, MappingConfig())
    assert (plain.tax_number, plain.account_number, plain.currency) == (None, None, None)
