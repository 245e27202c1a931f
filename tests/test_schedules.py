"""Jobs declared in code, and schedules changed from the admin or by a deploy, switched on every
instance at the same occurrence."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.urls import reverse

from django_oncejob.jobs import decorator, registry
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.versions import (
    DEPLOY,
    OVERRIDE,
    RESET,
    ScheduleBook,
    VersionedTrigger,
    fingerprint,
)
from django_oncejob.models import Run, ScheduleVersion
from tests.processes import Fleet, wait_for

FleetFactory = Callable[..., Fleet]
TICK = {"func": "tests.jobs.record", "cron": {"second": "*"}, "overridable": True}
DAILY = {"func": "tests.jobs.record", "cron": "@daily"}


def now() -> datetime:
    return datetime.now(UTC)


def switch_of(job_id: str) -> datetime:
    """The first switch recorded for the job (two instances that start at once may record the
    same switch twice, a few milliseconds apart)."""
    version = ScheduleVersion.objects.filter(job=job_id).exclude(effective_from=None).earliest("pk")
    assert version.effective_from is not None
    return version.effective_from


def times_of(fleet: Fleet, job: str) -> list[datetime]:
    counts = fleet.run_counts()
    assert [key for key, count in counts.items() if count != 1] == []
    return sorted(when for name, when in counts if name == job)


def every(step: int, start: datetime, end: datetime) -> list[datetime]:
    """The whole seconds from ``start`` to ``end`` (both included) that ``step`` divides."""
    first = start.replace(microsecond=0)
    if first < start:
        first += timedelta(seconds=1)
    return [
        first + timedelta(seconds=n)
        for n in range(int((end - first).total_seconds()) + 1)
        if (first + timedelta(seconds=n)).second % step == 0
    ]


# Real processes.


@pytest.mark.processes
@pytest.mark.long
def test_a_schedule_changed_in_the_admin_switches_on_every_instance_at_once(
    fleet: FleetFactory, admin_client: Client, settings: Any
) -> None:
    settings.ONCEJOB = {**settings.ONCEJOB, "JOBS": {"tick": TICK}}
    instances = fleet({"tick": TICK})
    instances.start(4, stagger=0.1)
    began = now()
    time.sleep(3)
    response = admin_client.post(
        reverse("admin:django_oncejob_jobstate_schedule", args=["tick"]),
        {"interval": 2, "note": "every 2 s from now on", "catchup": "none", "overlap": "allow"},
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    switch = switch_of("tick")
    assert 8 <= (switch - now()).total_seconds() <= 11
    wait_for(lambda: now() > switch + timedelta(seconds=8), 30, "8 s after the switch")
    ended = now()
    assert instances.stop() == [0] * 4, instances.logs()

    ran = times_of(instances, "tick")
    before = [t for t in ran if t < switch]
    after = [t for t in ran if t >= switch]
    # Each second until the switch, each even second from it on: none twice, none lost.
    assert before[0] <= began + timedelta(seconds=1)
    assert before == every(1, before[0], switch - timedelta(microseconds=1))
    assert after == every(2, switch, after[-1])
    assert after[-1] >= ended - timedelta(seconds=2) and len(after) >= 3
    # Every instance followed the new schedule, not only the one that happened to run more.
    logs = instances.logs(tail=None)
    assert logs.count("Job 'tick' at") > 0
    entry = LogEntry.objects.get(object_id="tick")
    assert entry.change_message.startswith("Schedule overridden, from ")
    assert '"interval": {"seconds": 2}' in entry.change_message


@pytest.mark.processes
@pytest.mark.long
def test_an_instance_started_after_a_change_follows_it_from_its_first_occurrence(
    fleet: FleetFactory,
) -> None:
    from django_oncejob.fleet import schedules

    instances = fleet({"tick": TICK})
    instances.start(2)
    time.sleep(2)
    schedules.change("tick", OVERRIDE, {"interval": {"seconds": 3}}, "alice")
    switch = switch_of("tick")
    time.sleep(10)
    [late] = instances.start(1)
    for early in instances.instances[:2]:
        early.process.terminate()
        assert early.process.wait(30) == 0
    started = now()
    time.sleep(7)
    ended = now()
    late.process.terminate()
    assert late.process.wait(30) == 0, instances.logs()

    runs = instances.runs()
    by_late = sorted(when for job, when, pid in runs if pid == late.pid)
    assert by_late, instances.logs()
    assert all(when.second % 3 == 0 for when in by_late), (switch, by_late, late.output()[-3000:])
    # Every third second, with none lost, from its first occurrence to its last.
    assert by_late == every(3, by_late[0], by_late[-1])
    assert by_late[0] <= started + timedelta(seconds=3)
    assert by_late[-1] >= ended - timedelta(seconds=3)
    assert all(when >= switch for when in by_late)
    assert [t for t in times_of(instances, "tick") if t >= switch and t.second % 3] == []


@pytest.mark.processes
@pytest.mark.long
def test_a_rolling_deploy_that_changes_a_cron_switches_old_and_new_instances_at_once(
    fleet: FleetFactory,
) -> None:
    old = {"tick": {"func": "tests.jobs.record", "cron": {"second": "*"}}}
    new = {"tick": {"func": "tests.jobs.record", "cron": {"second": "*/3"}}}
    instances = fleet(old)
    began = now()
    instances.start(2)
    time.sleep(3)
    # The new release starts beside the old one, as a rolling deploy does.
    instances.start(2, env={"ONCEJOB_TEST_JOBS": json.dumps(new)})
    switch = switch_of("tick")
    wait_for(lambda: now() > switch + timedelta(seconds=9), 40, "9 s after the switch")
    ended = now()
    assert instances.stop() == [0] * 4, instances.logs()

    ran = times_of(instances, "tick")
    before = [t for t in ran if t < switch]
    assert before[0] <= began + timedelta(seconds=2)
    assert before == every(1, before[0], switch - timedelta(microseconds=1))
    after = [t for t in ran if t >= switch]
    assert after == every(3, switch, after[-1])
    assert after[-1] >= ended - timedelta(seconds=3)
    # The old release's instances switched too: none ran the old schedule after the switch.
    for old_instance in instances.instances[:2]:
        assert "Job 'tick' switches to a new version of its schedule at" in old_instance.output()
    deploy = ScheduleVersion.objects.filter(job="tick", source=DEPLOY).order_by("pk")
    # The first release's, then the new one's (each once per instance that started at once).
    firsts = [v.effective_from is None for v in deploy]
    assert firsts == sorted(firsts, reverse=True) and firsts[0] and not firsts[-1]
    assert {v.fingerprint for v in deploy if v.effective_from is not None} == {
        fingerprint(new["tick"])
    }
    assert "defined otherwise here than by the release in force" in instances.logs(tail=None)


@pytest.mark.processes
def test_jobs_declared_with_the_decorator_run_once_across_the_fleet(fleet: FleetFactory) -> None:
    instances = fleet({})
    instances.start(2, env={"ONCEJOB_TEST_APPS": json.dumps(["tests.declared"])})
    time.sleep(6)
    assert instances.stop() == [0, 0], instances.logs()
    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count != 1] == []
    jobs = {job for job, _ in counts}
    assert jobs == {"declared-tick", "every_two_seconds"}
    assert Run.objects.filter(job="every_two_seconds").count() >= 2


# In this process.


@pytest.fixture
def declared() -> Iterator[None]:
    """The jobs of tests.declared, declared for the test, forgotten after it."""
    before = list(decorator.DECLARED)
    sys.modules.pop("tests.declared.jobs", None)
    __import__("tests.declared.jobs")
    yield
    decorator.DECLARED[:] = before
    sys.modules.pop("tests.declared.jobs", None)


@pytest.mark.usefixtures("declared")
def test_declared_jobs_are_jobs_like_any_other() -> None:
    with override_settings(
        ONCEJOB={"JOBS": {"x": {"func": "tests.jobs.record", "cron": "@daily"}}}
    ):
        jobs, errors = registry.parsed_jobs()
        assert errors == []
        assert set(jobs) == {"x", "declared-tick", "every_two_seconds"}
        tick = jobs["declared-tick"]
        assert (tick.func, tick.source, tick.description) == (
            "tests.declared.jobs.tick",
            "code",
            "Declared with @job.",
        )
        assert jobs["every_two_seconds"].retries == 1
        assert jobs["x"].source == "settings"


@pytest.mark.usefixtures("declared")
def test_one_id_in_settings_and_in_code_is_an_error_naming_both() -> None:
    with override_settings(
        ONCEJOB={"JOBS": {"declared-tick": {"func": "tests.jobs.record", "cron": "@daily"}}}
    ):
        jobs, errors = registry.parsed_jobs()
        [error] = errors
        assert error.id == "django_oncejob.E076"
        assert "ONCEJOB['JOBS']['declared-tick']" in error.msg
        assert "@job 'declared-tick' (tests.declared.jobs)" in error.msg
        assert "declared-tick" not in jobs


def test_a_bad_declared_job_is_reported_where_it_is_declared() -> None:
    before = list(decorator.DECLARED)
    try:

        @decorator.job("broken", cron="not a cron")
        def broken() -> None: ...

        _jobs, errors = registry.parse_jobs({}, decorator.DECLARED)
        [error] = [error for error in errors if error.id == "django_oncejob.E029"]
        assert error.msg.startswith("@job 'broken' (tests.test_schedules)['cron']")
    finally:
        decorator.DECLARED[:] = before


def test_the_trigger_of_versions_fires_each_in_its_span() -> None:
    every_second, _ = parse_job("x", {"func": "tests.jobs.record", "cron": {"second": "*"}})
    every_third, _ = parse_job("x", {"func": "tests.jobs.record", "cron": {"second": "*/3"}})
    assert every_second is not None and every_third is not None
    switch = datetime(2026, 12, 5, 12, 0, 10, 500000, tzinfo=UTC)
    trigger = VersionedTrigger([(None, every_second.trigger), (switch, every_third.trigger)])
    fired = []
    previous = None
    at = datetime(2026, 12, 5, 12, 0, 7, tzinfo=UTC)
    for _ in range(6):
        previous = trigger.get_next_fire_time(previous, at)
        assert previous is not None
        fired.append(previous.second)
    assert fired == [7, 8, 9, 10, 12, 15]


@pytest.mark.django_db
def test_the_book_takes_overrides_and_resets_on_top_of_the_deployed_definition() -> None:
    spec, _ = parse_job("x", TICK)
    assert spec is not None
    base = datetime(2026, 12, 5, 12, tzinfo=UTC)
    rows = [
        ScheduleVersion(
            pk=1, job="x", source=DEPLOY, definition=TICK, fingerprint=fingerprint(TICK)
        ),
        ScheduleVersion(
            pk=2,
            job="x",
            source=OVERRIDE,
            definition={"interval": {"seconds": 5}, "retries": 2},
            fingerprint="",
            effective_from=base,
        ),
        ScheduleVersion(
            pk=3,
            job="x",
            source=RESET,
            definition={},
            fingerprint="",
            effective_from=base + timedelta(hours=1),
        ),
    ]
    book = ScheduleBook({"x": spec})
    assert book.add(rows) == {"x"}
    assert book.spec_at("x", base - timedelta(seconds=1)) is not None
    overridden = book.spec_at("x", base + timedelta(minutes=1))
    assert overridden is not None and (overridden.source, overridden.retries) == ("override", 2)
    assert "cron" not in overridden.definition and overridden.definition["interval"] == {
        "seconds": 5
    }
    back = book.spec_at("x", base + timedelta(hours=2))
    assert back is not None and (back.source, back.retries) == ("settings", 0)
    fired = [t.second for t in _times(book.trigger("x"), base - timedelta(seconds=2), 4)]
    assert fired == [58, 59, 0, 5]


def _times(trigger: Any, start: datetime, count: int) -> list[datetime]:
    from django_oncejob.jobs.triggers import fire_times

    return list(fire_times(trigger, start, count))


@pytest.mark.django_db
def test_bad_overrides_are_refused_with_the_messages_of_the_checks(
    admin_client: Client, settings: Any
) -> None:
    settings.ONCEJOB = {"JOBS": {"tick": TICK}}
    url = reverse("admin:django_oncejob_jobstate_schedule", args=["tick"])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert page.context["form"].initial["retries"] == 0

    def refused(data: dict[str, Any]) -> str:
        response = admin_client.post(url, data)
        assert response.status_code == 200
        return " ".join(response.context["form"].non_field_errors())

    assert "'tick'['cron']" in refused({"cron": "61 * * * *"})
    assert "Give either a cron or an interval, not both." in refused(
        {"cron": "* * * * *", "interval": 5}
    )
    assert "'tick'['retries'] must be a whole number >= 0, got -1." in refused(
        {"interval": 5, "retries": -1}
    )
    assert "not less than its misfire_grace_time" in refused({"interval": 5, "jitter": 120})
    assert not ScheduleVersion.objects.exists()


@pytest.mark.django_db
def test_only_an_overridable_job_and_a_permitted_user_change_a_schedule(
    admin_client: Client, django_user_model: Any, settings: Any
) -> None:
    settings.ONCEJOB = {"JOBS": {"tick": TICK, "fixed": DAILY}}
    response = admin_client.post(
        reverse("admin:django_oncejob_jobstate_schedule", args=["fixed"]), {"interval": 5}
    )
    assert response.status_code == 302
    assert not ScheduleVersion.objects.exists()
    user = django_user_model.objects.create_user("bob", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    url = reverse("admin:django_oncejob_jobstate_schedule", args=["tick"])
    assert client.post(url, {"interval": 5}).status_code == 403


@pytest.mark.django_db
def test_a_reset_goes_back_to_the_deployed_schedule_and_is_logged(
    admin_client: Client, settings: Any
) -> None:
    settings.ONCEJOB = {"JOBS": {"tick": TICK}}
    admin_client.post(
        reverse("admin:django_oncejob_jobstate_schedule", args=["tick"]), {"interval": 5}
    )
    page = admin_client.get(reverse("admin:django_oncejob_jobstate_change", args=["tick"]))
    assert "Switches to a new version at" in page.content.decode()
    admin_client.post(reverse("admin:django_oncejob_jobstate_reset", args=["tick"]))
    assert list(ScheduleVersion.objects.values_list("source", flat=True).order_by("pk")) == [
        OVERRIDE,
        RESET,
    ]
    assert [e.change_message for e in LogEntry.objects.order_by("pk")][-1] == (
        "Schedule reset to the deployed one."
    )


@pytest.mark.django_db
def test_overrides_export_and_import_between_environments(settings: Any, tmp_path: Path) -> None:
    from django_oncejob.fleet import schedules

    settings.ONCEJOB = {"JOBS": {"tick": TICK}}
    schedules.change("tick", OVERRIDE, {"interval": {"seconds": 7}}, "alice", "slower")
    path = tmp_path / "schedules.json"
    call_command("oncejob_schedules", "export", str(path))
    exported = json.loads(path.read_text())
    assert exported["overrides"]["tick"]["override"] == {"interval": {"seconds": 7}}

    ScheduleVersion.objects.all().delete()
    call_command("oncejob_schedules", "import", str(path))
    version = ScheduleVersion.objects.get()
    assert (version.source, version.definition, version.note) == (
        OVERRIDE,
        {"interval": {"seconds": 7}},
        "slower",
    )
    exported["overrides"]["tick"]["override"] = {"interval": {"seconds": 0}}
    path.write_text(json.dumps(exported))
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("oncejob_schedules", "import", str(path))
    assert ScheduleVersion.objects.count() == 1


@pytest.mark.django_db
def test_the_list_says_where_each_job_comes_from_and_when_it_switches(settings: Any) -> None:
    from django_oncejob.fleet import schedules

    settings.ONCEJOB = {
        "JOBS": {"tick": TICK, "daily": {"func": "tests.jobs.record", "cron": "@daily"}}
    }
    schedules.change("tick", OVERRIDE, {"interval": {"seconds": 7}}, "alice")
    out = StringIO()
    call_command("runjobs", "--list", "--count", "1", stdout=out)
    text = out.getvalue()
    assert "defined in ONCEJOB['JOBS']" in text
    assert "switches at " in text and "to: every 7 seconds" in text


def test_versions_recorded_at_once_by_two_instances_make_one_span() -> None:
    spec, _ = parse_job("x", TICK)
    assert spec is not None
    switch = datetime(2026, 12, 5, 12, 0, 10, tzinfo=UTC)
    twice = [
        ScheduleVersion(pk=pk, job="x", source=DEPLOY, definition=TICK, fingerprint="")
        for pk in (1, 2)
    ]
    override = ScheduleVersion(
        pk=3,
        job="x",
        source=OVERRIDE,
        definition={"interval": {"seconds": 3}},
        fingerprint="",
        effective_from=switch,
    )
    book = ScheduleBook({"x": spec})
    book.add([*twice, override])
    fired = [t.second for t in _times(book.trigger("x"), switch - timedelta(seconds=2), 4)]
    assert fired == [8, 9, 12, 15]
