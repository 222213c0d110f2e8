"""``sugar-xero replay``: send dead-lettered work, or one job, through its worker again.

It finds the stack as ``sugar-xero status`` does (``--stack NAME``: a deployed stack's
CloudFormation outputs; otherwise the running local stack's state file; otherwise the functions'
own variables). What it moves comes from ``shared.usecases.redrive``; this module only finds the
queues, prints, and holds the SQS adapter the CLI needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from shared.usecases.redrive import QueueMessage, RedriveResult, job_id_of, redrive_dlq, redrive_job
from shared.usecases.status import QueueSpec
from sugar_xero.local.state_file import STATE_FILE_NAME
from sugar_xero.status import QUEUE_NAMES, StackTarget, locate

EXIT_DONE, EXIT_NOT_ALL, EXIT_NO_STACK = 0, 1, 2
RECEIVE_WAIT_SECONDS = 1  # a long poll: a short one may answer "empty" while messages wait

DESCRIPTION = """\
Re-drive work that did not get through: move the messages of a dead-letter queue back to its
work queue (--dlq NAME, or --all for every one), or send one job again (--job ID, repeatable).
Nothing is duplicated in Xero or the CRM: workers dedupe by job id, by content hash and by the
stored mapping, and Xero's Idempotency-Key covers a batch that was applied but never answered.
Lift whatever made the work fail first (e.g. reconnect with `sugar-xero connect`), then replay.

Dead-letter queues by name: contact, invoice, webhook, reconcile (or their CloudFormation logical
ids, e.g. ContactSyncDLQ). Which stack: as `sugar-xero status` (--stack NAME for a deployed one,
else the running local stack, else SYNC_TABLE and the *_QUEUE_URL / *_DLQ_URL variables).

Exit status: 0 done (including "nothing to move"); 1 a job could not be re-driven or a queue
could not be read; 2 no stack found, or nothing asked for.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sugar-xero replay", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dlq", action="append", default=[], metavar="NAME",
                        help="a dead-letter queue to move back to its work queue (repeatable)")
    parser.add_argument("--all", action="store_true", help="every dead-letter queue")
    parser.add_argument("--job", action="append", default=[], metavar="ID",
                        help="send this job's stored document to its queue again (repeatable)")
    parser.add_argument("--force", action="store_true",
                        help="with --job: start a new attempt even if it already succeeded (e.g. it was "
                             "overwritten in Xero since; the worker writes only what changed). A live attempt "
                             "(queued or in progress within the last 6 minutes) is refused even so")
    parser.add_argument("--max", type=int, default=1000, metavar="N",
                        help="move at most N messages per dead-letter queue (default 1000)")
    parser.add_argument("--json", action="store_true", help="print what moved as JSON")
    parser.add_argument("--stack", metavar="NAME", default=None,
                        help="a deployed CloudFormation stack's name (reads its outputs)")
    parser.add_argument("--state-file", type=Path, default=None,
                        help=f"the local stack's state file (default {STATE_FILE_NAME} in the current "
                             "folder or the nearest parent)")
    return parser


# ---- the SQS adapter ------------------------------------------------------------------------------
class SqsMessages:
    """One SQS queue, as the re-drive needs it: receive and delete (a DLQ), send as-is (its target)."""

    def __init__(self, client: Any, queue_url: str):
        self._client = client
        self.queue_url = queue_url

    def receive(self, max_messages: int, *, visibility_timeout: int) -> list[QueueMessage]:
        answer = self._client.receive_message(QueueUrl=self.queue_url,
                                              MaxNumberOfMessages=max(1, min(10, max_messages)),
                                              WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                                              VisibilityTimeout=visibility_timeout, MessageAttributeNames=["All"])
        return [QueueMessage(receipt_handle=m["ReceiptHandle"], body=m.get("Body", ""),
                             message_id=m.get("MessageId", ""), attributes=dict(m.get("MessageAttributes") or {}))
                for m in answer.get("Messages") or []]

    def delete(self, receipt_handle: str) -> None:
        self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)

    def send_raw(self, body: str, attributes: dict[str, Any] | None = None) -> None:
        extra = {"MessageAttributes": attributes} if attributes else {}
        self._client.send_message(QueueUrl=self.queue_url, MessageBody=body, **extra)

    def send(self, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self._client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body, separators=(",", ":")),
                                  DelaySeconds=max(0, min(int(delay_seconds), 900)))


