"""Faults injected into real runjobs processes: kills, lost keys, outages, skewed clocks.

Each test prints its figures; run with ``-s`` to see them.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache import caches

from django_oncejob.cache.atomic import KEY_VERSION
from django_oncejob.cache.deployment import deployment_key
from django_oncejob.models import Instance as InstanceRow
from django_oncejob.models import Run
from tests.processes import (
    Fleet,
    Instance,
    clock_offset,
    faketime_env,
    free_port,
    redis_server_program,
    wait_for,
)

pytestmark = pytest.mark.processes

FleetFactory = Callable[..., Fleet]
#: What a killed instance leaves its row as: heartbeat reaping may mark it abandoned.
UNFINISHED = {"running", "abandoned"}
TICK = {"tick": {"func": "tests.jobs.record", "cron": {"second": "*"}}}


def now() -> datetime:
    return datetime.now(UTC)


def ticks(start: datetime, end: datetime) -> list[datetime]:
    """Every whole second strictly after ``start`` and up to ``end``."""
    first = start.replace(microsecond=0) + timedelta(seconds=1)
    return [first + timedelta(seconds=i) for i in range(int((end - first).total_seconds()) + 1)]


def pid_of(owner: str) -> int:
    return int(owner.rsplit(":", 1)[1])


def duplicates(fleet: Fleet) -> list[tuple[str, datetime]]:
    return [key for key, count in fleet.run_counts().items() if count > 1]


def missed(fleet: Fleet, job: str, times: list[datetime]) -> list[datetime]:
    counts = fleet.run_counts()
    return [t for t in times if counts[(job, t)] == 0]


def alive(instances: list[Instance]) -> list[Instance]:
    return [i for i in instances if i.process.poll() is None]


def terminate(instances: list[Instance], timeout: float = 30) -> list[int]:
    """SIGTERM these instances and return their exit codes."""
    for instance in instances:
        instance.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes = []
    for instance in instances:
        try:
            codes.append(instance.process.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            instance.process.kill()
            codes.append(instance.process.wait(5))
    return codes


def share(fleet: Fleet, labels: dict[int, str]) -> dict[str, int]:
    won = Counter(pid for *_, pid in fleet.runs())
    return {labels.get(pid, str(pid)): won[pid] for pid in labels}


def figures(title: str, **values: object) -> None:
    print(f"\n[{title}]")
    for name, value in values.items():
        print(f"  {name.replace('_', ' ')}: {value}")


def keys_of(client: redis.Redis, prefix: str) -> list[str]:
    """The claim keys under ``prefix``, without the cache's own key prefix and version, nor
    the deployment: ``<job id>:<scheduled time>``."""
    return [
        key.decode().split(f"{prefix}:{deployment_key()}:", 1)[1]
        for key in client.scan_iter(match=f"*{prefix}:*", count=1000)
    ]


def assert_faketime(instance: Instance, offset: float) -> None:
    """The runjobs process really runs with libfaketime, and that shifts Python's clock."""
    maps = Path(f"/proc/{instance.pid}/maps").read_text()
    assert "libfaketime" in maps, f"libfaketime is not loaded in pid {instance.pid}"
    environ = Path(f"/proc/{instance.pid}/environ").read_bytes().split(b"\0")
    spec = next(v for v in environ if v.startswith(b"FAKETIME=")).decode().split("=", 1)[1]
    measured = clock_offset(faketime_env(spec))
    assert abs(measured - offset) < 0.15, f"FAKETIME={spec} shifts time.time() by {measured}"


class LogClock:
    """How far behind real time an instance's own log timestamps are, as lines appear."""

    STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.MULTILINE)

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.read = len(instance.output())
        self.lags: list[float] = []

    def poll(self) -> None:
        seen = datetime.now()
        text = self.instance.output()
        end = text.rfind("\n") + 1
        for stamp in self.STAMP.findall(text, self.read, end):
            logged = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
            self.lags.append((seen - logged).total_seconds())
        self.read = max(self.read, end)

    @property
    def lag(self) -> float:
        """The smallest delay seen: the clock offset plus the least polling delay."""
        return min(self.lags)


