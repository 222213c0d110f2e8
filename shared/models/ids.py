"""What a CRM id and a CRM module name may be, checked at the door so that no value a caller
sends can change the route of a Sugar REST call (``/rest/v11/<Module>/<id>/...``).

Sugar keeps record ids in ``char(36)`` columns (its GUIDs are 36 characters of hex and hyphens;
imported records may carry their own ids, letters, digits, ``_``, ``-`` and ``.``). An id never
starts with a dot, so ``.`` and ``..`` (path dot-segments) are not ids; ``/``, ``?``, ``#``, ``%``
and spaces are not id characters at all.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

SUGAR_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,35}$"
# A relate field Sugar leaves unset arrives as "".
SUGAR_ID_OR_EMPTY_PATTERN = r"^(|[A-Za-z0-9_][A-Za-z0-9_.-]{0,35})$"
# The key of a document the connector makes itself (a commission bill: "<record>:commission:<rule>"),
# which never reaches a Sugar URL (no write-back): still no "/", "?", "%", space or dot-segment.
DOCUMENT_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:#@-]{0,99}$"
SUGAR_MODULE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,99}$"
# Sugar's own modules the connector reads and writes back to, whatever the configuration says.
STOCK_MODULES = frozenset({"Accounts", "Contacts", "ProductTemplates", "Quotes"})

SugarId = Annotated[str, StringConstraints(pattern=SUGAR_ID_PATTERN)]
