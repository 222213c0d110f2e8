from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from shared.backoff import backoff_seconds, retry_after_seconds


def test_retry_after_in_both_forms():
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"Retry-After": "-3"}) == 0.0
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_seconds({"Retry-After": later}) <= 30


def test_backoff_grows_is_capped_and_never_undercuts_retry_after():
    for attempt, base in ((1, 0.25), (2, 0.5), (3, 1.0), (10, 8.0)):
        assert base <= backoff_seconds(attempt) <= base * 1.25
    assert 40 <= backoff_seconds(1, 40) <= 41
