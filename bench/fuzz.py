"""Fuzzing the connector's own API with schemathesis (reconciliation/operations issue, item 4).

Every operation of the published OpenAPI (``sugar_xero.openapi.build_spec``) gets generated
requests, valid and invalid by the schema (schemathesis' positive and negative modes), sent over
real HTTP to the local API gateway with the functions behind it, moto and the emulators, all
started in this process on free loopback ports. Each request also draws how it authenticates:
the local CRM token as a bearer header or ``?token=``, an ``X-Sugar-Signature`` of the exact body,
a Xero webhook signature, a wrong credential or none; and up to two unexpected query parameters.

Checks on every answer:
- no 5xx;
- every 4xx carries the JSON error body ``{"error", "message", "details"}``, except the contract's
  empty 401 on ``/xero/webhooks``;
- a refused request (any 4xx) stores nothing: no item in any DynamoDB table, no message in any
  queue. The stack runs without its queue pollers, so whatever a request queued stays visible.

``make test`` runs a few cases per operation (tests/contract/test_fuzz_connector_api.py);
``make bench`` runs at least 500 per operation and prints the counts and failures.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from hypothesis import HealthCheck, Phase, given, reject, seed, settings
from hypothesis import strategies as st

from bench.report import Row

BENCH_CASES_PER_OPERATION = 500
TEST_CASES_PER_OPERATION = 25
DEFAULT_SEED = 20261127
REQUEST_SECONDS = 30
WORKER_SECONDS = 900  # a bound on one worker's whole share
WEBHOOK_PATH = "/xero/webhooks"
# Query names the spec or the authentication gives a meaning to: never drawn as "unexpected".
RESERVED_QUERY = frozenset({"token", "code", "state", "error"})


@dataclass
class Failure:
    operation: str
    check: str
    status: int
    auth: str
    request: str
    answer: str

    def describe(self) -> str:
        return f"{self.operation} [{self.check}] {self.status} (auth {self.auth}): {self.request} -> {self.answer}"


@dataclass
class OperationResult:
    operation: str
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    error: str | None = None  # the harness itself could not generate or send
    seconds: float = 0.0

    @property
    def failed_cases(self) -> int:
        return len(self.failures)


@dataclass
class FuzzReport:
    results: list[OperationResult]
    seconds: float

    @property
    def failures(self) -> list[Failure]:
        return [failure for result in self.results for failure in result.failures]

    @property
    def errors(self) -> list[str]:
        return [f"{r.operation}: {r.error}" for r in self.results if r.error]


# ---- the stack ------------------------------------------------------------------------------------
@contextlib.contextmanager
def intake_stack() -> Iterator[Any]:
    """``sugar-xero local`` in this process without pollers and timers; the process environment and
    the adapter caches are put back afterwards (the stack sets the handlers' environment here)."""
    from moto.core.base_backend import BackendDict

    from shared import wiring
    from sugar_xero.local.stack import LocalStack, StackOptions

    class IntakeOnlyStack(LocalStack):
        def _start_pollers(self) -> None:  # what a request queued stays in the queue
            return None

        def _start_timers(self) -> None:
            return None

    saved_environment = dict(os.environ)
    server_log = logging.getLogger("werkzeug")
    saved_level = server_log.level
    server_log.setLevel(logging.WARNING)  # moto's server logs every call
    folder = Path(tempfile.mkdtemp(prefix="sugar-xero-fuzz-"))
    stack = IntakeOnlyStack(StackOptions(port=0, xero_port=0, sugar_port=0, state_file=folder / "state.json"))
    BackendDict.reset()  # moto's backends live in the process: start from none, leave none behind
    try:
        stack.start(out=io.StringIO())
        yield stack
    finally:
        stack.stop()
        BackendDict.reset()
        server_log.setLevel(saved_level)
        os.environ.clear()
        os.environ.update(saved_environment)
        wiring.reset()


def stored_count() -> int:
    """Items in every DynamoDB table plus messages in every queue, read from moto's backends
    (the moto server runs in this process)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.sqs.models import sqs_backends

    items = sum(len(table) for regions in dynamodb_backends.values() for backend in regions.values()
                for table in backend.tables.values())
    messages = sum(len(queue._messages) for regions in sqs_backends.values() for backend in regions.values()
                   for queue in backend.queues.values())
    return items + messages


# ---- one request --------------------------------------------------------------------------------
def _auth_modes(path: str, operation: dict[str, Any]) -> list[str]:
    schemes = {name for requirement in operation.get("security") or [] for name in requirement}
    if path == WEBHOOK_PATH:
        return ["xero_signature", "xero_signature", "xero_signature", "none", "wrong"]
    modes = []
    if "bearer" in schemes:
        modes += ["bearer", "bearer"]
    if "sugarSignature" in schemes:
        modes.append("sugar_signature")
    if "queryToken" in schemes:
        modes.append("query_token")
    if "adminBearer" in schemes or "adminQueryToken" in schemes:
        # The admin secret opens onboarding; the CRM token (a hook URL's) must never do so.
        modes += ["admin_bearer", "admin_query_token", "bearer", "query_token"]
    return modes + ["none", "wrong"] if modes else ["none"]


def _authenticate(prepared: requests.PreparedRequest, mode: str, secrets: dict[str, str]) -> None:
    body = prepared.body or b""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if mode == "bearer":
        prepared.headers["Authorization"] = f"Bearer {secrets['CRM_TOKEN']}"
    elif mode == "query_token":
        prepared.prepare_url(prepared.url, {"token": secrets["CRM_TOKEN"]})
    elif mode == "admin_bearer":
        prepared.headers["Authorization"] = f"Bearer {secrets['ADMIN_TOKEN']}"
    elif mode == "admin_query_token":
        prepared.prepare_url(prepared.url, {"token": secrets["ADMIN_TOKEN"]})
    elif mode == "sugar_signature":
        prepared.headers["X-Sugar-Signature"] = hmac.new(
            secrets["CRM_SIGNING_SECRET"].encode(), raw, hashlib.sha256).hexdigest()
    elif mode == "xero_signature":
        digest = hmac.new(secrets["XERO_WEBHOOK_KEY"].encode(), raw, hashlib.sha256).digest()
        prepared.headers["x-xero-signature"] = base64.b64encode(digest).decode()
    elif mode == "wrong":
        prepared.headers["Authorization"] = "Bearer not-the-token"
        prepared.headers["x-xero-signature"] = base64.b64encode(b"0" * 32).decode()


EDGE_TEXT = "Entretien préventif, pièces détachées 电梯维修保养服务 บริการบำรุงรักษาลิฟต์ "


def _edge_bodies(path: str) -> list[tuple[str, bytes]]:
    bodies = [("1,100 nested arrays", b"[" * 1100 + b"]" * 1100),
              ("1,100 nested objects", b'{"a":' * 1100 + b"1" + b"}" * 1100)]
    if path in ("/crm/invoices", "/crm/purchases"):
        kind = "sales" if path == "/crm/invoices" else "purchase"
        description = (EDGE_TEXT * 20)[:1000]
        document = {"kind": kind, "crm_module": "Quotes", "crm_id": "fuzz-big-1", "contact": {"crm_id": "acc-1"},
                    "lines": [{"description": description, "quantity": "1", "unit_amount": "10.00",
                               "account_code": "200"} for _ in range(128)]}
        bodies.append(("250 KB of non-ASCII lines", json.dumps(document, ensure_ascii=False).encode()))  # < 256 KiB
    return bodies


def _error_body_problem(answer: requests.Response) -> str | None:
    """What is wrong with a 4xx body, or None when it is the contract's JSON error."""
    if "application/json" not in answer.headers.get("Content-Type", ""):
        return f"Content-Type {answer.headers.get('Content-Type')!r}, not application/json"
    try:
        body = answer.json()
    except ValueError:
        return "body is not JSON"
    if not isinstance(body, dict) or not {"error", "message", "details"} <= body.keys():
        return "body lacks error/message/details"
    if not (isinstance(body["error"], str) and isinstance(body["message"], str)
            and isinstance(body["details"], list)):
        return "error/message are not strings or details is not a list"
    return None


def _short(text: str | bytes | None, limit: int = 300) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


# ---- one operation ------------------------------------------------------------------------------
def fuzz_operation(schema: Any, path: str, method: str, *, base_url: str, cases: int, secrets: dict[str, str],
                   session: requests.Session, random_seed: int, crashes: _CrashLog) -> OperationResult:
    operation = schema[path][method]
    spec_operation = schema.raw_schema["paths"][path][method]
    name = f"{method.upper()} {path}"
    result = OperationResult(name)

    @seed(random_seed)
    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(_case_strategies(operation)), auth=st.sampled_from(_auth_modes(path, spec_operation)),
           unexpected=_unexpected_query())
    def send(case: Any, auth: str, unexpected: dict[str, str]) -> None:
        try:
            kwargs = case.as_transport_kwargs(base_url=base_url)
            for option in ("timeout", "allow_redirects", "verify", "cert"):
                kwargs.pop(option, None)
            kwargs["params"] = {**unexpected, **(kwargs.get("params") or {})}
            prepared = session.prepare_request(requests.Request(**kwargs))
        except Exception:  # e.g. a header value no HTTP client can send: not a request at all
            reject()
        _authenticate(prepared, auth, secrets)
        exchange(prepared, auth)

    def exchange(prepared: requests.PreparedRequest, auth: str, *, accepted_is_kept: bool = False) -> None:
        # One connection per request: on a kept-alive connection the local gateway's two writes
        # (headers, then body) meet Nagle and delayed ACK, 40 ms a request.
        prepared.headers["Connection"] = "close"
        before = stored_count()
        crashes.last = None
        request_text = f"{prepared.method} {prepared.url} body={_short(prepared.body)}"
        try:
            # A new pool each time too: the gateway closes the connection without saying so in
            # its answer (no `Connection: close` header), and a pooled connection would be reused.
            with requests.Session() as one_request:
                answer = one_request.send(prepared, timeout=REQUEST_SECONDS, allow_redirects=False)
        except requests.RequestException as error:
            result.cases += 1
            result.failures.append(Failure(name, "an answer", 0, auth, request_text, f"no answer: {error}"))
            return
        result.cases += 1
        result.statuses[answer.status_code] = result.statuses.get(answer.status_code, 0) + 1
        stored = stored_count() - before
        for check, detail in _broken_promises(answer, path=path, stored=stored, crash=crashes.last,
                                              accepted_is_kept=accepted_is_kept):
            result.failures.append(Failure(name, check, answer.status_code, auth, request_text,
                                           f"{detail}: {_short(answer.content)}"))

    def edge_cases() -> None:
        """Fixed cases no generator is likely to draw: a body nested past any parser's recursion
        limit, and a document near the size limit in non-ASCII text (stored as compact UTF-8, or
        in the payload bucket: never a 5xx, never accepted and then lost)."""
        if method != "post" or not path.startswith("/crm/"):
            return
        for label, body in _edge_bodies(path):
            prepared = session.prepare_request(requests.Request(
                "POST", f"{base_url}{path}", data=body, headers={"Content-Type": "application/json"}))
            _authenticate(prepared, "bearer", secrets)
            exchange(prepared, f"bearer, {label}", accepted_is_kept=True)

    started = time.monotonic()
    try:
        edge_cases()
        send()
    except Exception as error:  # a harness problem: reported, never hidden
        result.error = f"{type(error).__name__}: {error}"
    result.seconds = time.monotonic() - started
    return result


