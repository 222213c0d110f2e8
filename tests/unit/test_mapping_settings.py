import pytest

from shared.mapping.settings import DEFAULT_PATH, MappingConfigError, load_mapping_file


def test_the_shipped_file_is_valid_and_equals_the_defaults():
    mapping = load_mapping_file(DEFAULT_PATH)
    assert mapping.defaults.contacts.name_conflict == "link_or_disambiguate"
    assert mapping.defaults.write_back.fields["xero_id"] == "xero_id_c"
    assert mapping.defaults.catalogue.sales_tax_types["Taxable"] == "OUTPUT"


def test_tenant_overrides_merge_into_the_defaults(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\ntenants:\n  t-2:\n    catalogue: {sales_account_code: '4000'}\n")
    mapping = load_mapping_file(path)
    assert mapping.for_tenant("t-2").catalogue.sales_account_code == "4000"
    assert mapping.for_tenant("t-2").catalogue.purchase_account_code == "300"
    assert mapping.for_tenant("t-1").catalogue.sales_account_code == "200"


@pytest.mark.parametrize(("text", "says"), [
    ("version: 2\n", "version"),
    ("defaults: {contacts: {name_conflict: merge}}\n", "defaults.contacts.name_conflict"),
    ("defaults: {write_back: {fields: {xero_id: name}}}\n", "only writes custom fields"),
    ("defaults: {write_back: {fields: {colour: colour_c}}}\n", "unknown write-back values"),
    ("defaults: {contact: {}}\n", "defaults.contact"),
    ("tenants: {t-9: {contacts: {archived_contact: delete}}}\n", "archived_contact"),
    ("defaults: [\n", "not valid YAML"),
])
def test_mistakes_are_refused_with_where_and_what(tmp_path, text, says):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(MappingConfigError) as refused:
        load_mapping_file(path)
    assert says in str(refused.value) and str(path) in str(refused.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(MappingConfigError, match="cannot read the mapping file"):
        load_mapping_file(tmp_path / "absent.yaml")


def test_config_check_command(tmp_path):
    import io

    from sugar_xero.cli import main

    good = tmp_path / "good.yaml"
    good.write_text("version: 1\ntenants: {t-1: {catalogue: {sales_account_code: '4000'}}}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: {contacts: {archived_contact: delete}}\n")
    from sugar_xero import config_check

    out = io.StringIO()
    assert config_check.run([str(good)], out=out) == 0 and "overrides for 1 organisation" in out.getvalue()
    out = io.StringIO()
    assert config_check.run([str(bad)], out=out) == 1 and "archived_contact" in out.getvalue()
    assert main(["config-check", str(good)]) == 0
