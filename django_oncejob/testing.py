"""Helpers for the tests of a project's own jobs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from django.utils import timezone

from django_oncejob.occurrence import Occurrence, _current


@contextlib.contextmanager
def occurrence(
    job: str, scheduled_for: datetime | None = None, owner: str = "test"
) -> Iterator[Occurrence]:
    """Make :func:`~django_oncejob.current_occurrence` return this occurrence inside the block.

    For a test that calls a job function itself, as ``runjobs`` would call it for
    the occurrence of ``job`` scheduled for ``scheduled_for`` (by default, now).
    """
    current = Occurrence(job, (scheduled_for or timezone.now()).astimezone(UTC), owner)
    token = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(token)