def _case_strategies(operation: Any) -> list[Any]:
    """Valid and invalid requests, as schemathesis draws them from the connector's OpenAPI."""
    from schemathesis import GenerationMode

    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        with contextlib.suppress(Exception):  # nothing to make invalid (no parameters, no body)
            strategies.append(operation.as_strategy(generation_mode=mode))
    return strategies


def _unexpected_query() -> Any:
    """Up to two query parameters the operation does not declare (they must be ignored or refused)."""
    return st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
            lambda key: key not in RESERVED_QUERY),
        st.text(max_size=12), max_size=2)


def _broken_promises(answer: requests.Response, *, path: str, stored: int, crash: str | None,
                     accepted_is_kept: bool) -> list[tuple[str, str]]:
    """(check, detail) for each promise the answer breaks: no 5xx; a JSON error body a person can
    act on for a 4xx (the webhook's 401 is empty, as Xero expects); nothing stored for a refused
    request; and, for the fixed edge cases, a 202 that really stored its job and message."""
    broken = []
    if answer.status_code >= 500:
        broken.append(("no 5xx", f"server error ({crash or 'no exception logged'})"))
    if 400 <= answer.status_code < 500:
        if path == WEBHOOK_PATH and answer.status_code == 401:
            if answer.content:
                broken.append(("empty 401", "the webhook's 401 has a body"))
        elif problem := _error_body_problem(answer):
            broken.append(("JSON error body", problem))
        if stored:
            broken.append(("nothing stored", f"{stored} item(s)/message(s) stored for a refused request"))
    if accepted_is_kept and answer.status_code == 202 and stored < 2:
        broken.append(("accepted is kept", "202 but no job item and queue message were stored"))
    return broken


