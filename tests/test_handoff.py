"""Occurrences handed to a task queue: django.tasks (the database backend) and Celery.

The in-process tests drive the hand-off and the worker's side with django.tasks'
immediate and dummy backends. The ``processes`` tests prove it with the real
thing: three runjobs instances, a real worker process (``db_worker``, or
``celery worker`` on a Redis broker), and each occurrence run once, by the worker.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.db import OperationalError
from django.test.utils import override_settings
from django.utils import timezone

from django_oncejob import current_occurrence, handoff, signals
from django_oncejob.conf import conf
from django_oncejob.fleet import heartbeat
from django_oncejob.handoff import HandedOff, celery_installed, enqueue, tasks_module_name
from django_oncejob.handoff.worker import OccurrenceFailed, occurrence_task, run_handed_off
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Instance as InstanceRow
from django_oncejob.models import Run
from django_oncejob.occurrence import Occurrence
from django_oncejob.running import history
from django_oncejob.running.pipeline import Pipeline, claim_and_run
from django_oncejob.running.steps import Outcome
from django_oncejob.running.writer import InlineWriter
from tests.processes import Fleet, Instance, stop_worker, wait_for
from tests.rows import fence

pytestmark = pytest.mark.django_db(transaction=True)

FleetFactory = Callable[..., Fleet]
WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)
TASKS_MODULE = tasks_module_name()
needs_tasks = pytest.mark.skipif(TASKS_MODULE is None, reason="needs django.tasks or django-tasks")
needs_database_backend = pytest.mark.skipif(
    getattr(settings, "TASKS_DATABASE_BACKEND", None) is None,
    reason="needs django-tasks-db, or django-tasks before 0.12",
)
needs_celery = pytest.mark.skipif(not celery_installed(), reason="needs Celery")


@pytest.fixture(autouse=True)
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("ONCEJOB_TEST_RECORD", str(path))
    return path


def runs(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# In this process, with django.tasks' immediate and dummy backends.


@pytest.fixture
def tasks_backends() -> Iterator[None]:
    if TASKS_MODULE is None:
        pytest.skip("needs django.tasks or django-tasks")
    backends = {
        alias: {"BACKEND": backend, "QUEUES": []}
        for alias, backend in (
            ("default", f"{TASKS_MODULE}.backends.dummy.DummyBackend"),
            ("immediate", f"{TASKS_MODULE}.backends.immediate.ImmediateBackend"),
            ("dummy", f"{TASKS_MODULE}.backends.dummy.DummyBackend"),
            ("broken", "tests.task_backends.BrokenBackend"),
        )
    }
    with override_settings(TASKS=backends):
        yield


def jobs_setting(**jobs: dict[str, Any]) -> Any:
    """Settings with these jobs, in which a worker in this process looks the job up."""
    definitions = {job_id: {"cron": "0 21 * * *", **job} for job_id, job in jobs.items()}
    return override_settings(
        ONCEJOB={"KEY_PREFIX": settings.ONCEJOB["KEY_PREFIX"], "JOBS": definitions}
    )


def spec(definition: dict[str, Any]) -> JobSpec:
    job, errors = parse_job("report", {"cron": "0 21 * * *", **definition})
    assert errors == [], errors
    assert job is not None
    return job


def dummy_results() -> list[Any]:
    from django_oncejob.handoff import tasks_module

    return list(tasks_module().task_backends["dummy"].results)


@pytest.mark.usefixtures("tasks_backends")
def test_immediate_backend_runs_the_whole_hand_off_here(record_file: Path) -> None:
    definition = {"func": "tests.jobs.record", "enqueue": "tasks", "backend": "immediate"}
    with jobs_setting(report=definition):
        assert claim_and_run(spec(definition), WHEN, "host-a:1") is Outcome.ENQUEUED

    (line,) = runs(record_file)
    assert line == f"report {WHEN.isoformat()} {os.getpid()}"
    row = Run.objects.get()
    assert (row.status, row.owner, row.task_backend) == (
        Run.Status.SUCCEEDED,
        conf.OWNER,
        "tasks:immediate",
    )
    assert row.task_id
    assert row.claimed_at <= row.started_at <= row.finished_at  # type: ignore[operator]


@pytest.mark.usefixtures("tasks_backends")
def test_dummy_backend_leaves_the_row_enqueued_for_a_worker(record_file: Path) -> None:
    definition = {"func": "tests.jobs.record", "enqueue": "tasks", "backend": "dummy"}
    assert claim_and_run(spec(definition), WHEN, "host-a:1") is Outcome.ENQUEUED

    (result,) = dummy_results()
    row = Run.objects.get()
    assert (row.status, row.owner, row.task_backend, row.task_id) == (
        Run.Status.ENQUEUED,
        "host-a:1",
        "tasks:dummy",
        result.id,
    )
    assert result.args == ["report", WHEN.isoformat(), row.pk]
    assert result.task.queue_name == "default"
    assert runs(record_file) == []
    # Not abandoned while it waits in the queue, however long.
    assert heartbeat.reap("me:3", 0, {}) == []
    assert Run.objects.get().status == Run.Status.ENQUEUED


@pytest.mark.usefixtures("tasks_backends")
def test_a_task_delivered_twice_runs_the_job_once(record_file: Path) -> None:
    definition = {"func": "tests.jobs.record", "enqueue": "tasks", "backend": "dummy"}
    with jobs_setting(report=definition):
        claim_and_run(spec(definition), WHEN, "host-a:1")
        (result,) = dummy_results()

        assert result.task.call(*result.args) == "succeeded"
        assert result.task.call(*result.args) == "fenced"

    assert len(runs(record_file)) == 1
    row = Run.objects.get()
    assert (row.status, row.owner) == (Run.Status.SUCCEEDED, conf.OWNER)


@pytest.mark.usefixtures("tasks_backends")
def test_the_worker_sets_current_occurrence_and_sends_the_signals() -> None:
    definition = {"func": "tests.jobs.async_record", "enqueue": "tasks", "backend": "dummy"}
    seen: list[tuple[str, Occurrence | None]] = []

    def started(**kwargs: Any) -> None:
        seen.append(("started", kwargs["occurrence"]))

    def succeeded(**kwargs: Any) -> None:
        seen.append(("succeeded", current_occurrence()))

    signals.occurrence_started.connect(started)
    signals.occurrence_succeeded.connect(succeeded)
    try:
        with jobs_setting(report=definition):
            claim_and_run(spec(definition), WHEN, "host-a:1")
            (result,) = dummy_results()
            result.task.call(*result.args)
    finally:
        signals.occurrence_started.disconnect(started)
        signals.occurrence_succeeded.disconnect(succeeded)
    assert seen == [("started", Occurrence("report", WHEN, conf.OWNER)), ("succeeded", None)]


@pytest.mark.usefixtures("tasks_backends")
def test_a_failing_job_fails_its_row_and_its_task() -> None:
    definition = {"func": "tests.jobs.fail", "enqueue": "tasks", "backend": "dummy"}
    with jobs_setting(report=definition):
        claim_and_run(spec(definition), WHEN, "host-a:1")
        (result,) = dummy_results()
        with pytest.raises(OccurrenceFailed, match="RuntimeError: the job broke"):
            result.task.call(*result.args)

    row = Run.objects.get()
    assert (row.status, row.error) == (Run.Status.FAILED, "RuntimeError: the job broke")
    assert 'raise RuntimeError("the job broke")' in row.traceback


@pytest.mark.usefixtures("tasks_backends")
def test_a_worker_without_the_job_fails_the_row() -> None:
    definition = {"func": "tests.jobs.record", "enqueue": "tasks", "backend": "dummy"}
    claim_and_run(spec(definition), WHEN, "host-a:1")
    (result,) = dummy_results()
    with jobs_setting(), pytest.raises(OccurrenceFailed, match="not a valid job"):
        result.task.call(*result.args)

    row = Run.objects.get()
    assert row.status == Run.Status.FAILED
    assert "a worker needs the same settings as the runjobs instances" in row.error


@pytest.mark.usefixtures("tasks_backends")
def test_enqueue_error_is_recorded_as_failed() -> None:
    definition = {"func": "tests.jobs.record", "enqueue": "tasks", "backend": "broken"}
    failures: list[BaseException] = []

    def failed(**kwargs: Any) -> None:
        failures.append(kwargs["exception"])

    signals.occurrence_failed.connect(failed)
    try:
        assert claim_and_run(spec(definition), WHEN, "host-a:1") is Outcome.FAILED
    finally:
        signals.occurrence_failed.disconnect(failed)

    row = Run.objects.get()
    assert (row.status, row.task_backend) == (Run.Status.FAILED, "tasks:broken")
    assert row.error == "Could not enqueue: ConnectionError: the queue is down"
    assert "ConnectionError" in row.traceback
    assert [type(exc) for exc in failures] == [ConnectionError]


@pytest.mark.usefixtures("tasks_backends")
def test_a_task_id_that_cannot_be_recorded_does_not_fail_the_hand_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def database_down(claim: Run, task_id: str) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(history, "note_task_id", database_down)
    definition = {"func": "tests.jobs.record", "enqueue": "tasks", "backend": "dummy"}
    assert claim_and_run(spec(definition), WHEN, "host-a:1") is Outcome.ENQUEUED

    row = Run.objects.get()
    assert (row.status, row.task_id) == (Run.Status.ENQUEUED, "")
    assert len(dummy_results()) == 1


def test_oncejob_task_is_defined_on_a_backend_and_queue_that_exist() -> None:
    if TASKS_MODULE is None:
        pytest.skip("needs django.tasks or django-tasks")
    from django_oncejob import tasks

    only = {"BACKEND": f"{TASKS_MODULE}.backends.dummy.DummyBackend", "QUEUES": ["jobs"]}
    with override_settings(TASKS={"only": only}):
        task = tasks._django_task(tasks._run)
    assert (task.backend, task.queue_name) == ("only", "jobs")


@pytest.mark.usefixtures("tasks_backends")
def test_a_manual_run_is_handed_off_too() -> None:
    definition = {"func": "tests.jobs.record", "enqueue": "tasks", "backend": "dummy"}
    outcome = Pipeline("host-a:1").run_manual(spec(definition), timezone.now(), "admin")

    assert outcome is Outcome.ENQUEUED
    row = Run.objects.get()
    assert (row.status, row.manual, row.requested_by) == (Run.Status.ENQUEUED, True, "admin")
    assert len(dummy_results()) == 1


def test_rows_run_by_a_worker_are_reaped_once_it_stops_beating() -> None:
    long_ago = timezone.now() - timedelta(seconds=300)

    def worker_row(owner: str, day: int) -> Run:
        return Run.objects.create(
            job="report",
            scheduled_for=WHEN + timedelta(days=day),
            owner=owner,
            claimed_at=long_ago,
            started_at=long_ago,
            task_backend="celery",
        )

    beating, gone = worker_row("worker-host:77", 0), worker_row("worker-host:78", 1)
    heartbeat.beat("worker-host:77", 60)

    heartbeat.reap("me:3", 60, {})

    beating.refresh_from_db()
    gone.refresh_from_db()
    assert beating.status == Run.Status.RUNNING
    assert gone.status == Run.Status.ABANDONED


def test_a_worker_beats_while_it_runs_a_handed_off_occurrence(record_file: Path) -> None:
    definition = {"func": "tests.jobs.record"}
    seen: list[tuple[bool, int]] = []

    def look(sender: str, occurrence: Occurrence, **kwargs: object) -> None:
        row = InstanceRow.objects.get(owner=occurrence.owner)
        seen.append((row.is_alive(60), Run.objects.filter(owner=row.owner).count()))

    row = fence("report", WHEN, "host-a:1")
    assert row is not None
    Run.objects.filter(pk=row.pk).update(status=Run.Status.ENQUEUED, task_backend="celery")
    signals.occurrence_started.connect(look)
    try:
        with jobs_setting(report=definition):
            assert run_handed_off(HandedOff("report", WHEN, row.pk)) is Outcome.SUCCEEDED
    finally:
        signals.occurrence_started.disconnect(look)
    assert seen == [(True, 1)]
    (worker,) = InstanceRow.objects.exclude(owner="host-a:1")
    assert worker.stopped_at is not None  # signed off after the run


def test_headers_round_trip() -> None:
    handed = HandedOff("report", WHEN, 12)
    assert handoff.occurrence_from_headers(handoff.headers(handed)) == handed
    assert handoff.occurrence_from_headers(None) is None
    assert handoff.occurrence_from_headers({"other": 1}) is None
    no_row = handoff.headers(HandedOff("report", WHEN, None))
    assert handoff.occurrence_from_headers(no_row) == HandedOff("report", WHEN, None)


def test_celery_task_ids_are_derived_from_the_claim_key() -> None:
    handed = HandedOff("report", WHEN, 12)
    first = handoff.celery_task_id(handed, 1)
    assert first == handoff.celery_task_id(HandedOff("report", WHEN, 99), 1)
    assert uuid.UUID(first).version == 5
    assert handoff.celery_task_id(handed, 2) != first
    assert handoff.celery_task_id(HandedOff("report", WHEN + timedelta(1), 12), 1) != first


def test_occurrence_task_outside_oncejob_just_calls_the_function() -> None:
    if not celery_installed():
        pytest.skip("needs Celery")

    @occurrence_task
    def double(value: int) -> int:
        return value * 2

    assert double(21) == 42


def test_run_handed_off_without_a_row_still_runs_and_is_recorded(record_file: Path) -> None:
    definition = {"func": "tests.jobs.record"}
    with jobs_setting(report=definition):
        assert run_handed_off(HandedOff("report", WHEN, None)) is Outcome.SUCCEEDED
    assert len(runs(record_file)) == 1
    # Handed off while the history was down: the worker writes the row with its outcome.
    row = Run.objects.get()
    assert (row.job, row.scheduled_for, row.status) == ("report", WHEN, Run.Status.SUCCEEDED)


# Real processes.


def seconds_between(start: datetime, end: datetime) -> list[datetime]:
    first = start.replace(microsecond=0) + timedelta(seconds=1)
    return [first + timedelta(seconds=n) for n in range(int((end - first).total_seconds()) + 1)]


def settled() -> bool:
    return not Run.objects.filter(status__in=[Run.Status.ENQUEUED, Run.Status.RUNNING]).exists()


def assert_each_ran_once_in(worker: Instance, instances: Fleet, rows: list[Run]) -> None:
    """Every row ran once, in the worker, as its own occurrence, and succeeded."""
    counts = instances.run_counts()
    assert [key for key, count in counts.items() if count != 1] == []
    assert {pid for *_, pid in instances.runs()} == {worker.pid}
    assert sorted(counts) == sorted((row.job, row.scheduled_for) for row in rows)
    assert {row.status for row in rows} == {Run.Status.SUCCEEDED}, [
        (row.job, row.scheduled_for, row.status, row.error) for row in rows
    ]
    assert {row.owner.rsplit(":", 1)[-1] for row in rows} == {str(worker.pid)}
    for row in rows:
        assert row.task_id
        assert row.claimed_at <= row.started_at <= row.finished_at  # type: ignore[operator]


@needs_database_backend
@pytest.mark.processes
def test_database_worker_runs_each_occurrence_once(
    fleet: FleetFactory, workers: Callable[..., Instance]
) -> None:
    instances = fleet(
        {
            "tick": {
                "func": "tests.jobs.record",
                "cron": {"second": "*"},
                "enqueue": "tasks",
                "queue": "jobs",
            }
        }
    )
    instances.start(3, stagger=0.2)
    window_start = datetime.now(UTC) + timedelta(seconds=1)
    # No worker yet: the occurrences wait in the queue, enqueued, and nothing runs.
    wait_for(
        lambda: Run.objects.filter(status=Run.Status.ENQUEUED).count() >= 2,
        10,
        "two enqueued occurrences",
    )
    assert instances.runs() == []
    command = [sys.executable, "-m", "django", "db_worker", "--queue-name", "jobs"]
    command += ["--interval", "0.1", "--no-startup-delay", "-v", "2"]
    worker = workers(command, instances.env(), "Starting worker")
    time.sleep(8)
    window_end = datetime.now(UTC) - timedelta(seconds=1)

    assert instances.stop() == [0, 0, 0], instances.logs()
    wait_for(settled, 20, "the queue to drain")
    assert stop_worker(worker) == 0, worker.output()

    rows = list(Run.objects.order_by("scheduled_for"))
    assert_each_ran_once_in(worker, instances, rows)
    counts = instances.run_counts()
    assert [t for t in seconds_between(window_start, window_end) if ("tick", t) not in counts] == []
    assert {row.task_backend for row in rows} == {"tasks:default"}
    results = task_results()
    assert sorted(str(result.id) for result in results) == sorted(row.task_id for row in rows)
    # SUCCEEDED before django-tasks 0.12, SUCCESSFUL from then on and in Django.
    assert {result.status for result in results} in ({"SUCCESSFUL"}, {"SUCCEEDED"})
    assert {result.queue_name for result in results} == {"jobs"}
    # Those enqueued before the worker started waited for it.
    assert rows[0].started_at - rows[0].claimed_at > timedelta(seconds=0.5)  # type: ignore[operator]


@needs_database_backend
@pytest.mark.processes
def test_a_worker_killed_mid_run_leaves_its_row_abandoned(
    fleet: FleetFactory, workers: Callable[..., Instance]
) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    instances = fleet(
        {
            "slow": {
                "func": "tests.jobs.sleep_then_record",
                "args": [60],
                "at": at.isoformat(),
                "enqueue": "tasks",
                "queue": "jobs",
            }
        },
        {"HEARTBEAT_INTERVAL": 1, "HEARTBEAT_TIMEOUT": 3},
    )
    instances.start(2, stagger=0.2)
    command = [sys.executable, "-m", "django", "db_worker", "--queue-name", "jobs"]
    command += ["--interval", "0.1", "--no-startup-delay", "-v", "2"]
    worker = workers(command, instances.env(), "Starting worker")
    # runjobs writes the row running, then enqueued as it hands it off: the worker's is the
    # running row under the worker's own owner.
    running = Run.objects.filter(
        job="slow", status=Run.Status.RUNNING, owner__endswith=f":{worker.pid}"
    )
    wait_for(running.exists, 15, "the worker to take the occurrence")
    worker.process.kill()
    worker.process.wait(5)

    wait_for(lambda: Run.objects.get().status == Run.Status.ABANDONED, 15, "the row settled")
    assert instances.stop() == [0, 0], instances.logs()
    row = Run.objects.get()
    assert row.error == f"Abandoned: {row.owner} stopped sending heartbeats while running it."
    assert row.owner.endswith(f":{worker.pid}")


def task_results() -> list[Any]:
    """What the database backend recorded of each task (its app label is the same in both)."""
    return list(apps.get_model("django_tasks_database", "DBTaskResult").objects.all())


def celery_worker(
    workers: Callable[..., Instance], instances: Fleet, queues: list[str]
) -> Instance:
    command = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker"]
    command += ["--pool", "solo", "--concurrency", "1", "--queues", ",".join(queues)]
    command += ["--hostname", f"{queues[0]}@%h", "--loglevel", "info"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = instances.env({"ONCEJOB_TEST_CELERY_QUEUE": queues[0]})
    return workers(command, env, " ready.")


@needs_celery
@pytest.mark.processes
def test_celery_worker_runs_each_occurrence_once(
    fleet: FleetFactory, workers: Callable[..., Instance], celery_queue: str
) -> None:
    from celery.result import AsyncResult

    named_queue = f"{celery_queue}-named"
    instances = fleet(
        {
            # oncejob's own task calls the function in the worker...
            "tick": {"func": "tests.jobs.record", "cron": {"second": "*"}, "enqueue": "celery"},
            # ...or the job sends the project's own task, by name, to a queue of its choosing.
            "tock": {
                "task": "oncejob_tests.record",
                "cron": {"second": "*"},
                "enqueue": "celery",
                "queue": named_queue,
            },
        }
    )
    worker = celery_worker(workers, instances, [celery_queue, named_queue])
    instances.start(3, stagger=0.2, env={"ONCEJOB_TEST_CELERY_QUEUE": celery_queue})
    window_start = datetime.now(UTC) + timedelta(seconds=1)
    time.sleep(8)
    window_end = datetime.now(UTC) - timedelta(seconds=1)

    assert instances.stop() == [0, 0, 0], instances.logs()
    wait_for(settled, 20, "the queue to drain")
    assert stop_worker(worker) == 0, worker.output()

    rows = list(Run.objects.order_by("scheduled_for", "job"))
    assert_each_ran_once_in(worker, instances, rows)
    counts = instances.run_counts()
    for job in ("tick", "tock"):
        missing = [t for t in seconds_between(window_start, window_end) if (job, t) not in counts]
        assert missing == [], job
    assert {row.task_backend for row in rows} == {"celery"}
    with override_settings(ONCEJOB={"KEY_PREFIX": instances.prefix}):
        expected = [
            handoff.celery_task_id(HandedOff(r.job, r.scheduled_for, r.pk), 1) for r in rows
        ]
    assert [row.task_id for row in rows] == expected
    assert {AsyncResult(row.task_id).status for row in rows} == {"SUCCESS"}
    assert "Task oncejob_tests.record[" in worker.output()
    assert "Task django_oncejob.run_handed_off[" in worker.output()


@needs_celery
@pytest.mark.processes
@pytest.mark.parametrize("by_name", [False, True], ids=["oncejob-task", "by-name"])
def test_celery_redelivery_runs_the_job_once(
    fleet: FleetFactory,
    workers: Callable[..., Instance],
    celery_queue: str,
    by_name: bool,
) -> None:
    from celery import current_app

    definition: dict[str, Any] = {"cron": "0 21 * * *", "enqueue": "celery", "queue": celery_queue}
    definition.update(
        {"task": "oncejob_tests.record"} if by_name else {"func": "tests.jobs.record"}
    )
    instances = fleet({"report": definition})
    worker = celery_worker(workers, instances, [celery_queue])
    job = spec(definition)
    occurrence = Occurrence("report", WHEN, "host-a:1")
    row = fence("report", WHEN, "host-a:1")
    assert row is not None

    # The first send goes the usual way; the second is the same message again, as a
    # broker redelivers it (say, after a visibility timeout): same id, same headers.
    task_id = enqueue.send_to_celery(job, occurrence, row, InlineWriter(), {})
    handed = HandedOff("report", WHEN, row.pk)
    name = "oncejob_tests.record" if by_name else handoff.CELERY_TASK_NAME
    arguments = [] if by_name else ["report", WHEN.isoformat(), row.pk]
    current_app.send_task(
        name, args=arguments, task_id=task_id, headers=handoff.headers(handed), queue=celery_queue
    )
    wait_for(
        lambda: worker.output().count(f"[{task_id}] succeeded") == 2,
        20,
        "both deliveries to be handled",
    )
    assert stop_worker(worker) == 0, worker.output()

    (line,) = runs(instances.record_file)
    assert line == f"report {WHEN.isoformat()} {worker.pid}"
    row.refresh_from_db()
    assert (row.status, row.task_backend, row.task_id) == (
        Run.Status.SUCCEEDED,
        "celery",
        task_id,
    )
    assert row.owner.endswith(f":{worker.pid}")
    assert "another delivery of its task took it; not running it again" in worker.output()
