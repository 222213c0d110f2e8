"""The Xero Invoices module in the package, laid out as Sugar's Module Builder exports a custom
module: ``SugarModules/modules/<key>_<Module>/`` with the bean class pair (``<Module>_sugar.php``
generated, ``<Module>.php`` for customisation), ``vardefs.php`` (``VardefManager::createVardef``
over the ``basic``, ``assignable`` and ``team_security`` templates), ``language/en_us.lang.php``,
sidecar ``clients/base/views/{record,list}`` viewdefs, and ``SugarModules/language/application``
for the module list and dropdowns; the manifest registers it under ``beans`` and copies it with
``copy`` (Sugar Developer Guide 14.0, Module Builder and "Introduction to the Manifest":
https://support.sugarcrm.com/documentation/unsupported_versions/sugar_13.3/sugar_developer_guide_13.3/architecture/module_loader).

Relations to Accounts, Opportunities and Cases are one-to-many relationships declared in the
module's vardefs, with a link on the other side added through a vardefs extension, so Reports
can group invoices by account, opportunity or case (and by the account's or opportunity's rep).
"""

from __future__ import annotations

from shared.sugar.invoice_module import (
    DOCUMENT_TYPES,
    FIELDS,
    MODULE,
    RELATIONS,
    STATUS_LIST,
    STATUSES,
    TABLE,
    TYPE_LIST,
)
from sugar_xero.sugar_package.build import OBJECT_NAMES, Package, PackageExtra
from sugar_xero.sugar_package.php import ENTRY_GUARD, HEADER, php_assign, php_index, php_string, php_value

ROOT = f"SugarModules/modules/{MODULE}"


def _label(name: str) -> str:
    return "LBL_" + name.upper()


def _vardefs() -> dict[str, object]:
    fields: dict[str, object] = {}
    for item in FIELDS:
        vardef: dict[str, object] = {"name": item.name, "vname": _label(item.name), "type": item.type,
                                     "reportable": True, "audited": False, "readonly": True,
                                     "comment": item.label}
        if item.length:
            vardef["len"] = item.length if item.type != "decimal" else "26,2"
        if item.type == "decimal":
            vardef["precision"] = 2
        if item.options:
            vardef["options"] = item.options
        fields[item.name] = vardef
    relationships: dict[str, object] = {}
    for id_field, name_field, link, module, relationship, _ in RELATIONS:
        fields[id_field] = {"name": id_field, "vname": _label(id_field), "type": "id", "reportable": True,
                            "readonly": True}
        fields[name_field] = {"name": name_field, "vname": _label(name_field), "type": "relate",
                              "source": "non-db", "rname": "name", "id_name": id_field, "module": module,
                              "link": link, "readonly": True}
        fields[link] = {"name": link, "type": "link", "relationship": relationship, "source": "non-db",
                        "vname": _label(name_field), "side": "right"}
        relationships[relationship] = {"lhs_module": module, "lhs_table": module.lower(), "lhs_key": "id",
                                       "rhs_module": MODULE, "rhs_table": TABLE, "rhs_key": id_field,
                                       "relationship_type": "one-to-many"}
    fields["parent_type"] = {"name": "parent_type", "vname": "LBL_PARENT_TYPE", "type": "parent_type",
                             "dbType": "varchar", "len": 100, "group": "parent_name",
                             "options": "parent_type_display", "readonly": True}
    fields["parent_id"] = {"name": "parent_id", "vname": "LBL_PARENT_ID", "type": "id", "group": "parent_name",
                           "reportable": True, "readonly": True}
    fields["parent_name"] = {"name": "parent_name", "vname": "LBL_PARENT_NAME", "type": "parent",
                             "source": "non-db", "type_name": "parent_type", "id_name": "parent_id",
                             "parent_type": "record_type_display", "options": "parent_type_display",
                             "group": "parent_name", "readonly": True}
    return {"table": TABLE, "audited": False, "unified_search": True, "full_text_search": True,
            "comment": "One record per Xero invoice, bill or credit note (filled by the Xero connector)",
            "fields": fields, "relationships": relationships, "indices": [
                {"name": "idx_xero_invoices_xero_id", "type": "index", "fields": ["xero_id"]},
                {"name": "idx_xero_invoices_account", "type": "index", "fields": ["account_id", "deleted"]}],
            "optimistic_locking": True}


def _bean_sugar() -> str:
    return HEADER + ENTRY_GUARD + f"""
class {MODULE}_sugar extends Basic
{{
    public $new_schema = true;
    public $module_dir = {php_string(MODULE)};
    public $object_name = {php_string(MODULE)};
    public $table_name = {php_string(TABLE)};
    public $importable = true;
    public $disable_row_level_security = false;

    public function bean_implements($interface)
    {{
        return $interface === 'ACL';
    }}
}}
"""


def _bean() -> str:
    return HEADER + ENTRY_GUARD + f"""
require_once 'modules/{MODULE}/{MODULE}_sugar.php';

class {MODULE} extends {MODULE}_sugar
{{
}}
"""


def _module_vardefs() -> str:
    return (HEADER + ENTRY_GUARD + php_assign(php_index("$dictionary", MODULE), _vardefs())
            + f"VardefManager::createVardef({php_string(MODULE)}, {php_string(MODULE)}, "
              "array('basic', 'assignable', 'team_security'));\n")


