from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_oncejob.admin.base import ago, until
from django_oncejob.models import Backfill, Instance, JobState, Run, RunRequest
from tests.processes import Fleet, wait_for

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)

JOBS = {
    "nightly-report": {
        "func": "tests.jobs.record",
        "cron": "30 2 * * *",
        "timezone": "Europe/Paris",
        "description": "Mails the report.",
    },
    "sync": {"func": "tests.jobs.fail", "interval": {"minutes": 5}},
    "old-import": {"func": "tests.jobs.record", "at": "2001-01-01T00:00:00Z", "enabled": False},
}

OVERVIEW = "admin:django_oncejob_jobstate_changelist"
HISTORY = "admin:django_oncejob_run_changelist"


@pytest.fixture
def jobs(settings: Any) -> dict[str, Any]:
    settings.ONCEJOB = {"JOBS": JOBS}
    return JOBS


@pytest.fixture
def live() -> Instance:
    now = timezone.now()
    return Instance.objects.create(
        owner="web-1:41", host="web-1", pid=41, version="0.1.0", started_at=now, heartbeat_at=now
    )


@pytest.fixture
def claims() -> list[Run]:
    ok = Run.objects.create(
        job="nightly-report",
        scheduled_for=WHEN,
        owner="web-1:41",
        status=Run.Status.SUCCEEDED,
        claimed_at=WHEN + timedelta(milliseconds=2),
        started_at=WHEN + timedelta(milliseconds=5),
        finished_at=WHEN + timedelta(seconds=2, milliseconds=5),
    )
    failed = Run.objects.create(
        job="sync",
        scheduled_for=WHEN,
        owner="web-2:77",
        status=Run.Status.FAILED,
        claimed_at=WHEN,
        started_at=WHEN + timedelta(milliseconds=12),
        finished_at=WHEN + timedelta(milliseconds=40),
        error="RuntimeError: the job broke",
        traceback='Traceback (most recent call last):\n  raise RuntimeError("the job broke")',
    )
    return [ok, failed]


def claim(job: str, status: str, minutes_ago: float, **fields: Any) -> Run:
    when = timezone.now() - timedelta(minutes=minutes_ago)
    return Run.objects.create(
        job=job,
        scheduled_for=when,
        owner=fields.pop("owner", "web-1:41"),
        status=status,
        claimed_at=when,
        started_at=None if status == "missed" else when + timedelta(milliseconds=250),
        finished_at=None if status == "running" else when + timedelta(seconds=3),
        **fields,
    )


