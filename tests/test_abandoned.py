"""Heartbeats, abandoned occurrences, re-runs and the job-wide lock."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.test.utils import override_settings
from django.utils import timezone

from django_oncejob.cache.atomic import KEY_VERSION
from django_oncejob.cache.locks import lock_key
from django_oncejob.fleet import heartbeat
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Instance, Run
from django_oncejob.running.pipeline import claim_and_run
from django_oncejob.running.steps import Outcome
from tests.processes import Fleet, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


def spec(**extra: Any) -> JobSpec:
    job, errors = parse_job("report", {"func": "tests.jobs.record", "cron": "0 21 * * *", **extra})
    assert errors == [] and job is not None
    return job


def instance(owner: str, silent_for: float) -> Instance:
    beat = timezone.now() - timedelta(seconds=silent_for)
    return Instance.objects.create(
        owner=owner, host="h", pid=1, version="0", started_at=beat, heartbeat_at=beat
    )


def running(owner: str, started_ago: float = 120, when: datetime = WHEN) -> Run:
    started = timezone.now() - timedelta(seconds=started_ago)
    return Run.objects.create(
        job="report", scheduled_for=when, owner=owner, claimed_at=started, started_at=started
    )


def test_beat_registers_then_refreshes() -> None:
    heartbeat.beat("web-1:10", 60)
    first = Instance.objects.get()
    assert (first.owner, first.pid, first.stopped_at) == ("web-1:10", os.getpid(), None)
    heartbeat.sign_off("web-1:10")
    signed_off = Instance.objects.get()
    assert signed_off.stopped_at is not None
    assert signed_off.clean_stop

    heartbeat.beat("web-1:10", 60)
    again = Instance.objects.get()
    assert again.heartbeat_at > first.heartbeat_at
    assert again.stopped_at is None
    assert not again.clean_stop


def test_reap_abandons_the_rows_of_a_silent_instance() -> None:
    instance("dead:1", silent_for=120)
    instance("alive:2", silent_for=1)
    dead_row = running("dead:1")
    alive_row = running("alive:2", when=WHEN.replace(day=27))

    assert heartbeat.reap("me:3", 60, {}) == []

    dead_row.refresh_from_db()
    alive_row.refresh_from_db()
    assert dead_row.status == Run.Status.ABANDONED
    assert "dead:1 stopped sending heartbeats" in dead_row.error
    assert dead_row.finished_at is not None
    assert alive_row.status == Run.Status.RUNNING
    assert Instance.objects.get(owner="dead:1").stopped_at is not None
    assert Instance.objects.get(owner="alive:2").stopped_at is None


def test_reap_deletes_the_rows_of_instances_gone_for_a_day() -> None:
    instance("restarted:1", silent_for=2 * 86400)
    two_days_ago = timezone.now() - timedelta(days=2)
    Instance.objects.filter(owner="restarted:1").update(stopped_at=two_days_ago)
    instance("stopped:2", silent_for=600)
    Instance.objects.filter(owner="stopped:2").update(stopped_at=timezone.now())

    heartbeat.reap("me:3", 60, {})

    assert sorted(Instance.objects.values_list("owner", flat=True)) == ["stopped:2"]


def test_reap_covers_rows_whose_owner_never_registered() -> None:
    row = running("ghost:1")
    heartbeat.reap("me:3", 60, {})
    row.refresh_from_db()
    assert row.status == Run.Status.ABANDONED


def test_reap_leaves_a_recent_row_alone() -> None:
    row = running("ghost:1", started_ago=5)
    heartbeat.reap("me:3", 60, {})
    row.refresh_from_db()
    assert row.status == Run.Status.RUNNING


def test_rerun_takes_the_row_over_exactly_once() -> None:
    instance("dead:1", silent_for=120)
    row = running("dead:1")
    jobs = {"report": spec(rerun_abandoned=True)}

    (taken,) = heartbeat.reap("me:3", 60, jobs)
    assert heartbeat.reap("other:4", 60, jobs) == []

    assert taken.pk == row.pk
    assert (taken.owner, taken.status, taken.attempts) == ("me:3", Run.Status.RUNNING, 2)


def test_lock_skips_an_occurrence_while_a_run_holds_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("ONCEJOB_TEST_RECORD", str(tmp_path / "runs.txt"))
    job = spec(lock_timeout=30)
    caches["default"].add(lock_key("report"), "someone", timeout=30, version=KEY_VERSION)

    assert claim_and_run(job, WHEN, "a") is Outcome.SKIPPED
    row = Run.objects.get()
    assert row.status == Run.Status.SKIPPED
    assert "still holds its lock" in row.error

    caches["default"].delete(lock_key("report"), version=KEY_VERSION)
    assert claim_and_run(job, WHEN.replace(day=27), "a") is Outcome.SUCCEEDED
    assert caches["default"].get(lock_key("report"), version=KEY_VERSION) is None


FAST_HEARTBEAT = {"HEARTBEAT_INTERVAL": 1, "HEARTBEAT_TIMEOUT": 3}


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0).isoformat()


def kill_the_winner(instances: Fleet) -> tuple[Run, int]:
    wait_for(lambda: Run.objects.filter(status="running").exists(), 15, "the job to start")
    row = Run.objects.get()
    pid = int(row.owner.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    return row, pid


@pytest.mark.processes
def test_winner_killed_mid_run_is_marked_abandoned(fleet: Callable[..., Fleet]) -> None:
    instances = fleet(
        {"long": {"func": "tests.jobs.sleep_then_record", "args": [30], "at": soon(4)}},
        FAST_HEARTBEAT,
    )
    instances.start(2)
    row, pid = kill_the_winner(instances)
    killed = time.monotonic()

    wait_for(
        lambda: Run.objects.filter(pk=row.pk, status="abandoned").exists(),
        15,
        "the row to be marked abandoned",
    )
    print(f"abandoned {time.monotonic() - killed:.1f} s after SIGKILL")
    assert sorted(instances.stop()) == [-signal.SIGKILL, 0]
    row.refresh_from_db()
    assert row.attempts == 1
    assert instances.runs() == []
    assert Instance.objects.get(pid=pid).stopped_at is not None


@pytest.mark.processes
def test_rerun_abandoned_runs_it_again_on_a_live_instance(fleet: Callable[..., Fleet]) -> None:
    instances = fleet(
        {
            "long": {
                "func": "tests.jobs.sleep_then_record",
                "args": [4],
                "at": soon(4),
                "rerun_abandoned": True,
            }
        },
        FAST_HEARTBEAT,
    )
    instances.start(2)
    row, pid = kill_the_winner(instances)

    wait_for(
        lambda: Run.objects.filter(pk=row.pk, status="succeeded").exists(),
        20,
        "the re-run to succeed",
    )
    assert sorted(instances.stop()) == [-signal.SIGKILL, 0]
    row.refresh_from_db()
    assert row.attempts == 2
    assert not row.owner.endswith(f":{pid}")
    ((job, scheduled_for, run_pid),) = instances.runs()
    assert (job, scheduled_for, run_pid) == (
        "long",
        row.scheduled_for,
        int(row.owner.split(":")[1]),
    )


def overlapping(rows: list[Run]) -> int:
    spans = sorted((r.started_at, r.finished_at) for r in rows if r.finished_at)
    return sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])


@pytest.mark.processes
@pytest.mark.parametrize("lock_timeout", [None, 10])
def test_lock_timeout_prevents_overlapping_runs_across_instances(
    fleet: Callable[..., Fleet], lock_timeout: int | None
) -> None:
    job: dict[str, Any] = {
        "func": "tests.jobs.sleep_then_record",
        "args": [2.5],
        "cron": {"second": "*"},
    }
    if lock_timeout:
        job["lock_timeout"] = lock_timeout
    instances = fleet({"slow": job})
    instances.start(3)
    time.sleep(8)
    assert instances.stop() == [0, 0, 0]

    ran = list(Run.objects.filter(status="succeeded"))
    assert len(ran) >= 2
    if lock_timeout:
        assert overlapping(ran) == 0
        assert Run.objects.filter(status="skipped").exists()
    else:
        assert overlapping(ran) > 0


@pytest.mark.parametrize("use_tz", [True, False])
def test_a_beat_measures_this_hosts_clock_against_the_databases(use_tz: bool) -> None:
    """Whatever USE_TZ and TIME_ZONE say: a time zone is no clock offset."""
    with override_settings(USE_TZ=use_tz, TIME_ZONE="Asia/Shanghai"):
        now, offset = heartbeat.beat("web-1:10", 60)
    assert abs(offset) < 1, offset
    assert abs(now - time.time()) < 1
    assert abs(Instance.objects.get().clock_offset - offset) < 1e-6
