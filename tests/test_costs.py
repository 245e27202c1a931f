"""What one occurrence costs, exactly: cache commands and SQL queries, winner and loser.

The cache commands are counted by a redis-server of this module's own, on a
free loopback port (``INFO commandstats`` before and after), so that nothing
else using the shared Redis can change the count. The queries are counted by
Django (``CaptureQueriesContext``). bench/run.py measures the same costs on a
fleet; docs/performance.rst has its figures.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis
from apscheduler.triggers.date import DateTrigger
from django.core.cache import caches
from django.db import connection
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorWrapper
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from django_oncejob.cache.atomic import KEY_VERSION
from django_oncejob.cache.claim import ClaimResult, claim, claim_key, claim_many
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.running import history
from django_oncejob.running.history_writer import HistoryWriter
from django_oncejob.running.pipeline import Pipeline, claim_and_run
from django_oncejob.running.steps import Outcome
from django_oncejob.scheduling.executor import BATCH_SIZE, ClaimingExecutor
from django_oncejob.scheduling.scheduler import ClaimingScheduler
from tests.processes import free_port, redis_server_program
from tests.rows import fence, fence_many

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[redis.Redis]:
    port = free_port()
    process = subprocess.Popen(
        [redis_server_program(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield client
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def commands(own_redis: redis.Redis) -> Iterator[Any]:
    """Count the commands the code under test sends to the claim cache."""
    own_redis.flushall()
    config = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{own_redis.connection_pool.connection_kwargs['port']}/0",
    }

    def calls() -> Counter[str]:
        stats = own_redis.info("commandstats")
        counts = Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()})
        counts.pop("info", None)  # our own
        return counts

    class Counting:
        def __init__(self) -> None:
            self.counts: Counter[str] = Counter()

        def __enter__(self) -> Counting:
            self._before = calls()
            return self

        def __exit__(self, *exc: object) -> None:
            self.counts = calls() - self._before

    with override_settings(CACHES={"default": config}):
        yield Counting


def spec(job_id: str = "report") -> JobSpec:
    job, errors = parse_job(job_id, {"func": "tests.jobs.record", "cron": "0 21 * * *"})
    assert errors == []
    assert job is not None
    return job


@pytest.fixture(autouse=True)
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("ONCEJOB_TEST_RECORD", str(path))
    return path


def warm_up() -> None:
    # The first command on a new connection pool is preceded by the client's
    # handshake (CLIENT SETINFO): a cost per connection, not per occurrence.
    claim_and_run(spec("warm-up"), WHEN - timedelta(days=1), "host-a:1")


def test_loser_sends_one_cache_command_and_no_query(commands: Any, record_file: Path) -> None:
    warm_up()
    assert claim_and_run(spec(), WHEN, "host-a:1") is Outcome.SUCCEEDED

    with commands() as cache, CaptureQueriesContext(connection) as queries:
        assert claim_and_run(spec(), WHEN, "host-b:2") is Outcome.LOST

    assert cache.counts == Counter({"set": 1})
    assert [q["sql"] for q in queries] == []
    assert [line.split()[0] for line in record_file.read_text().splitlines()] == [
        "warm-up",
        "report",
    ]


def test_winner_sends_one_cache_command_and_writes_twice(commands: Any) -> None:
    warm_up()
    with commands() as cache, CaptureQueriesContext(connection) as queries:
        assert claim_and_run(spec(), WHEN, "host-a:1") is Outcome.SUCCEEDED

    assert cache.counts == Counter({"set": 1})
    # On SQLite the test project sets each new connection up with PRAGMAs: not the
    # occurrence's queries.
    sql = [q["sql"] for q in queries if not q["sql"].startswith("PRAGMA")]
    assert [statement.split(None, 1)[0] for statement in sql] == ["INSERT", "UPDATE"], sql
    assert Run.objects.get(job="report").status == Run.Status.SUCCEEDED


# A burst: many jobs due in the same second, through runjobs' own scheduler and executor.


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many commands each Redis pipeline sent, in order (the pipeline still runs)."""
    sizes: list[int] = []
    execute = redis.client.Pipeline.execute

    def counting(self: redis.client.Pipeline, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(self.command_stack))
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    return sizes


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The first word of each SQL statement run, on any thread's connection."""
    seen: Counter[str] = Counter()
    execute = CursorWrapper.execute

    def counting(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        seen[sql.split(None, 1)[0].upper()] += 1
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", counting)
    return seen


def occurrences(count: int, when: datetime = WHEN) -> list[tuple[str, datetime]]:
    return [(f"job-{i:02d}", when) for i in range(count)]


def test_claims_of_a_burst_go_out_in_one_round_trip(commands: Any, pipelines: list[int]) -> None:
    warm_up()
    claim("job-03", WHEN, "host-a:1")
    pipelines.clear()

    with commands() as cache:
        results = claim_many(occurrences(30), "host-b:2")

    assert results == [ClaimResult.LOST if i == 3 else ClaimResult.WON for i in range(30)]
    assert cache.counts == Counter({"set": 30})
    assert pipelines == [30]
    # The keys are the ones cache.add writes: same name, value and lifetime.
    claims_cache = caches["default"]
    assert claims_cache.get(claim_key("job-07", WHEN), version=KEY_VERSION) == "host-b:2"
    assert claims_cache.get(claim_key("job-03", WHEN), version=KEY_VERSION) == "host-a:1"
    assert claim("job-07", WHEN, "host-c:3") is ClaimResult.LOST
    assert claims_cache.ttl(claim_key("job-07", WHEN), version=KEY_VERSION) > 86400 - 60
    assert claim_many(occurrences(30), "host-c:3") == [ClaimResult.LOST] * 30


def test_claims_of_a_burst_are_unavailable_when_redis_is(caplog: pytest.LogCaptureFixture) -> None:
    closed = free_port()
    config = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{closed}/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1},
    }
    with override_settings(CACHES={"default": config}):
        assert claim_many(occurrences(3), "host-a:1") == [ClaimResult.UNAVAILABLE] * 3
    assert "Could not claim 3 occurrences: the cache 'default' failed." in caplog.text


