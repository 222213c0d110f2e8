"""Routing documents to Xero organisations by a CRM field, with a default."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.mapping.settings import MappingFile, Organisations
from shared.sugar.errors import SugarError
from shared.usecases.routing import Router
from shared.usecases.work import WorkItem

ORGS = {"names": {"SG": "t-sg", "MY": "t-my", "ID": "t-id"}, "default": "SG"}


class Crm:
    def __init__(self, records, error=None):
        self.records, self.error, self.reads = records, error, []

    def get_record(self, module, record_id, fields=None):
        self.reads.append((module, record_id))
        if self.error:
            raise self.error
        if (module, record_id) not in self.records:
            raise SugarError("not found", status=404, label="not_found", retryable=False)
        return self.records[(module, record_id)]


def item(document, n=0):
    return WorkItem(message_id=f"m{n}", job_id=f"j{n}", kind="quote.push", document=document)


def quote(quote_id, account_id, **fields):
    return {"event": "after_save", "quote": {"id": quote_id, "billing_account_id": account_id, **fields}}


def test_by_the_accounts_country_read_once_per_batch():
    organisations = Organisations(**ORGS, route_by="account.billing_address_country",
                                  routes={"Malaysia": "MY", "Indonesia": "ID"})
    crm = Crm({("Accounts", "a-my"): {"billing_address_country": "MALAYSIA"},
               ("Accounts", "a-sg"): {"billing_address_country": "Singapore"}})
    router = Router(organisations, crm)
    groups = router.split([item(quote("q1", "a-my"), 1), item(quote("q2", "a-sg"), 2), item(quote("q3", "a-my"), 3),
                           item(quote("q4", "gone"), 4), item(quote("q5", None), 5)])
    assert {tenant: [i.message_id for i in items] for tenant, items in groups.items()} == {
        "t-my": ["m1", "m3"], "t-sg": ["m2", "m4", "m5"]}  # unrouted, gone and account-less: the default
    assert crm.reads.count(("Accounts", "a-my")) == 1


def test_by_a_field_of_the_document_itself_or_read_from_the_crm():
    organisations = Organisations(**ORGS, route_by="company_c", routes={"Indo": "ID"})
    crm = Crm({("Quotes", "q2"): {"company_c": "indo"}, ("Memberships", "m1"): {"company_c": "Indo"}})
    router = Router(organisations, crm)
    assert router.tenant_for(item(quote("q1", "a", company_c="Indo"))) == "t-id"  # in the hook data
    assert router.tenant_for(item(quote("q2", "a"))) == "t-id"  # not in it: read from Sugar
    own = {"kind": "sales_invoice", "crm_module": "Memberships", "crm_id": "m1", "contact": {"crm_id": "a"}}
    assert router.tenant_for(item(own)) == "t-id"
    assert router.tenant_for(item({**own, "company_c": "other"})) == "t-sg"


def test_own_documents_follow_their_accounts_field():
    organisations = Organisations(**ORGS, route_by="account.billing_address_country", routes={"Malaysia": "MY"})
    crm = Crm({("Accounts", "a-my"): {"billing_address_country": "Malaysia"}})
    own = {"kind": "sales_invoice", "crm_module": "Memberships", "crm_id": "m1",
           "contact": {"crm_module": "Accounts", "crm_id": "a-my"}}
    assert Router(organisations, crm).tenant_for(item(own)) == "t-my"
    person = {**own, "contact": {"crm_module": "Contacts", "crm_id": "c1"}}
    assert Router(organisations, crm).tenant_for(item(person)) == "t-sg"


def test_a_crm_that_cannot_answer_now_is_retried_not_defaulted():
    organisations = Organisations(**ORGS, route_by="account.billing_address_country", routes={"Malaysia": "MY"})
    crm = Crm({}, error=SugarError("down", status=503, label="service_unavailable", retryable=True))
    with pytest.raises(SugarError):
        Router(organisations, crm).tenant_for(item(quote("q1", "a1")))


def test_configuration_names_only_known_organisations():
    with pytest.raises(ValidationError, match="not in names"):
        MappingFile.model_validate({"organisations": {**ORGS, "routes": {"Thailand": "TH"}}})
    with pytest.raises(ValidationError, match="same Xero tenant id"):
        MappingFile.model_validate({"organisations": {"names": {"A": "t", "B": "t"}, "default": "A"}})
    assert MappingFile().organisations is None
