"""`sugar-check` against the Sugar double over loopback HTTP: everything present; one field
missing; one hook pointing elsewhere; and the command's table and exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.billing.rules import parse_rules
from shared.mapping.settings import MappingFile
from shared.sugar import SugarClient
from shared.sugar.schema import HOOKS, as_vardefs, required_fields
from shared.usecases.sugar_check import check_crm, expected_hooks, render_table
from sugar_xero import sugar_check
from sugar_xero.local.sugar_double import SugarDouble, SugarDoubleServer
from tests.support.fakes import FakeTokens as Tokens

RULES = parse_rules("""
version: 1
rules:
  - name: membership-active
    when: paid
    set_fields: {module: Accounts, id_field: billing_account_id, values: {membership_status_c: Active}}
  - name: revenue-received
    when: paid
    revenue: {to: [{module: Opportunities, id_field: opportunity_id, field: revenue_received_c}]}
""", path=Path("rules.yaml"))
MAPPING = MappingFile()
API = "https://api.example.test/prod"
TOKEN = "local-crm-token"  # the documented local default of CRM_TOKEN


@pytest.fixture
def sugar():
    double = SugarDouble()
    server = SugarDoubleServer(double)
    yield double, server
    server.shutdown()


def install_everything(double: SugarDouble) -> list:
    fields = required_fields(MAPPING, RULES)
    double.install_fields(as_vardefs(fields))
    double.seed({"records": {"WebLogicHooks": [
        {"name": hook.name, "webhook_target_module": hook.module, "trigger_event": hook.event,
         "request_method": "POST", "url": url} for hook, url in expected_hooks(API, TOKEN)]}})
    return fields


def client(server) -> SugarClient:
    return SugarClient(server.url, "xero-connector", "local-sugar-password", "xero_connector", Tokens())


def test_all_present(sugar):
    double, server = sugar
    fields = install_everything(double)
    check = check_crm(client(server), fields, hooks=expected_hooks(API, TOKEN))
    assert check.ok, check.summary()
    assert len([r for r in check.rows if r.kind == "hook"]) == len(HOOKS) == 8
    assert {(r.module, r.name) for r in check.rows if r.kind == "field"} >= {
        ("Accounts", "membership_status_c"), ("Opportunities", "revenue_received_c"),
        ("Quotes", "xero_sync_status_c"), ("Quotes", "billing_account_id")}
    assert TOKEN not in render_table(check)
    # through Sugar's documented endpoint, one call for every module
    counts = double.request_counts()["by_route"]
    assert counts.get("GET /rest/v11/metadata") == 1


def test_one_field_missing_and_one_of_the_wrong_type(sugar):
    double, server = sugar
    fields = install_everything(double)
    double.remove_field("Quotes", "xero_amount_due_c")  # deleted in Studio
    double.install_fields({"Accounts": {"membership_status_c": {"type": "date"}}})
    check = check_crm(client(server), fields, hooks=expected_hooks(API, TOKEN))
    assert not check.ok
    problems = {(r.module, r.name): (r.state, r.found) for r in check.problems}
    assert problems == {("Quotes", "xero_amount_due_c"): ("missing", ""),
                        ("Accounts", "membership_status_c"): ("wrong type", "date")}
    table = render_table(check)
    assert "MISSING" in table and "WRONG TYPE" in table and "2 to fix" in table


def test_one_hook_pointing_elsewhere(sugar):
    double, server = sugar
    fields = install_everything(double)
    hook = next(r for r in double.store.records["WebLogicHooks"].values()
                if r["webhook_target_module"] == "Quotes" and r["trigger_event"] == "after_save")
    hook["url"] = "https://old-stack.example.test/prod/crm/quotes?token=" + TOKEN
    gone = next(r for r in double.store.records["WebLogicHooks"].values()
                if r["webhook_target_module"] == "Contacts" and r["trigger_event"] == "after_delete")
    del double.store.records["WebLogicHooks"][gone["id"]]
    check = check_crm(client(server), fields, hooks=expected_hooks(API, TOKEN))
    problems = {(r.module, r.name): (r.state, r.found) for r in check.problems}
    assert problems == {
        ("Quotes", "after_save"): ("wrong URL", "https://old-stack.example.test/prod/crm/quotes?token=***"),
        ("Contacts", "after_delete"): ("missing", ""),
    }


def test_a_hook_with_another_token_is_wrong_and_an_unknown_token_is_not_compared(sugar):
    double, server = sugar
    fields = install_everything(double)
    other = check_crm(client(server), fields, hooks=expected_hooks(API, "another-token"))
    assert {r.state for r in other.rows if r.kind == "hook"} == {"wrong URL"}
    unknown = check_crm(client(server), fields, hooks=expected_hooks(API, None), token_known=False)
    assert unknown.ok


def test_a_module_missing_and_sugar_refusing_are_told_apart(sugar):
    double, server = sugar
    fields = [f for f in required_fields(MAPPING, RULES)]
    double.store.fields.pop("Opportunities")
    check = check_crm(client(server), fields)
    assert {r.state for r in check.problems if r.module == "Opportunities"} == {"module missing"}

    class Refusing:
        def metadata(self, modules):
            raise RuntimeError("403 not_authorized")

        def iter_filter(self, *args, **kwargs):
            raise RuntimeError("403 not_authorized")

    refused = check_crm(Refusing(), fields, hooks=expected_hooks(API, TOKEN))
    assert not refused.ok and len(refused.errors) == 2
    assert {r.state for r in refused.rows} == {"unreadable"}


def test_command_prints_the_table_and_exits_1_on_a_missing_field(sugar, tmp_path, monkeypatch):
    double, server = sugar
    install_everything(double)
    rules = tmp_path / "rules.yaml"
    rules.write_text("""
