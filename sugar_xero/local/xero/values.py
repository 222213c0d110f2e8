"""Xero's value conventions: Decimal money, /Date(ms+0000)/ dates, the ``where`` filter language."""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

CENT = Decimal("0.01")
UTC = dt.UTC
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


class BadValue(ValueError):
    """A value in a request that Xero would reject; the message is shown to the caller."""


# ---- money ------------------------------------------------------------------------------------


def to_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise BadValue(f"{name} must be a number")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise BadValue(f"{name} must be a number, not {value!r}") from None
    if not number.is_finite():
        raise BadValue(f"{name} must be a finite number")
    return number


def round_to(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# ---- dates ------------------------------------------------------------------------------------


def ms_to_xero(ms: int) -> str:
    return f"/Date({ms}+0000)/"


def ms_to_iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def xero_to_ms(value: Any) -> int | None:
    match = _MS_DATE.match(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


def parse_date(value: Any, name: str) -> dt.date:
    """A document date as Xero takes it: ``2024-06-01``, ``2024-06-01T00:00:00`` or ``/Date(ms)/``."""
    if isinstance(value, str):
        ms = xero_to_ms(value)
        if ms is not None:
            return dt.datetime.fromtimestamp(ms / 1000, UTC).date()
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise BadValue(f"{name} {value!r} is not a valid date (use YYYY-MM-DD)")


def date_fields(name: str, day: dt.date) -> dict[str, str]:
    ms = int(dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    return {name: ms_to_xero(ms), f"{name}String": f"{day.isoformat()}T00:00:00"}


def parse_if_modified_since(value: str) -> int:
    """Epoch milliseconds of an If-Modified-Since header (ISO 8601 or HTTP date); naive means UTC."""
    text = value.strip()
    moment: dt.datetime | None = None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            moment = None
    if moment is None:
        raise BadValue(f"If-Modified-Since {value!r} is not a date")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


# ---- the where filter -------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|>=|<=|>|<|&&|\|\||!|\(|\)|,)
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_METHODS = {"contains", "startswith", "endswith"}
_CASE_METHODS = {"tolower", "toupper"}


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise BadValue(f"cannot read the where clause at {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return tokens


class WhereFilter:
    """A parsed ``where`` clause: comparisons (==, !=, <, >, <=, >=), ``.Contains/StartsWith/EndsWith``,
    ``.ToLower()/.ToUpper()``, ``Guid("...")``, ``DateTime(y,m,d)``, true/false/null, joined with
    AND/OR/&&/|| (AND binds tighter), ``!`` and parentheses. String comparisons ignore case, as Xero's do."""

    def __init__(self, text: str):
        self.text = text
        self._tokens = _tokens(text)
        self._index = 0
        self._tree = self._or()
        if self._index != len(self._tokens):
            raise BadValue(f"unexpected {self._tokens[self._index][1]!r} in the where clause")

    def matches(self, record: dict[str, Any]) -> bool:
        return bool(_evaluate(self._tree, record))

    # -- parser ------------------------------------------------------------------------------
    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (expected is not None and token[1].upper() != expected.upper()):
            raise BadValue(f"where clause {self.text!r}: expected {expected or 'more'}")
        self._index += 1
        return token

    def _or(self) -> Any:
        node = self._and()
        while (token := self._peek()) and token[1].upper() in ("OR", "||"):
            self._take()
            node = ("or", node, self._and())
        return node

    def _and(self) -> Any:
        node = self._unary()
        while (token := self._peek()) and token[1].upper() in ("AND", "&&"):
            self._take()
            node = ("and", node, self._unary())
        return node

    def _unary(self) -> Any:
        token = self._peek()
        if token and token[1] == "!":
            self._take()
            return ("not", self._unary())
        if token and token[1] == "(":
            self._take()
            node = self._or()
            self._take(")")
            return node
        return self._comparison()

    def _comparison(self) -> Any:
        kind, name = self._take()
        if kind != "name":
            raise BadValue(f"where clause {self.text!r}: expected a field name, got {name!r}")
        parts = name.split(".")
        field_parts, transform, method = [], None, None
        for part in parts:
            lowered = part.lower()
            if lowered in _CASE_METHODS | _METHODS and field_parts:
                self._take("(")
                if lowered in _METHODS:
                    method = (lowered, self._value())
                else:
                    transform = lowered
                self._take(")")
            else:
                field_parts.append(part)
        field = tuple(field_parts)
        if method:
            return ("method", field, method[0], method[1])
        token = self._peek()
        if token and token[0] == "op" and token[1] in ("==", "!=", ">", "<", ">=", "<="):
            op = self._take()[1]
            return ("cmp", field, transform, op, self._value())
        return ("cmp", field, transform, "==", True)

    def _value(self) -> Any:
        kind, text = self._take()
        if kind == "string":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "number":
            return Decimal(text)
        if kind == "name":
            lowered = text.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            if lowered == "null":
                return None
            if lowered == "guid":
                self._take("(")
                value = self._value()
                self._take(")")
                return value
            if lowered in ("datetime", "datetime.parse"):
                self._take("(")
                numbers = [int(self._value())]
                while self._peek() and self._peek()[1] == ",":
                    self._take(",")
                    numbers.append(int(self._value()))
                self._take(")")
                return dt.datetime(*numbers, tzinfo=UTC)
        raise BadValue(f"where clause {self.text!r}: {text!r} is not a value")


def _lookup(record: Any, field: tuple[str, ...]) -> Any:
    value = record
    for part in field:
        if not isinstance(value, dict):
            return None
        key = next((k for k in value if k.lower() == part.lower()), None)
        value = value.get(key) if key is not None else None
    return value


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(right, dt.datetime):
        ms = xero_to_ms(left) if isinstance(left, str) else None
        if ms is None:
            try:
                left_date = dt.datetime.fromisoformat(str(left)[:19]).replace(tzinfo=UTC)
            except ValueError:
                return None, right
            return left_date, right
        return dt.datetime.fromtimestamp(ms / 1000, UTC), right
    if isinstance(right, Decimal) and left is not None and not isinstance(left, bool):
        try:
            return Decimal(str(left)), right
        except InvalidOperation:
            return None, right
    if isinstance(right, str) and left is not None:
        return str(left).casefold(), right.casefold()
    return left, right


def _evaluate(node: Any, record: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "or":
        return _evaluate(node[1], record) or _evaluate(node[2], record)
    if kind == "and":
        return _evaluate(node[1], record) and _evaluate(node[2], record)
    if kind == "not":
        return not _evaluate(node[1], record)
    if kind == "method":
        _, field, method, argument = node
        value = _lookup(record, field)
        if value is None:
            return False
        text, wanted = str(value).casefold(), str(argument).casefold()
        return {
            "contains": wanted in text,
            "startswith": text.startswith(wanted),
            "endswith": text.endswith(wanted),
        }[method]
    _, field, _transform, op, expected = node
    actual, expected = _comparable(_lookup(record, field), expected)
    if op == "==":
        return actual == expected
    if op == "!=":
        return actual != expected
    if actual is None or expected is None:
        return False
    try:
        return {
            ">": actual > expected,
            "<": actual < expected,
            ">=": actual >= expected,
            "<=": actual <= expected,
        }[op]
    except TypeError:
        return False


def page_of(records: list[Any], page: int, page_size: int) -> tuple[list[Any], dict[str, int]]:
    total = len(records)
    start = (page - 1) * page_size
    page_count = (total + page_size - 1) // page_size
    return records[start : start + page_size], {
        "page": page,
        "pageSize": page_size,
        "pageCount": page_count,
        "itemCount": total,
    }
