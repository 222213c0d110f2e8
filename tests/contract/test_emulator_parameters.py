"""The emulator's table of query parameters per operation is Xero's spec, no more and no less."""

from __future__ import annotations

import yaml

from sugar_xero import xero_spec
from sugar_xero.local.xero.parameters import QUERY_PARAMETERS


def test_every_operation_in_the_table_takes_exactly_the_spec_parameters():
    path = xero_spec.spec_path()
    assert path.is_file(), f"Xero's OpenAPI spec is required: {xero_spec.missing_spec_reason()}"
    spec = yaml.safe_load(path.read_text())
    shared = spec.get("components", {}).get("parameters", {})
    for (method, template), names in QUERY_PARAMETERS.items():
        operation = spec["paths"][template][method.lower()]
        listed = []
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:
                parameter = shared[parameter["$ref"].rsplit("/", 1)[-1]]
            if parameter.get("in") == "query":
                listed.append(parameter["name"])
        assert tuple(listed) == names, f"{method} {template}"


def test_credit_notes_quotes_and_purchase_orders_take_no_ids_list():
    for template in ("/CreditNotes", "/Quotes", "/PurchaseOrders", "/Payments", "/Items"):
        assert "IDs" not in QUERY_PARAMETERS[("GET", template)]
    assert "IDs" in QUERY_PARAMETERS[("GET", "/Invoices")] and "IDs" in QUERY_PARAMETERS[("GET", "/Contacts")]