# ---- choosing queues --------------------------------------------------------------------------------
def _names_of(spec: QueueSpec) -> set[str]:
    names = {spec.name.lower()}
    for logical, short in QUEUE_NAMES.items():
        if short == spec.name:
            names |= {logical.lower(), f"{logical}DLQ".lower()}
    if spec.dlq_url:
        names |= {spec.dlq_url.lower(), spec.dlq_url.rstrip("/").rsplit("/", 1)[-1].lower()}
    return names


def select_dead_letter_queues(specs: Sequence[QueueSpec], names: Sequence[str], every: bool) -> list[QueueSpec]:
    """The queues asked for, in the stack's order; an unknown name raises ValueError."""
    with_dlq = [s for s in specs if s.dlq_url]
    if every:
        return with_dlq
    chosen: list[QueueSpec] = []
    for name in names:
        matches = [s for s in with_dlq if name.lower() in _names_of(s)]
        if not matches:
            known = ", ".join(s.name for s in with_dlq) or "none"
            raise ValueError(f"no dead-letter queue called {name!r} in this stack (known: {known})")
        chosen += [s for s in matches if s not in chosen]
    return chosen


# ---- the work ---------------------------------------------------------------------------------------
@dataclass
class QueueReplay:
    name: str
    dlq_url: str
    queue_url: str | None
    moved: int = 0
    job_ids: list[str] = field(default_factory=list)
    other_messages: int = 0  # bodies that are not one of the connector's jobs (e.g. a schedule tick)
    error: str | None = None


@dataclass
class ReplayReport:
    queues: list[QueueReplay] = field(default_factory=list)
    jobs: list[RedriveResult] = field(default_factory=list)

    @property
    def moved(self) -> int:
        return sum(q.moved for q in self.queues) + sum(1 for j in self.jobs if j.sent)

    @property
    def complete(self) -> bool:
        return all(q.error is None for q in self.queues) and all(j.sent for j in self.jobs)

    def as_dict(self) -> dict[str, Any]:
        return {"moved": self.moved, "complete": self.complete,
                "dead_letter_queues": [vars(q) for q in self.queues], "jobs": [j.as_dict() for j in self.jobs]}


def replay(target: StackTarget, *, dead_letter: Sequence[QueueSpec], job_ids: Sequence[str], sqs: Any,
           jobs: Any, force: bool = False, max_messages: int = 1000) -> ReplayReport:
    report = ReplayReport()
    for spec in dead_letter:
        entry = QueueReplay(name=spec.name, dlq_url=str(spec.dlq_url), queue_url=spec.url)
        report.queues.append(entry)
        if not spec.url:
            entry.error = "its work queue's URL is unknown: nowhere to move the messages"
            continue

        def moved(message: QueueMessage, entry: QueueReplay = entry) -> None:
            job_id = job_id_of(message.body)
            if job_id:
                entry.job_ids.append(job_id)
            else:
                entry.other_messages += 1

        try:
            entry.moved = redrive_dlq(SqsMessages(sqs, str(spec.dlq_url)), SqsMessages(sqs, spec.url),
                                      max_messages=max_messages, on_moved=moved)
        except Exception as error:  # a missing permission or a deleted queue: say which, go on
            entry.moved = len(entry.job_ids) + entry.other_messages
            entry.error = f"{type(error).__name__}: {str(error)[:200]}"
    if job_ids:
        queues = {spec.name: SqsMessages(sqs, spec.url) for spec in target.queues if spec.url}
        for job_id in job_ids:
            report.jobs.append(redrive_job(job_id, jobs=jobs, queues=queues, force=force,
                                           reason="re-driven by `sugar-xero replay`"))
    return report


