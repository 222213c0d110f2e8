"""schemathesis against the connector's own OpenAPI, through the local gateway (bench/fuzz.py):
every operation, authenticated and not, valid and invalid bodies. No 5xx; every 4xx is the JSON
error body (the webhook's 401 is empty); a refused request stores nothing. `make bench` runs the
same harness with 500 cases per operation."""

from __future__ import annotations

import json

import pytest
import requests

from bench import fuzz

pytestmark = pytest.mark.e2e

CASES = 20


@pytest.fixture(scope="module")
def report() -> fuzz.FuzzReport:
    return fuzz.fuzz(CASES)


def test_no_5xx_json_errors_and_nothing_stored_for_a_refusal(report):
    found = [failure.describe() for failure in report.failures]
    assert not found, f"{len(found)} contract breaches:\n" + "\n".join(found[:20])


def test_every_published_operation_was_fuzzed(report):
    assert not report.errors, report.errors
    fuzzed = {result.operation: result.cases for result in report.results}
    published = {f"{method.upper()} {path}" for path, method in fuzz.operations()}
    assert set(fuzzed) == published
    assert all(cases >= CASES for cases in fuzzed.values()), fuzzed


def test_the_edge_cases_ran_on_every_crm_post(report):
    """Deep nesting on every CRM route, a 250 KB non-ASCII document on the document routes
    (bench/fuzz.py _edge_bodies): counted on top of the generated cases, checked the same way."""
    for result in report.results:
        if result.operation.startswith("POST /crm/"):
            edges = len(fuzz._edge_bodies(result.operation.split(" ", 1)[1]))
            assert edges >= 2 and result.cases >= CASES + edges, (result.operation, result.cases)
    invoices = next(r for r in report.results if r.operation == "POST /crm/invoices")
    assert invoices.statuses.get(400, 0) >= 2 and invoices.statuses.get(202, 0) >= 1, invoices.statuses


def test_the_cases_reach_past_authentication_and_past_validation(report):
    """A fuzz that only ever hears 401 or 422 proves nothing about the handlers behind them."""
    statuses = {result.operation: result.statuses for result in report.results}
    contacts = statuses["POST /crm/contacts"]
    assert contacts.get(202, 0) > 0 and contacts.get(401, 0) > 0, contacts
    assert any(code in contacts for code in (400, 422)), contacts
    webhooks = statuses["POST /xero/webhooks"]
    assert webhooks.get(200, 0) > 0 and webhooks.get(401, 0) > 0, webhooks


class _Answer:
    def __init__(self, body: bytes, content_type: str = "application/json"):
        self.content = body
        self.headers = {"Content-Type": content_type}

    def json(self):
        return json.loads(self.content)


@pytest.mark.parametrize("body,content_type", [
    (b'{"message": "Internal server error"}', "application/json"),
    (b'{"error": "x", "message": "y"}', "application/json"),
    (b'{"error": "x", "message": "y", "details": "z"}', "application/json"),
    (b"not json", "application/json"),
    (b'{"error": "x", "message": "y", "details": []}', "text/plain"),
])
def test_the_error_body_check_refuses_what_the_contract_does_not_allow(body, content_type):
    assert fuzz._error_body_problem(_Answer(body, content_type)) is not None  # type: ignore[arg-type]


def test_the_error_body_check_accepts_the_contract_shape():
    answer = _Answer(b'{"error": "invalid_body", "message": "m", "details": [{"field": "f"}]}')
    assert fuzz._error_body_problem(answer) is None  # type: ignore[arg-type]


def test_the_storage_check_sees_a_queued_message_and_a_stored_item():
    with fuzz.intake_stack() as stack:
        before = fuzz.stored_count()
        answer = requests.post(f"{stack.urls['gateway']}/crm/contacts", timeout=30,
                               headers={"Authorization": "Bearer local-crm-token"},
                               json={"crm_id": "fuzz-check-1", "name": "Storage check Ltd"})
        assert answer.status_code == 202, answer.text
        assert fuzz.stored_count() - before >= 2  # the job item and its queue message
