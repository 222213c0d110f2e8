"""`sugar-xero status` with several organisations: each is listed by name, and each gets its own
rate-limit row even before it has a connection record."""

from __future__ import annotations

from tests.conftest import SYNC_TABLE_NAME
from tests.integration.test_status import seed, status


def test_status_shows_each_organisation(aws, tmp_path):
    seed(aws["dynamodb"], disconnected=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text('version: 1\norganisations:\n  names: {SG: "t-demo", MY: "t-my"}\n  default: SG\n'
                       '  route_by: account.billing_address_country\n  routes: {Malaysia: MY}\n')
    environ = {"SYNC_TABLE": SYNC_TABLE_NAME, "CONTACT_QUEUE_URL": aws["queue_url"],
               "CONTACT_DLQ_URL": aws["dlq_url"], "MAPPING_CONFIG": str(mapping)}
    code, text = status([], environ, tmp_path)
    lines = text.splitlines()
    start = lines.index("Organisations (mapping configuration: documents are routed to one of these)")
    assert lines[start + 2].split() == ["SG", "t-demo"] and lines[start + 3].split() == ["MY", "t-my"]
    assert any(line.startswith("  t-my ") for line in lines)  # its own rate-limit row
    assert code == 0, text