class RedisServer:
    """A redis-server of the test's own, on a free loopback port, that it can stop and restart."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> None:
        self.starts += 1
        with (self.workdir / f"redis-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [
                    redis_server_program(),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, 10, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "redis-server exited"
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_instances_killed_one_after_another(fleet: FleetFactory) -> None:
    # Half a second of work per run, so that some kills land while the job runs.
    instances = fleet(
        {"tick": {"func": "tests.jobs.sleep_then_record", "args": [0.5], "cron": {"second": "*"}}}
    )
    instances.start(4, stagger=0.1)
    rng = random.Random()
    killed: list[Instance] = []
    window_start = now()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(killed) < 40:
        time.sleep(rng.uniform(0.1, 1.0))
        victim = rng.choice(alive(instances.instances))
        victim.process.kill()
        victim.process.wait(5)
        killed.append(victim)
        instances.start()
    window_end = now() - timedelta(seconds=1)
    time.sleep(1.5)
    survivors = [i for i in instances.instances if i not in killed]
    assert alive(survivors) == survivors, instances.logs()

    assert terminate(survivors) == [0] * len(survivors), instances.logs()
    assert duplicates(instances) == []
    killed_pids = {i.pid for i in killed}
    # The admin tells the killed from the stopped.
    clean_stops = dict(InstanceRow.objects.values_list("pid", "clean_stop"))
    assert [clean_stops.get(i.pid) for i in survivors] == [True] * len(survivors)
    assert not any(clean_stops.get(pid) for pid in killed_pids)
    rows = {row.scheduled_for: row for row in Run.objects.filter(job="tick")}
    window = ticks(window_start, window_end)
    explained_by_row, explained_by_key, unexplained = [], [], []
    for when in missed(instances, "tick", window):
        row = rows.get(when)
        key = f"{instances.prefix}:{deployment_key()}:tick:{when.isoformat()}"
        key_owner = caches["default"].get(key, version=KEY_VERSION)
        if row is not None and pid_of(row.owner) in killed_pids and row.status in UNFINISHED:
            explained_by_row.append(when)
        elif row is None and key_owner is not None and pid_of(key_owner) in killed_pids:
            # Killed between winning the key and inserting the row: only the cache knows.
            explained_by_key.append(when)
        else:
            unexplained.append(when)
    left_running = [r for r in rows.values() if r.status != Run.Status.SUCCEEDED]
    figures(
        "instances killed",
        kills=len(killed),
        instances_started=len(instances.instances),
        occurrences_in_window=len(window),
        ran=len(window) - len(explained_by_row) - len(explained_by_key) - len(unexplained),
        missed_with_a_running_row_of_a_killed_instance=[t.isoformat() for t in explained_by_row],
        missed_with_only_a_cache_key_of_a_killed_instance=[t.isoformat() for t in explained_by_key],
        rows_not_succeeded={r.scheduled_for.isoformat(): r.status for r in left_running},
        unexplained=[t.isoformat() for t in unexplained],
    )
    assert len(killed) >= 10
    assert len(window) >= 18
    assert unexplained == [], instances.logs()
    # Only the killed instances leave rows unfinished.
    assert {pid_of(r.owner) for r in left_running} <= killed_pids
    assert {r.status for r in left_running} <= UNFINISHED


def test_cache_losing_claims_while_one_instance_lags(fleet: FleetFactory) -> None:
    instances = fleet(TICK)
    lag = faketime_env("-0.4s")
    instances.start(2, stagger=0.1)
    (laggard,) = instances.start(env=lag)
    assert_faketime(laggard, -0.4)
    client = redis.Redis.from_url(settings.REDIS_URL)
    clock = LogClock(laggard)
    flushes = deleted = 0
    window_start = now()
    deadline = time.monotonic() + 10
    next_flush = 0.0
    while time.monotonic() < deadline and flushes < 100:
        if time.monotonic() >= next_flush:
            keys = list(client.scan_iter(match=f"*{instances.prefix}:*", count=1000))
            if keys:
                deleted += client.delete(*keys)
            flushes += 1
            next_flush = time.monotonic() + 0.2
        clock.poll()
        time.sleep(0.02)
    window_end = now() - timedelta(seconds=1)
    time.sleep(1)

    assert instances.stop() == [0, 0, 0], instances.logs()
    assert duplicates(instances) == []
    window = ticks(window_start, window_end)
    assert missed(instances, "tick", window) == []
    fenced = {i.pid: i.output().count("already in the history") for i in instances.instances}
    labels = {i.pid: f"pid {i.pid}" for i in instances.instances}
    labels[laggard.pid] = f"pid {laggard.pid} (-0.4 s)"
    figures(
        "claim keys flushed",
        flushes=flushes,
        keys_deleted=deleted,
        occurrences_in_window=len(window),
        fenced_by_the_history={labels[pid]: count for pid, count in fenced.items()},
        runs_won=share(instances, labels),
        laggard_log_stamps_behind_real_time=f"{clock.lag:.2f} s (least of {len(clock.lags)})",
    )
    # Seen in the process itself: its log stamps are 0.4 s behind the moment they appear.
    assert 0.35 < clock.lag < 0.6
    # The laggard finds the key gone nearly every second; only the history stops it.
    assert fenced[laggard.pid] >= 5
    assert Run.objects.filter(job="tick").count() == len(instances.run_counts())


def test_cache_unreachable(fleet: FleetFactory, throwaway_redis: RedisServer) -> None:
    env = {"REDIS_URL": throwaway_redis.url}
    fence = fleet(TICK)
    skip = fleet(
        {"skip-tick": {"func": "tests.jobs.record", "cron": {"second": "*"}}},
        {"ON_CACHE_ERROR": "skip"},
    )
    fence.start(3, stagger=0.1, env=env)
    skip.start(2, stagger=0.1, env=env)
    window_start = now()
    time.sleep(2)
    assert keys_of(throwaway_redis.client(), fence.prefix) != []

    throwaway_redis.stop()
    down = now()
    time.sleep(5)
    restarting = now()
    throwaway_redis.start()
    up = now()
    time.sleep(4)
    window_end = now() - timedelta(seconds=1)
    everyone = fence.instances + skip.instances
    assert alive(everyone) == everyone, fence.logs() + skip.logs()
    keys = set(keys_of(throwaway_redis.client(), fence.prefix))
    time.sleep(1)

    assert terminate(everyone) == [0] * 5, fence.logs() + skip.logs()
    assert duplicates(fence) == []
    assert duplicates(skip) == []
    fence_logs = fence.logs(tail=None)
    skip_logs = skip.logs(tail=None)
    window = ticks(window_start, window_end)
    # With ON_CACHE_ERROR='fence' the history decided alone: nothing missed, nothing twice.
    assert missed(fence, "tick", window) == []
    assert "Could not claim" in fence_logs
    assert "already in the history" in fence_logs
    # Claiming is back to normal within one period of Redis' return.
    after = ticks(up, window_end)
    assert len(after) >= 2
    assert [t for t in after if f"tick:{t.isoformat()}" not in keys] == []
    rows_after = set(
        Run.objects.filter(job="tick", scheduled_for__gt=up).values_list("scheduled_for", flat=True)
    )
    assert set(after) <= rows_after
    # With 'skip', nothing ran while the cache was down, and everything ran again after.
    outage = [t for t in ticks(down, restarting) if t < restarting - timedelta(seconds=0.1)]
    assert len(outage) >= 3
    skipped_runs = [t for t in outage if skip.run_counts()[("skip-tick", t)]]
    assert skipped_runs == []
    assert "ON_CACHE_ERROR is 'skip'" in skip_logs
    assert missed(skip, "skip-tick", after) == []
    figures(
        "cache unreachable",
        outage_seconds=round((restarting - down).total_seconds(), 1),
        redis_restart_seconds=round((up - restarting).total_seconds(), 2),
        fence_could_not_claim=fence_logs.count("Could not claim"),
        fence_decided_by_history=fence_logs.count("already in the history"),
        fence_occurrences_in_window=len(window),
        skip_occurrences_in_outage=len(outage),
        skip_logged=skip_logs.count("ON_CACHE_ERROR is 'skip'"),
        keys_back_after_return=len(after),
    )


def test_clock_skew(fleet: FleetFactory) -> None:
    instances = fleet(TICK)
    ahead_env, behind_env = faketime_env("+1.5s"), faketime_env("-1.5s")
    instances.start(2, stagger=0.1)
    (ahead,) = instances.start(env=ahead_env)
    (behind,) = instances.start(env=behind_env)
    assert_faketime(ahead, 1.5)
    assert_faketime(behind, -1.5)
    window_start = now()
    time.sleep(12)
    window_end = now() - timedelta(seconds=1)
    stopping = now()

    assert instances.stop() == [0] * 4, instances.logs()
    assert duplicates(instances) == []
    window = ticks(window_start, window_end)
    assert missed(instances, "tick", window) == []
    labels = {i.pid: f"pid {i.pid} (true clock)" for i in instances.instances}
    labels[ahead.pid] = f"pid {ahead.pid} (+1.5 s)"
    labels[behind.pid] = f"pid {behind.pid} (-1.5 s)"
    latest = max(when for _, when, _ in instances.runs())
    figures(
        "clock skew",
        occurrences_in_window=len(window),
        runs_won=share(instances, labels),
        latest_run_ahead_of_real_time_at_stop=f"{(latest - stopping).total_seconds():+.1f} s",
    )


def test_shutdown_under_load(fleet: FleetFactory) -> None:
    jobs = {
        f"slow-{n}": {"func": "tests.jobs.sleep_then_record", "args": [2], "cron": {"second": "*"}}
        for n in range(4)
    }
    instances = fleet(jobs, {"MAX_WORKERS": 16})
    stopping, staying = instances.start(2, stagger=0.3)
    mine = Run.objects.filter(owner__endswith=f":{stopping.pid}")
    running = mine.filter(status="running")
    wait_for(lambda: running.count() >= 2, 10, "two running jobs")
    # The instances' start-up may outlast the first jobs, so signal only when one of the
    # stopping instance's jobs has just begun: it is sure to be mid-run at the signal.
    wait_for(
        lambda: running.filter(claimed_at__gt=now() - timedelta(seconds=0.5)).exists(),
        10,
        "a job the stopping instance has just started",
    )
    signalled = now()
    stopping.process.send_signal(signal.SIGTERM)

    assert stopping.process.wait(15) == 0, stopping.output()
    stopped = now()
    time.sleep(4)
    assert staying.process.poll() is None, staying.output()
    assert terminate([staying]) == [0], staying.output()

    assert duplicates(instances) == []
    assert {row.status for row in Run.objects.all()} == {Run.Status.SUCCEEDED}
    finished_after_signal = [r for r in mine if r.finished_at and r.finished_at > signalled]
    assert len(finished_after_signal) >= 1
    margin = signalled + timedelta(seconds=1)
    assert [r.scheduled_for for r in mine if r.scheduled_for > margin] == []
    assert [r.claimed_at for r in mine if r.claimed_at > signalled + timedelta(seconds=0.5)] == []
    recorded = {(job, when) for job, when, pid in instances.runs() if pid == stopping.pid}
    assert recorded == {(r.job, r.scheduled_for) for r in mine}
    later = Run.objects.filter(scheduled_for__gt=margin)
    assert {pid_of(owner) for owner in later.values_list("owner", flat=True)} == {staying.pid}
    assert set(later.values_list("job", flat=True)) == set(jobs)
    figures(
        "shutdown under load",
        seconds_to_stop=round((stopped - signalled).total_seconds(), 1),
        jobs_finished_after_the_signal=len(finished_after_signal),
        runs_by_the_stopping_instance=len(recorded),
        later_occurrences_taken_by_the_other=later.count(),
        left_to_others_logged=stopping.output().count("left to other instances"),
    )


def test_second_sigterm_stops_at_once(fleet: FleetFactory) -> None:
    jobs = {
        f"stuck-{n}": {
            "func": "tests.jobs.sleep_then_record",
            "args": [60],
            "cron": {"second": "*"},
        }
        for n in range(3)
    }
    instances = fleet(jobs, {"SHUTDOWN_TIMEOUT": 120})
    (instance,) = instances.start()
    wait_for(lambda: Run.objects.filter(status="running").count() == 3, 10, "3 running jobs")
    instance.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in instance.output(), 5, "the first SIGTERM to be handled")
    started = time.monotonic()
    instance.process.send_signal(signal.SIGTERM)

    assert instance.process.wait(10) == 1, instance.output()
    elapsed = time.monotonic() - started
    assert elapsed < 3
    rows = list(Run.objects.all())
    assert len(rows) == 3
    assert {row.status for row in rows} == {Run.Status.FAILED}
    assert all(row.error.startswith("Interrupted") for row in rows)
    assert instances.runs() == []
    assert "stopped with 3 job(s) still running" in instance.output()
    figures("second SIGTERM", seconds_to_exit=round(elapsed, 2), rows_interrupted=len(rows))


def test_a_busy_instance_claims_no_more_than_it_can_start(fleet: FleetFactory) -> None:
    """MAX_WORKERS 2, two instances, eight 2-second jobs due together, a grace of 3 s."""
    jobs = {
        f"slow-{n}": {
            "func": "tests.jobs.stamp_then_sleep",
            "args": [2],
            "cron": {"second": "*/10"},
        }
        for n in range(8)
    }
    instances = fleet(jobs, {"MAX_WORKERS": 2, "MISFIRE_GRACE_TIME": 3})
    instances.start(2, stagger=0.1)
    # The first occurrence both instances were up for: one due while the second was
    # still starting had only the first's two threads.
    ready = now()
    after = Run.objects.filter(status="succeeded", scheduled_for__gt=ready)
    wait_for(lambda: after.count() >= 8, 30, "one round")
    assert instances.stop() == [0, 0], instances.logs()

    # When each job really started, by its own record.
    lines = Path(f"{instances.record_file}.starts").read_text().splitlines()
    stamps = [line.split() for line in lines]
    first = min(t for _, when, _ in stamps if (t := datetime.fromisoformat(when)) > ready)
    lateness = sorted(
        float(at) - first.timestamp()
        for _, when, at in stamps
        if datetime.fromisoformat(when) == first
    )
    # Before: one instance won all eight and started the last of them 6 s late.
    assert len(lateness) == 8 and lateness[-1] < 3, lateness
    assert duplicates(instances) == []
    owners = Run.objects.filter(scheduled_for=first).values_list("owner", flat=True)
    figures(
        "busy instance",
        lateness_seconds=[round(late, 1) for late in lateness],
        runs_by_instance=sorted(Counter(owners).values()),
    )
