"""Claim caches other than django-redis, each against real runjobs processes.

Every test points ONCEJOB['CACHE'] of a few runjobs instances at an alias given
through ONCEJOB_TEST_CACHES (see tests/settings.py), runs per-second jobs, and
checks from the jobs' own record that each occurrence ran exactly once. The
servers a test needs (memcached, a Redis primary, its replica and sentinels) are
started on free loopback ports and killed at the end, pass or fail.

Each test prints its figures; run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import os
import pickle
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache.backends.base import BaseCache
from django.core.management import call_command
from django.db import connection
from django.utils.module_loading import import_string

from django_oncejob.cache.atomic import KEY_VERSION
from django_oncejob.cache.deployment import deployment_key
from django_oncejob.models import Run
from tests.processes import Fleet, free_port, free_ports, redis_server_program, wait_for

pytestmark = pytest.mark.processes

FleetFactory = Callable[..., Fleet]
JOBS = {
    "tick": {"func": "tests.jobs.record", "cron": {"second": "*"}},
    "tock": {"func": "tests.jobs.record", "cron": {"second": "*"}},
}
INSTANCES = 4
FENCED = "already in the history; not running it again"
CACHE_FAILED = "Could not claim"


def now() -> datetime:
    return datetime.now(UTC)


def ticks(start: datetime, end: datetime) -> list[datetime]:
    """Every whole second strictly after ``start`` and up to ``end``."""
    first = start.replace(microsecond=0) + timedelta(seconds=1)
    return [first + timedelta(seconds=i) for i in range(int((end - first).total_seconds()) + 1)]


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def backend(config: dict[str, Any]) -> BaseCache:
    """The cache ``config`` describes, built in this process as CACHES would build it."""
    params = {k: v for k, v in config.items() if k not in ("BACKEND", "LOCATION")}
    cache: BaseCache = import_string(config["BACKEND"])(config.get("LOCATION", ""), params)
    return cache


def claim_key(fleet: Fleet, job: str, scheduled_for: datetime) -> str:
    return f"{fleet.prefix}:{deployment_key()}:{job}:{scheduled_for.isoformat()}"


@dataclass
class Servers:
    """Server processes started by a test, all killed at its end."""

    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: list[str], port: int) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        wait_for(lambda: answers(port) or process.poll() is not None, 10, f"{name} on port {port}")
        assert process.poll() is None, f"{name} exited:\n{log.read_text(errors='replace')}"
        return process

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(5)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.workdir / f'{name}.log').read_text(errors='replace')[-3000:]}"
            for name in self.processes
        )


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    made = Servers(tmp_path / "servers")
    made.workdir.mkdir()
    try:
        yield made
    finally:
        made.kill_all()


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: apt-get install -y {program}")
    return path


@dataclass
class Window:
    """The stretch of time when every instance was up, and what came out of it."""

    start: datetime
    end: datetime
    codes: list[int]

    @property
    def ticks(self) -> list[datetime]:
        return ticks(self.start, self.end)


def run_fleet(
    fleet: FleetFactory,
    alias: str,
    config: dict[str, Any],
    seconds: float,
    during: Callable[[Fleet], None] | None = None,
) -> tuple[Fleet, Window]:
    """Run INSTANCES runjobs instances claiming through ``config`` for about ``seconds``.

    ``during``, if given, runs once every instance is up, and the window ends
    ``seconds`` after it returns.
    """
    instances = fleet(JOBS, {"CACHE": alias})
    instances.start(
        INSTANCES, stagger=0.2, env={"ONCEJOB_TEST_CACHES": json.dumps({alias: config})}
    )
    start = now() + timedelta(seconds=1)
    if during is not None:
        during(instances)
    time.sleep(seconds)
    end = now() - timedelta(seconds=1)
    dead = [i.log.name for i in instances.instances if i.process.poll() is not None]
    assert dead == [], instances.logs()
    return instances, Window(start, end, instances.stop())


def assert_exactly_once(instances: Fleet, window: Window) -> None:
    """No occurrence ran twice, none in the window was missed, the history agrees."""
    assert window.codes == [0] * INSTANCES, instances.logs()
    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count > 1] == [], instances.logs()
    assert len(window.ticks) >= 6
    for job in JOBS:
        assert [t for t in window.ticks if counts[(job, t)] != 1] == [], (job, instances.logs())
    rows = list(Run.objects.values_list("job", "scheduled_for", "owner", "status"))
    assert sorted((job, when) for job, when, _, _ in rows) == sorted(counts)
    assert {status for *_, status in rows} == {Run.Status.SUCCEEDED}
    pid_by_run = {(job, when): pid for job, when, pid in instances.runs()}
    for job, when, owner, _ in rows:
        assert owner.endswith(f":{pid_by_run[(job, when)]}")


def assert_cache_decided(instances: Fleet, cache: BaseCache) -> None:
    """Each run's claim key is in the cache, owned by the instance that ran it."""
    for job, when, pid in instances.runs():
        owner = cache.get(claim_key(instances, job, when), version=KEY_VERSION)
        assert isinstance(owner, str) and owner.endswith(f":{pid}"), (job, when, pid, owner)
    logs = instances.logs(tail=None)
    assert FENCED not in logs
    assert CACHE_FAILED not in logs


