from __future__ import annotations

from io import StringIO
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


def test_list_prints_each_job_its_trigger_and_next_times() -> None:
    out, _, code = run("--list", "--count", "2", JOBS=JOBS, TIMEZONE="Asia/Shanghai")

    assert code == 0
    assert "nightly-report: every day at 21:00 (Asia/Shanghai)" in out
    assert "    runs tests.jobs.record" in out
    assert "21:00:00+08:00, " in out
    assert "sync: every 30 seconds from 2000-01-01 00:00:00+08:00" in out
    assert "launch: once at 2999-12-01 09:00:00+08:00" in out
    assert "    next: 2999-12-01 09:00:00+08:00\n" in out
    assert "old (disabled): once at 2001-01-01 00:00:00+00:00" in out
    assert "    next: never" in out


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


def test_negative_count_is_refused() -> None:
    _, err, code = run("--list", "--count", "-1", JOBS=JOBS)
    assert code == 1
    assert "--count" in err


@pytest.mark.parametrize("alias", ["local"])
def test_refuses_a_cache_that_cannot_coordinate(alias: str) -> None:
    _, err, code = run(CACHE=alias, JOBS=JOBS)
    assert code == 1
    assert "django_oncejob.E004" in err
