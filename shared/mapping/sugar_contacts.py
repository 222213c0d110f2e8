"""Sugar Account and Contact hook bodies → the connector's ContactDocument."""

from __future__ import annotations

from shared.mapping.settings import MappingConfig, mapping_file
from shared.mapping.text import clean, split_lines
from shared.models.documents import Address, ContactDocument, Person
from shared.models.sugar import AccountHook, ContactHook, SugarRecord


def _primary_email(record: SugarRecord) -> str | None:
    for entry in record.email or []:
        if entry.primary_address and not entry.invalid_email:
            return clean(entry.email_address, 255)
    for entry in record.email or []:
        if not entry.invalid_email:
            return clean(entry.email_address, 255)
    return clean(record.email1, 255)


def _address(kind: str, street: object, city: object, region: object, postcode: object,
             country: object) -> Address | None:
    address = Address(
        kind=kind,  # type: ignore[arg-type]
        lines=split_lines(street),
        city=clean(city, 255),
        region=clean(region, 255),
        postal_code=clean(postcode, 50),
        country=clean(country, 50),
    )
    if not (address.lines or address.city or address.region or address.postal_code or address.country):
        return None
    return address


def _is_deleted(event: str, record: SugarRecord) -> bool:
    return event == "after_delete" or str(record.deleted).lower() in {"1", "true"}


def _configured_field(record: SugarRecord, field: str | None, limit: int) -> str | None:
    return clean(getattr(record, field, None), limit) if field else None


def _currency(record: SugarRecord, config: MappingConfig) -> str | None:
    """The ISO code for Sugar's currency_id; None (the organisation's base) when unmapped."""
    code = config.currencies.get(str(record.currency_id)) if record.currency_id else None
    return code.upper() if code and len(code) == 3 and code.isalpha() else None


# A Data Privacy erasure (Sugar's DataPrivacy module) empties the erased fields and saves the record:
# the after_save hook then simply lacks them (Sugar leaves unset fields out of hook data). A field
# Sugar requires (an Account's name, a Contact's last name) can be absent for no other reason.
# Each CRM field the connector maps → the Xero contact field it fills.
_PERSONAL_FIELDS = {
    "Accounts": {"name": "Name", "email": "EmailAddress", "email1": "EmailAddress", "phone_office": "Phones",
                 "phone_fax": "Phones", "phone_alternate": "Phones"},
    "Contacts": {"first_name": "FirstName", "last_name": "LastName", "email": "EmailAddress",
                 "email1": "EmailAddress", "phone_work": "Phones", "phone_mobile": "Phones", "phone_fax": "Phones"},
}
_REQUIRED = {"Accounts": "name", "Contacts": "last_name"}


def erased_fields(module: str, hook: AccountHook | ContactHook) -> list[str]:
    """The Xero fields to blank because the CRM erased them (none for an ordinary save).

    A field left out of hook data may simply never have been set, and blanking it would wipe what
    finance keeps in Xero. So a field counts as erased when ``dataChanges`` shows it emptied, or,
    when the record's required name field is absent (only an erasure does that), when it is absent.
    """
    if hook.event != "after_save":
        return []
    personal = _PERSONAL_FIELDS[module]
    changes = hook.dataChanges if isinstance(hook.dataChanges, dict) else {}
    emptied = {field for field, change in changes.items()
               if field in personal and isinstance(change, dict) and change.get("before") not in (None, "", [])
               and change.get("after") in (None, "", [])}
    present = hook.data.model_fields_set | set(hook.data.model_extra or {})
    if _REQUIRED[module] not in present:  # a Data Privacy erasure
        emptied |= {field for field in personal if field not in present}
    return sorted({personal[field] for field in emptied})


def account_to_document(hook: AccountHook, config: MappingConfig | None = None) -> ContactDocument:
    config = config or mapping_file().for_tenant(None)
    data = hook.data
    addresses = [a for a in (
        _address("billing", data.billing_address_street, data.billing_address_city,
                 data.billing_address_state, data.billing_address_postalcode,
                 data.billing_address_country),
        _address("shipping", data.shipping_address_street, data.shipping_address_city,
                 data.shipping_address_state, data.shipping_address_postalcode,
                 data.shipping_address_country),
    ) if a is not None]
    return ContactDocument(
        crm_module="Accounts",
        crm_id=data.id,
        name=clean(data.name) or f"Erased {data.id[:8]}",  # ContactDocument cuts it to Xero's 255, with a note
        email=_primary_email(data),
        website=clean(data.website, 2000),
        erased=erased_fields("Accounts", hook),
        phone=clean(data.phone_office, 50),
        fax=clean(data.phone_fax, 50),
        addresses=addresses,
        account_number=_configured_field(data, config.contacts.account_number_field, 50),
        tax_number=_configured_field(data, config.contacts.tax_number_field, 50),
        currency=_currency(data, config),
        is_supplier=True if (data.account_type or "").lower() in {"supplier", "vendor"} else None,
        deleted=_is_deleted(hook.event, data),
        crm_modified=data.date_modified,
    )


def _before(hook: ContactHook, field: str) -> str | None:
    changes = hook.dataChanges if isinstance(hook.dataChanges, dict) else {}
    change = changes.get(field)
    return clean(change.get("before"), 255) if isinstance(change, dict) else None


def contact_to_document(hook: ContactHook) -> ContactDocument:
    data = hook.data
    erased = erased_fields("Contacts", hook)
    before = Person(first_name=_before(hook, "first_name"), last_name=_before(hook, "last_name"),
                    email=_before(hook, "email1")) if erased else None
    first = clean(data.first_name, 255)
    last = clean(data.last_name, 255)
    name = " ".join(part for part in (first, last) if part) or f"Erased {data.id[:8]}"
    address = _address("billing", data.primary_address_street, data.primary_address_city,
                       data.primary_address_state, data.primary_address_postalcode,
                       data.primary_address_country)
    return ContactDocument(
        crm_module="Contacts",
        crm_id=data.id,
        name=name[:255],
        first_name=first,
        last_name=last,
        email=_primary_email(data),
        phone=clean(data.phone_work, 50),
        mobile=clean(data.phone_mobile, 50),
        fax=clean(data.phone_fax, 50),
        addresses=[address] if address else [],
        parent_crm_id=clean(data.account_id, 50),
        erased=erased,
        erased_person=before if before and (before.first_name or before.last_name or before.email) else None,
        deleted=_is_deleted(hook.event, data),
        crm_modified=data.date_modified,
    )


def hook_to_document(hook: AccountHook | ContactHook, config: MappingConfig | None = None) -> ContactDocument:
    if isinstance(hook, AccountHook):
        return account_to_document(hook, config)
    return contact_to_document(hook)
