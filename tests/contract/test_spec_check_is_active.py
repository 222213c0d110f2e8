"""The evidence behind every other test: the spec check wraps the Xero client in every test and
refuses what Xero's spec refuses, and a suite without the spec (or the fixtures) does not start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import responses

from shared.xero.client import XeroClient
from tests.support import contract

REPO = Path(__file__).resolve().parents[2]
CONTACTS_URL = "https://api.xero.com/api.xro/2.0/Contacts"


def test_an_invalid_body_sent_through_the_xero_client_fails_the_contract_check():
    client = XeroClient("https://api.xero.com", "tenant-1", lambda refresh: "token", max_attempts=1)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, CONTACTS_URL, json={"Contacts": [{"ContactID": "c-1", "Name": "7"}]})
        before = contract.checked["count"]
        # Name must be a string and ContactStatus one of Xero's values: both are refused by the spec.
        client.upsert_batch("Contacts", [{"Name": 7, "ContactStatus": "SLEEPING"}], idempotency_key="k-1")
    assert contract.checked["count"] == before + 1
    found, contract.violations[:] = list(contract.violations), []  # taken here so this test passes
    assert len(found) == 1 and "POST /api.xro/2.0/Contacts" in found[0]
    assert "ContactStatus" in found[0] and "SLEEPING" in found[0]


def test_a_valid_body_passes_the_same_check():
    client = XeroClient("https://api.xero.com", "tenant-1", lambda refresh: "token", max_attempts=1)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, CONTACTS_URL, json={"Contacts": [{"ContactID": "c-1", "Name": "Fine"}]})
        client.upsert_batch("Contacts", [{"Name": "Fine"}], idempotency_key="k-2")
    assert contract.violations == []


def _collect_with(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/contract/test_spec_check_is_active.py"],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_a_run_without_the_spec_fails_at_once_naming_the_variable(tmp_path):
    nowhere = tmp_path / "nowhere" / "xero_accounting.yaml"
    run = _collect_with(XERO_OPENAPI_SPEC=str(nowhere))
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "XERO_OPENAPI_SPEC" in output and str(nowhere) in output
    assert "collected" not in output  # refused before collecting anything


def test_a_run_without_the_fixtures_fails_at_once_naming_the_variable(tmp_path):
    run = _collect_with(SUGAR_XERO_FIXTURES=str(tmp_path / "no-fixtures"))
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "SUGAR_XERO_FIXTURES" in output and str(tmp_path / "no-fixtures") in output
