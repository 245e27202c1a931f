"""The job store: APScheduler's memory store, with jobs due together in an order of its own."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from django_oncejob.scheduling.jobstore import RankedMemoryJobStore, _score

WHEN = datetime(2026, 11, 26, 21, 0, tzinfo=UTC)


def noop() -> None:
    pass


def scheduler_on(store: RankedMemoryJobStore) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    # Paused, it keeps its jobs in the store without ever running them.
    scheduler.start(paused=True)
    return scheduler


@pytest.fixture
def stores() -> Iterator[list[RankedMemoryJobStore]]:
    made = [RankedMemoryJobStore(rng=random.Random(seed)) for seed in (1, 2)]
    schedulers = [scheduler_on(store) for store in made]
    yield made
    for scheduler in schedulers:
        scheduler.shutdown(wait=False)


def add(store: RankedMemoryJobStore, job_id: str, when: datetime = WHEN) -> None:
    store._scheduler.add_job(noop, DateTrigger(when), id=job_id)


def ids(jobs: list) -> list[str]:  # type: ignore[type-arg]
    return [job.id for job in jobs]


def due_order(store: RankedMemoryJobStore, job_ids: list[str]) -> list[str]:
    """Add jobs all due at WHEN; the order the store hands them over in."""
    for job_id in job_ids:
        add(store, job_id)
    return ids(store.get_due_jobs(WHEN))


def test_two_instances_hand_over_the_jobs_due_together_in_orders_of_their_own(
    stores: list[RankedMemoryJobStore],
) -> None:
    job_ids = [f"job-{i:02d}" for i in range(40)]
    first, second = (due_order(store, job_ids) for store in stores)
    assert sorted(first) == sorted(second) == job_ids
    assert first != second
    assert first != job_ids


def test_earlier_jobs_come_first_and_later_ones_are_not_due(
    stores: list[RankedMemoryJobStore],
) -> None:
    store = stores[0]
    for i in range(10):
        add(store, f"late-{i}", WHEN + timedelta(seconds=1))
        add(store, f"early-{i}", WHEN)
    add(store, "tomorrow", WHEN + timedelta(days=1))

    due = ids(store.get_due_jobs(WHEN + timedelta(seconds=1)))
    assert [job_id.split("-")[0] for job_id in due] == ["early"] * 10 + ["late"] * 10
    assert sorted(ids(store.get_due_jobs(WHEN))) == [f"early-{i}" for i in range(10)]
    assert store.get_next_run_time() == WHEN
    assert ids(store.get_all_jobs())[-1] == "tomorrow"


def test_a_job_keeps_its_place_among_ties_when_it_is_rescheduled(
    stores: list[RankedMemoryJobStore],
) -> None:
    store = stores[0]
    scheduler = store._scheduler
    order = due_order(store, [f"job-{i:02d}" for i in range(20)])

    scheduler.reschedule_job("job-07", trigger=DateTrigger(WHEN + timedelta(hours=1)))
    assert "job-07" not in ids(store.get_due_jobs(WHEN))
    scheduler.reschedule_job("job-07", trigger=DateTrigger(WHEN))
    assert ids(store.get_due_jobs(WHEN)) == order


def test_paused_jobs_are_never_due_and_resume_where_they_were(
    stores: list[RankedMemoryJobStore],
) -> None:
    store = stores[0]
    scheduler = store._scheduler
    order = due_order(store, [f"job-{i}" for i in range(5)])

    scheduler.pause_job("job-3")
    assert store.lookup_job("job-3").next_run_time is None
    assert "job-3" not in ids(store.get_due_jobs(WHEN + timedelta(days=365)))
    assert ids(store.get_all_jobs())[-1] == "job-3"

    scheduler.resume_job("job-3")
    assert ids(store.get_due_jobs(WHEN)) == order


def test_lookup_remove_and_the_errors_apscheduler_expects(
    stores: list[RankedMemoryJobStore],
) -> None:
    store = stores[0]
    add(store, "report")
    add(store, "cleanup")
    job = store.lookup_job("report")
    assert job is not None and job.id == "report"
    assert store.lookup_job("missing") is None

    with pytest.raises(ConflictingIdError):
        store.add_job(job)
    store.remove_job("report")
    assert ids(store.get_all_jobs()) == ["cleanup"]
    with pytest.raises(JobLookupError):
        store.remove_job("report")
    with pytest.raises(JobLookupError):
        store.update_job(job)

    store.remove_all_jobs()
    assert store.get_all_jobs() == []
    assert store.get_due_jobs(WHEN) == []
    assert store.get_next_run_time() is None


def test_each_instance_hands_over_first_the_jobs_it_is_the_first_choice_for() -> None:
    owners = ["web-1:10", "web-2:11", "web-3:12"]
    job_ids = [f"job-{i:02d}" for i in range(60)]
    made = [RankedMemoryJobStore(owner, random.Random(i)) for i, owner in enumerate(owners)]
    schedulers = [scheduler_on(store) for store in made]
    try:
        orders = {}
        for store in made:
            store.prefer(owners)
            orders[store.owner] = due_order(store, job_ids)
        for owner, order in orders.items():
            firsts = {job for job in job_ids if max(owners, key=lambda o: _score(job, o)) == owner}
            assert 0 < len(firsts) < len(job_ids)
            assert set(order[: len(firsts)]) == firsts

        # One instance gone: its jobs become the survivors' first or second choices.
        made[0].prefer(owners[:2])
        order = ids(made[0].get_due_jobs(WHEN))
        firsts = {job for job in job_ids if _score(job, owners[0]) > _score(job, owners[1])}
        assert set(order[: len(firsts)]) == firsts
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=False)


def test_until_the_live_owners_are_known_the_order_is_at_random(
    stores: list[RankedMemoryJobStore],
) -> None:
    job_ids = [f"job-{i:02d}" for i in range(40)]
    alone = stores[0]
    order = due_order(alone, job_ids)
    # Alone, every job is its first choice.
    alone.prefer([alone.owner])
    assert ids(alone.get_due_jobs(WHEN)) == order