def test_django_builtin_redis_cache(fleet: FleetFactory) -> None:
    config = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": settings.REDIS_URL,
        "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
    started = time.monotonic()
    instances, window = run_fleet(fleet, "builtin-redis", config, seconds=8)
    print(f"builtin RedisCache: {len(instances.runs())} runs in {time.monotonic() - started:.1f} s")

    assert_exactly_once(instances, window)
    assert_cache_decided(instances, backend(config))
    # Socket timeouts set: no django_oncejob warning about the cache at start-up.
    assert "django_oncejob.W" not in instances.logs(tail=None)


def memcached_command(port: int) -> list[str]:
    command = [require("memcached"), "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:
        # memcached refuses to run as root unless told which user to be.
        command += ["-u", pwd.getpwuid(0).pw_name]
    return command


@pytest.fixture
def memcached(servers: Servers) -> int:
    port = free_port()
    servers.start("memcached", memcached_command(port), port)
    return port


def test_pymemcache_cache(memcached: int, fleet: FleetFactory) -> None:
    config = {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": f"127.0.0.1:{memcached}",
        "OPTIONS": {"connect_timeout": 2, "timeout": 2},
    }
    started = time.monotonic()
    instances, window = run_fleet(fleet, "memcached", config, seconds=8)
    print(f"PyMemcacheCache: {len(instances.runs())} runs in {time.monotonic() - started:.1f} s")

    assert_exactly_once(instances, window)
    assert_cache_decided(instances, backend(config))
    assert "django_oncejob.W002" in instances.logs(tail=None)


#: What PyMemcacheCache needs to fail loudly: without ``retry_attempts: 0``, add()
#: answers False while the server is down (see the next test): a claim looks lost.
MEMCACHED_OPTIONS = {"connect_timeout": 2, "timeout": 2, "retry_attempts": 0, "dead_timeout": 1}


def add_outcomes(cache: BaseCache, count: int) -> list[object]:
    """What ``count`` add() calls of new keys returned, or the class of what they raised."""
    outcomes: list[object] = []
    for _ in range(count):
        try:
            outcomes.append(cache.add(f"probe-{time.monotonic_ns()}", "x", 60))
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


def test_pymemcache_add_answers_false_while_its_server_is_down(servers: Servers) -> None:
    """What PyMemcacheCache.add() says once its memcached has gone away.

    pymemcache's HashClient, which PyMemcacheCache uses, raises for the first
    failures, then answers the command's default value (False for add) until
    ``retry_timeout`` has passed: the claim looks lost, not failed, and if every
    instance hears False the occurrence runs nowhere. With ``retry_attempts: 0``
    the server is marked dead at once and every call raises (the claim is
    unavailable, ON_CACHE_ERROR applies) until ``dead_timeout`` brings it back.
    """
    port = free_port()
    server = servers.start("memcached", memcached_command(port), port)
    location = f"127.0.0.1:{port}"
    options = {"connect_timeout": 1, "timeout": 1}
    memcached = "django.core.cache.backends.memcached.PyMemcacheCache"
    default = backend({"BACKEND": memcached, "LOCATION": location, "OPTIONS": options})
    no_retry = backend(
        {
            "BACKEND": memcached,
            "LOCATION": location,
            "OPTIONS": MEMCACHED_OPTIONS,
        }
    )
    assert add_outcomes(default, 1) + add_outcomes(no_retry, 1) == [True, True]
    server.kill()
    server.wait(5)

    down = add_outcomes(default, 4)
    down_no_retry = add_outcomes(no_retry, 4)
    print(f"add() with memcached down: default options {down}, retry_attempts 0 {down_no_retry}")
    assert True not in down
    assert False in down
    assert True not in down_no_retry
    assert False not in down_no_retry

    servers.start("memcached-again", memcached_command(port), port)
    wait_for(lambda: add_outcomes(no_retry, 1) == [True], 5, "dead_timeout to bring it back")


def test_pymemcache_cache_through_a_memcached_restart(
    servers: Servers, memcached: int, fleet: FleetFactory
) -> None:
    config = {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": f"127.0.0.1:{memcached}",
        "OPTIONS": MEMCACHED_OPTIONS,
    }
    steps: dict[str, datetime] = {}

    def restart(instances: Fleet) -> None:
        time.sleep(3)
        server = servers.processes["memcached"]
        server.kill()
        server.wait(5)
        steps["killed"] = now()
        time.sleep(2)
        servers.start("memcached-again", memcached_command(memcached), memcached)
        steps["restarted"] = now()

    instances, window = run_fleet(fleet, "memcached", config, seconds=5, during=restart)
    logs = instances.logs(tail=None)
    print(
        f"PyMemcacheCache restart: {len(instances.run_counts())} occurrences; "
        f"{logs.count(CACHE_FAILED)} claims failed, {logs.count(FENCED)} stopped by the history"
    )

    assert_exactly_once(instances, window)
    assert CACHE_FAILED in logs
    # Once the client has let dead_timeout pass, claims go through memcached again.
    cache = backend(config)
    later = [run for run in instances.runs() if run[1] > steps["restarted"] + timedelta(seconds=2)]
    assert len(later) >= 2 * len(JOBS)
    for job, when, pid in later:
        owner = cache.get(claim_key(instances, job, when), version=KEY_VERSION)
        assert isinstance(owner, str) and owner.endswith(f":{pid}"), (job, when, pid, owner)


@pytest.fixture
def cache_table(transactional_db: None) -> Iterator[str]:
    if connection.vendor != "postgresql":
        # DatabaseCache.add() answers False when SQLite says "database is locked",
        # so instances sharing one file miss occurrences (see docs/caches.rst).
        pytest.skip("DatabaseCache claims are tested on PostgreSQL only.")
    table = "oncejob_test_cache"
    call_command("createcachetable", table, verbosity=0)
    try:
        yield table
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(table)}")


