"""The organisation's day and Xero's locks (issue 12): documents are dated in Organisation.Timezone,
the lock-date check covers updates and cancellations (which keep Xero's date), and a credit note
allocated to an invoice locks it just as a payment does."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from shared.mapping.invoices import cancellation
from shared.models.invoices import ContactRef, LineDocument, SalesInvoiceDocument, XeroDocumentState
from shared.usecases.metadata import OrganisationMetadata, unknown_references
from shared.xero.client import XeroClient
from shared.xero.timezones import organisation_today
from sugar_xero.local.xero_emulator import EmulatorConfig, serve
from tests.integration.test_xero_as_documented import _contact, _push
from tests.support.fakes import FakeJobs, FakeMappings

# 23:30 UTC on 30 November is already 1 December in Singapore and Auckland, still 30 November in LA
LATE_EVENING_UTC = dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(("xero_timezone", "day"), [
    ("SINGAPORESTANDARDTIME", dt.date(2026, 12, 1)),
    ("NEWZEALANDSTANDARDTIME", dt.date(2026, 12, 1)),
    ("AUSEASTERNSTANDARDTIME", dt.date(2026, 12, 1)),
    ("GMTSTANDARDTIME", dt.date(2026, 11, 30)),
    ("PACIFICSTANDARDTIME", dt.date(2026, 11, 30)),
    ("NOSUCHSTANDARDTIME", dt.date(2026, 11, 30)),  # unknown: UTC, with a warning
])
def test_xero_timezone_names_give_the_organisations_day(xero_timezone, day):
    assert organisation_today(xero_timezone, LATE_EVENING_UTC) == day


def test_the_nightly_metadata_keeps_the_organisations_timezone():
    metadata = OrganisationMetadata.from_xero({"Organisations": [{"Timezone": "SINGAPORESTANDARDTIME"}]},
                                              LATE_EVENING_UTC)
    again = OrganisationMetadata.from_json(metadata.as_json())
    assert again.timezone == "SINGAPORESTANDARDTIME"
    assert again.today(LATE_EVENING_UTC) == dt.date(2026, 12, 1)


def test_an_invoice_with_credit_allocated_is_locked_and_never_voided():
    state = XeroDocumentState(target="ACCREC", xero_id="i-1", status="AUTHORISED", total=Decimal("100.00"),
                              amount_due=Decimal("90.00"), amount_credited=Decimal("10.00"))
    assert state.locked
    assert cancellation(state, credit_with_payments=False)[0] == "refuse"
    assert cancellation(state, credit_with_payments=True)[0] == "credit_note"


@pytest.fixture
def xero():
    config = EmulatorConfig()
    with serve(config=config) as server:
        yield XeroClient(server.url, config.tenant_id, lambda force: "token", sleep=lambda s: None)


def test_an_update_without_a_date_is_checked_against_the_lock_date(xero, monkeypatch):
    """An update keeps Xero's date (the body has none), and Xero refuses it in a locked period."""
    contact_id = _contact(xero, "Locked Period Pte Ltd")
    doc = SalesInvoiceDocument(kind="sales", crm_module="Orders", crm_id="o-9",
                               contact=ContactRef(xero_contact_id=contact_id), status="DRAFT",
                               lines=[LineDocument(crm_id="l1", description="a", unit_amount=Decimal("10"))])
    jobs, mappings = FakeJobs(), FakeMappings()
    from shared.usecases import invoices

    real = invoices.push_documents

    def push(items, **kwargs):
        kwargs.setdefault("today", dt.date(2026, 11, 2))
        # only the period lock: this metadata has no chart of accounts to check against
        kwargs["check_references"] = lambda body: [p for p in unknown_references(body, metadata) if "locked" in p]
        return real(items, **kwargs)

    metadata = OrganisationMetadata(refreshed_at="2026-12-01T00:00:00+00:00")
    monkeypatch.setattr(invoices, "push_documents", push)
    assert jobs.jobs[_push(xero, jobs, mappings, doc)].status == "succeeded"
    metadata = OrganisationMetadata(refreshed_at="2026-12-01T00:00:00+00:00", lock_date="2026-11-30")
    changed = doc.model_copy(update={"lines": [LineDocument(crm_id="l1", description="b", unit_amount=Decimal("11"))]})
    job = jobs.jobs[_push(xero, jobs, mappings, changed)]
    assert job.status == "failed" and "locked" in job.error
    cancelled = jobs.jobs[_push(xero, jobs, mappings, doc.model_copy(update={"cancelled": True}))]
    assert cancelled.status == "failed" and "locked" in cancelled.error
    (invoice,) = xero.iter_pages("Invoices")
    assert invoice["Status"] == "DRAFT" and invoice["LineItems"][0]["Description"] == "a"


def test_the_functions_date_documents_on_the_organisations_day_from_the_cached_metadata(aws, monkeypatch):
    from shared import wiring
    from shared.usecases import metadata as metadata_module

    metadata = OrganisationMetadata(refreshed_at="2026-11-30T00:00:00+00:00", timezone="NEWZEALANDSTANDARDTIME")
    wiring.reconcile_state().put_metadata("tenant-nz", metadata.as_json())
    real_today = metadata_module.OrganisationMetadata.today
    monkeypatch.setattr(metadata_module.OrganisationMetadata, "today",
                        lambda self, now=None: real_today(self, now or LATE_EVENING_UTC))
    assert wiring.organisation_today("tenant-nz") == dt.date(2026, 12, 1)  # UTC still says 30 November
