"""One occurrence through claim, fence, call and record, in this process, on real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.test.utils import override_settings

from django_oncejob import current_occurrence, signals
from django_oncejob.cache.atomic import KEY_VERSION
from django_oncejob.cache.claim import ClaimResult, claim, claim_key
from django_oncejob.jobs.parser import parse_job
from django_oncejob.models import Deployment, JobState, Run
from django_oncejob.occurrence import Occurrence
from django_oncejob.running import history
from django_oncejob.running.history import RESULT_LENGTH, Ending, result_text
from django_oncejob.running.pipeline import claim_and_run
from django_oncejob.running.steps import Outcome
from django_oncejob.testing import occurrence
from tests.jobs import record
from tests.rows import fence

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)
DEAD_REDIS = {
    "BACKEND": "django_redis.cache.RedisCache",
    # Nothing listens on port 9 of loopback: connections are refused at once.
    "LOCATION": "redis://127.0.0.1:9/0",
    "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
}


@pytest.fixture(autouse=True)
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("ONCEJOB_TEST_RECORD", str(path))
    return path


def spec(func: str = "tests.jobs.record", **extra: Any):  # type: ignore[no-untyped-def]
    job, errors = parse_job("report", {"func": func, "cron": "0 21 * * *", **extra})
    assert errors == []
    assert job is not None
    return job


def runs(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_winner_runs_and_records(record_file: Path) -> None:
    assert claim_and_run(spec(), WHEN, "host-a:1") is Outcome.SUCCEEDED

    (line,) = runs(record_file)
    assert line.startswith("report 2026-11-26T21:00:00+00:00 ")
    row = Run.objects.get()
    assert (row.job, row.scheduled_for, row.owner, row.status) == (
        "report",
        WHEN,
        "host-a:1",
        Run.Status.SUCCEEDED,
    )
    assert row.claimed_at <= row.started_at <= row.finished_at  # type: ignore[operator]


@pytest.mark.parametrize("path", ["bulk", "one by one"])
def test_fence_and_ending_rows_are_the_same_on_either_write_path(
    path: str, record_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "one by one":  # as on a database without INSERT/UPDATE ... RETURNING
        monkeypatch.setattr(history, "_fences_in_bulk", lambda connection: False)
        monkeypatch.setattr(history, "_updates_in_bulk", lambda connection: False)
    row = fence("report", WHEN, "host-a:1", WHEN, requested_by="alice")
    other = fence("other", WHEN, "host-a:1", WHEN)
    assert row is not None and row.pk is not None and other is not None
    assert fence("report", WHEN, "host-b:2", WHEN) is None  # the fence
    # Taken over by another instance: its ending is not this one's to write.
    Run.objects.filter(pk=other.pk).update(owner="host-c:3")
    endings = [(row, Ending(Run.Status.FAILED, "E", "T")), (other, Ending("succeeded"))]
    assert history.write_endings(endings) == [True, False]
    stranger = Run(pk=row.pk, job="report", scheduled_for=WHEN, owner="host-b:2")
    assert history.write_endings([(stranger, Ending(Run.Status.SUCCEEDED))]) == [False]
    Run.objects.filter(pk=other.pk).delete()

    stored = Run.objects.get()
    assert stored.pk == row.pk
    assert (stored.job, stored.scheduled_for, stored.owner, stored.claimed_at) == (
        "report",
        WHEN,
        "host-a:1",
        WHEN,
    )
    assert (stored.status, stored.error, stored.traceback) == ("failed", "E", "T")
    assert (stored.manual, stored.requested_by, stored.attempts) == (True, "alice", 1)
    assert stored.started_at is not None and stored.finished_at == row.finished_at


def test_a_fence_whose_answer_was_lost_is_this_instances_on_the_next_try() -> None:
    row = history.running("report", WHEN, "host-a:1", WHEN)
    assert history.insert_running([row]) == [True]
    again = history.running("report", WHEN, "host-a:1", WHEN)
    assert history.insert_running([again]) == [True]
    assert again.pk == row.pk
    other = history.running("report", WHEN, "host-b:2", WHEN)
    assert history.insert_running([other]) == [False]


def test_claim_key_holds_job_and_scheduled_time_in_utc() -> None:
    local = WHEN.astimezone(ZoneInfo("Asia/Shanghai"))
    prefix = settings.ONCEJOB["KEY_PREFIX"]
    key = claim_key("report", local)
    deployment = Deployment.objects.get().key  # the one row, made at first use if flushed
    assert key == f"{prefix}:{deployment}:report:2026-11-26T21:00:00+00:00"
    assert claim("report", local, "a") is ClaimResult.WON
    assert caches["default"].get(claim_key("report", WHEN), version=KEY_VERSION) == "a"


def test_claim_timeout_is_set_on_the_key() -> None:
    claim("report", WHEN, "a")
    ttl = caches["default"].ttl(claim_key("report", WHEN), version=KEY_VERSION)  # type: ignore[attr-defined]
    assert 86000 < ttl <= 86400


def test_cache_version_bump_does_not_change_claim_keys() -> None:
    assert claim("report", WHEN, "a") is ClaimResult.WON
    caches["default"].version = 7  # as if the project bumped CACHES VERSION
    try:
        assert claim("report", WHEN, "b") is ClaimResult.LOST
    finally:
        caches["default"].version = 1


def test_history_fences_an_occurrence_whose_key_was_lost(record_file: Path) -> None:
    assert claim_and_run(spec(), WHEN, "host-a:1") is Outcome.SUCCEEDED
    caches["default"].delete(claim_key("report", WHEN), version=KEY_VERSION)

    assert claim_and_run(spec(), WHEN, "host-b:2") is Outcome.FENCED

    assert len(runs(record_file)) == 1
    assert Run.objects.get().owner == "host-a:1"


def test_next_occurrence_is_a_new_claim(record_file: Path) -> None:
    later = WHEN.replace(day=27)
    assert claim_and_run(spec(), WHEN, "a") is Outcome.SUCCEEDED
    assert claim_and_run(spec(), later, "b") is Outcome.SUCCEEDED
    assert len(runs(record_file)) == 2


def test_failure_is_recorded_with_its_traceback() -> None:
    assert claim_and_run(spec("tests.jobs.fail"), WHEN, "a") is Outcome.FAILED

    row = Run.objects.get()
    assert row.status == Run.Status.FAILED
    assert row.error == "RuntimeError: the job broke"
    assert "tests/jobs.py" in row.traceback
    assert row.finished_at is not None


def test_async_job_is_awaited(record_file: Path) -> None:
    assert claim_and_run(spec("tests.jobs.async_record"), WHEN, "a") is Outcome.SUCCEEDED
    (line,) = runs(record_file)
    assert line.startswith("report 2026-11-26T21:00:00+00:00")


def test_current_occurrence_is_set_only_during_the_job() -> None:
    seen: list[Occurrence | None] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(current_occurrence())

    assert current_occurrence() is None
    signals.occurrence_succeeded.connect(receiver)
    try:
        claim_and_run(spec(), WHEN, "a")
    finally:
        signals.occurrence_succeeded.disconnect(receiver)
    assert seen == [None]
    assert current_occurrence() is None


def test_args_and_kwargs_reach_the_job(record_file: Path) -> None:
    job = spec("tests.jobs.sleep_then_record", args=[0])
    assert claim_and_run(job, WHEN, "a") is Outcome.SUCCEEDED
    assert len(runs(record_file)) == 1


def test_what_a_job_returns_is_kept_in_its_row() -> None:
    assert result_text(None) == ""
    assert result_text({"rows": 12}) == "{'rows': 12}"
    assert result_text("x" * 5000) == "'" + "x" * (RESULT_LENGTH - 2) + "…"
    assert len(result_text("x" * 5000)) == RESULT_LENGTH

    class Unprintable:
        def __repr__(self) -> str:
            raise ValueError("no")

    assert result_text(Unprintable()) == "<Unprintable whose repr() raised>"
    assert claim_and_run(spec("tests.jobs.fail"), WHEN, "a") is Outcome.FAILED
    assert Run.objects.get().result == ""


def test_signals_are_sent_in_order() -> None:
    sent: list[tuple[str, Occurrence]] = []
    handlers = {}
    for name in (
        "occurrence_claimed",
        "occurrence_started",
        "occurrence_succeeded",
        "occurrence_failed",
    ):

        def handler(sender: str, occurrence: Occurrence, name: str = name, **kw: Any) -> None:
            sent.append((name, occurrence))

        handlers[name] = handler
        getattr(signals, name).connect(handler)
    try:
        claim_and_run(spec(), WHEN, "a")
        claim_and_run(spec("tests.jobs.fail"), WHEN.replace(day=27), "a")
    finally:
        for name, handler in handlers.items():
            getattr(signals, name).disconnect(handler)
    assert [name for name, _ in sent] == [
        "occurrence_claimed",
        "occurrence_started",
        "occurrence_succeeded",
        "occurrence_claimed",
        "occurrence_started",
        "occurrence_failed",
    ]
    assert sent[0][1] == Occurrence(job="report", scheduled_for=WHEN, owner="a")


class TestCacheFailure:
    @pytest.fixture(autouse=True)
    def dead_cache(self) -> Iterator[None]:
        with override_settings(CACHES={"default": DEAD_REDIS}):
            yield

    def test_claim_reports_unavailable(self) -> None:
        assert claim("report", WHEN, "a") is ClaimResult.UNAVAILABLE

    def test_ignored_exceptions_do_not_count_as_a_win(self) -> None:
        config = {**DEAD_REDIS, "OPTIONS": {**DEAD_REDIS["OPTIONS"], "IGNORE_EXCEPTIONS": True}}
        with override_settings(CACHES={"default": config}):
            assert claim("report", WHEN, "a") is ClaimResult.UNAVAILABLE

    def test_fence_mode_lets_the_history_decide(self, record_file: Path) -> None:
        assert claim_and_run(spec(), WHEN, "a") is Outcome.SUCCEEDED
        assert claim_and_run(spec(), WHEN, "b") is Outcome.FENCED
        assert len(runs(record_file)) == 1

    def test_skip_mode_runs_nothing(self, record_file: Path) -> None:
        skipped: list[str] = []

        def receiver(reason: str, **kwargs: Any) -> None:
            skipped.append(reason)

        signals.occurrence_skipped.connect(receiver)
        try:
            with override_settings(ONCEJOB={"ON_CACHE_ERROR": "skip"}):
                assert claim_and_run(spec(), WHEN, "a") is Outcome.SKIPPED
        finally:
            signals.occurrence_skipped.disconnect(receiver)
        assert skipped == ["cache-error"]
        assert runs(record_file) == []
        assert not Run.objects.exists()


def test_log_records_carry_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="django_oncejob"):
        claim_and_run(spec(), WHEN, "host-a:1")
        claim_and_run(spec("tests.jobs.fail"), WHEN.replace(day=27), "host-a:1")

    events = [
        (r.oncejob_event, r.oncejob_job, r.oncejob_scheduled_for, r.oncejob_owner)  # type: ignore[attr-defined]
        for r in caplog.records
        if hasattr(r, "oncejob_event")
    ]
    assert events == [
        ("started", "report", "2026-11-26T21:00:00+00:00", "host-a:1"),
        ("succeeded", "report", "2026-11-26T21:00:00+00:00", "host-a:1"),
        ("started", "report", "2026-11-27T21:00:00+00:00", "host-a:1"),
        ("failed", "report", "2026-11-27T21:00:00+00:00", "host-a:1"),
    ]


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("nul", "RuntimeError: before\\x00after"),
        ("surrogate", "RuntimeError: lone \\udcff surrogate"),
        ("unprintable", "Unprintable: <Unprintable whose str() raised>"),
    ],
)
def test_a_failure_text_no_database_stores_as_it_is_is_recorded(kind: str, error: str) -> None:
    job = spec("tests.jobs.fail_with", args=[kind])
    assert claim_and_run(job, WHEN, "host-a:1") is Outcome.FAILED

    row = Run.objects.get()
    assert (row.status, row.error) == (Run.Status.FAILED, error)
    assert row.traceback.startswith("Traceback")


def test_an_interrupt_is_recorded_and_goes_on() -> None:
    job = spec("tests.jobs.fail_with", args=["interrupt"])
    with pytest.raises(KeyboardInterrupt):
        claim_and_run(job, WHEN, "host-a:1")

    row = Run.objects.get()
    assert (row.status, row.error) == (Run.Status.FAILED, "KeyboardInterrupt: ")


def test_a_run_inside_the_callers_atomic_block_keeps_the_callers_writes(
    record_file: Path,
) -> None:
    with transaction.atomic():
        JobState.objects.create(job="kept")
        assert claim_and_run(spec(), WHEN, "host-a:1") is Outcome.SUCCEEDED
        assert JobState.objects.filter(job="kept").exists()
    assert JobState.objects.filter(job="kept").exists()
    assert Run.objects.get().status == Run.Status.SUCCEEDED


def test_a_projects_test_can_call_a_job_as_one_occurrence_of_it(record_file: Path) -> None:
    local = WHEN.astimezone(ZoneInfo("Asia/Shanghai"))
    with occurrence("report", local) as current:
        line = record()
        assert current_occurrence() == current
    assert current == Occurrence("report", WHEN, "test")
    assert current.scheduled_for.tzinfo is UTC
    assert line == f"report {WHEN.isoformat()} {os.getpid()}\n"
    assert current_occurrence() is None
