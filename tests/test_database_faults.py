"""The history database under Django's defaults and ordinary faults, with real runjobs processes.

Django's default ``CONN_MAX_AGE = 0``; a database out of reach for every instance
at once, longer than HEARTBEAT_TIMEOUT; connections killed mid-run; a table
locked by a migration; a clock far ahead; an instance restarted under its owner;
a deploy that changes the heartbeat settings. Each test prints its figures; run
with ``-s`` to see them.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_oncejob.models import Instance, Run
from tests.processes import Fleet, faketime_env, wait_for
from tests.proxy import TcpProxy
from tests.test_faults import (
    TICK,
    FleetFactory,
    alive,
    assert_faketime,
    duplicates,
    figures,
    missed,
    now,
    ticks,
)

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="faults of a PostgreSQL server and its links"
    ),
]

FAST_HEARTBEAT = {"HEARTBEAT_INTERVAL": 1, "HEARTBEAT_TIMEOUT": 3}


def through(proxy: TcpProxy) -> dict[str, str]:
    return {"PGHOST": proxy.host, "PGPORT": str(proxy.port)}


def at(seconds: float) -> dict[str, str]:
    """A one-off trigger ``seconds`` from now, on the whole second."""
    when = (now() + timedelta(seconds=seconds)).replace(microsecond=0)
    return {"at": when.isoformat()}


def terminate_backends() -> int:
    """``pg_terminate_backend`` every other session of the test database: the instances'."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def outcomes_of_runs(fleet: Fleet) -> dict[str, int]:
    """For every run the jobs recorded, the status of its history row (or 'no row')."""
    rows = {
        (job, when): status
        for job, when, status in Run.objects.values_list("job", "scheduled_for", "status")
    }
    counts: dict[str, int] = {}
    for key in fleet.run_counts():
        status = rows.get(key, "no row")
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_default_settings_open_no_connection_per_occurrence(
    fleet: FleetFactory, db_proxy: TcpProxy
) -> None:
    """CONN_MAX_AGE = 0, as in a new project: a won occurrence opens no connection."""
    jobs = {f"tick-{n}": {"func": "tests.jobs.record", "cron": {"second": "*"}} for n in range(5)}
    instances = fleet(jobs)
    instances.start(2, env=through(db_proxy))
    opened_at_start = db_proxy.accepted
    window_start = now()
    time.sleep(8)
    window_end = now() - timedelta(seconds=1)
    opened = db_proxy.accepted - opened_at_start
    assert instances.stop() == [0, 0], instances.logs()

    assert duplicates(instances) == []
    window = ticks(window_start, window_end)
    assert all(missed(instances, job, window) == [] for job in jobs)
    won = sum(1 for job, when in instances.run_counts() if window[0] <= when <= window[-1])
    # Before: one connection per won occurrence, and one per background round.
    assert opened <= 2, f"{opened} connections for {won} occurrences"
    assert outcomes_of_runs(instances) == {"succeeded": len(instances.run_counts())}
    figures(
        "CONN_MAX_AGE = 0",
        occurrences_won_in_window=won,
        connections_opened_in_window=opened,
        connections_at_start=opened_at_start,
    )


