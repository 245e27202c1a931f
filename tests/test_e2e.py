"""Real runjobs processes against the real Redis and the shared test database."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from django_oncejob.models import Instance, Run
from django_oncejob.scheduling.jobstore import _score
from tests.processes import ROOT, Fleet, wait_for

pytestmark = pytest.mark.processes

FleetFactory = Callable[..., Fleet]


def now() -> datetime:
    return datetime.now(UTC)


def seconds_between(start: datetime, end: datetime, step: int = 1) -> list[datetime]:
    first = start.replace(microsecond=0) + timedelta(seconds=1)
    first += timedelta(seconds=(-first.second) % step)
    times = []
    while first <= end:
        times.append(first)
        first += timedelta(seconds=step)
    return times


def test_eight_instances_run_each_occurrence_exactly_once(fleet: FleetFactory) -> None:
    instances = fleet(
        {
            "tick": {"func": "tests.jobs.record", "cron": {"second": "*"}},
            "every-2s": {"func": "tests.jobs.record", "interval": {"seconds": 2}},
        }
    )
    instances.start(8, stagger=0.25)
    window_start = now() + timedelta(seconds=1)
    time.sleep(16)
    window_end = now() - timedelta(seconds=1)

    codes = instances.stop()

    assert codes == [0] * 8, instances.logs()
    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count > 1] == []
    ticks = seconds_between(window_start, window_end)
    assert len(ticks) >= 14
    assert [t for t in ticks if counts[("tick", t)] != 1] == []
    evens = seconds_between(window_start, window_end, step=2)
    assert [t for t in evens if counts[("every-2s", t)] != 1] == []

    rows = list(Run.objects.values_list("job", "scheduled_for", "owner", "status"))
    assert sorted((job, when) for job, when, _, _ in rows) == sorted(counts)
    assert {status for *_, status in rows} == {Run.Status.SUCCEEDED}
    owner_by_run = {(job, when): pid for job, when, pid in instances.runs()}
    for job, when, owner, _ in rows:
        assert owner.endswith(f":{owner_by_run[(job, when)]}")
    # What each run returned (the line it recorded) is kept in its row.
    results = dict(Run.objects.values_list("scheduled_for", "result").filter(job="tick"))
    assert results == {
        when: repr(f"tick {when.isoformat()} {pid}\n")
        for job, when, pid in instances.runs()
        if job == "tick"
    }
    # The cache claim decided every occurrence; the history fence never had to.
    assert "already in the history" not in instances.logs(tail=None)


@pytest.mark.parametrize("count", [1, 25], ids=["one-job", "batches"])
def test_database_fence_stops_a_second_run_when_claim_keys_are_lost(
    fleet: FleetFactory, count: int
) -> None:
    jobs = {
        f"tick-{i:02d}": {"func": "tests.jobs.record", "cron": {"second": "*"}}
        for i in range(count)
    }
    # Different key prefixes: neither instance ever sees the other's claim key, as if
    # the cache lost every key. Only the history table stands between them: with 25
    # jobs due each second, its batched inserts (ON CONFLICT DO NOTHING).
    first = fleet(jobs, {"KEY_PREFIX": "oncejob-fence-a"})
    second = fleet(jobs, {"KEY_PREFIX": "oncejob-fence-b"})
    second.record_file.symlink_to(first.record_file)
    first.start()
    second.start()
    time.sleep(6)

    assert first.stop() + second.stop() == [0, 0]

    counts = first.run_counts()
    assert len(counts) >= 4 * count
    assert [key for key, runs in counts.items() if runs > 1] == []
    assert Run.objects.count() == len(counts)
    logs = first.logs(tail=None) + second.logs(tail=None)
    assert "already in the history; not running it again" in logs


def test_jobs_due_together_are_claimed_and_fenced_in_batches_exactly_once(
    fleet: FleetFactory,
) -> None:
    """25 jobs due every second: three claim pipelines and fence inserts a second each."""
    jobs = {
        f"batch-{i:02d}": {"func": "tests.jobs.record", "cron": {"second": "*"}} for i in range(25)
    }
    instances = fleet(jobs)
    instances.start(4, stagger=0.25)
    window_start = now() + timedelta(seconds=1)
    time.sleep(8)
    window_end = now() - timedelta(seconds=1)

    assert instances.stop() == [0] * 4, instances.logs()

    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count > 1] == []
    seconds = seconds_between(window_start, window_end)
    assert len(seconds) >= 5
    assert [(job, t) for job in jobs for t in seconds if counts[(job, t)] != 1] == []
    rows = Run.objects.values_list("job", "scheduled_for", "status")
    assert sorted((job, when) for job, when, _ in rows) == sorted(counts)
    assert {status for *_, status in rows} == {Run.Status.SUCCEEDED}
    assert len({pid for *_, pid in instances.runs()}) > 1
    assert "already in the history" not in instances.logs(tail=None)


def test_each_instance_claims_first_the_jobs_it_is_the_first_choice_for(
    fleet: FleetFactory,
) -> None:
    """40 jobs due every second on 2 instances that know each other: each job runs where
    it ranks first, so neither instance's runs wait behind claims the other wins."""
    jobs = {
        f"pref-{i:02d}": {"func": "tests.jobs.record", "cron": {"second": "*"}} for i in range(40)
    }
    instances = fleet(jobs, {"HEARTBEAT_INTERVAL": 1, "HEARTBEAT_TIMEOUT": 10})
    instances.start(2)
    # Each has seen the other beat.
    time.sleep(3)
    window_start = now()
    time.sleep(5)
    window_end = now()
    assert instances.stop() == [0, 0], instances.logs()

    rows = Run.objects.filter(scheduled_for__gt=window_start, scheduled_for__lt=window_end)
    owners = sorted(Instance.objects.values_list("owner", flat=True))
    assert len(owners) == 2
    first_choice = {job: max(owners, key=lambda owner: _score(job, owner)) for job in jobs}
    ran = list(rows.values_list("job", "owner"))
    assert len(ran) >= 4 * len(jobs)
    # At random, about half would run elsewhere; an instance whose scheduler wakes a
    # little earlier still wins some of the other's first choices.
    elsewhere = [(job, owner) for job, owner in ran if owner != first_choice[job]]
    assert len(elsewhere) <= len(ran) // 4, elsewhere


