"""Schedule policies with real runjobs processes: retries, time limits, catch-up, backfill,
jitter, overlap and failures in a row, each attempt once across the fleet."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from django_oncejob import signals
from django_oncejob.fleet import failures
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.triggers import JitteredTrigger, fire_times, jitter_delay
from django_oncejob.models import Attempt, Backfill, JobState, Run
from tests.processes import ROOT, Fleet, wait_for
from tests.test_checks import cron_job, only_job_error, run_job

FleetFactory = Callable[..., Fleet]
#: Followups read the history every CONTROL_INTERVAL seconds.
FAST = {"CONTROL_INTERVAL": 1}


def now() -> datetime:
    return datetime.now(UTC)


def whole_second(when: datetime) -> datetime:
    return when.replace(microsecond=0)


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.processes
@pytest.mark.long
def test_each_attempt_runs_once_across_the_fleet_until_one_succeeds(fleet: FleetFactory) -> None:
    end = whole_second(now() + timedelta(seconds=14))
    instances = fleet(
        {
            "flaky": {
                "func": "tests.jobs.fail_first_two",
                "cron": {"second": "*/5", "end_date": end.isoformat()},
                "retries": 2,
                "retry_delay": 1,
                "retry_backoff": 1,
            }
        },
        FAST,
    )
    instances.start(4, stagger=0.1)
    wait_for(lambda: now() > end + timedelta(seconds=6), 30, "the last occurrence's retries")
    settled = Run.objects.exclude(status__in=[Run.Status.RETRYING, Run.Status.RUNNING])
    wait_for(lambda: settled.count() == Run.objects.count(), 15, "every occurrence settled")
    assert instances.stop() == [0] * 4, instances.logs()

    rows = list(Run.objects.filter(job="flaky").order_by("scheduled_for"))
    assert len(rows) >= 2
    assert [(row.status, row.attempts) for row in rows] == [("succeeded", 3)] * len(rows), [
        (row.scheduled_for, row.status, row.attempts, row.error) for row in rows
    ]
    attempts = lines(Path(f"{instances.record_file}.attempts"))
    counted = Counter((job, when, attempt) for job, when, attempt, _pid in attempts)
    assert [key for key, count in counted.items() if count != 1] == []
    for row in rows:
        when = row.scheduled_for.isoformat()
        assert {attempt for job, w, attempt in counted if w == when} == {"1", "2", "3"}
        failed = list(row.failed_attempts.order_by("number"))
        assert [(a.number, a.error) for a in failed] == [
            (1, "RuntimeError: attempt 1 fails"),
            (2, "RuntimeError: attempt 2 fails"),
        ]
        # Each attempt waited its delay after the one before.
        assert failed[1].started_at >= failed[0].finished_at + timedelta(seconds=1)
    assert Counter(instances.run_counts().values()) == Counter({1: len(rows)})
    # The attempts went to more than one instance.
    assert len({pid for *_, pid in attempts}) > 1


@pytest.mark.processes
@pytest.mark.long
def test_a_run_past_max_runtime_is_timed_out_at_its_deadline(fleet: FleetFactory) -> None:
    at = whole_second(now() + timedelta(seconds=3))
    instances = fleet(
        {
            # Runs 4 s of a 2 s limit: timed out at 2 s, then recorded as it ends.
            "slow": {
                "func": "tests.jobs.span",
                "args": [4],
                "at": at.isoformat(),
                "max_runtime": 2,
            },
            # Cancelled at its limit.
            "async": {
                "func": "tests.jobs.async_sleep_then_record",
                "args": [30],
                "at": at.isoformat(),
                "max_runtime": 2,
            },
            "locked": {
                "func": "tests.jobs.span",
                "args": [5],
                "cron": {"second": "*"},
                "max_runtime": 2,
                "overlap": "skip",
            },
        },
        FAST,
    )
    instances.start(2)
    timed_out: dict[str, float] = {}

    def seen() -> bool:
        for job, status in Run.objects.values_list("job", "status"):
            if status == Run.Status.TIMED_OUT and job not in timed_out:
                timed_out[job] = time.time()
        return {"slow", "async"} <= set(timed_out)

    wait_for(seen, 15, "the runs timed out")
    slow = Run.objects.get(job="slow")
    assert slow.deadline is not None
    assert timed_out["slow"] - slow.deadline.timestamp() < 2.0
    assert timed_out["async"] - Run.objects.get(job="async").deadline.timestamp() < 2.0
    wait_for(lambda: Run.objects.get(job="slow").finished_at is not None, 10, "the slow run's end")
    time.sleep(3)
    assert instances.stop() == [0, 0], instances.logs()

    slow = Run.objects.get(job="slow")
    assert slow.status == Run.Status.TIMED_OUT
    assert slow.error.startswith("Timed out: ran past its max_runtime of 2 s, then succeeded after")
    assert slow.duration is not None and slow.duration >= timedelta(seconds=4)
    cancelled = Run.objects.get(job="async")
    assert cancelled.status == Run.Status.TIMED_OUT
    assert cancelled.error == "Timed out: cancelled at its max_runtime of 2 s."
    assert lines(Path(f"{instances.record_file}.cancelled")) == [["async"]]
    # The lock of a job whose runs may not overlap goes at each deadline: a run every 2 s or so.
    locked = Run.objects.filter(job="locked")
    ran = locked.filter(status=Run.Status.TIMED_OUT).order_by("scheduled_for")
    assert ran.count() >= 2
    assert locked.filter(status=Run.Status.SKIPPED).exists()
    starts = [row.started_at for row in ran]
    assert all(b - a < timedelta(seconds=3.5) for a, b in zip(starts, starts[1:], strict=False))


@pytest.mark.processes
def test_a_run_whose_instance_died_is_timed_out_by_another(fleet: FleetFactory) -> None:
    at = whole_second(now() + timedelta(seconds=3))
    instances = fleet(
        {
            "slow": {
                "func": "tests.jobs.sleep_then_record",
                "args": [60],
                "at": at.isoformat(),
                "max_runtime": 4,
            }
        },
        FAST,
    )
    instances.start(3)
    running = Run.objects.filter(job="slow", status=Run.Status.RUNNING)
    wait_for(running.exists, 15, "the run's start")
    owner = running.get().owner
    [dying] = [i for i in instances.instances if owner.endswith(f":{i.pid}")]
    dying.process.send_signal(signal.SIGKILL)
    dying.process.wait(5)
    wait_for(lambda: Run.objects.get(job="slow").status == Run.Status.TIMED_OUT, 15, "the time-out")
    marked = time.time()
    row = Run.objects.get(job="slow")
    assert row.deadline is not None
    assert 0 <= marked - row.deadline.timestamp() < 2.0
    assert row.owner == owner
    survivors = [i for i in instances.instances if i is not dying]
    for instance in survivors:
        instance.process.send_signal(signal.SIGTERM)
    assert [i.process.wait(30) for i in survivors] == [0, 0]
    assert "is past its max_runtime of 4 s: recorded as timed out" in instances.logs(tail=None)


@pytest.mark.processes
@pytest.mark.long
def test_catchup_runs_none_the_latest_or_all_of_an_outage(fleet: FleetFactory) -> None:
    outage = 30
    jobs = {
        mode: {"func": "tests.jobs.record", "cron": {"second": "*"}, "catchup": mode}
        for mode in ("none", "latest", "all")
    }
    instances = fleet(jobs, FAST)
    instances.start(4)
    time.sleep(4)
    assert instances.stop() == [0] * 4, instances.logs()
    down = now()
    time.sleep(outage)
    before_restart = now()
    instances.start(4)
    time.sleep(4)
    assert instances.stop() == [0] * 8, instances.logs()

    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count != 1] == []

    def after_down(job: str) -> list[datetime]:
        return sorted(t for name, t in counts if name == job and t > down)

    # The three jobs have one schedule: "none" ran what the restarted instances were up for.
    ran = after_down("none")
    first = ran[0]
    assert first >= before_restart - timedelta(seconds=1)
    gap = [t for t in after_down("all") if t < first]
    assert len(gap) >= outage - 2
    assert gap == [gap[0] + timedelta(seconds=n) for n in range(len(gap))], "a second is missing"
    assert after_down("all") == gap + ran
    # "latest": the one second before the restart, and nothing earlier.
    assert after_down("latest") == [first - timedelta(seconds=1), *ran]


@pytest.mark.processes
def test_a_backfill_run_twice_at_once_runs_each_occurrence_once(
    fleet: FleetFactory, tmp_path: Path
) -> None:
    instances = fleet({"tick": {"func": "tests.jobs.record", "cron": {"second": "*"}}})
    instances.start(1)
    time.sleep(4)
    start = whole_second(now() - timedelta(seconds=56))
    end = whole_second(now() - timedelta(seconds=1))
    scheduled = Counter(job for job, _ in instances.run_counts())
    command = [sys.executable, "-m", "django", "oncejob_backfill", "tick"]
    command += ["--from", start.isoformat(), "--until", end.isoformat()]
    shells = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=instances.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [shell.communicate(timeout=120)[0].decode() for shell in shells]
    assert [shell.returncode for shell in shells] == [0, 0], outputs
    assert instances.stop() == [0], instances.logs()

    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count != 1] == []
    in_range = [t for job, t in counts if start <= t <= end]
    assert len(in_range) == 56
    assert scheduled["tick"] >= 3  # the schedule ran some of them first
    in_history = Run.objects.filter(job="tick", scheduled_for__range=(start, end))
    backfilled = in_history.filter(manual=True)
    assert in_history.count() == 56
    assert 40 <= backfilled.count() <= 56 - scheduled["tick"] + 1
    assert all(
        who.startswith("oncejob_backfill (")
        for who in backfilled.values_list("requested_by", flat=True)
    )
    assert sum("ran here" in output for output in outputs) == 2


@pytest.mark.processes
@pytest.mark.long
def test_jitter_delays_each_start_alike_on_every_instance(fleet: FleetFactory) -> None:
    instances = fleet(
        {"spread": {"func": "tests.jobs.record", "cron": {"second": "*/5"}, "jitter": 3}}
    )
    instances.start(4, stagger=0.1)
    time.sleep(22)
    assert instances.stop() == [0] * 4, instances.logs()

    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count != 1] == []
    rows = list(Run.objects.filter(job="spread"))
    assert len(rows) >= 3
    delays = []
    for row in rows:
        assert row.started_at is not None
        expected = jitter_delay("spread", row.scheduled_for, 3).total_seconds()
        late = (row.started_at - row.scheduled_for).total_seconds()
        assert expected <= late < expected + 0.5, (row.scheduled_for, expected, late)
        delays.append(expected)
    assert len({round(delay, 2) for delay in delays}) == len(delays)
    assert max(delays) - min(delays) > 0.3


@pytest.mark.processes
@pytest.mark.long
def test_buffer_one_never_overlaps_and_loses_no_waiting_occurrence(fleet: FleetFactory) -> None:
    end = whole_second(now() + timedelta(seconds=8))
    instances = fleet(
        {
            "long": {
                "func": "tests.jobs.span",
                "args": [2.5],
                "cron": {"second": "*", "end_date": end.isoformat()},
                "overlap": "buffer_one",
            }
        },
        FAST,
    )
    instances.start(4, stagger=0.1)
    wait_for(lambda: now() > end + timedelta(seconds=1), 20, "the last occurrence")
    waiting = Run.objects.filter(status__in=[Run.Status.WAITING, Run.Status.RUNNING])
    wait_for(lambda: not waiting.exists(), 20, "the waiting occurrences to run")
    assert instances.stop() == [0] * 4, instances.logs()

    spans = sorted(
        (float(start), float(stop), when)
        for _job, when, start, stop, _pid in lines(Path(f"{instances.record_file}.spans"))
    )
    assert len(spans) >= 3
    for (_, stop, _), (start, _, when) in zip(spans, spans[1:], strict=False):
        assert start >= stop, f"the run of {when} began before the one before it ended"
    rows = list(Run.objects.filter(job="long"))
    statuses = Counter(row.status for row in rows)
    assert set(statuses) == {Run.Status.SUCCEEDED, Run.Status.SKIPPED}
    assert statuses[Run.Status.SUCCEEDED] == len(spans)
    # Runs back to back: each waited for the one before, and started as it ended.
    gaps = [start - stop for (_, stop, _), (start, _, _) in zip(spans, spans[1:], strict=False)]
    assert max(gaps) < 1.0, gaps
    assert Counter(instances.run_counts().values()) == Counter({1: len(spans)})
    waited = [row for row in rows if row.lateness and row.lateness > timedelta(seconds=1)]
    assert waited


@pytest.mark.processes
def test_a_job_failing_again_and_again_is_paused_with_a_note(fleet: FleetFactory) -> None:
    instances = fleet(
        {
            "broken": {
                "func": "tests.jobs.fail",
                "cron": {"second": "*"},
                "pause_after_failures": 3,
            }
        },
        FAST,
    )
    instances.start(2)
    state = JobState.objects.filter(job="broken", paused=True)
    wait_for(state.exists, 20, "the job paused")
    time.sleep(3)
    assert instances.stop() == [0, 0], instances.logs()

    paused = JobState.objects.get(job="broken")
    assert paused.changed_by == "django-oncejob"
    # The count is taken at the first check that sees three or more failures: with a
    # per-second job that may already be a fourth.
    noted = re.match(r"Paused after (\d+) failures in a row; ", paused.note)
    assert noted, paused.note
    assert paused.failures >= 3 and paused.failing_since is not None
    failed = Run.objects.filter(job="broken", status=Run.Status.FAILED)
    # Paused at the check after the third failure: a second or two more at most.
    assert 3 <= int(noted[1]) <= failed.count() <= 6
    # Every instance stops running it within a CONTROL_INTERVAL of the pause.
    later = Run.objects.filter(
        job="broken", scheduled_for__gt=paused.changed_at + timedelta(seconds=2)
    )
    assert set(later.values_list("status", flat=True)) <= {Run.Status.PAUSED}
    logs = instances.logs(tail=None)
    assert logs.count("Job 'broken' paused after") == 1
    assert logs.count("Job 'broken' is failing") == 1


@pytest.mark.processes
@pytest.mark.long
def test_a_pause_with_an_end_resumes_by_itself(fleet: FleetFactory) -> None:
    instances = fleet({"tick": {"func": "tests.jobs.record", "cron": {"second": "*"}}}, FAST)
    instances.start(2)
    time.sleep(2)
    paused_at = now()
    JobState.objects.update_or_create(
        job="tick",
        defaults={
            "paused": True,
            "paused_until": paused_at + timedelta(seconds=4),
            "note": "database maintenance",
            "changed_by": "alice",
            "changed_at": paused_at,
        },
    )
    time.sleep(8)
    assert instances.stop() == [0, 0], instances.logs()

    state = JobState.objects.get(job="tick")
    assert (state.paused, state.paused_until, state.note) == (False, None, "")
    assert state.changed_by == "django-oncejob (its pause ended)"
    during = Run.objects.filter(
        scheduled_for__gt=paused_at + timedelta(seconds=2),
        scheduled_for__lt=paused_at + timedelta(seconds=4),
    )
    assert set(during.values_list("status", flat=True)) == {Run.Status.PAUSED}
    after = Run.objects.filter(scheduled_for__gt=paused_at + timedelta(seconds=6))
    assert set(after.values_list("status", flat=True)) == {Run.Status.SUCCEEDED}


def test_attempts_are_kept_per_occurrence(db: None) -> None:
    row = Run.objects.create(
        job="x", scheduled_for=now(), owner="a:1", claimed_at=now(), status=Run.Status.RETRYING
    )
    Attempt.objects.create(run=row, number=1, owner="a:1", finished_at=now(), error="boom")
    assert [str(attempt) for attempt in row.failed_attempts.all()] == [f"{row} #1"]


# Without processes: the checks, the jitter, the failures in a row.


@pytest.mark.parametrize(
    ("definition", "code", "key"),
    [
        ({"retries": -1}, "E065", "retries"),
        ({"retries": 1.5}, "E065", "retries"),
        ({"retry_delay": 0}, "E066", "retry_delay"),
        ({"retry_backoff": 0.5}, "E067", "retry_backoff"),
        ({"max_runtime": 0}, "E068", "max_runtime"),
        ({"catchup": "some"}, "E069", "catchup"),
        ({"catchup_window": "1h"}, "E070", "catchup_window"),
        ({"jitter": -1}, "E071", "jitter"),
        ({"jitter": 60}, "E072", "jitter"),
        ({"overlap": "never"}, "E073", "overlap"),
        ({"overlap": "skip", "enqueue": "celery"}, "E074", "overlap"),
        ({"pause_after_failures": 0}, "E075", "pause_after_failures"),
    ],
)
def test_a_bad_policy_is_an_error_that_names_the_job_and_the_key(
    definition: dict[str, Any], code: str, key: str
) -> None:
    message = only_job_error(run_job(cron_job(**definition)), code, key)
    assert "x" in message


def test_good_policies_pass_and_reach_the_spec() -> None:
    definition = cron_job(
        retries=2,
        retry_delay=1.5,
        retry_backoff=1,
        max_runtime=30,
        catchup="latest",
        catchup_window=600,
        jitter=2.5,
        overlap="buffer_one",
        pause_after_failures=4,
    )
    assert run_job(definition) == []
    spec, errors = parse_job("x", definition)
    assert spec is not None, errors
    assert (spec.retries, spec.max_runtime, spec.catchup, spec.overlap) == (
        2,
        30,
        "latest",
        "buffer_one",
    )
    assert spec.lock_lifetime == 30
    failed_at = datetime(2026, 12, 5, tzinfo=UTC)
    assert spec.retry_at(1, failed_at) == failed_at + timedelta(seconds=1.5)
    assert spec.retry_at(2, failed_at) == failed_at + timedelta(seconds=1.5)
    assert spec.retry_at(3, failed_at) is None


def test_lock_timeout_alone_still_means_skip() -> None:
    spec, _ = parse_job("x", cron_job(lock_timeout=60))
    assert spec is not None and (spec.overlap, spec.lock_lifetime) == ("skip", 60)
    spec, _ = parse_job("x", cron_job(overlap="skip"))
    assert spec is not None and spec.lock_lifetime == 3600
    spec, _ = parse_job("x", cron_job())
    assert spec is not None and (spec.overlap, spec.lock_lifetime) == ("allow", None)


def test_jitter_is_the_same_everywhere_and_leads_back_to_the_scheduled_time() -> None:
    spec, _ = parse_job("x", {"func": "tests.jobs.record", "cron": {"second": "*/5"}})
    assert spec is not None
    trigger = JitteredTrigger(spec.trigger, "x", 3)
    start = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
    fired = list(fire_times(trigger, start, 50))
    scheduled = [trigger.scheduled_for(when) for when in fired]
    assert scheduled == [start + timedelta(seconds=5 * n) for n in range(50)]
    delays = [(f - s).total_seconds() for f, s in zip(fired, scheduled, strict=True)]
    assert all(0 <= delay < 3 for delay in delays)
    assert max(delays) - min(delays) > 2
    assert jitter_delay("x", start, 3) == jitter_delay("x", start, 3) != jitter_delay("y", start, 3)


def test_failures_in_a_row_signal_once_and_pause(db: None) -> None:
    spec, _ = parse_job(
        "x", {"func": "tests.jobs.record", "cron": {"second": "*"}, "pause_after_failures": 2}
    )
    assert spec is not None
    heard: list[tuple[str, int]] = []

    def listen(name: str) -> Callable[..., None]:
        return lambda sender, job, failures, **kwargs: heard.append((name, failures))

    receivers = {name: listen(name) for name in ("job_failing", "job_recovered", "job_paused")}
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    try:
        base = datetime(2026, 12, 5, 12, tzinfo=UTC)

        def ended(second: int, status: str) -> None:
            when = base + timedelta(seconds=second)
            Run.objects.create(
                job="x", scheduled_for=when, owner="a:1", claimed_at=when, status=status
            )

        ended(0, Run.Status.SUCCEEDED)
        assert failures.count(spec) == 0
        ended(1, Run.Status.FAILED)
        assert failures.count(spec) == 1
        assert failures.count(spec) == 1  # counted again: no second signal
        ended(2, Run.Status.TIMED_OUT)
        assert failures.count(spec) == 2
        state = JobState.objects.get(job="x")
        assert (state.paused, state.changed_by, state.failing_since) == (
            True,
            "django-oncejob",
            base + timedelta(seconds=1),
        )
        ended(3, Run.Status.SUCCEEDED)
        assert failures.count(spec) == 0
        assert heard == [("job_failing", 1), ("job_paused", 2), ("job_recovered", 2)]
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)


@pytest.mark.processes
def test_a_backfill_from_the_admin_is_run_by_one_instance(fleet: FleetFactory) -> None:
    instances = fleet({"tick": {"func": "tests.jobs.record", "cron": {"second": "*/2"}}}, FAST)
    instances.start(3)
    end = whole_second(now() - timedelta(seconds=10))
    end -= timedelta(seconds=end.second % 2)
    start = end - timedelta(seconds=58)
    request = Backfill.objects.create(job="tick", start=start, end=end, requested_by="alice")
    done = Backfill.objects.filter(pk=request.pk, finished_at__isnull=False)
    wait_for(done.exists, 30, "the backfill to finish")
    assert instances.stop() == [0] * 3, instances.logs()

    request.refresh_from_db()
    assert (request.total, request.ran) == (30, 30)
    assert request.taken_by in {row.owner for row in Run.objects.filter(manual=True)}
    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count != 1] == []
    assert len([t for job, t in counts if start <= t <= end]) == 30
    rows = Run.objects.filter(scheduled_for__range=(start, end))
    assert set(rows.values_list("requested_by", flat=True)) == {"alice (backfill)"}
    assert set(rows.values_list("status", flat=True)) == {Run.Status.SUCCEEDED}