def test_claims_of_a_burst_take_one_add_each_on_other_caches() -> None:
    config = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "burst"}
    with override_settings(CACHES={"default": config}):
        claim("job-01", WHEN, "host-a:1")
        assert claim_many(occurrences(3), "host-b:2") == [
            ClaimResult.WON,
            ClaimResult.LOST,
            ClaimResult.WON,
        ]


def test_fences_of_a_burst_go_in_with_one_insert() -> None:
    claimed_at = timezone.now()
    taken = fence("job-02", WHEN, "host-a:1", claimed_at)
    assert taken is not None
    burst = [*occurrences(5), ("job-00", WHEN + timedelta(seconds=1))]

    with CaptureQueriesContext(connection) as queries:
        rows = fence_many(burst, "host-b:2", claimed_at)

    opened = [(row.job, row.scheduled_for, row.owner) if row else None for row in rows]
    assert opened == [
        ("job-00", WHEN, "host-b:2"),
        ("job-01", WHEN, "host-b:2"),
        None,
        ("job-03", WHEN, "host-b:2"),
        ("job-04", WHEN, "host-b:2"),
        ("job-00", WHEN + timedelta(seconds=1), "host-b:2"),
    ]
    for row in rows:
        if row is not None:
            assert Run.objects.get(pk=row.pk).owner == "host-b:2"
    assert Run.objects.get(job="job-02").owner == "host-a:1"
    inserts = [q["sql"] for q in queries if q["sql"].startswith("INSERT")]
    # job-00 is due twice: its second time takes a second statement.
    assert len(inserts) == 2, inserts
    assert Run.objects.count() == 6


