"""Does the live CRM have what the configuration needs? Each field (``shared.sugar.schema``)
and each Web Logic Hook, compared through Sugar's documented REST API:

- fields: ``GET /rest/v11/metadata?type_filter=modules&module_filter=<modules>`` answers
  ``{"modules": {"<Module>": {"fields": {"<name>": {"type": ...}}}}}`` (Sugar's MetadataApi
  ``getAllMetadata``: ``type_filter`` and ``module_filter`` are comma-separated lists; see also
  Sugar's developer blog "3 Tips for using the Sugar Metadata API",
  https://sugarclub.sugarcrm.com/dev-club/b/dev-blog/posts/3-tips-for-using-the-sugar-metadata-api);
- hooks: the ``WebLogicHooks`` module's records (``POST /rest/v11/WebLogicHooks/filter``), each
  with ``webhook_target_module``, ``trigger_event``, ``request_method`` and ``url``. The module is
  admin only, so the integration user must be a Sugar administrator to read it.

The result is a table (one row a field or hook: present, missing, wrong type, wrong URL) that
``sugar-xero sugar-check`` prints and stores, and that the nightly metadata refresh runs so a
field someone deleted in Studio is a problem ``sugar-xero status`` shows before jobs fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, urlparse

from shared.sugar.schema import HOOKS, CrmField, HookSpec, mask_token

State = Literal["present", "missing", "wrong type", "wrong URL", "module missing", "unreadable"]
PROBLEM_STATES = frozenset({"missing", "wrong type", "wrong URL", "module missing", "unreadable"})
HOOK_PAGE = 100


class CrmReader(Protocol):
    def metadata(self, modules: Sequence[str]) -> dict[str, Any]: ...

    def iter_filter(self, module: str, filter: list[dict[str, Any]], fields: Any = None,
                    max_num: int = 20, offset: int = 0, order_by: str | None = None) -> Iterable[dict[str, Any]]: ...


@dataclass(frozen=True)
class CheckRow:
    kind: Literal["field", "hook"]
    module: str
    name: str  # field name, or the hook's event
    expected: str  # the type, or the masked URL
    found: str  # what Sugar has ("" when nothing)
    state: State
    why: str = ""

    @property
    def problem(self) -> bool:
        return self.state in PROBLEM_STATES

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "module": self.module, "name": self.name, "expected": self.expected,
                "found": self.found, "state": self.state, "why": self.why}


@dataclass
class CrmCheck:
    checked_at: str
    rows: list[CheckRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[CheckRow]:
        return [row for row in self.rows if row.problem]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.errors

    def summary(self) -> str:
        if self.ok:
            return f"all {len(self.rows)} fields and hooks present"
        parts = [f"{row.module}.{row.name} {row.state}" + (f" ({row.found})" if row.found else "")
                 for row in self.problems]
        return "; ".join(self.errors + parts)

    def as_dict(self) -> dict[str, Any]:
        return {"checked_at": self.checked_at, "ok": self.ok, "summary": self.summary(),
                "rows": [row.as_dict() for row in self.rows], "errors": list(self.errors)}


def _field_rows(fields: Sequence[CrmField], modules: dict[str, Any]) -> list[CheckRow]:
    rows = []
    for item in fields:
        expected = item.type or "(stock field)"
        module = modules.get(item.module)
        if not isinstance(module, dict):
            rows.append(CheckRow("field", item.module, item.name, expected, "", "module missing", item.why))
            continue
        found = (module.get("fields") or {}).get(item.name)
        if not isinstance(found, dict):
            rows.append(CheckRow("field", item.module, item.name, expected, "", "missing", item.why))
            continue
        sugar_type = str(found.get("type") or "")
        state: State = "present" if item.accepts(sugar_type) else "wrong type"
        rows.append(CheckRow("field", item.module, item.name, expected, sugar_type, state, item.why))
    return rows


def same_hook_url(found: str, expected: str, *, token_known: bool) -> bool:
    """Same scheme, host and path; and the same token when we know it (else: a token at all)."""
    a, b = urlparse(found.strip()), urlparse(expected)
    if (a.scheme, a.netloc.lower(), a.path.rstrip("/")) != (b.scheme, b.netloc.lower(), b.path.rstrip("/")):
        return False
    tokens = parse_qs(a.query).get("token") or []
    if token_known:
        return tokens == (parse_qs(b.query).get("token") or [])
    return bool(tokens and tokens[0])


def _hook_rows(records: list[dict[str, Any]], hooks: Sequence[tuple[HookSpec, str]], *,
               token_known: bool) -> list[CheckRow]:
    rows = []
    for hook, url in hooks:
        candidates = [r for r in records if r.get("webhook_target_module") == hook.module
                      and r.get("trigger_event") == hook.event and not r.get("deleted")]
        expected = mask_token(url)
        good = [r for r in candidates if same_hook_url(str(r.get("url") or ""), url, token_known=token_known)
                and str(r.get("request_method") or "POST").upper() == "POST"]
        if good:
            rows.append(CheckRow("hook", hook.module, hook.event, expected, mask_token(str(good[0]["url"])),
                                 "present", hook.route))
            continue
        # Ours but wrong: named as the package names it, or calling our route somewhere else.
        ours = [r for r in candidates if r.get("name") == hook.name
                or urlparse(str(r.get("url") or "")).path.rstrip("/").endswith(hook.route)]
        if ours:
            found = mask_token(str(ours[0].get("url") or ""))
            method = str(ours[0].get("request_method") or "POST").upper()
            rows.append(CheckRow("hook", hook.module, hook.event, expected,
                                 found + ("" if method == "POST" else f" ({method})"), "wrong URL", hook.route))
        else:
            rows.append(CheckRow("hook", hook.module, hook.event, expected, "", "missing", hook.route))
    return rows


def check_crm(crm: CrmReader, fields: Sequence[CrmField], *, hooks: Sequence[tuple[HookSpec, str]] | None = None,
              token_known: bool = True, now: datetime | None = None) -> CrmCheck:
    """Compare the CRM with ``fields`` and (when given) ``hooks`` (each with its expected URL).
    A call Sugar refuses is an error of the check, never a "missing"."""
    check = CrmCheck(checked_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"))
    modules = sorted({item.module for item in fields})
    try:
        answer = crm.metadata(modules) if modules else {"modules": {}}
        check.rows += _field_rows(fields, answer.get("modules") or {})
    except Exception as error:  # noqa: BLE001 - reported, never raised: the check says what it could not read
        check.errors.append(f"GET /metadata failed: {type(error).__name__}: {error}")
        check.rows += [CheckRow("field", f.module, f.name, f.type or "(stock field)", "", "unreadable", f.why)
                       for f in fields]
    if hooks:
        wanted = sorted({hook.module for hook, _ in hooks})
        try:
            records = list(crm.iter_filter("WebLogicHooks", [{"webhook_target_module": {"$in": wanted}}],
                                           fields="name,webhook_target_module,trigger_event,request_method,url",
                                           max_num=HOOK_PAGE))
            check.rows += _hook_rows(records, hooks, token_known=token_known)
        except Exception as error:  # noqa: BLE001
            check.errors.append(f"reading WebLogicHooks failed (the integration user must be a Sugar "
                                f"administrator): {type(error).__name__}: {error}")
            check.rows += [CheckRow("hook", h.module, h.event, mask_token(u), "", "unreadable", h.route)
                           for h, u in hooks]
    return check


def expected_hooks(api_url: str, token: str | None) -> list[tuple[HookSpec, str]]:
    """Every hook with the URL it should call; without the token, a placeholder the comparison
    ignores (``token_known=False``)."""
    return [(hook, hook.url(api_url, token or "***")) for hook in HOOKS]


def render_table(check: CrmCheck) -> str:
    headers = ["KIND", "MODULE", "FIELD / EVENT", "EXPECTED", "FOUND", "STATE"]
    rows = [[r.kind, r.module, r.name, r.expected, r.found or "-", r.state.upper() if r.problem else r.state]
            for r in check.rows]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"ERROR {error}" for error in check.errors]
    missing = sum(1 for r in check.rows if r.problem)
    lines.append("")
    lines.append(f"{len(check.rows) - missing} of {len(check.rows)} present"
                 + ("" if check.ok else f"; {missing} to fix: build the package (`sugar-xero sugar-package`), "
                                        "install it in Admin > Module Loader, and check again"))
    return "\n".join(lines)


def nightly_crm_check(crm: CrmReader) -> dict[str, Any]:
    """The check the nightly metadata refresh runs: the deployed configuration and rules, and the
    hooks calling the stack's public URL with its CRM token (hooks unchecked without the URL)."""
    from shared.billing.rules import rules_file
    from shared.config import settings
    from shared.mapping.settings import mapping_file
    from shared.secrets import get_secret
    from shared.sugar.schema import required_fields

    api_url = settings().public_base_url
    hooks = expected_hooks(api_url, get_secret("CRM_TOKEN")) if api_url else None
    return check_crm(crm, required_fields(mapping_file(), rules_file()), hooks=hooks).as_dict()
