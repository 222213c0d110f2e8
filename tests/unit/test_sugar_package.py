"""The Module Loadable Package: its structure, every PHP file through `php -l`, each field the
configuration and the billing rules name installed with its type, and the hook scripts run
against a stand-in BeanFactory."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from shared.billing.rules import parse_rules
from shared.mapping.settings import MappingFile
from shared.sugar.schema import HOOKS, SYNC_STATUS_LIST, SYNC_STATUSES, required_fields
from sugar_xero.sugar_package import command
from sugar_xero.sugar_package.build import build_package
from tests.support.php import php_eval, php_lint

RULES = """
version: 1
rules:
  - name: membership-active
    when: paid
    modules: [Quotes, Memberships]
    set_fields:
      - module: Accounts
        id_field: billing_account_id
        values:
          membership_status_c: Active
          membership_paid_on_c: "{paid_date}"
          membership_invoice_c: "{number}"
  - name: revenue-received
    when: [paid, part_paid, payment_removed, voided]
    revenue:
      to:
        - {module: Opportunities, id_field: opportunity_id, field: revenue_received_c}
        - {module: Users, id_field: assigned_user_id, field: revenue_received_c}
"""
MAPPING = MappingFile.model_validate({
    "defaults": {"contacts": {"account_number_field": "account_number_c"},
                 "xero_updates": {"contact_fields": {"balance_receivable": "xero_balance_c"}},
                 "write_back": {"fields": {"xero_id": "xero_id_c", "sync_status": "xero_sync_status_c",
                                           "last_error": "xero_last_error_c", "synced_at": "xero_synced_at_c",
                                           "status": "xero_status_c", "amount_due": "xero_amount_due_c",
                                           "paid_date": "xero_paid_date_c", "url": "xero_url_c"}}},
    "tenants": {"tenant-sg": {"write_back": {"fields": {"total": "xero_total_sg_c"}}}},
})
API = "https://api.example.test/prod"
TOKEN = "tok'en\\with$quotes"


@pytest.fixture(scope="module")
def fields():
    return required_fields(MAPPING, parse_rules(RULES, path=Path("rules.yaml")))


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory, fields):
    package = build_package(fields, hooks=[(hook, hook.url(API, TOKEN)) for hook in HOOKS])
    folder = tmp_path_factory.mktemp("package")
    with zipfile.ZipFile(io.BytesIO(package.zip_bytes())) as archive:
        archive.extractall(folder)
    return folder


def manifest(folder: Path) -> dict:
    return php_eval("include 'manifest.php';\necho json_encode(array('manifest' => $manifest, "
                    "'installdefs' => $installdefs));", folder)


def test_every_php_file_parses(unpacked):
    files = sorted(unpacked.rglob("*.php"))
    assert len(files) >= 10
    problems = {str(f.relative_to(unpacked)): php_lint(f) for f in files}
    assert {name: text for name, text in problems.items() if text} == {}


def test_manifest_says_what_module_loader_needs(unpacked):
    loaded = manifest(unpacked)
    head, defs = loaded["manifest"], loaded["installdefs"]
    assert head["type"] == "module" and head["is_uninstallable"] is True
    assert head["remove_tables"] == "prompt"  # uninstall asks; the default keeps the data
    assert {"PRO", "ENT", "SELL"} <= set(head["acceptable_sugar_flavors"])
    for version in ("12.0.3", "13.0.1", "14.1.0"):
        assert any(re.match(rx, version) for rx in head["acceptable_sugar_versions"]["regex_matches"]), version
    assert not any(re.match(rx, "11.0.0") for rx in head["acceptable_sugar_versions"]["regex_matches"])
    assert defs["id"] == "xero_connector"
    for entry in defs["language"] + defs["vardefs"] + [{"from": p} for p in defs["post_install"]
                                                       + defs["pre_uninstall"]]:
        path = entry["from"].replace("<basepath>/", "")
        assert (unpacked / path).is_file(), path


def test_each_configured_field_is_installed_with_its_type(unpacked, fields):
    installed = {(f["module"], f["name"]): f for f in manifest(unpacked)["installdefs"]["custom_fields"]}
    expected = {
        ("Accounts", "xero_id_c"): "varchar", ("Contacts", "xero_id_c"): "varchar",
        ("ProductTemplates", "xero_id_c"): "varchar", ("Quotes", "xero_id_c"): "varchar",
        ("Quotes", "xero_sync_status_c"): "enum", ("Accounts", "xero_sync_status_c"): "enum",
        ("Quotes", "xero_last_error_c"): "text", ("Quotes", "xero_synced_at_c"): "datetimecombo",
        ("Quotes", "xero_amount_due_c"): "decimal", ("Quotes", "xero_paid_date_c"): "date",
        ("Quotes", "xero_url_c"): "url", ("Quotes", "xero_status_c"): "varchar",
        ("Quotes", "xero_total_sg_c"): "decimal",  # a tenant override's field too
        ("Memberships", "xero_amount_due_c"): "decimal",  # a document module the rules name
        ("Accounts", "account_number_c"): "varchar", ("Contacts", "account_number_c"): "varchar",
        ("Accounts", "xero_balance_c"): "decimal",
        ("Accounts", "membership_status_c"): "varchar", ("Accounts", "membership_paid_on_c"): "date",
        ("Accounts", "membership_invoice_c"): "varchar",
        ("Opportunities", "revenue_received_c"): "decimal", ("Users", "revenue_received_c"): "decimal",
    }
    assert {key: installed[key]["type"] for key in expected if key in installed} == expected
    # and nothing the configuration names is left out
    assert {(f.module, f.name) for f in fields if f.custom} == set(installed)
    assert ("Accounts", "xero_amount_due_c") not in installed  # documents only
    assert ("Quotes", "billing_account_id") not in installed  # stock fields are only checked
    assert installed[("Quotes", "xero_sync_status_c")]["ext1"] == SYNC_STATUS_LIST
    assert installed[("Quotes", "xero_amount_due_c")]["precision"] == 2


def test_labels_dropdown_and_read_only(unpacked, fields):
    labels = php_eval("$mod_strings = array();\ninclude 'Files/language/Quotes/en_us.xero_connector.php';\n"
                      "echo json_encode($mod_strings);", unpacked)
    assert labels["LBL_XERO_SYNC_STATUS_C"] == "Xero Sync Status"
    assert all(f"LBL_{f.name.upper()}" in labels for f in fields if f.module == "Quotes" and f.custom)
    lists = php_eval("$app_list_strings = array();\ninclude 'Files/language/application/en_us.xero_connector.php';"
                     "\necho json_encode($app_list_strings);", unpacked)
    assert set(lists[SYNC_STATUS_LIST]) == {"", *SYNC_STATUSES}
    dictionary = php_eval("$dictionary = array();\ninclude 'Files/vardefs/Quotes/xero_connector_readonly.php';\n"
                          "echo json_encode($dictionary);", unpacked)
    readonly = {name for name, props in dictionary["Quote"]["fields"].items() if props.get("readonly")}
    assert {"xero_id_c", "xero_sync_status_c", "xero_amount_due_c"} <= readonly
    accounts = php_eval("$dictionary = array();\ninclude 'Files/vardefs/Accounts/xero_connector_readonly.php';\n"
                        "echo json_encode($dictionary);", unpacked)
    assert "membership_status_c" not in accounts["Account"]["fields"]  # CRM staff may correct it
    assert "xero_balance_c" in accounts["Account"]["fields"]


# A stand-in for Sugar's BeanFactory and WebLogicHook beans: records what the scripts save.
BEAN_STUB = r"""
class StubHook {
    public $id; public $name; public $webhook_target_module; public $request_method; public $trigger_event;
    public $url;
    public function retrieve_by_string_fields($where) {
        foreach ($GLOBALS['stored'] as $id => $row) {
            if ($row['name'] === $where['name'] && empty($row['deleted'])) {
                foreach ($row as $k => $v) { $this->$k = $v; }
                return $this;
            }
        }
        return null;
    }
    public function save() {
        if (empty($this->id)) { $this->id = 'hook-' . (count($GLOBALS['stored']) + 1); }
        $GLOBALS['stored'][$this->id] = get_object_vars($this);
    }
    public function mark_deleted($id) { $GLOBALS['stored'][$id]['deleted'] = 1; }
}
class BeanFactory {
    public static function newBean($module) {
        if ($module !== 'WebLogicHooks') { throw new Exception("unexpected module $module"); }
        return new StubHook();
    }
}
$GLOBALS['stored'] = array();
"""


def test_post_install_saves_each_hook_once_and_pre_uninstall_removes_them(unpacked):
    saved = php_eval(BEAN_STUB + "include 'scripts/post_install.php';\npost_install();\npost_install();\n"
                     "echo json_encode(array_values($GLOBALS['stored']));", unpacked)
    assert len(saved) == 8  # installed twice: updated, not duplicated
    by_name = {h["name"]: h for h in saved}
    for hook in HOOKS:
        row = by_name[hook.name]
        assert (row["webhook_target_module"], row["trigger_event"], row["request_method"]) == \
               (hook.module, hook.event, "POST")
        assert row["url"] == hook.url(API, TOKEN)
    routes = {(h.module, h.event): h.route for h in HOOKS}
    assert routes[("Quotes", "after_delete")] == "/crm/quotes"
    assert routes[("ProductTemplates", "after_save")] == "/crm/products"
    removed = php_eval(BEAN_STUB + "include 'scripts/post_install.php';\ninclude 'scripts/pre_uninstall.php';\n"
                       "post_install();\npre_uninstall();\necho json_encode(array_values($GLOBALS['stored']));",
                       unpacked)
    assert len(removed) == 8 and all(row.get("deleted") == 1 for row in removed)


def test_command_builds_the_zip_and_keeps_the_token_off_screen(tmp_path, capsys):
    rules = tmp_path / "billing.yaml"
    rules.write_text(RULES)
    out = tmp_path / "pkg.zip"
    assert command.run(["--out", str(out), "--rules", str(rules), "--api-url", API, "--token", "s3cret"]) == 0
    printed = capsys.readouterr().out
    assert "s3cret" not in printed and "token=***" in printed
    assert "membership_status_c" in printed
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        assert "s3cret" in archive.read("scripts/post_install.php").decode()
    assert {"manifest.php", "scripts/post_install.php", "scripts/pre_uninstall.php"} <= names


def test_command_refuses_hooks_without_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    assert command.run(["--out", str(tmp_path / "p.zip"), "--api-url", API]) == 1
    assert "--token" in capsys.readouterr().out
    assert not (tmp_path / "p.zip").exists()
    assert command.run(["--out", str(tmp_path / "p.zip"), "--api-url", "ftp://x", "--token", "t"]) == 1


def test_without_api_url_no_hooks(tmp_path):
    assert command.run(["--out", str(tmp_path / "p.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "p.zip") as archive:
        assert "scripts/post_install.php" not in archive.namelist()


# ---- the Xero Invoices module -----------------------------------------------------------------
@pytest.fixture(scope="module")
def with_module(tmp_path_factory, fields):
    from sugar_xero.sugar_package.invoices_module import XeroInvoicesModule

    package = build_package(fields, extra=XeroInvoicesModule())
    folder = tmp_path_factory.mktemp("package-module")
    with zipfile.ZipFile(io.BytesIO(package.zip_bytes())) as archive:
        archive.extractall(folder)
    return folder


def test_the_invoices_module_is_laid_out_as_module_builder_exports_it(with_module):
    from shared.sugar.invoice_module import FIELDS, MODULE, RELATIONS, TABLE

    files = sorted(with_module.rglob("*.php"))
    assert {name: text for name, text in ((str(f), php_lint(f)) for f in files) if text} == {}
    root = with_module / "SugarModules" / "modules" / MODULE
    for name in (f"{MODULE}.php", f"{MODULE}_sugar.php", "vardefs.php", "language/en_us.lang.php",
                 "clients/base/views/record/record.php", "clients/base/views/list/list.php"):
        assert (root / name).is_file(), name
    defs = manifest(with_module)["installdefs"]
    assert defs["beans"] == [{"module": MODULE, "class": MODULE, "path": f"modules/{MODULE}/{MODULE}.php",
                              "tab": True}]
    assert defs["copy"][0] == {"from": f"<basepath>/SugarModules/modules/{MODULE}", "to": f"modules/{MODULE}"}
    subpanels = {c["to"] for c in defs["copy"][1:]}
    assert "custom/Extension/modules/Accounts/Ext/clients/base/layouts/subpanels/xero_invoices.php" in subpanels
    layout = php_eval("$viewdefs = array();\n"
                      "include 'SugarModules/relationships/subpanels/Accounts/xero_invoices.php';\n"
                      "echo json_encode($viewdefs);", with_module)
    assert layout["Accounts"]["base"]["layout"]["subpanels"]["components"] == [
        {"layout": "subpanel", "label": "LBL_XERO_INVOICES", "context": {"link": "xero_invoices"}}]
    assert {v["to_module"] for v in defs["vardefs"]} >= {"Accounts", "Opportunities", "Cases"}

    # The module's vardefs as Sugar would load them (VardefManager stood in for).
    loaded = php_eval("class VardefManager { public static function createVardef($m, $o, $t) "
                      "{ $GLOBALS['templates'] = $t; } }\n$dictionary = array();\n"
                      f"include 'SugarModules/modules/{MODULE}/vardefs.php';\n"
                      "echo json_encode(array('dictionary' => $dictionary, 'templates' => $GLOBALS['templates']));",
                      with_module)
    module = loaded["dictionary"][MODULE]
    assert module["table"] == TABLE and loaded["templates"] == ["basic", "assignable", "team_security"]
    for item in FIELDS:
        assert module["fields"][item.name]["type"] == item.type, item.name
    assert module["fields"]["lines_json"]["type"] == "text"
    assert module["fields"]["total"]["type"] == "decimal" and module["fields"]["status"]["type"] == "enum"
    for id_field, name_field, link, related, relationship, _ in RELATIONS:
        assert module["fields"][id_field]["type"] == "id"
        assert module["fields"][name_field]["id_name"] == id_field and module["fields"][link]["type"] == "link"
        assert module["relationships"][relationship]["lhs_module"] == related
        assert module["relationships"][relationship]["rhs_key"] == id_field
    assert module["fields"]["parent_name"]["type"] == "parent"

    # Both bean classes parse and the class pair is as Module Builder makes it.
    classes = php_eval("class Basic {}\n"
                       f"include 'SugarModules/modules/{MODULE}/{MODULE}_sugar.php';\n"
                       f"$bean = new {MODULE}_sugar();\n"
                       "echo json_encode(array($bean->table_name, $bean->module_dir, $bean->object_name));",
                       with_module)
    assert classes == [TABLE, MODULE, MODULE]
    lists = php_eval("$app_list_strings = array();\ninclude 'SugarModules/language/application/en_us.lang.php';\n"
                     "echo json_encode($app_list_strings);", with_module)
    assert lists["moduleList"][MODULE] == "Xero Invoices"
    assert set(lists["xero_invoice_type_list"]) >= {"ACCREC", "ACCPAY", "ACCRECCREDIT", "ACCPAYCREDIT"}
    accounts = php_eval("$dictionary = array();\n"
                        "include 'SugarModules/relationships/vardefs/Accounts_xero_invoices.php';\n"
                        "echo json_encode($dictionary);", with_module)
    assert accounts["Account"]["fields"]["xero_invoices"]["relationship"] == "accounts_xero_invoices"


def test_the_command_includes_the_module_unless_told_not_to(tmp_path):
    assert command.run(["--out", str(tmp_path / "a.zip")]) == 0
    assert command.run(["--out", str(tmp_path / "b.zip"), "--no-invoices-module"]) == 0
    with zipfile.ZipFile(tmp_path / "a.zip") as a, zipfile.ZipFile(tmp_path / "b.zip") as b:
        assert any(n.startswith("SugarModules/modules/xero_Invoices/") for n in a.namelist())
        assert not any(n.startswith("SugarModules/") for n in b.namelist())
