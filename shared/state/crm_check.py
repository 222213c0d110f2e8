"""The last CRM check (``shared.usecases.sugar_check``) in the sync table: one item, replaced by
each check, read by ``sugar-xero status``."""

from __future__ import annotations

import json
from typing import Any

CRM_CHECK_KEY = {"PK": "CRM#check", "SK": "LAST"}


class CrmCheckTable:
    def __init__(self, table_name: str, *, resource: Any | None = None):
        if resource is None:
            import boto3

            resource = boto3.resource("dynamodb")
        self._table = resource.Table(table_name)

    def put_crm_check(self, check: dict[str, Any]) -> None:
        self._table.put_item(Item={**CRM_CHECK_KEY, "checked_at": str(check.get("checked_at") or ""),
                                   "check": json.dumps(check, default=str, separators=(",", ":"))})

    def get_crm_check(self) -> dict[str, Any] | None:
        item = self._table.get_item(Key=CRM_CHECK_KEY, ConsistentRead=True).get("Item")
        return json.loads(item["check"]) if item and item.get("check") else None
