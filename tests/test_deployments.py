"""Two deployments (staging and production, say) that share one Redis database.

Each has its own history database and the same ``KEY_PREFIX``; neither may take
the other's occurrences.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection

from tests.processes import ROOT, Fleet, wait_for
from tests.proxy import TcpProxy
from tests.test_e2e import seconds_between

pytestmark = pytest.mark.processes

FleetFactory = Callable[..., Fleet]
JOBS = {"tick": {"func": "tests.jobs.record", "cron": {"second": "*"}}}


@pytest.fixture
def second_database(tmp_path: Path, transactional_db: None) -> Iterator[str]:
    """The name of a database of its own, migrated, as another deployment's would be."""
    if connection.vendor == "sqlite":
        name = str(tmp_path / "second.sqlite3")
    else:
        name = f"oncejob_second_{uuid.uuid4().hex[:8]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        done = subprocess.run(
            [sys.executable, "-m", "django", "migrate", "-v", "0"],
            cwd=ROOT,
            env=Fleet(tmp_path, {}).env({"ONCEJOB_DB_NAME": name}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        yield name
    finally:
        if connection.vendor != "sqlite":
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_deployments_on_one_redis_each_run_every_occurrence(
    fleet: FleetFactory, second_database: str
) -> None:
    production = fleet(JOBS)
    staging = fleet(JOBS)
    staging.prefix = production.prefix  # the default KEY_PREFIX, on both
    production.start(2)
    staging.start(2, env={"ONCEJOB_DB_NAME": second_database})
    window_start = datetime.now(UTC) + timedelta(seconds=1)
    time.sleep(12)
    window_end = datetime.now(UTC) - timedelta(seconds=1)

    assert production.stop() == [0, 0], production.logs()
    assert staging.stop() == [0, 0], staging.logs()
    ticks = seconds_between(window_start, window_end)
    assert len(ticks) >= 10
    for deployment in (production, staging):
        counts = deployment.run_counts()
        assert [t for t in ticks if counts[("tick", t)] != 1] == [], deployment.logs()
        assert "abandoned" not in deployment.logs(tail=None).lower()


def test_an_instance_claims_nothing_before_its_database_answers(
    fleet: FleetFactory, db_proxy: TcpProxy
) -> None:
    """Without its deployment's key, an instance's claims could not keep its fleet out."""
    instances = fleet(JOBS)
    db_proxy.cut()
    starting = threading.Thread(
        target=instances.start,
        kwargs={"env": {"PGHOST": db_proxy.host, "PGPORT": str(db_proxy.port)}},
    )
    starting.start()
    try:
        wait_for(
            lambda: instances.instances and "waiting for it" in instances.logs(),
            20,
            "the instance to wait for its database",
        )
        time.sleep(3)
        assert instances.runs() == []
        answered_at = datetime.now(UTC)
        db_proxy.restore()
    finally:
        starting.join(30)
    time.sleep(4)
    window_end = datetime.now(UTC) - timedelta(seconds=1)

    assert instances.stop() == [0], instances.logs()
    counts = instances.run_counts()
    assert min(when for _, when in counts) >= answered_at.replace(microsecond=0)
    ticks = seconds_between(answered_at + timedelta(seconds=1), window_end)
    assert [t for t in ticks if counts[("tick", t)] != 1] == [], instances.logs()
    assert instances.logs(tail=None).count("waiting for it") == 1