class _CrashLog(logging.Handler):
    """Keeps the last exception the gateway logged, so that a 5xx is reported with its cause."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            frames = traceback.extract_tb(record.exc_info[2])[-2:]
            where = "; ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames)
            self.last = f"{type(error).__name__}: {_short(str(error), 200)} at {where}"


@contextlib.contextmanager
def _crashes_recorded() -> Iterator[_CrashLog]:
    gateway_log = logging.getLogger("sugar_xero.local")
    saved = gateway_log.propagate
    crashes = _CrashLog()
    gateway_log.addHandler(crashes)
    gateway_log.propagate = False  # recorded, not printed
    try:
        yield crashes
    finally:
        gateway_log.removeHandler(crashes)
        gateway_log.propagate = saved


def operations() -> list[tuple[str, str]]:
    """(path, method) of every operation the published spec has."""
    from sugar_xero.openapi import build_spec

    return [(path, method) for path, methods in build_spec()["paths"].items() for method in methods]


def fuzz(cases_per_operation: int, *, only: list[tuple[str, str]] | None = None,
         random_seed: int = DEFAULT_SEED) -> FuzzReport:
    """Fuzz every operation (or ``only`` these) against a stack started in this process."""
    import warnings

    import schemathesis

    from shared.config import LOCAL_SECRET_DEFAULTS
    from shared.observability import logger
    from sugar_xero.openapi import build_spec

    started = time.monotonic()
    with intake_stack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Powertools: "No application metrics to publish", per request
        secrets = {name: os.environ.get(name) or LOCAL_SECRET_DEFAULTS[name]
                   for name in ("CRM_TOKEN", "CRM_SIGNING_SECRET", "ADMIN_TOKEN", "XERO_WEBHOOK_KEY")}
        schema = schemathesis.openapi.from_dict(build_spec())
        base_url = stack.urls["gateway"]
        chosen = only or [(path, method) for path, methods in schema.raw_schema["paths"].items()
                          for method in methods]
        previous_level = logger.log_level
        logger.setLevel(logging.CRITICAL)  # thousands of refusals would bury the report
        results = []
        try:
            # Metric lines (EMF) go to stdout once per request: not this report's business.
            with requests.Session() as session, _crashes_recorded() as crashes, \
                    contextlib.redirect_stdout(io.StringIO()):
                for path, method in chosen:
                    results.append(fuzz_operation(schema, path, method, base_url=base_url,
                                                  cases=cases_per_operation, secrets=secrets,
                                                  session=session, random_seed=random_seed,
                                                  crashes=crashes))
        finally:
            logger.setLevel(previous_level)
    return FuzzReport(results, time.monotonic() - started)


def fuzz_in_processes(cases_per_operation: int, *, workers: int = 2,
                      random_seed: int = DEFAULT_SEED) -> FuzzReport:
    """The operations shared out to ``workers`` processes, each with a stack of its own (generating
    cases is CPU work: one process per core)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    started = time.monotonic()
    every = operations()
    shares = [every[index::workers] for index in range(workers)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fuzz, cases_per_operation, only=share, random_seed=random_seed)
                   for share in shares if share]
        reports = [future.result(timeout=WORKER_SECONDS) for future in futures]
    order = {f"{method.upper()} {path}": index for index, (path, method) in enumerate(every)}
    results = sorted((r for report in reports for r in report.results), key=lambda r: order[r.operation])
    return FuzzReport(results, time.monotonic() - started)