def test_fences_go_in_by_job_and_time_whatever_the_claim_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One order on every instance: inserts of overlapping rows wait, never deadlock."""
    inserted: list[list[str]] = []
    execute = CursorWrapper.execute

    def spying(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        if sql.startswith("INSERT"):
            inserted.append([p for p in params if isinstance(p, str) and p.startswith("job-")])
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", spying)
    burst = occurrences(8)
    random.Random(5).shuffle(burst)
    rows = fence_many(burst, "host-b:2", timezone.now())

    assert [row.job if row else None for row in rows] == [job for job, _ in burst]
    assert inserted == [sorted(job for job, _ in burst)]


def test_fences_of_a_burst_take_one_insert_each_elsewhere() -> None:
    bulk = mock.patch.object(history, "_fences_in_bulk", return_value=False)
    with bulk, CaptureQueriesContext(connection) as queries:
        rows = fence_many(occurrences(3), "host-b:2", timezone.now())
    assert [row.job if row else None for row in rows] == ["job-00", "job-01", "job-02"]
    assert len([q for q in queries if q["sql"].startswith("INSERT")]) == 3


def test_a_burst_of_due_jobs_costs_a_set_each_in_few_round_trips(
    commands: Any, pipelines: list[int], statements: Counter[str], record_file: Path
) -> None:
    """30 jobs due at once, 10 threads: claimed in pipelines of the threads free, fenced with
    one INSERT each at most, on the history writer's two connections."""
    warm_up()
    pipelines.clear()
    specs = {f"job-{i:02d}": spec(f"job-{i:02d}") for i in range(30)}
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    writer = HistoryWriter()
    executor = ClaimingExecutor(specs, Pipeline("host-a:1", writer), max_workers=10)
    scheduler = ClaimingScheduler(executor, timezone="UTC")
    for job_id in specs:
        scheduler.add_job("tests.jobs:record", DateTrigger(when), id=job_id, misfire_grace_time=60)

    statements.clear()
    opened: list[object] = []

    def count(sender: object, connection: object, **kwargs: object) -> None:
        opened.append(connection)

    connection_created.connect(count)
    with commands() as cache:
        writer.start()
        scheduler.start()
        try:
            deadline = time.monotonic() + 20
            while len(record_file.read_text().splitlines()) < 31 or executor.running:
                assert time.monotonic() < deadline, "the burst did not finish"
                time.sleep(0.05)
        finally:
            scheduler.shutdown(wait=False)
            assert executor.wait(10)
            assert writer.stop(10)
            connection_created.disconnect(count)

    # Batches claimed side by side may open a connection each: its handshake is not
    # a cost per occurrence.
    handshakes = {"hello", "client|setinfo"}
    assert +Counter({k: v for k, v in cache.counts.items() if k not in handshakes}) == Counter(
        {"set": 30}
    )
    # No batch holds more jobs than threads can start them; a batch of one is one SET.
    assert sum(pipelines) <= 30 and max(pipelines) <= BATCH_SIZE, pipelines
    batches = len(pipelines) + 30 - sum(pipelines)
    # On SQLite, a new connection is set up with PRAGMAs first.
    # The outcomes that ended together go out with one UPDATE (WITH ... UPDATE for many).
    updates = statements["WITH"] + statements["UPDATE"]
    assert statements - Counter({"PRAGMA": statements["PRAGMA"]}) == Counter(
        {"INSERT": statements["INSERT"], "WITH": statements["WITH"], "UPDATE": statements["UPDATE"]}
    ), statements
    assert 1 <= statements["INSERT"] <= batches, statements
    assert 1 <= updates <= 30, statements
    assert Run.objects.filter(status=Run.Status.SUCCEEDED, job__in=specs).count() == 30
    # CONN_MAX_AGE = 0, and yet two connections for all: the history writer's, one for
    # the fences and one for the outcomes.
    assert len(opened) == 2
    runs = sorted(line.split()[0] for line in record_file.read_text().splitlines())
    assert runs == sorted(["warm-up", *specs])
