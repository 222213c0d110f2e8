"""Backfill logic with fakes (no network): paging, hook bodies, progress, summary, waiting, exit codes."""

from __future__ import annotations

import io
import threading

import pytest

from shared.usecases.backfill import (
    MODULES,
    Pushed,
    Tally,
    hook_body,
    keyset_records,
    pages_of,
    parse_since,
    progress_line,
    push_pages,
    summary_lines,
    wait_for_jobs,
)
from sugar_xero.backfill import MemorySugarTokenCache, backfill
from sugar_xero.local.sugar_double import matches

ACCOUNTS = MODULES["Accounts"]


def test_since_accepts_a_date_or_a_time_and_answers_utc():
    assert parse_since("2026-03-01") == "2026-03-01T00:00:00+00:00"
    assert parse_since("2026-03-01T10:00:00+08:00") == "2026-03-01T02:00:00+00:00"
    assert parse_since("2026-03-01T10:00:00Z") == "2026-03-01T10:00:00+00:00"
    with pytest.raises(ValueError):
        parse_since("last tuesday")


def test_hook_body_is_what_sugars_logic_hook_sends():
    record = {"id": "a1", "name": "Acme", "_module": "Accounts"}
    assert hook_body(ACCOUNTS, record) == {"bean": "Account", "event": "after_save", "data": record}
    assert MODULES["ProductTemplates"].route == "/crm/products"
    assert MODULES["Contacts"].bean == "Contact"


def test_pages_split_a_stream_and_keep_the_last_short_page():
    pages = list(pages_of(({"id": str(n)} for n in range(5)), 2))
    assert [[r["id"] for r in page] for page in pages] == [["0", "1"], ["2", "3"], ["4"]]
    assert list(pages_of([], 3)) == []


def test_push_pages_tallies_outcomes_and_reports_each_page():
    answers = {"1": Pushed("1", "new", "j1"), "2": Pushed("2", "duplicate", "j2"),
               "3": Pushed("3", "refused", error="422 name missing"), "4": Pushed("4", "duplicate", "j1")}
    seen: list[int] = []
    tally = push_pages([[{"id": "1"}, {"id": "2"}], [{"id": "3"}, {"id": "4"}]],
                       lambda record: answers[record["id"]], workers=2,
                       on_page=lambda t: seen.append(t.sent))
    assert seen == [2, 4]
    assert (tally.sent, tally.new, tally.duplicates) == (4, 1, 2)
    assert tally.refused == [("3", "422 name missing")]
    assert tally.job_ids == ["j1", "j2"]  # each job once, in order


def test_push_pages_uses_a_bounded_pool():
    running, most = 0, 0
    lock = threading.Lock()
    gate = threading.Barrier(3, timeout=5)

    def push(record):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        gate.wait()  # three at once must be possible
        with lock:
            running -= 1
        return Pushed(record["id"], "new", record["id"])

    push_pages([[{"id": str(n)} for n in range(9)]], push, workers=3)
    assert most == 3


def test_progress_line_shows_a_bar_when_the_total_is_known():
    tally = Tally(sent=1200, duplicates=3)
    assert progress_line(tally, 2000, "accounts", width=10) == \
        "[######....] 1200/2000 accounts, 3 duplicates, 0 refused"
    assert progress_line(Tally(sent=2100), 2000, "accounts", width=4).startswith("[####] 2100/2000")
    assert progress_line(tally, None, "accounts") == "1200 accounts, 3 duplicates, 0 refused"


def test_summary_lists_the_first_refusals():
    tally = Tally(sent=9, new=2)
    tally.refused = [(f"r{n}", "422 bad") for n in range(7)]
    lines = summary_lines(tally, "accounts")
    assert lines[0] == "sent 9 accounts: 2 new jobs, 0 duplicates, 7 refused"
    assert lines[1] == "  refused r0: 422 bad"
    assert lines[-1] == "  ... and 2 more refused"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_polls_until_every_job_is_finished():
    polls = {"a": iter(["queued", "succeeded"]), "b": iter(["in_progress", "in_progress", "failed"])}
    clock = Clock()

    def job_of(job_id):
        status = next(polls[job_id])
        return {"status": status, "error": "Xero said no" if status == "failed" else None}

    outcome = wait_for_jobs(["a", "b"], job_of, wait_seconds=60, workers=2, clock=clock, sleep=clock.sleep)
    assert outcome.counts == {"succeeded": 1, "failed": 1}
    assert outcome.failures == [("b", "Xero said no")]
    assert outcome.lines() == ["jobs: 1 succeeded, 1 failed", "  failed b: Xero said no"]
    assert clock.now == 2.0


def test_wait_is_bounded():
    clock = Clock()
    outcome = wait_for_jobs(["a"], lambda job_id: {"status": "queued"}, wait_seconds=5, clock=clock,
                            sleep=clock.sleep)
    assert outcome.counts == {"unfinished": 1}
    assert clock.now <= 5


def record(n: int) -> dict:
    return {"id": f"a{n}", "name": f"A{n}", "date_modified": f"2026-02-0{1 + n % 3}T00:00:00+00:00"}