version: 1
rules:
  - name: membership-active
    when: paid
    set_fields: {module: Accounts, id_field: billing_account_id, values: {membership_status_c: Active}}
  - name: revenue-received
    when: paid
    revenue: {to: [{module: Opportunities, id_field: opportunity_id, field: revenue_received_c}]}
""")
    env = {"SUGAR_BASE_URL": server.url, "CRM_TOKEN": TOKEN}
    for name in ("SYNC_TABLE", "SECRETS_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUGAR_BASE_URL", server.url)
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    args = ["--rules", str(rules), "--api-url", API, "--state-file", str(tmp_path / "none.json")]
    out = io.StringIO()
    assert sugar_check.run(args, out=out, environ=env) == 0, out.getvalue()
    assert "0 to fix" not in out.getvalue() and TOKEN not in out.getvalue()
    double.remove_field("Accounts", "xero_sync_status_c")
    out = io.StringIO()
    assert sugar_check.run([*args, "--json"], out=out, environ=env) == 1
    answer = json.loads(out.getvalue())
    assert answer["ok"] is False
    assert [(r["module"], r["name"], r["state"]) for r in answer["rows"] if r["state"] != "present"] == [
        ("Accounts", "xero_sync_status_c", "missing")]


def test_command_without_sugar_exits_2(tmp_path, monkeypatch):
    monkeypatch.delenv("SUGAR_BASE_URL", raising=False)
    err = io.StringIO()
    assert sugar_check.run(["--state-file", str(tmp_path / "none.json")], err=err, environ={}) == 2
    assert "SUGAR_BASE_URL" in err.getvalue()


# ---- what `sugar-xero status` shows, and the nightly check ------------------------------------
def test_status_shows_the_last_check_and_a_missing_field_needs_a_person(aws, tmp_path, sugar):
    from shared.state.crm_check import CrmCheckTable
    from tests.conftest import SYNC_TABLE_NAME
    from tests.integration.test_status import seed, status

    double, server = sugar
    fields = install_everything(double)
    seed(aws["dynamodb"], disconnected=False)
    environ = {"SYNC_TABLE": SYNC_TABLE_NAME, "CONTACT_QUEUE_URL": aws["queue_url"],
               "CONTACT_DLQ_URL": aws["dlq_url"]}
    table = CrmCheckTable(SYNC_TABLE_NAME, resource=aws["dynamodb"])
    table.put_crm_check(check_crm(client(server), fields, hooks=expected_hooks(API, TOKEN)).as_dict())
    code, text = status([], environ, tmp_path)
    assert code == 0, text
    assert "CRM fields and hooks (last check)" in text and "everything present" in text

    double.remove_field("Quotes", "xero_sync_status_c")
    table.put_crm_check(check_crm(client(server), fields, hooks=expected_hooks(API, TOKEN)).as_dict())
    code, text = status([], environ, tmp_path)
    assert code == 1
    assert "the CRM lacks what the configuration needs" in text and "xero_sync_status_c" in text
    assert TOKEN not in text


def test_the_nightly_metadata_refresh_runs_the_check(sugar):
    from datetime import UTC, datetime

    from shared.usecases.reconcile import Limits, TenantPorts, TenantReport, _Clock, _TenantPass

    double, server = sugar
    fields = install_everything(double)
    double.remove_field("Accounts", "xero_id_c")

    class State:
        def __init__(self):
            self.saved = None

        def get_metadata(self, tenant_id):
            return None

        def put_metadata(self, tenant_id, metadata):
            self.saved = metadata

    class Xero:
        def get(self, path, params=None, **_):
            key = "Organisations" if path == "Organisation" else path
            return {key: []}

    crm = client(server)
    ports = TenantPorts(tenant_id="t1", xero=Xero(), state=State(), mappings=None, apply_documents=None,
                        config=MAPPING.defaults, crm=crm,
                        crm_check=lambda: check_crm(crm, fields, hooks=expected_hooks(API, TOKEN)).as_dict())
    now = datetime.now(UTC)
    report = TenantReport(tenant_id="t1", started=now.isoformat())
    _TenantPass(ports, Limits(), _Clock(now, None, lambda: 0.0, 0.0), report).metadata()
    check = report.metadata["crm_check"]
    assert check["ok"] is False and "Accounts.xero_id_c missing" in check["summary"]


def test_the_nightly_check_uses_the_deployed_configuration_and_the_stacks_url(sugar, monkeypatch):
    from shared import wiring
    from shared.billing.rules import rules_file
    from shared.mapping.settings import mapping_file
    from shared.usecases.sugar_check import nightly_crm_check

    double, server = sugar
    for name in ("MAPPING_CONFIG", "BILLING_RULES", "SECRETS_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PUBLIC_BASE_URL", API)
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    wiring.reset()
    mapping_file.cache_clear()
    rules_file.cache_clear()
    fields = required_fields(MappingFile(), None)
    double.install_fields(as_vardefs(fields))
    double.seed({"records": {"WebLogicHooks": [
        {"name": hook.name, "webhook_target_module": hook.module, "trigger_event": hook.event,
         "request_method": "POST", "url": url} for hook, url in expected_hooks(API, TOKEN)]}})
    check = nightly_crm_check(client(server))
    assert check["ok"] is True and len([r for r in check["rows"] if r["kind"] == "hook"]) == 8
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://moved.example.test/prod")
    wiring.reset()
    moved = nightly_crm_check(client(server))
    assert {r["state"] for r in moved["rows"] if r["kind"] == "hook"} == {"wrong URL"}
    wiring.reset()