def test_sigterm_lets_the_running_job_finish(fleet: FleetFactory) -> None:
    instances = fleet(
        {
            "slow": {
                "func": "tests.jobs.sleep_then_record",
                "args": [3],
                "interval": {"seconds": 1},
            }
        }
    )
    (instance,) = instances.start()
    wait_for(lambda: Run.objects.filter(status="running").exists(), 10, "the job to start")
    signalled = now()
    instance.process.send_signal(signal.SIGTERM)

    assert instance.process.wait(15) == 0, instance.output()
    (row,) = Run.objects.all()
    assert row.status == Run.Status.SUCCEEDED
    assert row.scheduled_for < signalled
    assert [job for job, *_ in instances.runs()] == ["slow"]
    assert "stopping; no new occurrence will be claimed" in instance.output()


def test_shutdown_timeout_marks_the_running_job_interrupted(fleet: FleetFactory) -> None:
    instances = fleet(
        {"stuck": {"func": "tests.jobs.sleep_then_record", "args": [60], "cron": {"second": "*"}}},
        {"SHUTDOWN_TIMEOUT": 1},
    )
    (instance,) = instances.start()
    wait_for(lambda: Run.objects.filter(status="running").exists(), 10, "the job to start")
    started = time.monotonic()
    instance.process.send_signal(signal.SIGTERM)

    assert instance.process.wait(15) == 1
    assert time.monotonic() - started < 5
    (row,) = Run.objects.all()
    assert row.status == Run.Status.FAILED
    assert row.error.startswith("Interrupted")
    assert instances.runs() == []


def test_second_signal_stops_at_once(fleet: FleetFactory) -> None:
    instances = fleet(
        {"stuck": {"func": "tests.jobs.sleep_then_record", "args": [60], "cron": {"second": "*"}}},
        {"SHUTDOWN_TIMEOUT": 120},
    )
    (instance,) = instances.start()
    wait_for(lambda: Run.objects.filter(status="running").exists(), 10, "the job to start")
    instance.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in instance.output(), 5, "the first signal to be handled")
    started = time.monotonic()
    instance.process.send_signal(signal.SIGINT)

    assert instance.process.wait(10) == 1
    assert time.monotonic() - started < 3
    assert Run.objects.get().status == Run.Status.FAILED


def test_failing_and_async_jobs_in_a_real_process(fleet: FleetFactory) -> None:
    instances = fleet(
        {
            "broken": {"func": "tests.jobs.fail", "cron": {"second": "*"}},
            "async": {"func": "tests.jobs.async_record", "cron": {"second": "*"}},
        }
    )
    instances.start()
    wait_for(
        lambda: (
            Run.objects.filter(job="broken", status="failed").count() >= 2
            and Run.objects.filter(job="async", status="succeeded").count() >= 2
        ),
        10,
        "two failures and two async runs",
    )

    assert instances.stop() == [0]
    failure = Run.objects.filter(job="broken").first()
    assert failure is not None
    assert failure.error == "RuntimeError: the job broke"
    assert 'raise RuntimeError("the job broke")' in failure.traceback
    assert {job for job, *_ in instances.runs()} == {"async"}


def test_instances_sharing_one_sqlite_file(fleet: FleetFactory, tmp_path: Path) -> None:
    database = tmp_path / "shared.sqlite3"
    env = {"ONCEJOB_TEST_DB": "sqlite", "ONCEJOB_DB_NAME": str(database)}
    instances = fleet(
        {
            "tick": {"func": "tests.jobs.record", "cron": {"second": "*"}},
            "tock": {"func": "tests.jobs.record", "cron": {"second": "*"}},
        }
    )
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        env=instances.env(env),
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    instances.start(6, stagger=0.2, env=env)
    time.sleep(8)

    assert instances.stop() == [0] * 6, instances.logs()
    counts = instances.run_counts()
    assert len(counts) >= 12
    assert [key for key, count in counts.items() if count > 1] == []
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT job, scheduled_for, status FROM django_oncejob_run").fetchall()
    assert len(rows) == len(counts)
    assert {status for *_, status in rows} == {"succeeded"}
    assert "database is locked" not in instances.logs(tail=None)
