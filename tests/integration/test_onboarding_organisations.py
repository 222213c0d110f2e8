"""One CRM, several Xero organisations, onboarded as Xero does it: the emulator's user may access
several organisations, GET /connections lists every one, and one pass through /xero/connect →
sign-in → /xero/callback records them all; an organisation the mapping configuration names but
the consent left out is named on the callback's page and its work waits for it."""

from __future__ import annotations

import json

import pytest
import requests

from shared import wiring
from shared.errors import ConnectionNotReady
from shared.mapping.settings import mapping_file
from sugar_xero.local.xero.config import DEFAULT_TENANT_ID, EmulatorConfig
from sugar_xero.local.xero.server import serve
from tests.integration.test_onboarding import call, start

SG, MY, ID = DEFAULT_TENANT_ID, "5e0b7a3c-9d21-4f6e-8a10-2b3c4d5e6f70", "7a1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
MAPPING = f"""
version: 1
organisations:
  names: {{SG: "{SG}", MY: "{MY}", ID: "{ID}"}}
  default: SG
  route_by: account.billing_address_country
  routes: {{Malaysia: MY, Indonesia: ID}}
"""


@pytest.fixture
def emulator():
    server = serve(config=EmulatorConfig(organisations={MY: "Harbour Demo Sdn Bhd"}))
    yield server
    server.shutdown()


@pytest.fixture
def onboarding(aws, emulator, tmp_path, monkeypatch):
    from functions.payment_webhook import app

    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    monkeypatch.setenv("MAPPING_CONFIG", str(mapping))
    mapping_file.cache_clear()
    monkeypatch.delenv("XERO_TENANT_ID", raising=False)
    monkeypatch.setenv("XERO_AUTHORIZE_URL", f"{emulator.url}/identity/connect/authorize")
    monkeypatch.setenv("XERO_IDENTITY_URL", f"{emulator.url}/connect/token")
    monkeypatch.setenv("XERO_API_BASE_URL", emulator.url)
    wiring.reset()
    yield {**aws, "handler": app.lambda_handler, "xero": emulator.url, "browser": {}, "emulator": emulator}
    wiring.reset()
    mapping_file.cache_clear()


def test_connections_lists_every_organisation_the_user_may_access(emulator):
    answer = requests.get(f"{emulator.url}/connections", headers={"Authorization": "Bearer t"}, timeout=5)
    assert answer.status_code == 200
    connections = answer.json()
    assert [(c["tenantId"], c["tenantName"], c["tenantType"]) for c in connections] == [
        (SG, emulator.app.config.tenant_name, "ORGANISATION"), (MY, "Harbour Demo Sdn Bhd", "ORGANISATION")]
    assert len({c["id"] for c in connections}) == 2  # a connection each
    assert len({c["authEventId"] for c in connections}) == 1  # from one consent
    organisation = requests.get(f"{emulator.url}/api.xro/2.0/Organisation", timeout=5,
                                headers={"Authorization": "Bearer t", "xero-tenant-id": MY}).json()
    assert organisation["Organisations"][0]["Name"] == "Harbour Demo Sdn Bhd"
    # Another organisation added to the user's login at run time (the local stack does this).
    added = requests.post(f"{emulator.url}/_emulator/organisations", json={ID: "Harbour Demo PT"}, timeout=5)
    assert [c["tenantId"] for c in added.json()["connections"]] == [SG, MY, ID]
    assert requests.post(f"{emulator.url}/_emulator/organisations", json=[1], timeout=5).status_code == 400


def test_one_consent_records_every_organisation_and_the_default_one_is_the_crms(onboarding):
    onboarding["emulator"].app.config.organisations[ID] = "Harbour Demo PT"
    status, _, body = call(onboarding, "GET", "/xero/callback", query=start(onboarding))
    assert status == 200, body
    answer = json.loads(body)
    assert [(t["tenant_id"], t["selected"]) for t in answer["tenants"]] == [(SG, True), (MY, False), (ID, False)]
    assert answer["message"] == "Connected."
    connection = wiring.job_store().get_connection("default")
    assert {t["tenant_id"] for t in connection["tenants"]} == {SG, MY, ID}
    assert wiring.xero_client_for(MY).tenant_id == MY  # connected: its work goes ahead


def test_an_organisation_left_out_of_the_consent_is_named_and_its_work_waits(onboarding):
    status, _, body = call(onboarding, "GET", "/xero/callback", query=start(onboarding))
    assert status == 200, body
    answer = json.loads(body)
    assert [t["tenant_id"] for t in answer["tenants"]] == [SG, MY]
    assert f"ID ({ID})" in answer["message"] and "MY" not in answer["message"].split(":")[1]
    with pytest.raises(ConnectionNotReady, match="ID .* is not connected"):
        wiring.xero_client_for(ID)
    assert wiring.xero_client_for(MY).tenant_id == MY