# ---- output -----------------------------------------------------------------------------------------
def render(report: ReplayReport, target: StackTarget) -> str:
    lines = [f"sugar-xero replay: {target.where}"]
    for q in report.queues:
        head = f"  {q.name} dead-letter queue → {q.name} queue: "
        if q.error:
            lines.append(head + f"moved {q.moved}, then stopped: {q.error}")
            continue
        if not q.moved:
            lines.append(head + "nothing waiting")
            continue
        lines.append(head + f"moved {q.moved} message(s)")
        lines += [f"    job {job_id}" for job_id in q.job_ids]
        if q.other_messages:
            lines.append(f"    {q.other_messages} other message(s) (not a job, e.g. an undelivered schedule tick)")
    for j in report.jobs:
        crm = f" {j.crm['module']}/{j.crm['id']}" if j.crm else ""
        what = f"  job {j.job_id} ({j.kind or 'unknown kind'}{crm}): "
        if j.sent:
            where = f" for organisation {j.tenant_id}" if j.tenant_id else ""
            lines.append(what + f"was {j.status_before}, queued again on the {j.queue} queue{where} "
                         f"(attempt {j.attempt})")
        else:
            lines.append(what + f"not sent: {j.reason}")
    lines.append("")
    if report.moved:
        lines.append(f"Re-drove {report.moved} message(s). Their jobs run again; follow them with "
                     "`sugar-xero status` (nothing is duplicated: workers dedupe by job id, content and mapping).")
    else:
        lines.append("Nothing to re-drive.")
    return "\n".join(lines)


# ---- adapters -----------------------------------------------------------------------------------------
def _clients(target: StackTarget, session: Any) -> tuple[Any, Any]:
    from shared.state.dynamo import SyncStateTable
    from sugar_xero.status import _session

    session = session or _session(target)
    endpoint = {"endpoint_url": target.endpoint_url} if target.endpoint_url else {}
    sqs = session.client("sqs", **endpoint)
    jobs = SyncStateTable(target.sync_table, resource=session.resource("dynamodb", **endpoint))
    return sqs, jobs


def run(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None,
        environ: Mapping[str, str] | None = None, cloudformation: Callable[[], Any] | None = None,
        session: Any = None) -> int:
    """The command. ``environ``, ``cloudformation`` (a client factory) and ``session`` (boto3)
    default to the real ones; tests pass their own."""
    out, err = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.all or args.dlq or args.job):
        print("sugar-xero replay: say what to re-drive: --all, --dlq NAME or --job ID (see --help)", file=err)
        return EXIT_NO_STACK
    if args.max < 1:
        print("sugar-xero replay: --max must be at least 1", file=err)
        return EXIT_NO_STACK
    environ = dict(os.environ if environ is None else environ)
    target = locate(args, environ, cloudformation, err)
    if target is None:
        return EXIT_NO_STACK
    try:
        dead_letter = select_dead_letter_queues(target.queues, args.dlq, args.all)
    except ValueError as error:
        print(f"sugar-xero replay: {error}", file=err)
        return EXIT_NO_STACK
    sqs, jobs = _clients(target, session)
    try:
        report = replay(target, dead_letter=dead_letter, job_ids=args.job, sqs=sqs, jobs=jobs, force=args.force,
                        max_messages=args.max)
    except Exception as error:  # the sync table unreadable while re-driving a job
        print(f"sugar-xero replay: {type(error).__name__}: {error} ({target.where})", file=err)
        return EXIT_NO_STACK
    if args.json:
        print(json.dumps({"stack": target.as_dict(), **report.as_dict()}, indent=2, default=str), file=out)
    else:
        print(render(report, target), file=out)
    return EXIT_DONE if report.complete else EXIT_NOT_ALL
