"""ContactDocument → the body of one element of Xero's ``{"Contacts": [...]}``."""

from __future__ import annotations

from typing import Any

from shared.models.documents import ContactDocument

_ADDRESS_TYPE = {"billing": "POBOX", "shipping": "STREET"}
READ_ONLY_FIELDS = frozenset({"Website", "IsSupplier", "IsCustomer"})


def to_xero_contact(doc: ContactDocument, *, xero_contact_id: str | None = None) -> dict[str, Any]:
    """Map a document to a Xero Contact. Empty fields are left out, so Xero keeps what it has.

    ``ContactNumber`` carries the CRM id: it is how a lost mapping is found again in Xero.
    Read-only fields (``READ_ONLY_FIELDS``) are never sent.
    """
    body: dict[str, Any] = {"Name": doc.name, "ContactNumber": doc.crm_id}
    if xero_contact_id:
        body["ContactID"] = xero_contact_id
    optional = {
        "FirstName": doc.first_name,
        "LastName": doc.last_name,
        "EmailAddress": doc.email,
        "AccountNumber": doc.account_number,
        "TaxNumber": doc.tax_number,
        "CompanyNumber": doc.company_number,
        "DefaultCurrency": doc.currency,
    }
    body.update({key: value for key, value in optional.items() if value})
    # Website, IsSupplier and IsCustomer are read only in Xero's Contacts documentation (Xero sets the
    # flags when a bill or invoice is raised): sent, they would be dropped without a word.
    addresses = []
    for address in doc.addresses:
        entry: dict[str, Any] = {"AddressType": _ADDRESS_TYPE[address.kind]}
        for index, line in enumerate(address.lines[:4], start=1):
            entry[f"AddressLine{index}"] = line
        for key, value in (("City", address.city), ("Region", address.region),
                           ("PostalCode", address.postal_code), ("Country", address.country)):
            if value:
                entry[key] = value
        addresses.append(entry)
    if addresses:
        body["Addresses"] = addresses
    phones = [{"PhoneType": kind, "PhoneNumber": number}
              for kind, number in (("DEFAULT", doc.phone), ("MOBILE", doc.mobile), ("FAX", doc.fax))
              if number]
    if phones:
        body["Phones"] = phones
    if doc.persons:
        body["ContactPersons"] = [
            {key: value for key, value in {
                "FirstName": p.first_name, "LastName": p.last_name,
                "EmailAddress": p.email, "IncludeInEmails": p.include_in_emails,
            }.items() if value is not None}
            for p in doc.persons[:5]
        ]
    if doc.erased:
        _erase(body, doc)
    if doc.deleted:
        body["ContactStatus"] = "ARCHIVED"
    return body


ERASABLE = ("FirstName", "LastName", "EmailAddress", "Phones")


def _erase(body: dict[str, Any], doc: ContactDocument) -> None:
    """Blank in Xero the personal fields a Data Privacy erasure emptied in the CRM. Xero keeps a
    field a body leaves out, so each is sent empty; the name is kept unless it was erased itself
    (then the neutral name the mapping gave). Invoices and payments stay (financial history)."""
    for field in doc.erased:
        if field == "Phones":
            body["Phones"] = [{"PhoneType": kind, "PhoneNumber": ""} for kind in ("DEFAULT", "MOBILE", "FAX")]
        elif field in ERASABLE:
            body[field] = ""


def to_xero_person(doc: ContactDocument) -> dict[str, Any]:
    """A Sugar Contact as one of its Account's Xero ContactPersons."""
    person = {"FirstName": doc.first_name, "LastName": doc.last_name or (None if doc.first_name else doc.name),
              "EmailAddress": doc.email, "IncludeInEmails": bool(doc.email)}
    return {key: value for key, value in person.items() if value is not None}


def same_person(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same contact person: the email decides when both have one, else first and last name."""
    email_a, email_b = (str(p.get("EmailAddress") or "").strip().casefold() for p in (a, b))
    if email_a and email_b:
        return email_a == email_b
    names = [tuple(str(p.get(k) or "").strip().casefold() for k in ("FirstName", "LastName")) for p in (a, b)]
    return any(names[0]) and names[0] == names[1]