def _module_language() -> str:
    strings = {"LBL_MODULE_NAME": "Xero Invoices", "LBL_MODULE_NAME_SINGULAR": "Xero Invoice",
               "LBL_MODULE_TITLE": "Xero Invoices", "LNK_LIST": "View Xero Invoices",
               "LBL_LIST_FORM_TITLE": "Xero Invoices", "LBL_PARENT_TYPE": "Created From (type)",
               "LBL_PARENT_ID": "Created From (id)", "LBL_PARENT_NAME": "Created From"}
    for item in FIELDS:
        strings[_label(item.name)] = item.label
    for id_field, name_field, _, _, _, label in RELATIONS:
        strings[_label(id_field)] = f"{label} ID"
        strings[_label(name_field)] = label
    return HEADER + ENTRY_GUARD + php_assign("$mod_strings", strings)


def _application_language() -> str:
    text = HEADER + ENTRY_GUARD
    text += php_assign(php_index("$app_list_strings", "moduleList", MODULE), "Xero Invoices")
    text += php_assign(php_index("$app_list_strings", "moduleListSingular", MODULE), "Xero Invoice")
    text += php_assign(php_index("$app_list_strings", TYPE_LIST), {"": "", **DOCUMENT_TYPES})
    text += php_assign(php_index("$app_list_strings", STATUS_LIST), {"": "", **STATUSES})
    return text


def _viewdefs(view: str) -> str:
    shown = ["name", "invoice_number", "document_type", "status", "account_name", "invoice_date", "due_date",
             "currency_code", "total", "amount_due", "amount_paid"]
    if view == "record":
        shown += ["sub_total", "total_tax", "amount_credited", "fully_paid_on", "online_url", "reference",
                  "opportunity_name", "case_name", "parent_name", "contact_name", "xero_id", "xero_tenant_id",
                  "xero_updated_utc", "lines_json", "assigned_user_name", "team_name"]
        meta = {"panels": [{"name": "panel_header", "header": True, "fields": ["picture", "name"]},
                           {"name": "panel_body", "label": "LBL_RECORD_BODY", "columns": 2, "placeholders": True,
                            "fields": shown[1:]}]}
    else:
        meta = {"panels": [{"name": "panel_header", "label": "LBL_PANEL_1",
                            "fields": [{"name": name, "label": _label(name), "enabled": True, "default": True}
                                       for name in shown]}]}
    return HEADER + ENTRY_GUARD + php_assign(php_index("$viewdefs", MODULE, "base", "view", view), meta)


def _link_extension(module: str) -> str:
    """The other side's link: Accounts (Opportunities, Cases) → their Xero invoices."""
    relationship = next(r for r in RELATIONS if r[3] == module)[4]
    name = OBJECT_NAMES[module]
    return HEADER + ENTRY_GUARD + php_assign(
        f"$dictionary[{php_string(name)}]['fields']['xero_invoices']",
        {"name": "xero_invoices", "type": "link", "relationship": relationship, "source": "non-db",
         "module": MODULE, "bean_name": MODULE, "side": "left", "vname": "LBL_XERO_INVOICES"})


def _subpanel(module: str) -> str:
    """A Xero Invoices subpanel on the related record's page (sidecar subpanels layout extension)."""
    return HEADER + ENTRY_GUARD + f"$viewdefs[{php_string(module)}]['base']['layout']['subpanels']['components'][] = " \
        + php_value({"layout": "subpanel", "label": "LBL_XERO_INVOICES", "context": {"link": "xero_invoices"}}) + ";\n"


def _link_label() -> str:
    return HEADER + ENTRY_GUARD + php_assign(php_index("$mod_strings", "LBL_XERO_INVOICES"), "Xero Invoices")


class XeroInvoicesModule(PackageExtra):
    def add_to(self, package: Package, installdefs: dict[str, object]) -> None:
        files = {
            f"{ROOT}/{MODULE}_sugar.php": _bean_sugar(),
            f"{ROOT}/{MODULE}.php": _bean(),
            f"{ROOT}/vardefs.php": _module_vardefs(),
            f"{ROOT}/language/en_us.lang.php": _module_language(),
            f"{ROOT}/clients/base/views/record/record.php": _viewdefs("record"),
            f"{ROOT}/clients/base/views/list/list.php": _viewdefs("list"),
            "SugarModules/language/application/en_us.lang.php": _application_language(),
        }
        package.files.update(files)
        package.modules.append(MODULE)
        installdefs["beans"] = [{"module": MODULE, "class": MODULE, "path": f"modules/{MODULE}/{MODULE}.php",
                                 "tab": True}]
        copies: list[dict[str, str]] = [{"from": f"<basepath>/{ROOT}", "to": f"modules/{MODULE}"}]
        installdefs["copy"] = copies
        language = installdefs["language"]
        vardefs = installdefs["vardefs"]
        assert isinstance(language, list) and isinstance(vardefs, list)
        language.append({"from": "<basepath>/SugarModules/language/application/en_us.lang.php",
                         "to_module": "application", "language": "en_us"})
        for _, _, _, module, _, _ in RELATIONS:
            path = f"SugarModules/relationships/vardefs/{module}_xero_invoices.php"
            package.files[path] = _link_extension(module)
            vardefs.append({"from": f"<basepath>/{path}", "to_module": module})
            label = f"SugarModules/relationships/language/{module}/en_us.xero_invoices.php"
            package.files[label] = _link_label()
            language.append({"from": f"<basepath>/{label}", "to_module": module, "language": "en_us"})
            # Copied into the module's extension folder; Sugar merges it into the record view's subpanels.
            subpanel = f"SugarModules/relationships/subpanels/{module}/xero_invoices.php"
            package.files[subpanel] = _subpanel(module)
            copies.append({"from": f"<basepath>/{subpanel}", "to": f"custom/Extension/modules/{module}/Ext/clients/"
                                                                     "base/layouts/subpanels/xero_invoices.php"})
