"""The organisation's day: Xero dates new documents "today in the organisation's timezone" (spec,
Invoice.Date), and so must the connector, or an invoice raised at 07:00 in Singapore is dated
yesterday (a different month at month end, another GST period, another due date, and the
lock-date check looks at the wrong day).

``GET /Organisation`` gives ``Timezone`` as a Windows zone id, upper-cased without spaces
(``SINGAPORESTANDARDTIME``, ``NEWZEALANDSTANDARDTIME``: the spec's ``TimeZone`` enum). ``ZONES``
maps the ones Xero's markets use to IANA names for ``zoneinfo`` (the ``tzdata`` package supplies
the rules where the OS has none, as on Lambda). An unknown name falls back to UTC and says so.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.observability import logger

ZONES = {
    # Australia and New Zealand
    "AUSEASTERNSTANDARDTIME": "Australia/Sydney",
    "EAUSTRALIASTANDARDTIME": "Australia/Brisbane",
    "AUSCENTRALSTANDARDTIME": "Australia/Darwin",
    "CENAUSTRALIASTANDARDTIME": "Australia/Adelaide",
    "WAUSTRALIASTANDARDTIME": "Australia/Perth",
    "TASMANIASTANDARDTIME": "Australia/Hobart",
    "AUSCENTRALWSTANDARDTIME": "Australia/Eucla",
    "LORDHOWESTANDARDTIME": "Australia/Lord_Howe",
    "NEWZEALANDSTANDARDTIME": "Pacific/Auckland",
    "CHATHAMISLANDSSTANDARDTIME": "Pacific/Chatham",
    # Asia
    "SINGAPORESTANDARDTIME": "Asia/Singapore",
    "CHINASTANDARDTIME": "Asia/Shanghai",
    "TAIPEISTANDARDTIME": "Asia/Taipei",
    "TOKYOSTANDARDTIME": "Asia/Tokyo",
    "KOREASTANDARDTIME": "Asia/Seoul",
    "SEASIASTANDARDTIME": "Asia/Bangkok",
    "INDIASTANDARDTIME": "Asia/Kolkata",
    "SRILANKASTANDARDTIME": "Asia/Colombo",
    "NEPALSTANDARDTIME": "Asia/Kathmandu",
    "PAKISTANSTANDARDTIME": "Asia/Karachi",
    "ARABIANSTANDARDTIME": "Asia/Dubai",
    "ARABSTANDARDTIME": "Asia/Riyadh",
    "ISRAELSTANDARDTIME": "Asia/Jerusalem",
    "NORTHASIAEASTSTANDARDTIME": "Asia/Irkutsk",
    "ULAANBAATARSTANDARDTIME": "Asia/Ulaanbaatar",
    # Pacific
    "FIJISTANDARDTIME": "Pacific/Fiji",
    "TONGASTANDARDTIME": "Pacific/Tongatapu",
    "SAMOASTANDARDTIME": "Pacific/Apia",
    "WESTPACIFICSTANDARDTIME": "Pacific/Port_Moresby",
    "CENTRALPACIFICSTANDARDTIME": "Pacific/Guadalcanal",
    "HAWAIIANSTANDARDTIME": "Pacific/Honolulu",
    # Europe and Africa
    "GMTSTANDARDTIME": "Europe/London",
    "GREENWICHSTANDARDTIME": "Atlantic/Reykjavik",
    "WEUROPESTANDARDTIME": "Europe/Berlin",
    "ROMANCESTANDARDTIME": "Europe/Paris",
    "CENTRALEUROPESTANDARDTIME": "Europe/Budapest",
    "CENTRALEUROPEANSTANDARDTIME": "Europe/Warsaw",
    "FLESTANDARDTIME": "Europe/Kiev",
    "GTBSTANDARDTIME": "Europe/Bucharest",
    "EEUROPESTANDARDTIME": "Europe/Chisinau",
    "RUSSIANSTANDARDTIME": "Europe/Moscow",
    "TURKEYSTANDARDTIME": "Europe/Istanbul",
    "SOUTHAFRICASTANDARDTIME": "Africa/Johannesburg",
    "EGYPTSTANDARDTIME": "Africa/Cairo",
    "EAFRICASTANDARDTIME": "Africa/Nairobi",
    "WCENTRALAFRICASTANDARDTIME": "Africa/Lagos",
    "MOROCCOSTANDARDTIME": "Africa/Casablanca",
    # Americas
    "EASTERNSTANDARDTIME": "America/New_York",
    "CENTRALSTANDARDTIME": "America/Chicago",
    "MOUNTAINSTANDARDTIME": "America/Denver",
    "USMOUNTAINSTANDARDTIME": "America/Phoenix",
    "PACIFICSTANDARDTIME": "America/Los_Angeles",
    "ALASKANSTANDARDTIME": "America/Anchorage",
    "ATLANTICSTANDARDTIME": "America/Halifax",
    "NEWFOUNDLANDSTANDARDTIME": "America/St_Johns",
    "CANADACENTRALSTANDARDTIME": "America/Regina",
    "CENTRALAMERICASTANDARDTIME": "America/Guatemala",
    "CENTRALSTANDARDTIMEMEXICO": "America/Mexico_City",
    "SAPACIFICSTANDARDTIME": "America/Bogota",
    "SAEASTERNSTANDARDTIME": "America/Cayenne",
    "ESOUTHAMERICASTANDARDTIME": "America/Sao_Paulo",
    "ARGENTINASTANDARDTIME": "America/Buenos_Aires",
    "PACIFICSASTANDARDTIME": "America/Santiago",
    "UTC": "UTC",
    "COORDINATEDUNIVERSALTIME": "UTC",
}

_warned: set[str] = set()


def zone_of(xero_timezone: str | None) -> ZoneInfo:
    """The zone of Xero's ``Organisation.Timezone``; UTC (with one warning) when unknown."""
    name = (xero_timezone or "").replace(" ", "").upper()
    iana = ZONES.get(name)
    if iana is not None:
        try:
            return ZoneInfo(iana)
        except ZoneInfoNotFoundError:
            pass
    if name not in _warned:
        _warned.add(name)
        logger.warning("unknown Xero organisation timezone: dating documents in UTC",
                       extra={"xero_timezone": xero_timezone})
    return ZoneInfo("UTC")


def organisation_today(xero_timezone: str | None, now: dt.datetime | None = None) -> dt.date:
    """Today in the organisation's timezone (what Xero dates a document without ``Date``)."""
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(zone_of(xero_timezone)).date()
