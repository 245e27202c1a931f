"""The occurrence being run, visible to the job through :func:`current_occurrence`."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Occurrence:
    """One scheduled run of a job: the job id and its scheduled fire time."""

    #: The job id, the key in ``ONCEJOB["JOBS"]``.
    job: str
    #: The scheduled fire time, an aware datetime in UTC (not the time it started).
    scheduled_for: datetime
    #: The instance that won the claim.
    owner: str
    #: 1 for the first try, then 2, 3... for the job's retries and for runs taken over
    #: from a dead instance.
    attempt: int = 1


_current: ContextVar[Occurrence | None] = ContextVar("oncejob_occurrence", default=None)


def current_occurrence() -> Occurrence | None:
    """The occurrence this job run belongs to, or ``None`` outside a job."""
    return _current.get()
