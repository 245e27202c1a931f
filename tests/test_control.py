"""Pause, run now and the sweep for missed occurrences: in process, then across real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_oncejob.cache.claim import claim
from django_oncejob.fleet import missed
from django_oncejob.fleet.clock import DatabaseClock
from django_oncejob.fleet.control import Control
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import JobState, Run, RunRequest
from django_oncejob.running.pipeline import Pipeline, claim_and_run
from django_oncejob.running.steps import Outcome
from tests.processes import Fleet, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("ONCEJOB_TEST_RECORD", str(path))
    return path


def spec(job_id: str = "report", **definition: Any) -> JobSpec:
    definition = {"func": "tests.jobs.record", "cron": "0 21 * * *", **definition}
    job, errors = parse_job(job_id, definition)
    assert errors == [] and job is not None
    return job


def runs(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_paused_occurrence_is_recorded_once_and_not_run(record_file: Path) -> None:
    assert claim_and_run(spec(), WHEN, "a", paused=True) is Outcome.PAUSED
    assert claim_and_run(spec(), WHEN, "b", paused=True) is Outcome.LOST

    row = Run.objects.get()
    assert (row.status, row.owner, row.started_at) == (Run.Status.PAUSED, "a", None)
    assert runs(record_file) == []


def test_manual_run_is_recorded_as_manual(record_file: Path) -> None:
    requested = timezone.now()
    assert Pipeline("web-1:1").run_manual(spec(), requested, "alice") is Outcome.SUCCEEDED

    row = Run.objects.get()
    assert (row.manual, row.requested_by, row.scheduled_for) == (True, "alice", requested)
    assert len(runs(record_file)) == 1


def test_runjobs_run_exits_with_the_jobs_outcome(record_file: Path) -> None:
    jobs = {"ok": {"func": "tests.jobs.record", "cron": "0 21 * * *"}}
    jobs["broken"] = {"func": "tests.jobs.fail", "cron": "0 21 * * *"}
    with override_settings(ONCEJOB={"JOBS": jobs}):
        call_command("runjobs", "--run", "ok", stdout=open("/dev/null", "w"))  # noqa: SIM115
        with pytest.raises(CommandError, match="did not succeed: failed"):
            call_command("runjobs", "--run", "broken")
        with pytest.raises(CommandError, match="No job 'nope'"):
            call_command("runjobs", "--run", "nope")
    assert sorted(Run.objects.values_list("job", "status", "manual")) == [
        ("broken", "failed", True),
        ("ok", "succeeded", True),
    ]
    assert len(runs(record_file)) == 1


def test_sweep_records_the_gaps_since_the_last_sweep() -> None:
    job = spec("tick", cron={"minute": "*"}, misfire_grace_time=10)
    now = datetime(2026, 11, 26, 21, 30, 0, tzinfo=UTC)

    assert missed.sweep([job], "a", now=now - timedelta(minutes=10)) == 0  # sets the mark
    mark = JobState.objects.get(job="tick").checked_until
    assert mark == now - timedelta(minutes=10)
    for minute in (20, 22, 23):
        Run.objects.create(
            job="tick",
            scheduled_for=now.replace(minute=minute),
            owner="b",
            status=Run.Status.SUCCEEDED,
            claimed_at=now,
            started_at=now,
        )

    found = missed.sweep([job], "a", now=now)

    expected = [now.replace(minute=m) for m in range(20, 30) if m not in (20, 22, 23)]
    rows = Run.objects.filter(status=Run.Status.MISSED).order_by("scheduled_for")
    assert [row.scheduled_for for row in rows] == expected
    assert found == len(expected)
    # The next sweep starts where this one ended: 21:30 is new, nothing is found twice.
    assert missed.sweep([job], "b", now=now + timedelta(seconds=30)) == 1
    assert missed.sweep([job], "a", now=now + timedelta(seconds=30)) == 0


def test_the_first_sweep_counts_nothing_before_it_as_missed() -> None:
    job = spec("tick", cron={"second": "*"}, misfire_grace_time=10)
    now = datetime(2026, 11, 26, 21, 30, 0, tzinfo=UTC)

    assert missed.sweep([job], "a", now=now) == 0
    # 16 s later the settled past is (21:30:00, 21:30:01]: one fire time, not the 15
    # before the first sweep, when no instance was up to run them.
    assert missed.sweep([job], "a", now=now + timedelta(seconds=16)) == 1
    (row,) = Run.objects.all()
    assert row.scheduled_for == now + timedelta(seconds=1)


def test_sweep_never_looks_further_back_than_the_lookback() -> None:
    job = spec("tick", cron={"minute": "*"}, misfire_grace_time=10)
    now = datetime(2026, 11, 26, 21, 30, 0, tzinfo=UTC)
    JobState.objects.create(job="tick", checked_until=now - timedelta(days=30))
    with override_settings(ONCEJOB={"MISSED_LOOKBACK": 300}):
        found = missed.sweep([job], "a", now=now)
    # (21:25, 21:29:45]: the lookback, less the grace time and the settling margin.
    assert found == 4
    first = Run.objects.order_by("scheduled_for").first()
    assert first is not None and first.scheduled_for == now.replace(minute=26)


DML = ("SELECT", "INSERT", "UPDATE", "DELETE")


@pytest.mark.parametrize("count", [3, 30, 450])
def test_a_sweep_costs_the_same_queries_for_three_jobs_or_hundreds(count: int) -> None:
    # Each job: a fire time a minute, one of the two in the window ran, one was missed.
    jobs = [spec(f"tick-{n}", cron={"minute": "*"}, misfire_grace_time=10) for n in range(count)]
    now = datetime(2026, 11, 26, 21, 30, 0, tzinfo=UTC)
    missed.sweep(jobs, "a", now=now - timedelta(minutes=2, seconds=30))  # sets the marks
    Run.objects.bulk_create(
        Run(job=job.id, scheduled_for=now - timedelta(minutes=2), owner="b", claimed_at=now)
        for job in jobs
    )
    claim(jobs[0].id, now - timedelta(minutes=1), "web-9:99")

    with CaptureQueriesContext(connection) as captured:
        found = missed.sweep(jobs, "a", now=now)

    assert found == count
    statuses = Run.objects.filter(scheduled_for=now - timedelta(minutes=1))
    assert statuses.filter(status=Run.Status.ABANDONED).count() == 1
    assert statuses.filter(status=Run.Status.MISSED).count() == count - 1
    assert set(JobState.objects.values_list("checked_until", flat=True)) == {
        now - timedelta(seconds=15)
    }
    # The slowest clock of the live instances, then per chunk of JOBS_PER_QUERY jobs: the
    # marks, the rows that ran, the new marks, and the missed rows in as few INSERTs as
    # the database's parameter limit allows.
    chunks = -(-count // missed.JOBS_PER_QUERY)
    statements = [query["sql"] for query in captured if query["sql"].startswith(DML)]
    inserts = [sql for sql in statements if sql.startswith("INSERT")]
    assert len(statements) - len(inserts) == 1 + 3 * chunks, [sql[:80] for sql in statements]
    assert 1 <= len(inserts) <= -(-count // 50)


class RecordingExecutor:
    """Stands in for the ClaimingExecutor: keeps what the control thread hands it."""

    accepting = True

    def __init__(self) -> None:
        self.paused: frozenset[str] = frozenset()
        self.manual: list[tuple[str, str]] = []

    def submit_manual(self, job: JobSpec, request: RunRequest) -> None:
        self.manual.append((job.id, request.requested_by))


def test_control_reads_pauses_and_requests_without_listing_every_job() -> None:
    jobs = {f"job-{n}": spec(f"job-{n}", cron="0 3 * * *") for n in range(500)}
    JobState.objects.create(job="job-7", paused=True)
    JobState.objects.create(job="gone-from-settings", paused=True)
    now = timezone.now()
    RunRequest.objects.create(job="gone-from-settings", requested_by="eve", requested_at=now)
    RunRequest.objects.create(job="job-9", requested_by="alice", requested_at=now)
    executor = RecordingExecutor()
    control = Control(
        "a",
        interval=1,
        jobs=jobs,
        executor=executor,
        clock=DatabaseClock(),
        timeout=60,  # type: ignore[arg-type]
    )

    with CaptureQueriesContext(connection) as captured:
        control.tick()

    assert executor.paused == {"job-7"}
    assert executor.manual == [("job-9", "alice")]
    # The request for a job this instance lacks stays for an instance that has it.
    assert RunRequest.objects.get(job="gone-from-settings").taken_at is None
    # Every CONTROL_INTERVAL: short queries, whatever the number of jobs. (The sweep for
    # misses, once a minute, reads its jobs' marks in chunks.)
    polls = [q["sql"] for q in captured if '"paused" =' in q["sql"] or "runrequest" in q["sql"]]
    assert len(polls) >= 2
    assert max(len(sql) for sql in polls) < 1000, polls


FleetFactory = Callable[..., Fleet]


@pytest.mark.processes
def test_run_now_runs_on_exactly_one_live_instance(fleet: FleetFactory) -> None:
    instances = fleet(
        {"report": {"func": "tests.jobs.record", "cron": "0 3 1 1 *"}},
        {"CONTROL_INTERVAL": 1},
    )
    instances.start(3)
    asked = time.monotonic()
    RunRequest.objects.create(job="report", requested_by="alice", requested_at=timezone.now())

    wait_for(lambda: len(instances.runs()) == 1, 10, "the manual run")
    took = time.monotonic() - asked
    time.sleep(2)  # room for a second, wrong, run
    assert instances.stop() == [0, 0, 0]

    assert len(instances.runs()) == 1
    row = Run.objects.get()
    request = RunRequest.objects.get()
    assert (row.manual, row.requested_by, row.status) == (True, "alice", "succeeded")
    assert request.taken_by == row.owner
    print(f"run now took {took:.2f} s")


@pytest.mark.processes
def test_pause_takes_effect_on_every_instance_and_resume_undoes_it(fleet: FleetFactory) -> None:
    instances = fleet(
        {"tick": {"func": "tests.jobs.record", "cron": {"second": "*"}}},
        {"CONTROL_INTERVAL": 1},
    )
    instances.start(3)
    JobState.objects.update_or_create(job="tick", defaults={"paused": True})
    time.sleep(3)  # every instance has looked at least twice
    paused_from = datetime.now(UTC)
    time.sleep(4)
    paused_until = datetime.now(UTC)
    JobState.objects.filter(job="tick").update(paused=False)
    time.sleep(3)
    resumed_from = datetime.now(UTC)
    time.sleep(3)
    assert instances.stop() == [0, 0, 0]

    ran = {when for _, when, _ in instances.runs()}
    assert not [t for t in ran if paused_from <= t <= paused_until]
    assert [t for t in ran if t >= resumed_from]
    paused = Run.objects.filter(status="paused", scheduled_for__range=(paused_from, paused_until))
    assert paused.count() >= 3
    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count > 1] == []


@pytest.mark.processes
def test_the_next_instance_up_records_what_nobody_ran(fleet: FleetFactory) -> None:
    jobs = {"tick": {"func": "tests.jobs.record", "cron": {"second": "*"}, "misfire_grace_time": 1}}
    instances = fleet(jobs)
    instances.start()
    time.sleep(3)
    assert instances.stop() == [0]
    down_from = datetime.now(UTC)
    time.sleep(9)
    down_until = datetime.now(UTC)
    later = fleet(jobs)
    later.record_file.symlink_to(instances.record_file)
    later.start()

    wait_for(lambda: Run.objects.filter(status="missed").exists(), 10, "missed rows")
    assert later.stop() == [0]

    ran = {when for _, when, _ in instances.runs()}
    missed_rows = set(Run.objects.filter(status="missed").values_list("scheduled_for", flat=True))
    assert not ran & missed_rows
    gap = {
        down_from.replace(microsecond=0) + timedelta(seconds=s)
        for s in range(2, int((down_until - down_from).total_seconds()) - 6)
    }
    assert gap <= missed_rows, sorted(gap - missed_rows)


def test_sweep_records_a_claimed_occurrence_without_a_row_as_abandoned() -> None:
    job = spec("tick", cron={"minute": "*"}, misfire_grace_time=10)
    now = datetime(2026, 11, 26, 21, 30, 0, tzinfo=UTC)
    JobState.objects.create(job="tick", checked_until=now - timedelta(minutes=2, seconds=30))
    # Won in the cache by an instance that then wrote nothing to the history.
    claim("tick", now - timedelta(minutes=1), "web-9:99")

    missed.sweep([job], "a", now=now)

    rows = dict(Run.objects.values_list("scheduled_for", "status"))
    assert rows == {
        now - timedelta(minutes=2): Run.Status.MISSED,
        now - timedelta(minutes=1): Run.Status.ABANDONED,
    }
    abandoned = Run.objects.get(status=Run.Status.ABANDONED)
    assert abandoned.owner == "web-9:99"
    assert "recorded no outcome" in abandoned.error
