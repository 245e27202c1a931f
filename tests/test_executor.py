"""The executor's pace: a few claim batches out at once, and only while a thread is free.

Real claims on the test Redis and real history rows; one instance in this process.
tests/test_e2e.py proves the claims of many processes, and tests/test_costs.py what
each batch costs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.triggers.date import DateTrigger
from django.db import transaction
from django.utils import timezone

from django_oncejob.cache.claim import ClaimResult, claim
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.models import Run
from django_oncejob.running import history
from django_oncejob.running.pipeline import Pipeline
from django_oncejob.scheduling import executor as executor_module
from django_oncejob.scheduling.executor import BATCH_SIZE, BATCHES_IN_FLIGHT, ClaimingExecutor
from django_oncejob.scheduling.scheduler import ClaimingScheduler
from tests.jobs import record
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

#: Released by each test: until then, ``hold`` keeps its thread.
HELD = threading.Event()


def hold() -> None:
    record()
    HELD.wait(20)


@pytest.fixture(autouse=True)
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "runs.txt"
    monkeypatch.setenv("ONCEJOB_TEST_RECORD", str(path))
    HELD.clear()
    yield path
    HELD.set()


def spec(job_id: str, func: str = "tests.jobs.record") -> JobSpec:
    job, errors = parse_job(job_id, {"func": func, "cron": "0 21 * * *"})
    assert errors == [] and job is not None
    return job


def ran(record_file: Path) -> list[str]:
    if not record_file.exists():
        return []
    return [line.split()[0] for line in record_file.read_text().splitlines()]


class Instance:
    """One instance's scheduler and executor, with jobs added as the test goes."""

    def __init__(self, specs: dict[str, JobSpec], max_workers: int) -> None:
        self.executor = ClaimingExecutor(specs, Pipeline("host-a:1"), max_workers=max_workers)
        self.scheduler = ClaimingScheduler(self.executor, timezone="UTC")
        self.scheduler.start()

    def due_now(self, *job_ids: str, when: datetime | None = None) -> datetime:
        when = when or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        # Paused while they are added, so that one pass of the scheduler hands them over.
        self.scheduler.pause()
        for job_id in job_ids:
            func = self.executor.specs[job_id].func.replace("tests.jobs.", "tests.jobs:")
            func = func.replace("tests.test_executor.", "tests.test_executor:")
            self.scheduler.add_job(func, DateTrigger(when), id=job_id, misfire_grace_time=60)
        self.scheduler.resume()
        return when

    def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
        HELD.set()
        assert self.executor.wait(20)


@pytest.fixture
def instance() -> Iterator[Callable[..., Instance]]:
    made: list[Instance] = []

    def make(specs: Sequence[JobSpec], max_workers: int) -> Instance:
        made.append(Instance({job.id: job for job in specs}, max_workers))
        return made[-1]

    yield make
    for each in made:
        each.stop()


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> dict[str, ClaimResult]:
    """What this process's executors claimed, job by job, as the cache answered."""
    answers: dict[str, ClaimResult] = {}
    claim_many = executor_module.claim_many

    def recording(occurrences: Sequence[tuple[str, datetime]], owner: str) -> Any:
        results = claim_many(occurrences, owner)
        answers.update(zip((job_id for job_id, _ in occurrences), results, strict=True))
        return results

    monkeypatch.setattr(executor_module, "claim_many", recording)
    return answers


def test_an_instance_whose_threads_are_all_taken_claims_nothing_more(
    instance: Callable[..., Instance], record_file: Path, claims: dict[str, ClaimResult]
) -> None:
    busy = [spec(f"busy-{i}", "tests.test_executor.hold") for i in range(2)]
    one = instance([*busy, spec("later")], max_workers=2)
    one.due_now("busy-0", "busy-1")
    wait_for(lambda: sorted(ran(record_file)) == ["busy-0", "busy-1"], 15, "both threads taken")

    when = one.due_now("later")
    time.sleep(0.5)
    # Due, but not claimed: another instance with a free thread takes it.
    assert "later" not in claims
    assert claim("later", when, "host-b:2") is ClaimResult.WON

    HELD.set()
    # Once a thread was free, this instance claimed it too, and lost.
    wait_for(lambda: claims.get("later") is ClaimResult.LOST, 15, "the late claim")
    wait_for(lambda: not one.executor.running, 15, "the instance to settle")
    assert sorted(ran(record_file)) == ["busy-0", "busy-1"]


