"""Start-up on a database that ``migrate`` has not reached yet: refused, in one line."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.processes import ROOT, Fleet

pytestmark = pytest.mark.processes

MIGRATIONS = ROOT / "django_oncejob" / "migrations"
JOBS = {"tick": {"func": "tests.jobs.record", "cron": {"second": "*"}}}


@pytest.fixture
def empty_database(tmp_path: Path, transactional_db: None) -> Iterator[str]:
    """The name of a database with no table in it."""
    if connection.vendor == "sqlite":
        yield str(tmp_path / "empty.sqlite3")
        return
    name = f"oncejob_unmigrated_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("command", [["runjobs", "-v", "2"], ["oncejob_health"]])
def test_refuses_to_start_before_migrate(
    tmp_path: Path, empty_database: str, command: list[str]
) -> None:
    fleet = Fleet(tmp_path, JOBS)
    done = subprocess.run(
        [sys.executable, "-m", "django", *command],
        cwd=ROOT,
        env=fleet.env({"ONCEJOB_DB_NAME": empty_database}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    migrations = sorted(path.stem for path in MIGRATIONS.glob("0*.py"))
    assert done.stderr.strip().splitlines() == [
        "CommandError: The database 'default' is missing django_oncejob's migrations "
        f"({', '.join(migrations)}): run manage.py migrate first. Nothing was started."
    ]
    assert fleet.runs() == []