# ---- make bench -----------------------------------------------------------------------------------
def run() -> list[Row]:
    report = fuzz_in_processes(BENCH_CASES_PER_OPERATION)
    rows = []
    for result in report.results:
        statuses = ", ".join(f"{code}×{count}" for code, count in sorted(result.statuses.items()))
        measured = f"{result.cases} cases in {result.seconds:.0f} s ({statuses}); {result.failed_cases} failed"
        if result.error:
            measured += f"; harness error: {_short(result.error, 120)}"
        holds = result.cases >= BENCH_CASES_PER_OPERATION and not result.failures and not result.error
        rows.append(Row("7", f"fuzz {result.operation}", measured, None,
                        f"≥ {BENCH_CASES_PER_OPERATION} cases, no 5xx, JSON 4xx, nothing stored", holds))
    notes = [f"fuzz: {sum(r.cases for r in report.results)} cases in {report.seconds:.0f} s"]
    notes += [failure.describe() for failure in _distinct(report.failures)]
    notes += [f"harness error: {error}" for error in report.errors]
    return [row.with_notes(notes) if index == 0 else row for index, row in enumerate(rows)]


def _distinct(failures: list[Failure]) -> list[Failure]:
    """One example of each (operation, check, status): the table says how many there were."""
    seen: dict[tuple[str, str, int], Failure] = {}
    for failure in failures:
        seen.setdefault((failure.operation, failure.check, failure.status), failure)
    return list(seen.values())