def test_a_thread_freed_claims_what_waited_for_it(
    instance: Callable[..., Instance], record_file: Path
) -> None:
    one = instance([spec("busy", "tests.test_executor.hold"), spec("later")], max_workers=1)
    one.due_now("busy")
    wait_for(lambda: ran(record_file) == ["busy"], 15, "the thread taken")
    one.due_now("later")
    time.sleep(0.3)
    assert ran(record_file) == ["busy"]

    HELD.set()
    wait_for(lambda: ran(record_file) == ["busy", "later"], 15, "the job that waited")
    assert Run.objects.get(job="later").status == Run.Status.SUCCEEDED


def test_claims_go_out_a_few_batches_at_a_time(
    instance: Callable[..., Instance], record_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = 0
    most = 0
    sizes: list[int] = []
    lock = threading.Lock()
    claim_many = executor_module.claim_many

    def slow_claim_many(occurrences: Sequence[tuple[str, datetime]], owner: str) -> Any:
        nonlocal out, most
        with lock:
            out += 1
            most = max(most, out)
            sizes.append(len(occurrences))
        try:
            # Long enough for the scheduler to hand over every due job meanwhile.
            time.sleep(0.1)
            return claim_many(occurrences, owner)
        finally:
            with lock:
                out -= 1

    monkeypatch.setattr(executor_module, "claim_many", slow_claim_many)
    specs = [spec(f"job-{i:02d}") for i in range(50)]
    one = instance(specs, max_workers=10)
    one.due_now(*(job.id for job in specs))
    wait_for(lambda: len(ran(record_file)) == 50, 15, "50 runs")

    assert most == BATCHES_IN_FLIGHT
    # Each batch as large as the threads free to start what it wins, BATCH_SIZE at most.
    assert sum(sizes) == 50 and min(sizes) > 0 and max(sizes) <= BATCH_SIZE, sizes
    assert sorted(ran(record_file)) == [job.id for job in specs]


def test_a_batch_holds_no_more_jobs_than_threads_free(
    instance: Callable[..., Instance], record_file: Path, claims: dict[str, ClaimResult]
) -> None:
    """MAX_WORKERS = 2 and six jobs due: two claimed, the rest left for a thread or another."""
    busy = [spec(f"busy-{i}", "tests.test_executor.hold") for i in range(6)]
    one = instance(busy, max_workers=2)
    one.due_now(*(job.id for job in busy))
    wait_for(lambda: len(ran(record_file)) == 2, 15, "both threads taken")
    time.sleep(0.5)
    assert len(claims) == 2, claims

    HELD.set()
    wait_for(lambda: len(ran(record_file)) == 6, 15, "the jobs that waited")
    assert sorted(ran(record_file)) == [job.id for job in busy]


def test_jobs_waiting_for_a_thread_are_left_to_others_on_shutdown(
    instance: Callable[..., Instance], record_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one = instance([spec("busy", "tests.test_executor.hold"), spec("later")], max_workers=1)
    one.due_now("busy")
    wait_for(lambda: ran(record_file) == ["busy"], 15, "the thread taken")
    when = one.due_now("later")
    time.sleep(0.3)

    with caplog.at_level(logging.INFO, logger="django_oncejob"):
        one.executor.stop_claiming()
        HELD.set()
        assert one.executor.wait(10)
    assert f"Job 'later' at {when.isoformat()} left to other instances" in caplog.text
    assert ran(record_file) == ["busy"]
    assert not Run.objects.filter(job="later").exists()
    assert claim("later", when, "host-b:2") is ClaimResult.WON


def test_a_job_lost_is_done_before_its_batch_is_fenced(
    instance: Callable[..., Instance], record_file: Path
) -> None:
    """APScheduler hears at once of the jobs an instance holds nothing of, fence or no fence."""
    one = instance([spec("lost-one"), spec("won-one")], max_workers=4)
    done: list[str] = []
    one.scheduler.add_listener(lambda event: done.append(event.job_id), EVENT_JOB_EXECUTED)
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    assert claim("lost-one", when, "host-b:2") is ClaimResult.WON
    with transaction.atomic():
        # The same occurrence, not committed: the fence of "won-one" waits for it.
        history.running("won-one", when, "host-b:2", timezone.now()).save()
        one.due_now("lost-one", "won-one", when=when)
        # Before: told with the batch, after its fence, and a slow fence made APScheduler
        # skip the job's next occurrence as still running.
        wait_for(lambda: "lost-one" in done, 10, "the lost job to be done")
        assert ran(record_file) == []
        transaction.set_rollback(True)
    wait_for(lambda: ran(record_file) == ["won-one"], 10, "the won job to run")
