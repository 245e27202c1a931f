from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.db import connection

from django_oncejob.cache import deployment
from tests.processes import Fleet, Instance, start_worker, stop_worker
from tests.proxy import TcpProxy


def pytest_sessionstart(session: pytest.Session) -> None:
    # Coordination is only proven against a real Redis: no Redis, no test run.
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.exit(
            f"Redis is not answering at {url} ({exc}). The tests need a real Redis: run them "
            "with ./scripts/test, which starts a throwaway one, start one with `redis-server "
            "--daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`, or "
            "point REDIS_URL at one.",
            returncode=3,
        )
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.postgresql":
        import psycopg

        try:
            psycopg.connect(
                dbname="postgres",
                user=database["USER"],
                password=database["PASSWORD"],
                host=database["HOST"],
                port=database["PORT"],
                connect_timeout=3,
            ).close()
        except psycopg.Error as exc:
            pytest.exit(
                f"PostgreSQL is not answering at {database['HOST']}:{database['PORT']} ({exc}). "
                "Run the tests with ./scripts/test, which starts a throwaway one, start it, "
                "set PGHOST/PGPORT/PGUSER, or run the suite on SQLite with "
                "ONCEJOB_TEST_DB=sqlite.",
                returncode=3,
            )


@pytest.fixture(autouse=True)
def _clean_claims() -> None:
    """Each test starts with no claim keys under the test prefix.

    It also reads the deployment key afresh: a test that flushes the tables leaves
    the next one to make another.
    """
    cache = caches["default"]
    cache.delete_pattern(f"*{settings.ONCEJOB['KEY_PREFIX']}:*")  # type: ignore[attr-defined]
    deployment.forget()


@pytest.fixture
def fleet(tmp_path: Path, transactional_db: None) -> Iterator[Callable[..., Fleet]]:
    """Make fleets of real runjobs processes; all are killed and their keys removed after."""
    fleets: list[Fleet] = []

    def make(jobs: dict[str, Any], settings: dict[str, Any] | None = None) -> Fleet:
        workdir = tmp_path / f"fleet-{len(fleets)}"
        workdir.mkdir()
        made = Fleet(workdir, jobs, settings or {})
        fleets.append(made)
        return made

    yield make
    for made in fleets:
        made.kill_all()
        caches["default"].delete_pattern(f"*{made.prefix}:*")  # type: ignore[attr-defined]


@pytest.fixture
def db_proxy(transactional_db: None) -> Iterator[TcpProxy]:
    """A loopback proxy to the test database that a test can cut and restore."""
    database = connection.settings_dict
    with TcpProxy(str(database["HOST"] or "127.0.0.1"), int(database["PORT"] or 5432)) as proxy:
        yield proxy


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Start task workers; every one is stopped (and killed if need be) after the test."""
    started: list[Instance] = []

    def start(command: list[str], env: dict[str, str], ready: str) -> Instance:
        worker = start_worker(command, env, ready, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        stop_worker(worker)


@pytest.fixture
def celery_queue() -> Iterator[str]:
    """A queue of its own on the test broker, removed after the test."""
    queue = f"oncejob-tests-{uuid.uuid4().hex[:8]}"
    yield queue
    # The queues and kombu's bindings for them; results expire (CELERY_RESULT_EXPIRES).
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for key in broker.scan_iter(match=f"*{queue}*"):
        broker.delete(key)