def test_database_cache(cache_table: str, fleet: FleetFactory) -> None:
    config = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": cache_table}
    started = time.monotonic()
    instances, window = run_fleet(fleet, "database", config, seconds=8)
    print(f"DatabaseCache: {len(instances.runs())} runs in {time.monotonic() - started:.1f} s")

    assert_exactly_once(instances, window)
    # Racing INSERTs of one key: the primary key lets one through, the others'
    # IntegrityError makes their add() return False.
    assert_cache_decided(instances, backend(config))
    assert "django_oncejob.W001" in instances.logs(tail=None)


def test_database_cache_culling_live_claims_is_caught_by_the_history(
    cache_table: str, fleet: FleetFactory
) -> None:
    # Past MAX_ENTRIES rows, every add() first culls; CULL_FREQUENCY 0 empties the
    # table, live claim keys included, so a later instance's add() wins again.
    config = {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": cache_table,
        "OPTIONS": {"MAX_ENTRIES": 1, "CULL_FREQUENCY": 0},
    }
    started = time.monotonic()
    instances, window = run_fleet(fleet, "database", config, seconds=8)
    elapsed = time.monotonic() - started
    logs = instances.logs(tail=None)
    fenced = logs.count(FENCED)
    occurrences = len(instances.run_counts())
    print(
        f"DatabaseCache culling: {occurrences} occurrences in {elapsed:.1f} s; the history "
        f"fenced {fenced} claims the cache had let through"
    )

    assert_exactly_once(instances, window)
    assert fenced >= 1, logs
    assert CACHE_FAILED not in logs


def in_sync(replica: int) -> bool:
    info = redis.Redis(port=replica, socket_timeout=2).info("replication")
    return info.get("master_link_status") == "up"


@dataclass
class SentinelSetup:
    primary: int
    replica: int
    sentinels: list[int]
    servers: Servers

    def sentinel(self) -> redis.Redis[bytes]:
        return redis.Redis(port=self.sentinels[0], socket_timeout=2, socket_connect_timeout=2)

    def primary_port(self) -> int | None:
        """The port of the primary the sentinels name now."""
        try:
            address = self.sentinel().sentinel_get_master_addr_by_name("mymaster")
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def ready(self) -> bool:
        """The replica is in sync, and every sentinel knows it and the two other sentinels."""
        try:
            if not in_sync(self.replica):
                return False
            for port in self.sentinels:
                sentinel = redis.Redis(port=port, socket_timeout=2)
                replicas = sentinel.sentinel_slaves("mymaster")
                others = sentinel.sentinel_sentinels("mymaster")
                if [int(r["port"]) for r in replicas] != [self.replica] or len(others) < 2:
                    return False
        except redis.RedisError:
            return False
        return True


