"""Contacts: matching, uniqueness, the contacts documents name."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from .common import _CONTACT_COMPUTED, Outcome, _echo, _Txn, new_id

CONTACT_STATUSES = ("ACTIVE", "ARCHIVED", "GDPRREQUEST")
MAX_CONTACT_PERSONS = 5  # Xero's Contacts documentation: "a maximum of 5 ContactPersons"
# Read only in Xero's Contacts documentation (IsSupplier/IsCustomer are set by Xero when a bill or
# invoice is raised; Website "read only"): whatever a request says is dropped, silently, as Xero does.
READ_ONLY_CONTACT_FIELDS = frozenset({"IsSupplier", "IsCustomer", "Website", "Balances", "MergedToContactID"})


def _upsert_contact(txn: _Txn, data: dict[str, Any]) -> Outcome:
    """Steps: find the contact a write names (by ContactID only), check number, name, status and
    persons, then answer the errors or store the record."""
    contacts = txn.col("contacts")
    existing, missing = _existing_contact(txn, data)
    if missing:
        return missing
    errors: list[str] = []
    own_id = existing["ContactID"] if existing else None
    number = data.get("ContactNumber")
    _check_contact_number(contacts, number, own_id, errors)
    name = data["Name"] if "Name" in data else (existing or {}).get("Name")
    if not isinstance(name, str) or not name.strip():
        errors.append("Contact name cannot be empty")
        name = ""
    elif len(name) > 255:
        errors.append("The contact name must be 255 characters or fewer")
    status = data.get("ContactStatus") or (existing or {}).get("ContactStatus") or "ACTIVE"
    if status not in CONTACT_STATUSES:
        errors.append(f"ContactStatus {status!r} is not one of {', '.join(CONTACT_STATUSES)}")
    persons = data.get("ContactPersons")
    if isinstance(persons, list) and len(persons) > MAX_CONTACT_PERSONS:
        errors.append(f"A contact can have a maximum of {MAX_CONTACT_PERSONS} contact persons")
    if name and status == "ACTIVE" and _active_name_taken(contacts, name, own_id):
        errors.append(
            f"The contact name {name} is already assigned to another contact. "
            "The contact name must be unique across all active contacts."
        )
    if errors:
        return Outcome(_echo(data, "ContactID", existing), errors, [])
    record = deepcopy(existing) if existing else _new_contact()
    for key, value in data.items():
        if key not in _CONTACT_COMPUTED and key not in READ_ONLY_CONTACT_FIELDS:
            record[key] = deepcopy(value)
    record["ContactStatus"] = status
    record["HasValidationErrors"] = False
    record.update(txn.store.stamp())
    contacts[record["ContactID"]] = record
    return Outcome(record, [], [])


def _existing_contact(txn: _Txn, data: dict[str, Any]) -> tuple[dict[str, Any] | None, Outcome | None]:
    """Only ContactID identifies the contact a write changes: Xero documents no update by
    ContactNumber (POST /Contacts/{ContactID}; "send ContactID to update")."""
    contacts = txn.col("contacts")
    contact_id = txn.path_id or data.get("ContactID")
    if not contact_id:
        return None, None
    existing = contacts.get(contact_id) or next(
        (c for c in contacts.values() if c["ContactID"].lower() == str(contact_id).lower()), None
    )
    if existing is None:
        return None, Outcome(_echo(data, "ContactID", None), [f"Contact with ContactID {contact_id} was not found"],
                             [], not_found=bool(txn.path_id))
    return existing, None


def _check_contact_number(contacts: dict[str, Any], number: Any, own_id: str | None, errors: list[str]) -> None:
    """Unique across all contacts, archived ones included; a POST never updates the holder."""
    if number in (None, ""):
        return
    # whether case matters is undocumented: the least convenient reading, it does not
    if any(str(c.get("ContactNumber") or "").casefold() == str(number).casefold() and c["ContactID"] != own_id
           for c in contacts.values()):
        errors.append(
            f"The contact number {number} is already assigned to another contact. "
            "The contact number must be unique across all contacts."
        )
    if len(str(number)) > 50:
        errors.append("The contact number must be 50 characters or fewer")


def _active_name_taken(contacts: dict[str, Any], name: str, own_id: str | None) -> bool:
    """Names are unique among active contacts (case and outer spaces ignored)."""
    folded = name.strip().casefold()
    return any(other["ContactID"] != own_id and other.get("ContactStatus") == "ACTIVE"
               and str(other.get("Name", "")).strip().casefold() == folded for other in contacts.values())


def _new_contact() -> dict[str, Any]:
    return {
        "ContactID": new_id(),
        "ContactStatus": "ACTIVE",
        "Addresses": [],
        "Phones": [],
        "ContactGroups": [],
        "ContactPersons": [],
        "IsSupplier": False,
        "IsCustomer": False,
        "HasAttachments": False,
    }


def _resolve_contact(txn: _Txn, reference: Any, errors: list[str]) -> dict[str, Any] | None:
    """The contact a document points at: by ContactID, ContactNumber, or Name (created when new)."""
    contacts = txn.col("contacts")
    if not isinstance(reference, dict) or not any(reference.get(k) for k in ("ContactID", "ContactNumber", "Name")):
        errors.append("A Contact must be specified for this type of transaction")
        return None
    if reference.get("ContactID"):
        contact = contacts.get(reference["ContactID"])
        if contact is None:
            errors.append(f"Contact with ContactID {reference['ContactID']} was not found")
    elif reference.get("ContactNumber"):
        contact = next((c for c in contacts.values() if c.get("ContactNumber") == reference["ContactNumber"]), None)
        if contact is None:
            errors.append(f"Contact with ContactNumber {reference['ContactNumber']} was not found")
    else:
        folded = str(reference["Name"]).strip().casefold()
        contact = next(
            (
                c
                for c in contacts.values()
                if c.get("ContactStatus") == "ACTIVE" and str(c.get("Name", "")).strip().casefold() == folded
            ),
            None,
        )
        if contact is None:
            # Xero creates a contact named on a document when none has that name
            outcome = _upsert_contact(_SubTxn(txn), {k: v for k, v in reference.items() if k != "ContactID"})
            if outcome.errors:
                errors.extend(outcome.errors)
                return None
            contact = outcome.record
    if contact is not None and contact.get("ContactStatus") != "ACTIVE":
        errors.append(
            f"The contact {contact.get('Name')} is {contact.get('ContactStatus')}; documents cannot be "
            "created or changed for a contact that is not active"
        )
    return contact


class _SubTxn:
    """The same transaction seen as a plain POST without a path id (for contacts made on the fly)."""

    def __init__(self, txn: _Txn):
        self.__dict__.update(txn.__dict__)
        self.method = "POST"
        self.path_id = None
        self.col = txn.col
        self.store = txn.store