def test_database_unreachable_for_everyone_twice_the_heartbeat_timeout(
    fleet: FleetFactory, db_proxy: TcpProxy
) -> None:
    """0 duplicates, 0 live instances reaped, every run's real outcome in the history after."""
    jobs = {
        **TICK,
        # Running across the cut, and ending within it: re-run if its instance looks dead.
        "slow": {
            "func": "tests.jobs.sleep_then_record",
            "args": [4],
            **at(4),
            "rerun_abandoned": True,
        },
    }
    instances = fleet(jobs, FAST_HEARTBEAT)
    instances.start(3, stagger=0.1, env=through(db_proxy))
    window_start = now()
    wait_for(Run.objects.filter(job="slow", status="running").exists, 10, "the slow job")

    db_proxy.cut()
    cut = now()
    time.sleep(2 * FAST_HEARTBEAT["HEARTBEAT_TIMEOUT"])
    db_proxy.restore()
    restored = now()
    # Long enough for any instance back to judge the others, had it been hasty.
    time.sleep(2 * FAST_HEARTBEAT["HEARTBEAT_TIMEOUT"] + 1)
    window_end = now() - timedelta(seconds=1)
    assert alive(instances.instances) == instances.instances, instances.logs()
    reaped = list(Instance.objects.exclude(stopped_at=None).values_list("owner", flat=True))
    assert instances.stop() == [0, 0, 0], instances.logs()

    assert duplicates(instances) == []
    assert reaped == []
    assert missed(instances, "tick", ticks(window_start, window_end)) == []
    slow = Run.objects.get(job="slow")
    assert (slow.status, slow.attempts) == (Run.Status.SUCCEEDED, 1)
    assert Run.objects.filter(status__in=["abandoned", "running"]).count() == 0
    outcomes = outcomes_of_runs(instances)
    assert outcomes == {"succeeded": len(instances.run_counts())}, outcomes
    figures(
        "database unreachable for everyone",
        cut_seconds=round((restored - cut).total_seconds(), 1),
        runs=len(instances.run_counts()),
        outcomes_of_runs=outcomes,
        instances_reaped=len(reaped),
        ran_on_the_cache_claim_alone=instances.logs(tail=None).count("on the cache claim alone"),
    )


def test_connections_killed_mid_run(fleet: FleetFactory) -> None:
    """pg_terminate_backend while a job runs: its outcome is recorded, async ORM jobs go on."""
    jobs = {
        **TICK,
        "orm": {"func": "tests.jobs.async_orm_record", "cron": {"second": "*"}},
        "slow": {
            "func": "tests.jobs.sleep_then_record",
            "args": [3],
            **at(3),
            "rerun_abandoned": True,
        },
    }
    instances = fleet(jobs, FAST_HEARTBEAT)
    instances.start(2, stagger=0.1)
    wait_for(Run.objects.filter(job="slow", status="running").exists, 10, "the slow job")
    wait_for(lambda: Run.objects.filter(job="orm", status="succeeded").count() >= 2, 10, "orm")
    killed = terminate_backends()
    killed_at = now()
    time.sleep(6)
    assert instances.stop() == [0, 0], instances.logs()

    assert killed >= 2
    assert duplicates(instances) == []
    slow = Run.objects.get(job="slow")
    assert (slow.status, slow.attempts) == (Run.Status.SUCCEEDED, 1), slow.error
    later = Run.objects.filter(job="orm", scheduled_for__gt=killed_at + timedelta(seconds=1))
    assert later.count() >= 3
    assert set(later.values_list("status", flat=True)) == {"succeeded"}, [
        row.error for row in later
    ]
    assert outcomes_of_runs(instances) == {"succeeded": len(instances.run_counts())}
    figures(
        "connections killed",
        backends_terminated=killed,
        async_orm_runs_after=later.count(),
        slow_job=f"{slow.status}, attempts {slow.attempts}",
    )


def test_a_locked_history_table_delays_but_loses_nothing(fleet: FleetFactory) -> None:
    """A migration holds the history table for 8 s while 4 instances run."""
    instances = fleet(TICK)
    instances.start(4, stagger=0.1)
    window_start = now()
    time.sleep(2)
    database = connection.settings_dict
    locker = psycopg.connect(
        dbname=database["NAME"],
        user=database["USER"],
        password=database["PASSWORD"],
        host=database["HOST"],
        port=database["PORT"],
    )
    try:
        with locker.transaction():
            locker.execute(f"LOCK TABLE {Run._meta.db_table} IN ACCESS EXCLUSIVE MODE")
            locked = now()
            time.sleep(8)
    finally:
        locker.close()
    released = now()
    time.sleep(4)
    window_end = now() - timedelta(seconds=1)
    assert instances.stop() == [0] * 4, instances.logs()

    window = ticks(window_start, window_end)
    assert duplicates(instances) == []
    lost = missed(instances, "tick", window)
    assert lost == [], (lost, locked, instances.logs(tail=None))
    outcomes = outcomes_of_runs(instances)
    assert outcomes == {"succeeded": len(instances.run_counts())}, outcomes
    locked_window = [t for t in window if locked <= t <= released]
    lateness = [
        row.lateness.total_seconds()
        for row in Run.objects.filter(job="tick", scheduled_for__in=locked_window)
        if row.lateness is not None
    ]
    figures(
        "history table locked",
        locked_seconds=round((released - locked).total_seconds(), 1),
        occurrences_while_locked=len(locked_window),
        missed=len(lost),
        worst_start_lateness_while_locked=f"{max(lateness):.2f} s" if lateness else None,
    )


