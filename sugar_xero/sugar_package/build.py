"""A Sugar Module Loadable Package with everything the connector needs on the CRM side.

Layout and ``manifest.php`` keys follow Sugar's Module Loader documentation:
- "Introduction to the Manifest" / Module Loader, Sugar Developer Guide 13.3 and 14.0
  (https://support.sugarcrm.com/documentation/unsupported_versions/sugar_13.3/sugar_developer_guide_13.3/architecture/module_loader):
  ``$manifest`` (acceptable_sugar_versions with regex_matches, acceptable_sugar_flavors,
  is_uninstallable, remove_tables, type ``module``) and ``$installdefs`` (id, custom_fields,
  language, vardefs, beans, copy, post_install, pre_uninstall).
- "Creating an Installable Package that Creates New Fields"
  (https://support.sugarcrm.com/documentation/sugar_developer/sugar_developer_guide_14.0/cookbook/module_loadable_packages/creating_an_installable_package_that_creates_new_fields/):
  each ``custom_fields`` entry (name, label, type, module, max_size, ext1 = the dropdown list of an
  enum, reportable, importable, audited) and its label in a ``language`` file for ``en_us``.
- Module Loader, Administration Guide 14.0
  (https://support.sugarcrm.com/documentation/sugar_versions/14.0/serve/administration_guide/developer_tools/module_loader):
  upload, install, uninstall; ``remove_tables: prompt`` makes the uninstall ask whether to drop
  the data, so the default keeps it.

Web Logic Hooks are records of Sugar's ``WebLogicHooks`` module (fields ``name``,
``webhook_target_module``, ``request_method``, ``url``, ``trigger_event``, admin only, as in
Sugar's ``modules/WebLogicHooks/vardefs.php``); saving one makes Sugar register the logic hook.
The ``post_install`` script saves them (found again by name, so a re-install updates rather than
duplicates) and the ``pre_uninstall`` script deletes them; data in the fields stays.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.sugar.schema import SYNC_STATUS_LIST, SYNC_STATUSES, CrmField, HookSpec, custom_fields
from sugar_xero.sugar_package.php import ENTRY_GUARD, HEADER, php_assign, php_index, php_string, php_value

PACKAGE_ID = "xero_connector"
PACKAGE_NAME = "Xero connector"
# Sugar 12, 13 and 14 (Module Loader matches acceptable_sugar_versions' regexes against sugar_version).
# Written as the Developer Guide's examples write them ('7\\.8\\.(.*?)\\.(.*?)').
SUGAR_VERSIONS = (r"12\.(.*?)\.(.*?)", r"13\.(.*?)\.(.*?)", r"14\.(.*?)\.(.*?)")
SUGAR_FLAVORS = ("PRO", "ENT", "ULT", "SELL")
# The PHP class (vardef dictionary key) of the modules a configuration usually names.
OBJECT_NAMES = {"Accounts": "Account", "Contacts": "Contact", "ProductTemplates": "ProductTemplate",
                "Quotes": "Quote", "Opportunities": "Opportunity", "Users": "User", "Cases": "aCase",
                "Leads": "Lead", "Products": "Product"}
SYNC_STATUS_LABELS = {"synced": "Synced", "warning": "Synced with a warning", "failed": "Failed"}


@dataclass
class Package:
    """The package's files by path inside the zip, and what it installs."""

    files: dict[str, str] = field(default_factory=dict)
    fields: list[CrmField] = field(default_factory=list)
    hooks: list[tuple[HookSpec, str]] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)  # custom modules (beans) it adds

    def zip_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(self.files):
                info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, self.files[path])
        return buffer.getvalue()

    def php_files(self) -> list[str]:
        return sorted(p for p in self.files if p.endswith(".php"))


def label_key(name: str) -> str:
    return "LBL_" + name.upper()


def _object_expression(module: str) -> str:
    name = OBJECT_NAMES.get(module)
    return php_string(name) if name else f"BeanFactory::getObjectName({php_string(module)})"


def _custom_field_def(item: CrmField) -> dict[str, object]:
    definition: dict[str, object] = {
        "name": item.name, "label": label_key(item.name), "type": item.type, "module": item.module,
        "help": "", "comment": f"{PACKAGE_NAME}: {item.why}"[:255], "default_value": "",
        "required": False, "reportable": True, "audited": False, "importable": "true",
        "duplicate_merge": False, "mass_update": False,
    }
    if item.length and item.type in ("varchar", "url"):
        definition["max_size"] = item.length
    if item.type == "enum":
        definition["ext1"] = item.options or SYNC_STATUS_LIST
    if item.type == "decimal":
        definition["max_size"] = item.length or 26
        definition["precision"] = item.precision
        definition["ext1"] = item.precision  # the decimal template reads its precision from ext1
    return definition


def _language_file(items: Iterable[CrmField]) -> str:
    text = HEADER + ENTRY_GUARD
    for item in items:
        text += php_assign(php_index("$mod_strings", label_key(item.name)), item.label or item.name)
    return text


def _application_language() -> str:
    options = {status: SYNC_STATUS_LABELS[status] for status in SYNC_STATUSES}
    return HEADER + ENTRY_GUARD + php_assign(php_index("$app_list_strings", SYNC_STATUS_LIST), {"": "", **options})


