"""Sugar Web Logic Hook bodies as Sugar's own code sends them (issue 12; samples in
tests/fixtures/sugar/ without ``_module``/``_acl``, as hooks have none): a Data Privacy erasure,
an overridden bean class, relationship and delete events, zero and fractional quantities."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared.mapping.settings import ContactRules, MappingConfig
from shared.mapping.sugar_contacts import hook_to_document
from shared.mapping.sugar_quotes import quote_documents
from shared.models.sugar import AccountHook, ContactHook, QuoteHook, bean_module
from shared.usecases.contacts import sync_contacts
from shared.usecases.work import WorkItem
from shared.xero.client import XeroClient
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.integration.test_contact_sync_handler import TOKEN, call
from tests.support.events import api_event
from tests.support.fakes import FakeJobs, FakeMappings, FakeQueue
from tests.unit.test_contacts_usecase import queued


@pytest.fixture
def xero():
    config = EmulatorConfig()
    with serve(config=config) as server:
        yield XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


class Crm:
    def __init__(self, xero: XeroClient, config: MappingConfig | None = None):
        self.xero, self.config = xero, config or MappingConfig()
        self.jobs, self.queue, self.mappings = FakeJobs(), FakeQueue(), FakeMappings()

    def save(self, body: dict):
        model = AccountHook if bean_module(body["bean"]) == "Accounts" else ContactHook
        doc = hook_to_document(model.model_validate(body), self.config)
        job_id = queued(self.jobs, self.queue, doc)
        items = [WorkItem(message_id=f"m{i}", job_id=m["job_id"], kind=m["kind"], document=m["document"])
                 for i, m in enumerate(self.queue.sent)]
        self.queue.sent.clear()
        sync_contacts(items, xero=self.xero, jobs=self.jobs, mappings=self.mappings, config=self.config)
        return self.jobs.jobs[job_id]

    def contact(self, crm_id: str) -> dict:
        xero_id = self.mappings.get_mappings(self.xero.tenant_id, "Accounts", [crm_id])[crm_id].xero_id
        return self.xero.get(f"Contacts/{xero_id}")["Contacts"][0]


ACCOUNT_ID = "4f1e6a7c-2b3d-11ef-9a1c-0242ac120002"


def test_an_account_erasure_blanks_its_personal_fields_in_xero_and_says_so(xero, fixture_body):
    crm = Crm(xero)
    assert crm.save(fixture_body("sugar/account_after_save.json")).status == "succeeded"
    before = crm.contact(ACCOUNT_ID)
    assert before["EmailAddress"] and any(p.get("PhoneNumber") for p in before["Phones"])
    job = crm.save(fixture_body("sugar/account_after_save_data_privacy_erasure.json"))
    assert job.status == "succeeded", job.error
    assert any("Data Privacy erasure" in w and "EmailAddress" in w and "Phones" in w for w in job.warnings)
    after = crm.contact(ACCOUNT_ID)
    assert after["ContactID"] == before["ContactID"] and after["ContactStatus"] == "ACTIVE"
    assert not after.get("EmailAddress") and not any(p.get("PhoneNumber") for p in after["Phones"])
    assert "Harbour View" not in after["Name"]  # the erased name is gone too
    assert after["ContactNumber"] == ACCOUNT_ID  # the link the financial history hangs on is kept


def test_an_account_erasure_archives_the_contact_when_so_configured(xero, fixture_body):
    crm = Crm(xero, MappingConfig(contacts=ContactRules(on_erasure="archive")))
    crm.save(fixture_body("sugar/account_after_save.json"))
    job = crm.save(fixture_body("sugar/account_after_save_data_privacy_erasure.json"))
    assert job.status == "succeeded", job.error
    assert any("archived" in w for w in job.warnings)
    after = crm.contact(ACCOUNT_ID)
    assert after["ContactStatus"] == "ARCHIVED" and not after.get("EmailAddress")


def test_a_contact_person_erasure_removes_the_person_from_the_accounts_xero_contact(xero, fixture_body):
    crm = Crm(xero)
    crm.save(fixture_body("sugar/account_after_save.json"))
    assert crm.save(fixture_body("sugar/contact_after_save_v8.json")).status == "succeeded"
    assert [p["LastName"] for p in crm.contact(ACCOUNT_ID)["ContactPersons"]] == ["Tan"]
    job = crm.save(fixture_body("sugar/contact_after_save_data_privacy_erasure_sugar13.json"))
    assert job.status == "succeeded", job.error
    assert any("removed" in w for w in job.warnings)
    assert crm.contact(ACCOUNT_ID)["ContactPersons"] == []


def test_an_erasure_of_a_record_never_pushed_is_ignored_with_a_reason(xero, fixture_body):
    job = Crm(xero).save(fixture_body("sugar/account_after_save_data_privacy_erasure.json"))
    assert job.status == "ignored" and "never pushed" in job.warnings[0]
    assert list(xero.iter_pages("Contacts")) == []


def test_an_ordinary_save_without_optional_fields_erases_nothing(fixture_body):
    body = fixture_body("sugar/account_after_save.json")
    for field in ("email", "email1", "phone_office", "phone_fax", "phone_alternate"):
        body["data"].pop(field)
    assert hook_to_document(AccountHook.model_validate(body)).erased == []


@pytest.mark.parametrize("bean", ["CustomAccount", "Account"])
def test_overridden_core_bean_classes_are_known_by_default(bean, fixture_body):
    body = fixture_body("sugar/account_after_save_custom_bean_class.json")
    assert AccountHook.model_validate({**body, "bean": bean}).bean == "Account"
    assert bean_module("CustomQuote") == "Quotes" and bean_module("CustomProductTemplate") == "ProductTemplates"
    assert bean_module("AcmeAccount") is None and bean_module("AcmeAccount", {"AcmeAccount": "Accounts"}) == "Accounts"


@pytest.fixture
def handler(aws):
    from functions.contact_sync import app

    return app.lambda_handler


def test_hook_bodies_as_sugar_sends_them_are_never_a_422(handler, fixture_body):
    def post(name: str):
        return call(handler, api_event("POST", "/crm/contacts", body=fixture_body(name), query={"token": TOKEN}))

    assert post("sugar/account_after_save_custom_bean_class.json")[0] == 202
    assert post("sugar/account_after_save_data_privacy_erasure.json")[0] == 202
    assert post("sugar/contact_after_save_data_privacy_erasure_sugar13.json")[0] == 202
    assert post("sugar/account_after_delete_sugar13.json")[0] == 202
    status, body = post("sugar/account_after_relationship_add_contacts_link.json")
    assert status == 200 and "changes nothing" in body["reason"]


def test_zero_and_fractional_quantities_are_kept_exactly(fixture_body):
    quote = QuoteHook.model_validate(fixture_body("sugar/quote_closed_accepted.json")).data
    bundles = fixture_body("sugar/quote_products_zero_and_fractional_quantities.json")["records"]
    quote = quote.model_copy(update={"total": None, "tax": None, "subtotal": None, "shipping": None})
    (doc,), _ = quote_documents(quote, bundles, MappingConfig(), deleted=False, item_codes={})
    assert [line.quantity for line in doc.lines] == [Decimal("2.5"), Decimal("0"), Decimal("1")]
    assert json.loads(doc.model_dump_json())["lines"][1]["quantity"] in ("0", "0.0000", 0)
