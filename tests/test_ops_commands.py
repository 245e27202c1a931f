"""``manage.py oncejob_health`` and ``manage.py oncejob_prune``."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_oncejob.models import Instance, JobState, Run, RunRequest
from tests.processes import ROOT, Fleet

pytestmark = pytest.mark.django_db

JOBS = {
    "report": {"func": "tests.jobs.record", "cron": "0 21 * * *"},
    "sync": {"func": "tests.jobs.record", "interval": {"minutes": 5}},
    "old": {"func": "tests.jobs.record", "at": "2001-01-01T00:00:00Z", "enabled": False},
}


def run(command: str, *args: str) -> tuple[str, str, int]:
    """Run a command in this process: (stdout, stderr or the error, exit code)."""
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), str(exc), exc.returncode
    return out.getvalue(), err.getvalue(), 0


@pytest.fixture(autouse=True)
def jobs(settings: Any) -> dict[str, Any]:
    settings.ONCEJOB = {"JOBS": JOBS}
    return JOBS


def instance(
    owner: str = "web-1:41", *, silent: float = 1, host: str = "web-1", **fields: Any
) -> Instance:
    beat = timezone.now() - timedelta(seconds=silent)
    return Instance.objects.create(
        owner=owner,
        host=host,
        pid=41,
        version="0.1.0",
        started_at=beat,
        heartbeat_at=beat,
        **fields,
    )


def claim(job: str, status: str, ago: timedelta, **fields: Any) -> Run:
    when = timezone.now() - ago
    return Run.objects.create(
        job=job,
        scheduled_for=when,
        owner=fields.pop("owner", "web-1:41"),
        status=status,
        claimed_at=when,
        started_at=when,
        finished_at=None if status == "running" else when + timedelta(seconds=1),
        **fields,
    )


# oncejob_health -------------------------------------------------------------------


def test_healthy() -> None:
    instance()
    claim("report", "succeeded", timedelta(hours=1))
    claim("sync", "failed", timedelta(minutes=10))
    claim("sync", "succeeded", timedelta(minutes=5))
    claim("sync", "missed", timedelta(hours=2))  # older than --since

    out, err, code = run("oncejob_health")

    assert (code, err) == (0, "")
    assert out == (
        "Healthy: 1 instance alive; no job's last run failed; no occurrence missed in the "
        "last 3600 s.\n"
    )


def test_no_instance_alive() -> None:
    instance("web-1:1", silent=61)
    instance("web-2:2", stopped_at=timezone.now())

    out, err, code = run("oncejob_health")

    assert (out, code) == ("", 1)
    assert err == "No runjobs instance is alive: none sent a heartbeat in the last 60 s."


def test_last_run_failed() -> None:
    instance()
    claim("sync", "succeeded", timedelta(minutes=10))
    claim("sync", "failed", timedelta(minutes=5), error="RuntimeError: the job broke\nmore")
    claim("sync", "paused", timedelta(minutes=1))  # not a run: the failure stands
    claim("sync", "running", timedelta(seconds=10))  # not ended: the failure stands

    _, err, code = run("oncejob_health")

    assert code == 1
    assert err.startswith("The last run of job 'sync' failed at ")
    assert err.endswith(" on web-1:41: RuntimeError: the job broke")
    assert "\n" not in err


def test_a_later_success_clears_a_failure_and_abandoned_counts_as_failed() -> None:
    instance()
    claim("sync", "failed", timedelta(minutes=10))
    claim("sync", "succeeded", timedelta(minutes=5))
    claim("report", "abandoned", timedelta(minutes=3))
    claim("old", "failed", timedelta(minutes=3))  # disabled: not looked at

    _, err, code = run("oncejob_health")

    assert code == 1
    assert err.startswith("The last run of job 'report' was abandoned at ")


def test_several_problems_on_one_line() -> None:
    claim("report", "failed", timedelta(minutes=10))
    claim("sync", "failed", timedelta(minutes=10))
    claim("sync", "missed", timedelta(minutes=20))
    claim("report", "missed", timedelta(minutes=30))
    claim("report", "missed", timedelta(minutes=40))

    _, err, code = run("oncejob_health")

    assert code == 1
    assert err.count("; ") == 2
    assert ".;" not in err
    assert "\n" not in err
    assert err.startswith("No runjobs instance is alive")
    assert "(and the last runs of 'sync' failed too)" in err
    assert err.endswith("3 occurrences were missed in the last 3600 s: 'report' (2), 'sync' (1)")


def test_missed_within_since() -> None:
    instance()
    claim("sync", "missed", timedelta(minutes=20))

    assert run("oncejob_health", "--since", "600")[2] == 0
    _, err, code = run("oncejob_health", "--since", "1800")
    assert code == 1
    assert err == "1 occurrence was missed in the last 1800 s: 'sync' (1)"


@pytest.mark.parametrize(
    ("checks", "code"),
    [
        ("instances", 1),
        ("failures", 1),
        ("missed", 1),
        ("missed,failures", 1),
    ],
)
def test_check_chooses_what_counts(checks: str, code: int) -> None:
    # Each problem alone, so each check is seen to catch its own.
    problem = {
        "instances": lambda: None,
        "failures": lambda: claim("sync", "failed", timedelta(minutes=1)),
        "missed": lambda: claim("sync", "missed", timedelta(minutes=1)),
    }
    for name in checks.split(","):
        problem[name]()
    others = ",".join(n for n in problem if n not in checks.split(","))
    if "instances" not in checks:
        instance()
    assert run("oncejob_health", "--check", checks)[2] == code
    if others:
        assert run("oncejob_health", "--check", others)[2] == 0


def test_check_rejects_unknown_names() -> None:
    with pytest.raises(CommandError, match="choose one or more of instances, failures, missed"):
        call_command("oncejob_health", "--check", "instances,disk")


def test_instance_by_owner() -> None:
    instance("web-1:41")
    instance("web-2:77", silent=120)
    claim("sync", "failed", timedelta(minutes=1))  # not checked with --instance alone

    assert run("oncejob_health", "--instance", "web-1:41") == (
        "Healthy: instance 'web-1:41' alive.\n",
        "",
        0,
    )
    _, err, code = run("oncejob_health", "--instance", "web-2:77")
    assert code == 1
    assert err == (
        "The runjobs instance 'web-2:77' is not alive: it sent no heartbeat in the last 60 s, "
        "or stopped."
    )
    assert run("oncejob_health", "--instance", "web-1:41", "--check", "instances,failures")[2] == 1


def test_instance_from_the_owner_setting(settings: Any) -> None:
    settings.ONCEJOB = {"JOBS": JOBS, "OWNER": "pod-7"}
    instance("pod-6")
    assert run("oncejob_health", "--instance")[2] == 1
    instance("pod-7")
    assert run("oncejob_health", "--instance")[0] == "Healthy: instance 'pod-7' alive.\n"


def test_instance_on_this_host_without_an_owner_setting() -> None:
    instance("elsewhere:1", host="elsewhere")
    _, err, code = run("oncejob_health", "--instance")
    assert code == 1
    assert f"instance on host {socket.gethostname()!r} is not alive" in err
    instance(f"{socket.gethostname()}:99", host=socket.gethostname())
    assert run("oncejob_health", "--instance")[2] == 0


def test_invalid_settings_are_one_line(settings: Any) -> None:
    settings.ONCEJOB = {"JOBS": {"x": {"func": "tests.jobs.record", "cron": "61 * * * *"}}}
    assert run("oncejob_health") == (
        "",
        "ONCEJOB has 1 error(s), so runjobs cannot start: run manage.py check to see them.",
        1,
    )


def test_a_database_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("connection refused\n\tIs the server running?")

    monkeypatch.setattr("django.db.models.query.QuerySet.count", fail)
    assert run("oncejob_health", "--check", "instances") == (
        "",
        "The database did not answer: connection refused",
        1,
    )


def test_health_runs_few_queries_however_many_jobs_and_rows(settings: Any) -> None:
    def queries(count: int, rows: int) -> int:
        Run.objects.all().delete()
        jobs = {
            f"job-{i}": {"func": "tests.jobs.record", "cron": "0 * * * *"} for i in range(count)
        }
        settings.ONCEJOB = {"JOBS": jobs}
        now = timezone.now()
        Run.objects.bulk_create(
            Run(
                job=f"job-{i % count}",
                scheduled_for=now - timedelta(minutes=i),
                owner="w",
                status="succeeded",
                claimed_at=now,
            )
            for i in range(rows)
        )
        with CaptureQueriesContext(connection) as captured:
            assert run("oncejob_health")[2] == 0
        return len(captured)

    instance()
    assert queries(3, 10) == queries(30, 1000) == 3


@pytest.mark.processes
def test_exit_status_from_the_command_line(fleet: Callable[..., Fleet]) -> None:
    """As a probe runs it: a process whose exit status and output are the verdict."""
    instances = fleet({"report": {"func": "tests.jobs.record", "cron": "0 3 1 1 *"}})
    env = instances.env()

    def health(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", "oncejob_health", "--check", "instances", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    down = health()
    assert down.returncode == 1
    assert down.stderr.strip().splitlines() == [
        "CommandError: No runjobs instance is alive: none sent a heartbeat in the last 60 s."
    ]
    instances.start()
    up = health()
    assert (up.returncode, up.stdout) == (0, "Healthy: 1 instance alive.\n")
    assert instances.stop() == [0]


# oncejob_prune --------------------------------------------------------------------


def old_history() -> dict[str, list[int]]:
    """Rows on both sides of 30 days ago; returns the ids that must survive a 30-day prune."""
    keep: dict[str, list[int]] = {"claims": [], "requests": [], "instances": []}
    for days, status in [(40, "succeeded"), (35, "failed"), (31, "missed"), (31, "paused")]:
        claim("sync", status, timedelta(days=days))
    keep["claims"].append(claim("sync", "running", timedelta(days=45)).pk)  # never deleted
    keep["claims"].append(claim("sync", "succeeded", timedelta(days=29)).pk)
    keep["claims"].append(claim("report", "failed", timedelta(hours=1)).pk)
    now = timezone.now()
    for days in (31, 40):
        asked = now - timedelta(days=days)
        RunRequest.objects.create(
            job="sync", requested_by="a", requested_at=asked, taken_by="web-1:1", taken_at=asked
        )
    keep["requests"].append(
        RunRequest.objects.create(
            job="sync", requested_by="a", requested_at=now - timedelta(days=2)
        ).pk
    )
    instance("gone-stopped:1", stopped_at=now - timedelta(days=31))
    instance("gone-silent:1", silent=86400 * 33)
    keep["instances"].append(instance("stopped-lately:1", stopped_at=now - timedelta(days=3)).pk)
    keep["instances"].append(instance("alive:1").pk)
    JobState.objects.create(job="sync", paused=True)
    return keep


def survivors() -> dict[str, list[int]]:
    return {
        "claims": sorted(Run.objects.values_list("pk", flat=True)),
        "requests": sorted(RunRequest.objects.values_list("pk", flat=True)),
        "instances": sorted(Instance.objects.values_list("pk", flat=True)),
    }


def test_prune_deletes_what_is_older_than_the_days_in_batches() -> None:
    keep = old_history()

    with CaptureQueriesContext(connection) as captured:
        out, err, code = run("oncejob_prune", "--days", "30", "--batch-size", "2", "-v", "2")

    assert (err, code) == ("", 0)
    assert out.splitlines()[-1].startswith(
        "Deleted 4 runs, 2 run requests and 2 instances from before "
    )
    assert out.splitlines()[-1].endswith(" (30 days ago).")
    assert out.count("Deleted 2 runs (up to id") == 2
    assert survivors() == {key: sorted(ids) for key, ids in keep.items()}
    assert JobState.objects.count() == 1
    deletes = [q["sql"] for q in captured if q["sql"].startswith("DELETE")]
    # Two batches of runs, each with their failed attempts; one batch of each other.
    assert len(deletes) == 2 * 2 + 1 + 1
    assert all(" IN (" in sql for sql in deletes)


def test_prune_defaults_to_the_retention_setting(settings: Any) -> None:
    keep = old_history()
    settings.ONCEJOB = {"JOBS": JOBS, "RETENTION_DAYS": 30}
    out, _, code = run("oncejob_prune")
    assert code == 0
    assert out.startswith("Deleted 4 runs, 2 run requests and 2 instances")
    assert survivors() == {key: sorted(ids) for key, ids in keep.items()}
    # --days wins over the setting.
    out, _, _ = run("oncejob_prune", "--days", "1")
    assert out.startswith("Deleted 1 run, 1 run request and 1 instance")


def test_prune_dry_run_deletes_nothing() -> None:
    old_history()
    before = survivors()
    out, _, code = run("oncejob_prune", "--days", "30", "--dry-run")
    assert code == 0
    assert out.startswith("Would delete 4 runs, 2 run requests and 2 instances from before ")
    assert survivors() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Say how many days of history to keep: give --days N, or set"),
        (("--days", "0"), "--days must be 1 or more, got 0."),
        (("--days", "30", "--batch-size", "0"), "--batch-size must be 1 or more, got 0."),
    ],
)
def test_prune_refuses_without_a_number_of_days(args: tuple[str, ...], message: str) -> None:
    old_history()
    before = survivors()
    _, err, code = run("oncejob_prune", *args)
    assert code == 1
    assert err.startswith(message)
    assert survivors() == before


def test_prune_keeps_claims_that_may_still_fence_an_occurrence(settings: Any) -> None:
    settings.ONCEJOB = {"JOBS": JOBS, "CLAIM_TIMEOUT": 3 * 86400}
    _, err, code = run("oncejob_prune", "--days", "2")
    assert code == 1
    assert "would delete runs younger than ONCEJOB['CLAIM_TIMEOUT'] (259200 s)" in err
    assert run("oncejob_prune", "--days", "3")[2] == 0