def _readonly_vardefs(module: str, items: Iterable[CrmField]) -> str:
    text = HEADER + ENTRY_GUARD + f"$xeroObject = {_object_expression(module)};\n"
    for item in items:
        text += php_assign(f"$dictionary[$xeroObject]['fields'][{php_string(item.name)}]['readonly']", True)
    return text


def _post_install(hooks: list[tuple[HookSpec, str]]) -> str:
    definitions = [{"name": hook.name, "module": hook.module, "event": hook.event, "url": url}
                   for hook, url in hooks]
    return HEADER + ENTRY_GUARD + f"""
/**
 * Saves the connector's Web Logic Hooks; one with the same name is updated, not duplicated.
 */
function post_install()
{{
    $definitions = {php_value(definitions, 1)};
    foreach ($definitions as $definition) {{
        $hook = BeanFactory::newBean('WebLogicHooks');
        $hook->retrieve_by_string_fields(array('name' => $definition['name']));
        if (empty($hook->id)) {{
            $hook = BeanFactory::newBean('WebLogicHooks');
        }}
        $hook->name = $definition['name'];
        $hook->webhook_target_module = $definition['module'];
        $hook->request_method = 'POST';
        $hook->trigger_event = $definition['event'];
        $hook->url = $definition['url'];
        $hook->save();
    }}
}}
"""


def _pre_uninstall(hooks: list[tuple[HookSpec, str]]) -> str:
    names = [hook.name for hook, _ in hooks]
    return HEADER + ENTRY_GUARD + f"""
/**
 * Deletes the connector's Web Logic Hooks. The fields and their data stay unless the
 * administrator chooses to remove tables when Module Loader asks.
 */
function pre_uninstall()
{{
    $names = {php_value(names, 1)};
    foreach ($names as $name) {{
        $hook = BeanFactory::newBean('WebLogicHooks');
        $hook->retrieve_by_string_fields(array('name' => $name));
        if (!empty($hook->id)) {{
            $hook->mark_deleted($hook->id);
        }}
    }}
}}
"""


def build_package(fields: Iterable[CrmField], *, hooks: Iterable[tuple[HookSpec, str]] = (),
                  version: str = "1.0.0", published: datetime | None = None,
                  extra: PackageExtra | None = None) -> Package:
    """The package for ``fields`` (only custom fields with a type are installed) and ``hooks``
    (each with its full URL). ``extra`` adds custom modules (the Xero Invoices module)."""
    package = Package(fields=custom_fields(fields), hooks=list(hooks))
    custom: list[dict[str, object]] = []
    language: list[dict[str, str]] = []
    vardefs: list[dict[str, str]] = []
    installdefs: dict[str, object] = {"id": PACKAGE_ID, "custom_fields": custom, "language": language,
                                      "vardefs": vardefs}
    if extra is not None:
        extra.add_to(package, installdefs)
    by_module: dict[str, list[CrmField]] = {}
    for item in package.fields:
        by_module.setdefault(item.module, []).append(item)
    for module, items in sorted(by_module.items()):
        custom.extend(_custom_field_def(item) for item in items)
        path = f"Files/language/{module}/en_us.{PACKAGE_ID}.php"
        package.files[path] = _language_file(items)
        language.append({"from": f"<basepath>/{path}", "to_module": module, "language": "en_us"})
        readonly = [i for i in items if i.readonly]
        if readonly:
            path = f"Files/vardefs/{module}/{PACKAGE_ID}_readonly.php"
            package.files[path] = _readonly_vardefs(module, readonly)
            vardefs.append({"from": f"<basepath>/{path}", "to_module": module})
    if any(i.type == "enum" for i in package.fields):
        path = f"Files/language/application/en_us.{PACKAGE_ID}.php"
        package.files[path] = _application_language()
        language.append({"from": f"<basepath>/{path}", "to_module": "application", "language": "en_us"})
    if package.hooks:
        package.files["scripts/post_install.php"] = _post_install(package.hooks)
        package.files["scripts/pre_uninstall.php"] = _pre_uninstall(package.hooks)
        installdefs["post_install"] = ["<basepath>/scripts/post_install.php"]
        installdefs["pre_uninstall"] = ["<basepath>/scripts/pre_uninstall.php"]
    published = published or datetime.now(UTC)
    manifest = {
        "acceptable_sugar_versions": {"exact_matches": [], "regex_matches": list(SUGAR_VERSIONS)},
        "acceptable_sugar_flavors": list(SUGAR_FLAVORS),
        "author": "SugarCRM ⇄ Xero connector",
        "description": "Fields, Web Logic Hooks and modules the Xero connector needs",
        "icon": "",
        "is_uninstallable": True,
        "remove_tables": "prompt",
        "name": PACKAGE_NAME,
        "published_date": published.strftime("%Y-%m-%d %H:%M:%S"),
        "type": "module",
        "version": version,
        "key": "xero",
        "readme": "Build with `sugar-xero sugar-package`, then check with `sugar-xero sugar-check`.",
    }
    package.files["manifest.php"] = (HEADER + php_assign("$manifest", manifest)
                                     + php_assign("$installdefs", installdefs))
    return package


class PackageExtra:
    """Something more a package carries (a custom module): adds its files and installdefs."""

    def add_to(self, package: Package, installdefs: dict[str, object]) -> None:  # pragma: no cover
        raise NotImplementedError
