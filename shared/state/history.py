"""Checkpoints of the history import (``shared.usecases.invoice_history``): how many documents of
each resource are written, per organisation, in the sync table; moved only forwards."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def history_key(tenant_id: str, name: str) -> dict[str, str]:
    return {"PK": f"T#{tenant_id}", "SK": f"HISTORY#{name}"}


class HistoryCheckpointTable:
    def __init__(self, table_name: str, *, resource: Any):
        self._table = resource.Table(table_name)

    def written(self, tenant_id: str, name: str) -> int:
        item = self._table.get_item(Key=history_key(tenant_id, name), ConsistentRead=True).get("Item")
        return int(item["position"]) if item else 0

    def advance(self, tenant_id: str, name: str, position: int) -> None:
        try:
            self._table.put_item(Item={**history_key(tenant_id, name), "position": position},
                                 ConditionExpression="attribute_not_exists(PK) OR #p < :p",
                                 ExpressionAttributeNames={"#p": "position"},
                                 ExpressionAttributeValues={":p": position})
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
