"""What one occurrence costs, exactly: cache commands and SQL queries, winner and loser.

The cache commands are counted by a redis-server of this module's own, on a
free loopback port (``INFO commandstats`` before and after), so that nothing
else using the shared Redis can change the count. The queries are counted by
Django (``CaptureQueriesContext``). bench/run.py measures the same costs on a
fleet; docs/performance.rst has its figures.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from django_oncejob.models import Claim
from django_oncejob.registry import JobSpec, parse_job
from django_oncejob.runner import Outcome, run_occurrence

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[redis.Redis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: it counts the cache commands here.")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
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
    run_occurrence(spec("warm-up"), WHEN - timedelta(days=1), "host-a:1")


def test_loser_sends_one_cache_command_and_no_query(commands: Any, record_file: Path) -> None:
    warm_up()
    assert run_occurrence(spec(), WHEN, "host-a:1") is Outcome.SUCCEEDED

    with commands() as cache, CaptureQueriesContext(connection) as queries:
        assert run_occurrence(spec(), WHEN, "host-b:2") is Outcome.LOST

    assert cache.counts == Counter({"set": 1})
    assert [q["sql"] for q in queries] == []
    assert [line.split()[0] for line in record_file.read_text().splitlines()] == [
        "warm-up",
        "report",
    ]


def test_winner_sends_one_cache_command_and_writes_twice(commands: Any) -> None:
    warm_up()
    with commands() as cache, CaptureQueriesContext(connection) as queries:
        assert run_occurrence(spec(), WHEN, "host-a:1") is Outcome.SUCCEEDED

    assert cache.counts == Counter({"set": 1})
    # On SQLite the test project sets each new connection up with PRAGMAs: not the
    # occurrence's queries.
    sql = [q["sql"] for q in queries if not q["sql"].startswith("PRAGMA")]
    assert [statement.split(None, 1)[0] for statement in sql] == ["INSERT", "UPDATE"], sql
    assert Claim.objects.get(job="report").status == Claim.Status.SUCCEEDED
