"""DynamoDB adapter for what Xero's webhooks leave in the sync table.

- ``EVT#<tenant>#<resourceId>#<eventDateUtc>`` / ``EVT``: an event already worked (TTL), so that
  Xero's redeliveries are dropped.
- ``T#<tenant>`` / ``PENDING#<category>#<resourceId>``: a resource Xero says has changed and that
  the connector has yet to re-read, with the newest ``event_date_utc`` seen. An older event
  never overwrites a newer one (conditional write), and whoever later refreshes the resource
  marks the item ``refreshed`` (keeping the date) rather than deleting it, so that a late,
  older event finds the newer date and asks for nothing. That mark only lands if the date is
  still the one the refresher read (a newer event arriving meanwhile keeps the item pending),
  and it carries a TTL (``refreshed_ttl_hours``) so refreshed items do not pile up; a newer
  event re-opens the item and drops the TTL.
"""

from __future__ import annotations

import time
from typing import Any

from shared.state.dynamo import batch_get, conditional_check_failed, dynamodb_resource, now_iso

BATCH_WRITE_LIMIT = 25
_UNPROCESSED_ROUNDS = 8

EventId = tuple[str, str, str]  # (tenant id, resource id, normalised eventDateUtc)


def event_key(tenant_id: str, resource_id: str, event_date_utc: str) -> dict[str, str]:
    return {"PK": f"EVT#{tenant_id}#{resource_id}#{event_date_utc}", "SK": "EVT"}


def pending_key(tenant_id: str, category: str, resource_id: str) -> dict[str, str]:
    return {"PK": f"T#{tenant_id}", "SK": f"PENDING#{category}#{resource_id}"}


class WebhookEventTable:
    def __init__(self, table_name: str, *, resource: Any | None = None, event_ttl_hours: int = 24,
                 refreshed_ttl_hours: int = 72, sleep=time.sleep):
        self._table = (resource or dynamodb_resource()).Table(table_name)
        self._event_ttl_seconds = event_ttl_hours * 3600
        self._refreshed_ttl_seconds = refreshed_ttl_hours * 3600
        self._sleep = sleep

    def seen_events(self, events: list[EventId]) -> set[EventId]:
        """The events among ``events`` already recorded (consistent reads, 100 keys a call)."""
        by_pk = {event_key(*event)["PK"]: event for event in events}
        keys = [{"PK": pk, "SK": "EVT"} for pk in by_pk]
        seen = {by_pk[item["PK"]] for item in batch_get(self._table, keys, projection="PK", sleep=self._sleep)}
        return seen

    def mark_events(self, events: list[EventId]) -> None:
        """Record events as worked, with a TTL covering Xero's 24 hours of redelivery."""
        expires_at = int(time.time()) + self._event_ttl_seconds
        unique = list({key["PK"]: key for key in (event_key(*event) for event in events)}.values())
        client = self._table.meta.client
        for start in range(0, len(unique), BATCH_WRITE_LIMIT):
            writes = [{"PutRequest": {"Item": {**key, "expires_at": expires_at}}}
                      for key in unique[start:start + BATCH_WRITE_LIMIT]]
            request = {self._table.name: writes}
            for round_ in range(_UNPROCESSED_ROUNDS):
                request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
                if not request:
                    break
                self._sleep(0.05 * 2 ** round_)
            if request:
                raise RuntimeError("DynamoDB left writes unprocessed after retries")

    def record_pending(self, *, tenant_id: str, category: str, resource_id: str, event_date_utc: str,
                       event_type: str, resource_url: str) -> bool:
        """Ask for a refresh of one resource. False when the stored item already holds this
        event or a newer one (nothing to do)."""
        try:
            self._table.update_item(
                Key=pending_key(tenant_id, category, resource_id),
                UpdateExpression=("SET tenant_id = :t, event_category = :c, resource_id = :r, "
                                  "event_date_utc = :d, event_type = :e, resource_url = :u, "
                                  "#s = :pending, updated_at = :now REMOVE expires_at"),
                ConditionExpression="attribute_not_exists(PK) OR event_date_utc < :d",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":t": tenant_id, ":c": category, ":r": resource_id,
                                           ":d": event_date_utc, ":e": event_type, ":u": resource_url,
                                           ":pending": "pending", ":now": now_iso()})
            return True
        except Exception as error:
            if conditional_check_failed(error):
                return False
            raise

    def get_pending(self, tenant_id: str, category: str, resource_id: str) -> dict[str, Any] | None:
        return self._table.get_item(Key=pending_key(tenant_id, category, resource_id),
                                    ConsistentRead=True).get("Item")

    def pending_items(self, tenant_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Up to ``limit`` of the tenant's resources still waiting for a refresh (consistent
        reads), each with ``event_category``, ``resource_id`` and ``event_date_utc``.

        Refreshed items are skipped here rather than by a FilterExpression: a filter saves no
        read capacity, and they expire by TTL anyway."""
        request: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ProjectionExpression": "event_category, resource_id, event_date_utc, #s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":pk": f"T#{tenant_id}", ":prefix": "PENDING#"},
            "ConsistentRead": True,
        }
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            answer = self._table.query(**request)
            found += [item for item in answer.get("Items", []) if item.get("status") == "pending"]
            if not answer.get("LastEvaluatedKey"):
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found[:limit]

    def clear_pending(self, *, tenant_id: str, category: str, resource_id: str, event_date_utc: str) -> bool:
        """Mark one resource refreshed, only if its newest event is still ``event_date_utc``
        (the one read before the refresh). False when a newer event arrived meanwhile: the
        item stays pending and is refreshed again."""
        try:
            self._table.update_item(
                Key=pending_key(tenant_id, category, resource_id),
                UpdateExpression="SET #s = :refreshed, refreshed_at = :now, expires_at = :exp",
                ConditionExpression="event_date_utc = :d AND #s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":d": event_date_utc, ":pending": "pending", ":refreshed": "refreshed",
                                           ":now": now_iso(),
                                           ":exp": int(time.time()) + self._refreshed_ttl_seconds})
            return True
        except Exception as error:
            if conditional_check_failed(error):
                return False
            raise