def test_records_saved_during_the_run_do_not_shift_the_pages():
    """The connector's write-back saves records while the backfill reads: offsets would skip."""
    sugar = FakeSugar([record(n) for n in range(7)])
    seen = []

    def fetch(filters, size):
        page, _ = sugar.filter("Accounts", filters, max_num=size, order_by="date_modified:asc,id:asc")
        read = [dict(r) for r in page]
        for r in page:  # then the write-back moves each pushed record to "now"
            r["date_modified"] = "2026-11-27T12:00:00+00:00"
        return read

    for r in keyset_records(fetch, since="2026-01-01T00:00:00+00:00", until="2026-11-27T00:00:00+00:00",
                            page_size=2):
        seen.append(r["id"])
    assert sorted(seen) == [f"a{n}" for n in range(7)] and len(seen) == 7


class FakeSugar:
    base_url = "http://sugar.test"

    def __init__(self, records):
        self.records = records
        self.calls = []

    def filter(self, module, filter, fields=None, max_num=100, offset=0, order_by=None):
        """Sugar's filter API over the records, with the double's own filter semantics."""
        self.calls.append({"module": module, "filter": filter, "fields": fields, "max_num": max_num,
                           "order_by": order_by})
        ordered = sorted(self.records, key=lambda r: (r["date_modified"], r["id"]))
        found = [r for r in ordered if matches(r, filter)]
        return found[offset:offset + max_num], -1


class FakeApi:
    base_url = "http://api.test"

    def __init__(self, refuse=(), fail=()):
        self.refuse, self.fail = set(refuse), set(fail)
        self.jobs: dict[str, str] = {}
        self.bodies = []
        self._lock = threading.Lock()

    def push(self, spec, record):
        with self._lock:
            self.bodies.append(hook_body(spec, record))
            if record["id"] in self.refuse:
                return Pushed(record["id"], "refused", error="422 name: missing")
            job_id = f"job-{record['id']}"
            duplicate = job_id in self.jobs
            self.jobs[job_id] = "failed" if record["id"] in self.fail else "succeeded"
            return Pushed(record["id"], "duplicate" if duplicate else "new", job_id)

    def job(self, job_id):
        return {"status": self.jobs[job_id], "error": "Xero: invalid email"}


def _run(sugar, api, **options):
    out = io.StringIO()
    clock = Clock()
    code = backfill(ACCOUNTS, "2026-01-01T00:00:00+00:00", api=api, sugar=sugar, batch=options.get("batch", 2),
                    wait_seconds=options.get("wait", 30), out=out, clock=clock, sleep=clock.sleep)
    return code, out.getvalue()


def test_backfill_reads_sugar_oldest_first_and_prints_one_line_per_page():
    sugar = FakeSugar([record(n) for n in range(5)])
    api = FakeApi()
    code, text = _run(sugar, api)
    assert code == 0
    count_call, first_read = sugar.calls[0], sugar.calls[1]
    assert count_call["fields"] == ["id", "date_modified"]
    assert first_read["filter"][0] == {"date_modified": {"$gte": "2026-01-01T00:00:00+00:00"}}
    assert first_read["filter"][1]["date_modified"]["$lte"]  # the window is frozen at the run's start
    assert (first_read["max_num"], first_read["order_by"]) == (2, "date_modified:asc,id:asc")
    assert api.bodies[0] == {"bean": "Account", "event": "after_save", "data": record(0)}
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("[")] == [
        "[########............] 2/5 accounts, 0 duplicates, 0 refused",
        "[################....] 4/5 accounts, 0 duplicates, 0 refused",
        "[####################] 5/5 accounts, 0 duplicates, 0 refused"]
    assert "sent 5 accounts: 5 new jobs, 0 duplicates, 0 refused" in lines
    assert "jobs: 5 succeeded" in lines


def test_a_second_run_is_all_duplicates():
    sugar = FakeSugar([record(n) for n in range(3)])
    api = FakeApi()
    _run(sugar, api)
    code, text = _run(sugar, api)
    assert code == 0
    assert "sent 3 accounts: 0 new jobs, 3 duplicates, 0 refused" in text


def test_refused_records_and_failed_jobs_make_the_exit_code_non_zero():
    sugar = FakeSugar([record(n) for n in range(4)])
    code, text = _run(sugar, FakeApi(refuse={"a1"}))
    assert code == 1
    assert "  refused a1: 422 name: missing" in text
    code, text = _run(sugar, FakeApi(fail={"a2"}))
    assert code == 1
    assert "jobs: 3 succeeded, 1 failed" in text
    assert "  failed job-a2: Xero: invalid email" in text


def test_memory_token_cache_compares_and_sets():
    cache = MemorySugarTokenCache()
    assert cache.put("k", {"access_token": "a"}, expected_version=None)
    assert not cache.put("k", {"access_token": "b"}, expected_version=None)
    assert cache.get("k") == {"access_token": "a", "version": 1}
    assert cache.put("k", {"access_token": "c"}, expected_version=1)
    assert not cache.put("k", {"access_token": "d"}, expected_version=1)
    assert cache.get("k")["access_token"] == "c"