def staff_client(django_user_model: Any, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username="staff", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_oncejob", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def notes(response: HttpResponse) -> list[str]:
    """The messages this response's request added (the storage also holds older ones)."""
    storage = get_messages(response.wsgi_request)  # type: ignore[attr-defined]
    return [str(message) for message in storage._queued_messages]


# The history ------------------------------------------------------------------


def test_history_list_shows_duration_and_lateness(admin_client: Client, claims: list[Run]) -> None:
    response = admin_client.get(reverse(HISTORY))

    assert response.status_code == 200
    content = response.content.decode()
    assert "nightly-report" in content
    assert "web-2:77" in content
    assert "2.000 s" in content  # duration
    assert "0.005 s" in content  # lateness
    assert "2026-11-26 21:00:00" in content  # to the second


def test_history_list_filters_by_status_and_job(admin_client: Client, claims: list[Run]) -> None:
    url = reverse(HISTORY)
    response = admin_client.get(url, {"status__exact": "failed"})
    assert list(response.context["cl"].result_list) == [claims[1]]
    response = admin_client.get(url, {"job": "nightly-report"})
    assert list(response.context["cl"].result_list) == [claims[0]]
    response = admin_client.get(url, {"q": "web-1"})
    assert list(response.context["cl"].result_list) == [claims[0]]


def test_history_filters_missed_and_manual_rows(admin_client: Client, jobs: dict[str, Any]) -> None:
    missed = claim("sync", "missed", 10, error="Missed: no instance ran it.")
    manual = claim("sync", "succeeded", 5, manual=True, requested_by="alice")
    claim("sync", "succeeded", 1)
    url = reverse(HISTORY)

    response = admin_client.get(url, {"status__exact": "missed"})
    assert list(response.context["cl"].result_list) == [missed]
    response = admin_client.get(url, {"started_by": "manual"})
    assert list(response.context["cl"].result_list) == [manual]
    # The overview's failure links ask for two statuses at once.
    response = admin_client.get(url, {"job": "sync", "status__in": "missed,failed"})
    assert list(response.context["cl"].result_list) == [missed]

    content = admin_client.get(url).content.decode()
    assert "manual, by alice" in content
    # The job filter offers the jobs from settings.
    assert '?job=old-import"' in content
    assert '?status__exact=missed"' in content


def test_status_is_shown_with_a_symbol_and_words_not_colour_alone(
    admin_client: Client, claims: list[Run]
) -> None:
    content = admin_client.get(reverse(HISTORY)).content.decode()

    assert (
        '<span class="oncejob-badge oncejob-failed"><span aria-hidden="true">✗</span> failed</span>'
        in content
    )
    assert (
        '<span class="oncejob-badge oncejob-succeeded"><span aria-hidden="true">✓</span> '
        "succeeded</span>" in content
    )
    assert ".oncejob-failed { background: #b71c1c; }" in content


def test_history_is_read_only(admin_client: Client, claims: list[Run]) -> None:
    assert admin_client.get(reverse("admin:django_oncejob_run_add")).status_code == 403

    url = reverse("admin:django_oncejob_run_change", args=[claims[1].pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "RuntimeError: the job broke" in content
    assert 'name="status"' not in content
    admin_client.post(url, {"status": "succeeded"})
    claims[1].refresh_from_db()
    assert claims[1].status == Run.Status.FAILED
    delete = reverse("admin:django_oncejob_run_delete", args=[claims[1].pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Run.objects.count() == 2


def test_a_missed_run_shows_nobody_claimed_or_started_it(admin_client: Client) -> None:
    row = claim("sync", "missed", 10, owner="web-2:9", error="Missed: no instance ran it.")

    content = admin_client.get(reverse("admin:django_oncejob_run_change", args=[row.pk]))
    page = content.content.decode()
    assert "none (noticed by web-2:9)" in page
    history = admin.site._registry[Run]
    assert (history.claimed(row), history.attempts_label(row)) == ("–", "–")
    listing = admin_client.get(reverse(HISTORY)).content.decode()
    assert "none (noticed by web-2:9)" in listing


def test_error_detail_shows_the_traceback_escaped_in_pre(admin_client: Client) -> None:
    row = claim(
        "sync",
        "failed",
        3,
        error="ValueError: <b>bad</b> input",
        traceback=(
            'Traceback (most recent call last):\n  File "x.py", line 1\n<script>alert(1)</script>'
        ),
    )

    response = admin_client.get(reverse("admin:django_oncejob_run_change", args=[row.pk]))

    content = response.content.decode()
    assert '<pre class="oncejob-pre">ValueError: &lt;b&gt;bad&lt;/b&gt; input</pre>' in content
    assert (
        '<pre class="oncejob-pre oncejob-traceback">Traceback (most recent call last):\n'
        "  File &quot;x.py&quot;, line 1\n&lt;script&gt;alert(1)&lt;/script&gt;</pre>"
    ) in content
    assert "<script>alert(1)" not in content
    assert f"{reverse(HISTORY)}?job=sync" in content  # back to the job's history


def test_history_list_queries_do_not_grow_with_rows(admin_client: Client) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse(HISTORY)).status_code == 200
        return len(captured)

    # Rows of one month, its first and last day among them from the start: the date
    # hierarchy probes each day between the history's ends, however many rows it holds.
    first, last = datetime(2026, 10, 1, 8, tzinfo=UTC), datetime(2026, 10, 31, 20, tzinfo=UTC)
    for when in (first, last):
        Run.objects.create(
            job="sync", scheduled_for=when, owner="web-1:41", status="failed", claimed_at=when
        )
    few = queries()
    Run.objects.bulk_create(
        Run(
            job="sync",
            scheduled_for=first + timedelta(minutes=17 * step),
            owner="web-1:41",
            status="succeeded",
            claimed_at=first,
            manual=True,
            requested_by="bob",
        )
        for step in range(1, 2500)
    )
    assert queries() == few


# The jobs overview -------------------------------------------------------------


def test_jobs_overview_lists_every_job_from_settings(
    admin_client: Client, jobs: dict[str, Any], live: Instance
) -> None:
    JobState.objects.create(job="sync", paused=True, changed_at=timezone.now(), changed_by="alice")
    for minutes_ago in (1, 6, 11):
        claim("sync", "failed", minutes_ago, error="RuntimeError: the job broke")
    claim("sync", "succeeded", 16)
    claim("sync", "missed", 21)
    claim("sync", "succeeded", 60 * 25)  # older than the 24 hours counted
    claim("nightly-report", "succeeded", 600, owner="web-2:77", manual=True, requested_by="bob")
    claim("nightly-report", "paused", 300)  # not a run

    response = admin_client.get(reverse(OVERVIEW))

    assert response.status_code == 200
    assert response.context["title"] == "Jobs"
    rows = {row.spec.id: row for row in response.context["rows"]}
    assert list(rows) == ["nightly-report", "sync", "old-import"]
    report, sync, old = rows.values()
    assert report.spec.trigger_text == "every day at 02:30 (Europe/Paris)"
    assert [t.strftime("%H:%M %Z") for t in report.next_times] == ["02:30 CET"] * 3
    assert old.next_times == []
    assert (sync.paused, report.paused, old.paused) == (True, False, False)
    assert report.last is not None and report.last.status == "succeeded"
    assert report.last.owner == "web-2:77"
    assert sync.last is not None and sync.last.status == "failed"
    assert (sync.counts.succeeded, sync.counts.failed, sync.counts.missed) == (1, 3, 1)
    assert old.last is None

    content = response.content.decode()
    assert "Mails the report." in content
    assert "Europe/Paris" in content
    assert "every 5 minutes<" in content
    assert '<span aria-hidden="true">⊘</span> disabled</span>' in content
    assert '<span aria-hidden="true">‖</span> paused</span>' in content
    assert "changed by alice" in content
    assert "manual, by bob" in content
    assert "2.750 s · web-2:77" in content
    assert "1 instance alive" in content
    # Links to the job's page, and to its runs: succeeded, failed and missed.
    history = reverse(HISTORY)
    assert f'href="{job_url("sync")}"' in content
    assert f'href="{history}?job=sync&amp;status__exact=succeeded"' in content
    assert f'href="{history}?job=sync&amp;status__in=failed,abandoned"' in content
    assert f'href="{history}?job=sync&amp;status__exact=missed"' in content
    # No run-now button for the disabled job, and no pause button for it either.
    assert "Run old-import now" not in content
    assert "Pause old-import" not in content
    assert 'aria-label="Resume sync"' in content
    assert 'aria-label="Pause nightly-report"' in content


def test_jobs_overview_says_when_no_instance_is_alive(
    admin_client: Client, jobs: dict[str, Any]
) -> None:
    gone = timezone.now() - timedelta(minutes=5)
    Instance.objects.create(
        owner="web-1:1", host="web-1", pid=1, version="0", started_at=gone, heartbeat_at=gone
    )
    content = admin_client.get(reverse(OVERVIEW)).content.decode()
    assert "No runjobs instance is alive" in content


def test_jobs_overview_reports_invalid_jobs(admin_client: Client, settings: Any) -> None:
    settings.ONCEJOB = {"JOBS": {**JOBS, "broken": {"func": "tests.jobs.record", "cron": "61"}}}
    response = admin_client.get(reverse(OVERVIEW))
    assert [row.spec.id for row in response.context["rows"]] == list(JOBS)
    assert "ONCEJOB has 1 error" in response.content.decode()


def test_jobs_overview_with_no_jobs(admin_client: Client, settings: Any) -> None:
    settings.ONCEJOB = {}
    content = admin_client.get(reverse(OVERVIEW)).content.decode()
    assert "There are no jobs in ONCEJOB['JOBS']." in content


def test_jobs_overview_is_in_the_admin_index_as_jobs(admin_client: Client) -> None:
    content = admin_client.get(reverse("admin:index")).content.decode()
    assert f'<a href="{reverse(OVERVIEW)}">Jobs</a>' in content


def many_jobs(count: int) -> dict[str, Any]:
    return {
        f"job-{i}": {
            "func": "tests.jobs.record",
            "cron": f"{i % 60} * * * *",
            "enabled": i % 7 != 3,
        }
        for i in range(count)
    }


def history(jobs: dict[str, Any], rows: int) -> None:
    now = timezone.now()
    statuses = ["succeeded", "failed", "missed", "paused", "running"]
    Run.objects.bulk_create(
        Run(
            job=list(jobs)[i % len(jobs)],
            scheduled_for=now - timedelta(minutes=i),
            owner=f"web-{i % 3}:1",
            status=statuses[i % len(statuses)],
            claimed_at=now,
            started_at=now,
            finished_at=now,
        )
        for i in range(rows)
    )


def test_jobs_overview_shows_a_page_of_jobs_at_a_time_and_searches_them(
    admin_client: Client, settings: Any
) -> None:
    settings.ONCEJOB = {
        "JOBS": {
            f"job-{n:03d}": {
                "func": "tests.jobs.record",
                "cron": "0 3 * * *",
                "description": "Sends the invoices." if n == 7 else "",
            }
            for n in range(250)
        }
    }
    first = admin_client.get(reverse(OVERVIEW))
    last = admin_client.get(reverse(OVERVIEW), {"p": 3})
    invoices = admin_client.get(reverse(OVERVIEW), {"q": "INVOICES"})
    by_id = admin_client.get(reverse(OVERVIEW), {"q": "job-24"})
    nothing = admin_client.get(reverse(OVERVIEW), {"q": "nope"})

    assert [row.spec.id for row in first.context["rows"]][:2] == ["job-000", "job-001"]
    assert len(first.context["rows"]) == 100
    assert [row.spec.id for row in last.context["rows"]][-1] == "job-249"
    assert len(last.context["rows"]) == 50
    assert "250 jobs" in first.content.decode()
    assert 'href="?p=3"' in first.content.decode()
    assert [row.spec.id for row in invoices.context["rows"]] == ["job-007"]
    assert "1 job found" in invoices.content.decode()
    assert len(by_id.context["rows"]) == 10
    assert "No job matches “nope”." in nothing.content.decode()


def test_jobs_overview_queries_do_not_grow_with_jobs_or_history(
    admin_client: Client, settings: Any, live: Instance
) -> None:
    def queries(count: int, rows: int) -> int:
        Run.objects.all().delete()
        JobState.objects.all().delete()
        jobs = many_jobs(count)
        settings.ONCEJOB = {"JOBS": jobs}
        history(jobs, rows)
        JobState.objects.bulk_create(JobState(job=job, paused=True) for job in list(jobs)[::2])
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(reverse(OVERVIEW))
        assert response.status_code == 200
        assert len(response.context["rows"]) == count
        return len(captured)

    three_jobs = queries(3, 10)
    assert queries(30, 10) == three_jobs
    assert queries(3, 1000) == three_jobs
    assert queries(30, 1000) == three_jobs


def test_last_runs_are_the_newest_run_of_each_job_on_any_database(
    admin_client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = many_jobs(5)
    settings.ONCEJOB = {"JOBS": jobs}
    history(jobs, 200)
    newest = {
        job: Run.objects.filter(job=job, status__in=["succeeded", "failed", "running"])
        .order_by("-scheduled_for")
        .first()
        for job in jobs
    }

    def last_runs() -> dict[str, Any]:
        rows = admin_client.get(reverse(OVERVIEW)).context["rows"]
        return {row.spec.id: row.last for row in rows}

    first = last_runs()
    # Off PostgreSQL: a UNION of one "LIMIT 1" per job, and, for databases that cannot
    # take that, the portable window-function query. All give the same rows.
    monkeypatch.setattr(connection, "vendor", "other")
    union = last_runs()
    monkeypatch.setattr(connection.features, "supports_slicing_ordering_in_compound", False)
    window = last_runs()
    assert first == union == window == newest


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's stack depth")
def test_last_runs_of_ten_thousand_jobs_in_one_query() -> None:
    jobs = [f"job-{i}" for i in range(10_000)]
    now = timezone.now()
    Run.objects.bulk_create(
        Run(
            job=job,
            scheduled_for=now - timedelta(minutes=m),
            owner="w",
            status=status,
            claimed_at=now,
        )
        for job in jobs
        for m, status in ((1, "paused"), (2, "succeeded"), (3, "failed"))
    )
    with CaptureQueriesContext(connection) as captured:
        latest = Run.objects.latest_per_job(jobs)
    assert len(captured) == 1
    assert {row.status for row in latest.values()} == {"succeeded"}
    assert sorted(latest) == sorted(jobs)


# Run now -----------------------------------------------------------------------


def run_url(job: str) -> str:
    return reverse("admin:django_oncejob_jobstate_run", args=[job])


def test_run_now_asks_a_live_instance_to_run_the_job(
    admin_client: Client, jobs: dict[str, Any], live: Instance, admin_user: Any
) -> None:
    response = admin_client.post(run_url("nightly-report"))

    assert response.status_code == 302
    assert response["Location"] == reverse(OVERVIEW)
    request = RunRequest.objects.get()
    assert (request.job, request.requested_by, request.taken_at) == (
        "nightly-report",
        admin_user.username,
        None,
    )
    assert "will run once, on one live instance" in notes(response)[0]
    # A second press while the first request waits asks for nothing more.
    response = admin_client.post(run_url("nightly-report"))
    assert "already waiting to run" in notes(response)[0]
    assert RunRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_double_click_on_run_now_asks_for_one_run(
    jobs: dict[str, Any], live: Instance, admin_user: Any
) -> None:
    """Both presses in flight at once: the database's constraint lets one request in."""

    def press(barrier: threading.Barrier, codes: list[int]) -> None:
        client = Client()
        client.force_login(admin_user)
        try:
            barrier.wait(timeout=10)
            codes.append(client.post(run_url("nightly-report")).status_code)
        finally:
            connection.close()

    for _ in range(20):
        RunRequest.objects.all().delete()
        barrier, codes = threading.Barrier(2), []
        threads = [threading.Thread(target=press, args=(barrier, codes)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert codes == [302, 302]
        assert RunRequest.objects.count() == 1


def test_run_now_needs_the_run_job_permission(
    django_user_model: Any, jobs: dict[str, Any], live: Instance
) -> None:
    client = staff_client(django_user_model, "view_jobstate", "pause_job")
    assert client.post(run_url("nightly-report")).status_code == 403
    assert RunRequest.objects.count() == 0
    assert "Run nightly-report now" not in client.get(reverse(OVERVIEW)).content.decode()


def test_run_now_with_the_permission_alone(
    django_user_model: Any, jobs: dict[str, Any], live: Instance
) -> None:
    client = staff_client(django_user_model, "run_job")
    content = client.get(reverse(OVERVIEW)).content.decode()
    assert "Run nightly-report now" in content
    assert "Pause nightly-report" not in content

    assert client.post(run_url("nightly-report")).status_code == 302
    assert RunRequest.objects.get().requested_by == "staff"


def test_staff_without_any_permission_cannot_see_the_jobs(
    django_user_model: Any, jobs: dict[str, Any]
) -> None:
    client = staff_client(django_user_model)
    assert client.get(reverse(OVERVIEW)).status_code == 403


def test_run_now_only_by_post_with_csrf(
    admin_user: Any, jobs: dict[str, Any], live: Instance
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.get(run_url("nightly-report")).status_code == 405
    assert client.post(run_url("nightly-report")).status_code == 403
    assert RunRequest.objects.count() == 0

    page = client.get(reverse(OVERVIEW))
    token = page.context["csrf_token"]
    assert client.post(run_url("nightly-report"), {"csrfmiddlewaretoken": token}).status_code == 302
    assert RunRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ("nope", "There is no valid job “nope” in ONCEJOB['JOBS']"),
        ("tests.jobs.record", "There is no valid job “tests.jobs.record”"),
        ("old-import", "Job “old-import” is disabled in settings"),
    ],
)
def test_run_now_takes_only_enabled_jobs_from_settings(
    admin_client: Client, jobs: dict[str, Any], live: Instance, job: str, message: str
) -> None:
    response = admin_client.post(run_url(job))
    assert response.status_code == 302
    assert message in notes(response)[0]
    assert RunRequest.objects.count() == 0


def test_run_now_without_a_live_instance_asks_for_nothing(
    admin_client: Client, jobs: dict[str, Any]
) -> None:
    silent = timezone.now() - timedelta(seconds=61)
    Instance.objects.create(
        owner="web-1:1", host="web-1", pid=1, version="0", started_at=silent, heartbeat_at=silent
    )
    Instance.objects.create(
        owner="web-2:1",
        host="web-2",
        pid=1,
        version="0",
        started_at=silent,
        heartbeat_at=timezone.now(),
        stopped_at=timezone.now(),
    )

    response = admin_client.post(run_url("nightly-report"))

    assert notes(response) == [
        "No runjobs instance is alive (none sent a heartbeat in the last 60 seconds), so "
        "nothing would take the request: job “nightly-report” was not asked to run. Start "
        "manage.py runjobs and try again."
    ]
    assert RunRequest.objects.count() == 0


# Pause and resume --------------------------------------------------------------


def pause_url(job: str, action: str = "pause") -> str:
    return reverse(f"admin:django_oncejob_jobstate_{action}", args=[job])


def test_pause_and_resume_are_recorded_with_who_and_when(
    admin_client: Client, jobs: dict[str, Any], admin_user: Any
) -> None:
    JobState.objects.create(job="sync", checked_until=WHEN)
    before = timezone.now()

    response = admin_client.post(pause_url("sync"))

    assert response.status_code == 302
    state = JobState.objects.get(job="sync")
    assert (state.paused, state.changed_by, state.checked_until) == (
        True,
        admin_user.username,
        WHEN,
    )
    assert state.changed_at is not None and state.changed_at >= before
    assert "Job “sync” is paused" in notes(response)[0]

    response = admin_client.post(pause_url("sync", "resume"))
    state.refresh_from_db()
    assert state.paused is False
    assert "Job “sync” is resumed" in notes(response)[0]


def test_a_pause_keeps_its_note_and_its_end_and_a_resume_clears_them(
    admin_client: Client, jobs: dict[str, Any]
) -> None:
    until = (timezone.localtime() + timedelta(hours=2)).replace(microsecond=0, tzinfo=None)
    response = admin_client.post(
        pause_url("sync"),
        {"note": "supplier API down until 18:00", "until": until.isoformat(), "back": "job"},
    )
    assert response.status_code == 302
    state = JobState.objects.get(job="sync")
    assert (state.paused, state.note) == (True, "supplier API down until 18:00")
    assert state.paused_until == timezone.make_aware(until)
    assert "It resumes by itself at" in notes(response)[0]
    page = admin_client.get(reverse("admin:django_oncejob_jobstate_change", args=["sync"]))
    assert "supplier API down until 18:00" in page.content.decode()
    assert "resumes by itself in" in page.content.decode()
    entry = LogEntry.objects.get(object_id="sync")
    assert entry.change_message == "Paused: supplier API down until 18:00"

    admin_client.post(pause_url("sync", "resume"))
    state.refresh_from_db()
    assert (state.paused, state.note, state.paused_until) == (False, "", None)


def test_a_pause_until_a_past_time_is_refused(admin_client: Client, jobs: dict[str, Any]) -> None:
    response = admin_client.post(pause_url("sync"), {"until": "2001-01-01T00:00"})
    assert "“Until” must be a time to come" in notes(response)[0]
    assert not JobState.objects.filter(paused=True).exists()


def test_a_backfill_asked_for_in_the_admin_waits_for_an_instance(
    admin_client: Client, jobs: dict[str, Any]
) -> None:
    end = timezone.localtime().replace(minute=0, second=0, microsecond=0, tzinfo=None)
    start = end - timedelta(hours=5)
    url = reverse("admin:django_oncejob_jobstate_backfill", args=["sync"])
    response = admin_client.post(
        url, {"start": start.isoformat(), "end": end.isoformat(), "back": "job"}
    )
    assert response.status_code == 302
    backfill = Backfill.objects.get()
    assert (backfill.job, backfill.taken_by) == ("sync", "")
    assert backfill.start == timezone.make_aware(start)
    assert "will be backfilled" in notes(response)[0]
    page = admin_client.get(reverse("admin:django_oncejob_jobstate_change", args=["sync"]))
    assert "waiting for an instance" in page.content.decode()
    assert LogEntry.objects.get(object_id="sync").change_message.startswith("Backfill from ")

    future = (timezone.localtime() + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    response = admin_client.post(url, {"start": start.isoformat(), "end": future})
    assert "must be in the past" in notes(response)[0]
    response = admin_client.post(url, {"start": end.isoformat(), "end": start.isoformat()})
    assert "must not be before the first" in notes(response)[0]
    assert Backfill.objects.count() == 1


def test_a_job_page_lists_its_policies(admin_client: Client, settings: Any) -> None:
    settings.ONCEJOB = {
        "JOBS": {
            "sync": {
                "func": "tests.jobs.record",
                "cron": "*/5 * * * *",
                "retries": 2,
                "max_runtime": 120,
                "overlap": "buffer_one",
                "catchup": "latest",
                "jitter": 10,
                "pause_after_failures": 3,
            }
        }
    }
    page = admin_client.get(reverse("admin:django_oncejob_jobstate_change", args=["sync"]))
    text = page.content.decode()
    for words in (
        "2, the first 10 s after a failure",
        "120 s, then timed out",
        "buffer one: an occurrence due while a run goes on waits for it",
        "the latest occurrence due while no instance ran",
        "up to 10 s after the scheduled time",
        "3 in a row",
    ):
        assert words in text, words


def test_pause_needs_the_pause_job_permission(django_user_model: Any, jobs: dict[str, Any]) -> None:
    client = staff_client(django_user_model, "view_jobstate", "run_job")
    assert client.post(pause_url("sync")).status_code == 403
    assert client.post(pause_url("sync", "resume")).status_code == 403
    assert JobState.objects.count() == 0
    assert client.get(pause_url("sync")).status_code == 405


def test_pause_with_the_permission_alone(django_user_model: Any, jobs: dict[str, Any]) -> None:
    client = staff_client(django_user_model, "pause_job")
    assert client.post(pause_url("nightly-report")).status_code == 302
    assert JobState.objects.get().paused is True


def test_pause_takes_only_jobs_from_settings(admin_client: Client, jobs: dict[str, Any]) -> None:
    response = admin_client.post(pause_url("nope"))
    assert "There is no valid job “nope”" in notes(response)[0]
    assert JobState.objects.count() == 0


# A job's page and its log --------------------------------------------------------


def job_url(job: str, view: str = "change") -> str:
    return reverse(f"admin:django_oncejob_jobstate_{view}", args=[job])


def test_each_job_has_a_page_with_its_definition_next_runs_and_runs(
    admin_client: Client, settings: Any, live: Instance
) -> None:
    settings.ONCEJOB = {
        "JOBS": {
            "sync": {
                "func": "tests.jobs.record",
                "interval": {"seconds": 7},
                "kwargs": {"full": True},
                "args": [3],
                "lock_timeout": 600,
                "misfire_grace_time": 20,
                "description": "Pulls the orders.",
            }
        }
    }
    claim("sync", "succeeded", 3, result="{'rows': 12}")
    claim("sync", "failed", 8, error="RuntimeError: the job broke")

    response = admin_client.get(job_url("sync"))

    assert response.status_code == 200
    content = response.content.decode()
    definition = dict(response.context["definition"])
    assert definition["Function"] == "tests.jobs.record"
    assert definition["Arguments"] == "[3]"
    assert definition["Keyword arguments"] == "{'full': True}"
    assert definition["Schedule"] == "every 7 seconds"
    assert definition["Misfire grace time"] == "20 s"
    assert definition["Overlap"] == (
        "skip: an occurrence due while a run goes on is skipped (lock held 600 s at most)"
    )
    assert definition["Hand-off"] == "none: it runs in runjobs"
    assert len(response.context["row"].next_times) == 10
    assert "Pulls the orders." in content
    assert "{&#x27;rows&#x27;: 12}" in content
    assert "RuntimeError: the job broke" in content
    assert [run.status for run in response.context["runs"]] == ["succeeded", "failed"]
    assert "Run sync now" in content and "Pause sync" in content
    # Its object id is its job id: /jobstate/sync/ is this page.
    assert admin_client.get("/admin/django_oncejob/jobstate/sync/").url == job_url("sync")
    overview = admin_client.get(reverse(OVERVIEW)).content.decode()
    assert f'<a href="{job_url("sync")}">sync</a>' in overview


def test_the_page_of_a_job_not_in_settings_says_so(
    admin_client: Client, jobs: dict[str, Any]
) -> None:
    response = admin_client.get(job_url("nope"))
    assert response.status_code == 302
    assert response.url == reverse(OVERVIEW)
    assert "There is no valid job “nope” in ONCEJOB['JOBS']" in notes(response)[0]
    assert admin_client.get(job_url("nope", "history")).status_code == 302


def test_run_now_pause_and_resume_are_logged_for_recent_actions(
    admin_client: Client, jobs: dict[str, Any], live: Instance, admin_user: Any
) -> None:
    from django.contrib.admin.models import LogEntry

    response = admin_client.post(run_url("sync"), {"back": "job"})
    assert response.url == job_url("sync")
    admin_client.post(pause_url("sync"), {"back": "job"})
    admin_client.post(pause_url("sync", "resume"))

    entries = LogEntry.objects.order_by("pk")
    assert [(e.object_id, e.change_message, e.user) for e in entries] == [
        ("sync", "Asked for a run now.", admin_user),
        ("sync", "Paused.", admin_user),
        ("sync", "Resumed.", admin_user),
    ]
    assert entries[0].get_admin_url() == job_url("sync")
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert "Asked for a run now." not in index  # the index shows the object, not the message
    assert f'<a href="{job_url("sync")}">sync</a>' in index
    history = admin_client.get(job_url("sync", "history"))
    assert history.status_code == 200
    assert [e.change_message for e in history.context["action_list"]] == [
        "Asked for a run now.",
        "Paused.",
        "Resumed.",
    ]
    # A refused request is not an action.
    admin_client.post(run_url("old-import"))
    assert LogEntry.objects.count() == 3


def test_a_run_links_to_its_job_and_has_no_empty_history_button(
    admin_client: Client, jobs: dict[str, Any], claims: list[Run]
) -> None:
    content = admin_client.get(reverse("admin:django_oncejob_run_change", args=[claims[0].pk]))
    content = content.content.decode()
    assert f'href="{job_url("nightly-report")}"' in content
    assert "Runs of this job" in content
    assert 'class="historylink"' not in content


# Instances ---------------------------------------------------------------------


def test_instances_are_listed_alive_or_gone_with_their_running_jobs(admin_client: Client) -> None:
    now = timezone.now()
    for owner, silent, stopped, clean_stop in [
        ("web-1:1", 2, None, False),
        ("web-2:2", 600, None, False),
        ("web-3:3", 1, now, True),
    ]:
        beat = now - timedelta(seconds=silent)
        Instance.objects.create(
            owner=owner,
            host="h",
            pid=1,
            version="0.1.0",
            started_at=beat,
            heartbeat_at=beat,
            stopped_at=stopped,
            clean_stop=clean_stop,
        )
    for minutes_ago in (1, 2):
        claim("sync", "running", minutes_ago, owner="web-1:1")
    claim("sync", "succeeded", 3, owner="web-1:1")
    claim("sync", "running", 4, owner="web-2:2")
    url = reverse("admin:django_oncejob_instance_changelist")

    response = admin_client.get(url)

    rows = {i.owner: (i.is_alive(60), i.running_count) for i in response.context["cl"].result_list}
    assert rows == {"web-1:1": (True, 2), "web-2:2": (False, 1), "web-3:3": (False, 0)}
    content = response.content.decode()
    assert content.count('<span aria-hidden="true">●</span> alive</span>') == 1
    assert content.count('<span aria-hidden="true">○</span> went silent</span>') == 1
    assert content.count('<span aria-hidden="true">○</span> stopped</span>') == 1
    assert " s ago)" in content
    assert admin_client.get(reverse("admin:django_oncejob_instance_add")).status_code == 403
    alive = admin_client.get(url, {"state": "alive"}).context["cl"].result_list
    assert [i.owner for i in alive] == ["web-1:1"]
    gone = admin_client.get(url, {"state": "gone"}).context["cl"].result_list
    assert sorted(i.owner for i in gone) == ["web-2:2", "web-3:3"]


def test_instances_list_queries_do_not_grow_with_instances(admin_client: Client) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            admin_client.get(reverse("admin:django_oncejob_instance_changelist"))
        return len(captured)

    def add(count: int) -> None:
        now = timezone.now()
        for i in range(Instance.objects.count(), Instance.objects.count() + count):
            Instance.objects.create(
                owner=f"web-{i}:1", host="h", pid=i, version="0", started_at=now, heartbeat_at=now
            )
            claim("sync", "running", i, owner=f"web-{i}:1")

    add(2)
    few = queries()
    add(20)
    assert queries() == few


def test_str_and_timings(claims: list[Run]) -> None:
    assert str(claims[0]) == "nightly-report @ 2026-11-26T21:00:00+00:00"
    assert claims[0].duration == timedelta(seconds=2)
    assert claims[0].lateness == timedelta(milliseconds=5)
    running = Run(job="x", scheduled_for=WHEN, started_at=WHEN, claimed_at=WHEN)
    assert running.duration is None


# Across real runjobs processes ---------------------------------------------------

FleetFactory = Callable[..., Fleet]


@pytest.mark.processes
def test_run_now_and_pause_through_the_admin_reach_every_instance(
    fleet: FleetFactory, settings: Any, django_user_model: Any
) -> None:
    jobs = {
        "report": {"func": "tests.jobs.record", "cron": "0 3 1 1 *"},
        "tick": {"func": "tests.jobs.record", "cron": {"second": "*"}},
    }
    settings.ONCEJOB = {"JOBS": jobs}
    operator = django_user_model.objects.create_user("olga", password="pw", is_staff=True)
    operator.user_permissions.set(
        Permission.objects.filter(codename__in=["run_job", "pause_job", "view_jobstate"])
    )
    client = Client()
    client.force_login(operator)
    instances = fleet(jobs, {"CONTROL_INTERVAL": 1})
    instances.start(2)
    wait_for(lambda: Instance.objects.count() == 2, 10, "both heartbeats")

    # Run now: one run, on one instance, recorded as olga's.
    response = client.post(run_url("report"))
    assert "will run once" in notes(response)[0]
    wait_for(lambda: [j for j, _, _ in instances.runs()].count("report") == 1, 10, "the run")

    # Pause: after a control interval, no instance runs the job; resume: it runs again.
    client.post(pause_url("tick"))
    time.sleep(2.5)
    paused_from = datetime.now(UTC)
    time.sleep(3)
    paused_until = datetime.now(UTC)
    client.post(pause_url("tick", "resume"))
    time.sleep(2.5)
    resumed_from = datetime.now(UTC)
    wait_for(
        lambda: any(j == "tick" and t > resumed_from for j, t, _ in instances.runs()),
        5,
        "a run after resuming",
    )
    time.sleep(1)  # room for a second, wrong, run of "report"
    assert instances.stop() == [0, 0], instances.logs()

    manual = Run.objects.get(job="report")
    assert (manual.manual, manual.requested_by, manual.status) == (True, "olga", "succeeded")
    assert RunRequest.objects.get().taken_by == manual.owner
    ticks = {when for job, when, _ in instances.runs() if job == "tick"}
    assert not [t for t in ticks if paused_from <= t <= paused_until]
    assert (
        Run.objects.filter(
            job="tick", status="paused", scheduled_for__range=(paused_from, paused_until)
        ).count()
        >= 2
    )
    assert [key for key, count in instances.run_counts().items() if count > 1] == []
    assert [j for j, _, _ in instances.runs()].count("report") == 1


def test_times_under_two_minutes_count_seconds_not_zero_minutes() -> None:
    now = timezone.now()
    assert until(now + timedelta(seconds=30.5)) in ("in 30 s", "in 29 s")
    assert ago(now - timedelta(seconds=5)) in ("5 s ago", "6 s ago")
    assert until(now + timedelta(hours=3, seconds=30)) == "in 3\xa0hours"
    assert ago(now - timedelta(days=2, seconds=30)) == "2\xa0days ago"
