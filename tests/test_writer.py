"""The history writer of ``runjobs``: its two threads, on the real test database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import transaction

from django_oncejob.models import Run
from django_oncejob.running import history
from django_oncejob.running.history import Ending
from django_oncejob.running.history_writer import HistoryWriter

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = datetime(2030, 1, 1, tzinfo=UTC)


def row(job: str, seconds: int = 0) -> Run:
    return history.running(job, WHEN + timedelta(seconds=seconds), "host-a:1", WHEN)


@pytest.fixture
def writer() -> Iterator[HistoryWriter]:
    writer = HistoryWriter(fence_wait=1.0, endings_wait=0.1)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop(10)


def test_a_fence_does_not_wait_behind_outcomes(writer: HistoryWriter) -> None:
    """An outcome stuck on a locked row leaves the next fence's answer as quick as ever."""
    first = row("first")
    assert writer.fence([first]) == [True]
    with transaction.atomic():
        Run.objects.select_for_update().get(pk=first.pk)
        writer.finish(first, Ending(Run.Status.SUCCEEDED))
        time.sleep(0.5)  # the outcome's UPDATE is now waiting for the row lock
        started = time.monotonic()
        # Before: the writer's one thread was in that UPDATE, and the fence timed out.
        assert writer.fence([row("second")]) == [True]
        assert time.monotonic() - started < 0.5
    assert writer.stop(10)
    assert Run.objects.get(pk=first.pk).status == Run.Status.SUCCEEDED


def test_outcomes_that_end_together_go_in_together(writer: HistoryWriter) -> None:
    rows = [row(f"job-{n:02d}") for n in range(50)]
    assert writer.fence(rows) == [True] * 50
    with mock.patch.object(history, "write_endings", wraps=history.write_endings) as written:
        for each in rows:  # over about 60 ms, as runs of a burst end
            writer.finish(each, Ending(Run.Status.SUCCEEDED))
            time.sleep(0.001)
        assert writer.stop(10)
    # Before: the writer woke for each outcome and wrote what had come, often one.
    assert written.call_count <= 2, [len(call.args[0]) for call in written.call_args_list]
    assert Run.objects.filter(status=Run.Status.SUCCEEDED).count() == 50


def test_an_outcome_waits_for_its_fence_still_in_flight() -> None:
    """A fence slower than fence_wait goes on; the run's outcome goes in after it, not before."""
    slow = HistoryWriter(fence_wait=0.2, endings_wait=0.0)
    events: list[str] = []
    insert_running, write_endings = history.insert_running, history.write_endings

    def insert(rows: list[Run]) -> list[bool]:
        inserted = insert_running(rows)
        events.append("fenced")
        return inserted

    def write(endings: list[tuple[Run, Ending]]) -> list[bool]:
        events.append("outcome")
        return write_endings(endings)

    with (
        mock.patch.object(history, "insert_running", insert),
        mock.patch.object(history, "write_endings", write),
    ):
        slow.start()
        try:
            with transaction.atomic():
                # The same occurrence, not committed yet: the fence's INSERT waits for it.
                row("late").save()
                late = row("late")
                assert slow.fence([late]) is None  # timed out: the cache claim alone decides
                slow.finish(late, Ending(Run.Status.SUCCEEDED))
                time.sleep(0.3)
                transaction.set_rollback(True)
            assert slow.stop(10)
        finally:
            slow.stop(1)
    assert events == ["fenced", "outcome"]
    [stored] = Run.objects.filter(job="late")
    assert (stored.owner, stored.status) == ("host-a:1", Run.Status.SUCCEEDED)
