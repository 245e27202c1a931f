"""One attempt of an occurrence as the monitors see it, from its start to its end."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from django_oncejob.cache.deployment import deployment_key
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.occurrence import Occurrence

#: Namespace of the check-in ids, which are derived from the occurrence and its attempt.
CHECK_IN_NAMESPACE = uuid.uuid5(
    uuid.NAMESPACE_URL, "https://django-oncejob.readthedocs.io/check-in"
)


def check_in_id(occurrence: Occurrence, attempt: int) -> str:
    """The same id wherever one attempt of an occurrence is reported: its start and its end."""
    when = occurrence.scheduled_for.isoformat()
    name = f"{deployment_key()}:{occurrence.job}:{when}#{attempt}"
    return str(uuid.uuid5(CHECK_IN_NAMESPACE, name))


@dataclass
class Watch:
    """One attempt of an occurrence run (or handed off) here, from its start to its end."""

    job: JobSpec
    occurrence: Occurrence
    attempt: int = 1
    #: When the claim was won, for the trace's start.
    claimed_at: datetime | None = None
    #: A task worker's run of an occurrence ``runjobs`` handed off: the start was reported there.
    handed_off: bool = False
    #: The trace context the occurrence was handed off with.
    trace: Mapping[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    #: ``"started"``, then ``"succeeded"``, ``"failed"``, ``"timed_out"`` or ``"enqueued"``.
    status: str = "started"
    error: str = ""
    #: Seconds the job ran, at the end.
    duration: float | None = None
    #: What each monitor keeps between the start and the end.
    state: dict[str, Any] = field(default_factory=dict)
    #: When it started, on the monotonic clock.
    began: float = 0.0
    #: ``False`` for a run another instance started and this one only saw end (timed out).
    started_here: bool = True

    @functools.cached_property
    def check_in_id(self) -> str:
        return check_in_id(self.occurrence, self.attempt)

    @property
    def lag(self) -> float:
        """Seconds between the scheduled time and the start."""
        started = self.started_at or timezone.now()
        return (started - self.occurrence.scheduled_for).total_seconds()