def test_one_clock_far_ahead_erases_nothing(fleet: FleetFactory) -> None:
    """An instance 90 s ahead, two exact ones, MISFIRE_GRACE_TIME 10: no second is lost."""
    settings: dict[str, Any] = {"MISFIRE_GRACE_TIME": 10, **FAST_HEARTBEAT}
    instances = fleet(TICK, settings)
    instances.start(2, stagger=0.1)
    (fast,) = instances.start(env=faketime_env("+90s"))
    assert_faketime(fast, 90)
    window_start = now()
    time.sleep(25)
    window_end = now() - timedelta(seconds=1)
    assert instances.stop() == [0, 0, 0], instances.logs()

    window = ticks(window_start, window_end)
    assert duplicates(instances) == []
    lost = missed(instances, "tick", window)
    assert lost == [], lost
    wrongly_missed = Run.objects.filter(job="tick", status="missed", scheduled_for__in=window)
    assert not wrongly_missed.exists()
    assert not Run.objects.filter(
        job="tick", scheduled_for__gt=window_end + timedelta(seconds=5)
    ).exists()
    figures(
        "one clock 90 s ahead",
        occurrences_in_window=len(window),
        missed=len(lost),
        runs_by_the_fast_instance=sum(1 for *_, pid in instances.runs() if pid == fast.pid),
    )


def test_an_instance_restarted_under_its_owner_settles_what_it_left(fleet: FleetFactory) -> None:
    jobs = {"slow": {"func": "tests.jobs.sleep_then_record", "args": [60], **at(2)}}
    instances = fleet(jobs, {"OWNER": "pod-0", **FAST_HEARTBEAT})
    (first,) = instances.start()
    wait_for(Run.objects.filter(job="slow", status="running").exists, 10, "the slow job")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(5)

    instances.start()
    row = Run.objects.get(job="slow")
    wait_for(lambda: Run.objects.get(pk=row.pk).status == "abandoned", 10, "the row settled")
    assert instances.stop() == [-signal.SIGKILL, 0], instances.logs()
    row.refresh_from_db()
    assert row.error == "Abandoned: pod-0 restarted while running it."
    figures("restarted under its owner", row=f"{row.status}: {row.error}")


def test_a_deploy_that_changes_the_heartbeat_settings_reruns_nothing(fleet: FleetFactory) -> None:
    """Old release: beats every 4 s, gone after 12. New: every 1 s, gone after 3."""
    jobs = {
        "slow": {
            "func": "tests.jobs.sleep_then_record",
            "args": [9],
            **at(2),
            "rerun_abandoned": True,
        }
    }
    instances = fleet(jobs)
    old = {"HEARTBEAT_INTERVAL": 4, "HEARTBEAT_TIMEOUT": 12}
    (running,) = instances.start(env={"ONCEJOB_TEST_SETTINGS": json.dumps(old)})
    wait_for(Run.objects.filter(job="slow", status="running").exists, 10, "the slow job")
    instances.start(2, env={"ONCEJOB_TEST_SETTINGS": json.dumps(FAST_HEARTBEAT)})
    wait_for(lambda: Run.objects.get(job="slow").status != "running", 20, "the slow job's end")
    assert instances.stop() == [0, 0, 0], instances.logs()

    assert instances.run_counts()[("slow", Run.objects.get().scheduled_for)] == 1
    row = Run.objects.get()
    assert (row.status, row.attempts, row.owner.endswith(f":{running.pid}")) == (
        "succeeded",
        1,
        True,
    )
    figures(
        "heartbeat settings changed in a deploy", slow_job=f"{row.status}, attempts {row.attempts}"
    )