def redis_server(port: int, *extra: str) -> list[str]:
    return [
        redis_server_program(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        *extra,
    ]


@pytest.fixture
def sentinel_setup(servers: Servers) -> SentinelSetup:
    primary, replica, *sentinels = free_ports(5)
    servers.start("primary", redis_server(primary), primary)
    servers.start(
        "replica", redis_server(replica, "--replicaof", "127.0.0.1", str(primary)), replica
    )
    # Before the sentinels start, so that they find the replica at once.
    wait_for(lambda: in_sync(replica), 10, "the replica to sync")
    for index, port in enumerate(sentinels):
        conf = servers.workdir / f"sentinel-{index}.conf"
        # A sentinel rewrites its configuration file, so each has one of its own.
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {servers.workdir}\n"
            f"sentinel monitor mymaster 127.0.0.1 {primary} 2\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 10000\n"
        )
        servers.start(f"sentinel-{index}", [redis_server_program(), str(conf), "--sentinel"], port)
    setup = SentinelSetup(primary, replica, sentinels, servers)
    wait_for(setup.ready, 20, "the sentinels to agree on a quorum and see the replica")
    return setup


def role(port: int) -> str | None:
    try:
        return str(redis.Redis(port=port, socket_timeout=1).info("replication")["role"])
    except redis.RedisError:
        return None


@pytest.mark.parametrize("failover", ["sigkill-primary", "sentinel-failover"])
def test_redis_sentinel_failover(
    sentinel_setup: SentinelSetup, fleet: FleetFactory, failover: str
) -> None:
    setup = sentinel_setup
    config = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://mymaster/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": [["127.0.0.1", port] for port in setup.sentinels],
            "SOCKET_TIMEOUT": 1,
            "SOCKET_CONNECT_TIMEOUT": 1,
        },
    }
    #: Wall-clock times of the failover's steps, to compare with scheduled times.
    steps: dict[str, datetime] = {}

    def fail_over(instances: Fleet) -> None:
        time.sleep(3)
        steps["failover"] = now()
        if failover == "sigkill-primary":
            primary = setup.servers.processes["primary"]
            primary.send_signal(signal.SIGKILL)
            primary.wait(5)
        else:
            setup.sentinel().execute_command("SENTINEL FAILOVER", "mymaster")
        wait_for(lambda: setup.primary_port() == setup.replica, 20, "the sentinels to fail over")
        steps["sentinels switched"] = now()
        wait_for(lambda: role(setup.replica) == "master", 10, "the replica to be promoted")
        steps["replica promoted"] = now()
        if failover == "sentinel-failover":
            # The old primary takes writes on the connections clients already hold
            # until a sentinel tells it to replicate the new one (several seconds).
            wait_for(lambda: role(setup.primary) == "slave", 30, "the old primary to step down")
            steps["old primary demoted"] = now()

    instances, window = run_fleet(fleet, "sentinel", config, seconds=4, during=fail_over)

    logs = instances.logs(tail=None)
    settled = max(steps.values())
    new_primary = redis.Redis(port=setup.replica, socket_timeout=2)
    claims = []
    for job, when, pid in sorted(instances.runs(), key=lambda run: run[1]):
        raw = new_primary.get(f":{KEY_VERSION}:{claim_key(instances, job, when)}")
        owner = pickle.loads(raw) if raw is not None else None
        claims.append((when, isinstance(owner, str) and owner.endswith(f":{pid}")))
    first = next((when for when, held in claims if held and when > steps["failover"]), None)
    since = {
        name: (at - steps["failover"]).total_seconds()
        for name, at in steps.items()
        if name != "failover"
    }
    print(
        f"Sentinel {failover}: failover "
        f"{(steps['failover'] - window.start).total_seconds():.1f} s into the window; "
        + ", ".join(f"{name} after {seconds:.2f} s" for name, seconds in since.items())
        + "; first occurrence claimed on the new primary "
        + (f"{(first - steps['failover']).total_seconds():.1f} s after" if first else "never")
        + f"; {logs.count(CACHE_FAILED)} claims failed, {logs.count(FENCED)} stopped by the "
        f"history; {len(instances.run_counts())} occurrences"
    )

    assert_exactly_once(instances, window)
    # Claims go through the new primary once the failover has settled: every
    # later occurrence holds its claim key there, owned by the instance that ran it.
    after = [held for when, held in claims if when > settled + timedelta(seconds=1)]
    assert len(after) >= 2 * len(JOBS), claims
    assert all(after), (claims, setup.servers.logs())
