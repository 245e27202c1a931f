from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

JOBS = {
    "nightly-report": {"func": "tests.jobs.record", "cron": "0 21 * * *"},
    "sync": {"func": "tests.jobs.record", "interval": {"seconds": 30}},
    "launch": {"func": "tests.jobs.record", "at": "2999-12-01T09:00:00+08:00"},
    "old": {"func": "tests.jobs.record", "at": "2001-01-01T00:00:00Z", "enabled": False},
}


def run(*args: str, **settings: Any) -> tuple[str, str, int]:
    """Run runjobs in this process: (stdout, stderr, exit code)."""
    out, err = StringIO(), StringIO()
    with override_settings(ONCEJOB=settings):
        try:
            call_command("runjobs", *args, stdout=out, stderr=err)
        except CommandError as exc:
            return out.getvalue(), str(exc), exc.returncode
    return out.getvalue(), err.getvalue(), 0


# --list reads the versions of the schedules from the database.
@pytest.mark.django_db
def test_list_prints_each_job_its_trigger_and_next_times() -> None:
    out, _, code = run("--list", "--count", "2", JOBS=JOBS, TIMEZONE="Asia/Shanghai")

    assert code == 0
    assert "nightly-report: every day at 21:00 (Asia/Shanghai)" in out
    assert "    runs tests.jobs.record" in out
    assert "21:00:00+08:00, " in out
    assert "sync: every 30 seconds\n" in out
    assert "launch: once at 2999-12-01 09:00:00+08:00" in out
    assert "    next: 2999-12-01 09:00:00+08:00\n" in out
    assert "old (disabled): once at 2001-01-01 00:00:00+00:00" in out
    assert "    next: none, the job is disabled" in out


def test_list_with_no_jobs() -> None:
    out, _, code = run("--list")
    assert (out, code) == ("No jobs in ONCEJOB['JOBS'].\n", 0)


def test_refuses_to_start_with_an_invalid_setting() -> None:
    _, err, code = run(JOBS={"broken": {"func": "tests.jobs.record", "cron": "61 * * * *"}})

    assert code == 1
    assert "nothing was started" in err
    assert "django_oncejob.E029" in err
    assert "ONCEJOB['JOBS']['broken']['cron']" in err


def test_refuses_to_list_with_an_invalid_setting() -> None:
    _, err, code = run("--list", CLAIM_TIMEOUT=0.5)
    assert code == 1
    assert "django_oncejob.E005" in err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--count", "2"], "--count goes with --list."),
        (["--list", "--run", "sync"], "--list and --run cannot be given together."),
        (["--owner", ""], "--owner must be a non-empty string of at most 255 characters, got ''."),
        (
            ["--owner", "x" * 256],
            "--owner must be a non-empty string of at most 255 characters, got 256 characters.",
        ),
    ],
)
def test_options_that_do_not_go_together_are_refused(args: list[str], error: str) -> None:
    out, err, code = run(*args, JOBS=JOBS)
    assert (out, err, code) == ("", error, 1)


# --list reads the versions of the schedules from the database.
@pytest.mark.django_db
def test_a_disabled_job_lists_no_next_times() -> None:
    out, _, code = run("--list", JOBS={"old": {**JOBS["old"], "at": "2999-01-01T00:00:00Z"}})
    assert code == 0
    assert "2999" not in out.split("\n", 2)[2]


def test_negative_count_is_refused() -> None:
    _, err, code = run("--list", "--count", "-1", JOBS=JOBS)
    assert code == 1
    assert "--count" in err


@pytest.mark.parametrize("alias", ["local"])
def test_refuses_a_cache_that_cannot_coordinate(alias: str) -> None:
    _, err, code = run(CACHE=alias, JOBS=JOBS)
    assert code == 1
    assert "django_oncejob.E004" in err


def test_list_into_a_reader_that_stops_early_ends_quietly() -> None:
    """``runjobs --list | head``: no BrokenPipeError traceback when head has read enough."""
    jobs = {f"job-{n}": {"func": "tests.jobs.record", "cron": "* * * * *"} for n in range(50)}
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["ONCEJOB_TEST_JOBS"] = json.dumps(jobs)
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "runjobs", "--list", "--count", "2000"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    # 50 lines of 2,000 times each: far more than a pipe holds, so the writer is still
    # writing when the reader goes.
    assert process.stdout.readline().startswith(b"job-0: ")
    process.stdout.close()
    try:
        stderr = process.stderr.read().decode()
        code = process.wait(timeout=60)
    finally:
        process.kill()
    assert "Traceback" not in stderr, stderr
    assert code == 0
