"""A job's schedule over time: one definition until a switch, the next from it on.

Every instance builds the same piecewise schedule from the same versions (rows of
:class:`~django_oncejob.models.ScheduleVersion`): each is in force from its
``effective_from`` until the next one's. A ``deploy`` version is a release's whole
definition of the job; an ``override`` replaces some of its keys (a new trigger
replaces the old one whole); a ``reset`` goes back to the deployed definition. The
trigger of the schedule fires the times of each version's trigger within its span, so
an occurrence belongs to one version only, on every instance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from apscheduler.triggers.base import BaseTrigger
from django.utils import timezone

from django_oncejob.jobs import triggers
from django_oncejob.jobs.parser import TRIGGER_KEYS, parse_job
from django_oncejob.jobs.spec import JobSpec

DEPLOY, OVERRIDE, RESET = "deploy", "override", "reset"


class Version(Protocol):
    """What a schedule is built from: a row of ScheduleVersion, or anything like it."""

    pk: Any
    job: str
    source: str
    definition: Any
    fingerprint: str
    effective_from: datetime | None


def storable(definition: Mapping[str, Any]) -> dict[str, Any]:
    """``definition`` as JSON keeps it: times in ISO 8601, tuples as lists."""
    result: dict[str, Any] = json.loads(json.dumps(dict(definition), default=_json))
    return result


def _json(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


def fingerprint(definition: Mapping[str, Any]) -> str:
    """The same for two definitions that schedule and run a job alike."""
    text = json.dumps(storable(definition), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the keys of ``override``; a trigger in ``override`` replaces base's."""
    result = dict(base)
    if any(key in override for key in TRIGGER_KEYS):
        for key in TRIGGER_KEYS:
            result.pop(key, None)
    result.update(override)
    return result


class VersionedTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires each span's trigger within that span: from its start, before the next one's."""

    __slots__ = ("spans",)

    def __init__(self, spans: list[tuple[datetime | None, BaseTrigger | None]]) -> None:
        #: (start, trigger) in order; a span's trigger ``None`` fires nothing.
        self.spans = spans

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        start = now
        if previous_fire_time is not None:
            start = max(now, previous_fire_time + timedelta(microseconds=1))
        for index, (begin, trigger) in enumerate(self.spans):
            end = self.spans[index + 1][0] if index + 1 < len(self.spans) else None
            if trigger is None or (end is not None and end <= start):
                continue
            found = next(
                triggers.fire_times(trigger, start if begin is None else max(start, begin), 1),
                None,
            )
            if found is not None and (end is None or found < end):
                return found
        return None

    def in_force(self, when: datetime) -> BaseTrigger | None:
        """The trigger of the span that holds ``when``."""
        found = None
        for begin, trigger in self.spans:
            if begin is not None and begin > when:
                break
            found = trigger
        return found

    def __str__(self) -> str:
        return " | ".join(f"{begin or '…'}: {trigger}" for begin, trigger in self.spans)


@dataclass(frozen=True)
class Span:
    """One version of a job's schedule, in force from ``begin`` until the next span's."""

    begin: datetime | None
    #: ``None`` where this instance cannot run the version (its function is not here).
    spec: JobSpec | None
    source: str
    version: Any = None

    @property
    def trigger_text(self) -> str:
        """This span's own schedule, in words."""
        trigger = self.spec.trigger if self.spec else None
        in_force = getattr(trigger, "in_force", None)
        own = in_force(self.begin or datetime.min.replace(tzinfo=UTC)) if in_force else trigger
        return triggers.describe(own) if own is not None else "-"


@dataclass(frozen=True)
class Schedule:
    """A job's spans, and the trigger that fires each in its turn."""

    job_id: str
    spans: tuple[Span, ...]
    #: What APScheduler fires the job by: each span's trigger within its span.
    trigger: BaseTrigger | None = None

    def spec_at(self, when: datetime) -> JobSpec | None:
        """The spec of the span that holds ``when``."""
        begins = [span.begin or datetime.min.replace(tzinfo=UTC) for span in self.spans]
        index = bisect_right(begins, when) - 1
        return self.spans[max(0, index)].spec

    def span_at(self, when: datetime) -> Span:
        begins = [span.begin or datetime.min.replace(tzinfo=UTC) for span in self.spans]
        return self.spans[max(0, bisect_right(begins, when) - 1)]

    def pending(self, now: datetime) -> Span | None:
        """The first span still to come, if any."""
        return next((span for span in self.spans if span.begin and span.begin > now), None)


def build(job_id: str, deployed: JobSpec | None, versions: Iterable[Version]) -> Schedule:
    """The schedule of ``job_id`` from its versions, in the order they take effect.

    ``deployed`` is this instance's own definition of the job: used where a version's
    definition is the same, and alone where there is no version yet.
    """
    ordered = sorted(
        versions,
        key=lambda v: (v.effective_from or datetime.min.replace(tzinfo=UTC), v.pk or 0),
    )
    # Of versions that take effect at the same time (two instances of a release starting
    # at once), the one recorded last.
    ordered = [
        version
        for index, version in enumerate(ordered)
        if index + 1 == len(ordered) or ordered[index + 1].effective_from != version.effective_from
    ]
    if not ordered:
        assert deployed is not None
        return _composed(Schedule(job_id, (Span(None, deployed, DEPLOY),)))
    spans: list[Span] = []
    base: Mapping[str, Any] = storable(deployed.definition) if deployed else {}
    if ordered[0].effective_from is not None:
        # Before the first version recorded, the job ran as this instance defines it.
        spans.append(Span(None, deployed, DEPLOY))
    for version in ordered:
        if version.source == DEPLOY:
            base = version.definition
            definition = dict(base)
        elif version.source == OVERRIDE:
            definition = merged(base, version.definition)
        else:
            definition = dict(base)
        spec = _spec(
            job_id, definition, deployed, "override" if version.source == OVERRIDE else None
        )
        spans.append(Span(version.effective_from, spec, version.source, version))
    return _composed(Schedule(job_id, tuple(spans)))


def _spec(
    job_id: str, definition: Mapping[str, Any], deployed: JobSpec | None, source: str | None
) -> JobSpec | None:
    if deployed is not None and fingerprint(definition) == fingerprint(deployed.definition):
        return deployed if source is None else dataclasses.replace(deployed, source=source)
    spec, errors = parse_job(
        job_id, definition, source=source or (deployed.source if deployed else "settings")
    )
    return None if errors else spec


def _composed(schedule: Schedule) -> Schedule:
    """The schedule with its trigger, which each span's spec fires by too."""
    if len(schedule.spans) == 1 and schedule.spans[0].begin is None:
        only = schedule.spans[0].spec
        return dataclasses.replace(schedule, trigger=only.trigger if only else None)
    trigger = VersionedTrigger(
        [(span.begin, span.spec.trigger if span.spec else None) for span in schedule.spans]
    )
    spans = tuple(
        dataclasses.replace(
            span, spec=dataclasses.replace(span.spec, trigger=trigger) if span.spec else None
        )
        for span in schedule.spans
    )
    return Schedule(schedule.job_id, spans, trigger)


class ScheduleBook(Mapping[str, JobSpec]):
    """This instance's jobs, each with its schedule: as a mapping, the spec in force now.

    Built from the instance's own jobs and the versions it has read; replaced job by job,
    whole, as new versions come, so that readers on other threads never see half of one.
    """

    def __init__(self, deployed: Mapping[str, JobSpec]) -> None:
        self.deployed = dict(deployed)
        self._versions: dict[str, list[Version]] = {}
        self._schedules = {job_id: build(job_id, spec, ()) for job_id, spec in deployed.items()}
        #: The newest version read.
        self.last_pk = 0
        self._lock = threading.Lock()

    def add(self, versions: Iterable[Version]) -> set[str]:
        """Take in versions read from the history; returns the ids of the jobs they change."""
        changed: set[str] = set()
        with self._lock:
            for version in versions:
                self.last_pk = max(self.last_pk, int(version.pk or 0))
                if version.job not in self.deployed:
                    continue  # a job of another release: left to the instances that have it
                self._versions.setdefault(version.job, []).append(version)
                changed.add(version.job)
            schedules = dict(self._schedules)
            for job_id in changed:
                schedules[job_id] = build(job_id, self.deployed[job_id], self._versions[job_id])
            self._schedules = schedules
        return changed

    def deployed_definition(self, job_id: str) -> dict[str, Any]:
        """The definition of the last deploy version in force, or this instance's own."""
        now = timezone.now()
        definition = storable(self.deployed[job_id].definition)
        for span in self._schedules[job_id].spans:
            if span.begin is not None and span.begin > now:
                break
            if span.source == DEPLOY and span.version is not None:
                definition = dict(span.version.definition)
        return definition

    def schedule(self, job_id: str) -> Schedule:
        return self._schedules[job_id]

    def spec_at(self, job_id: str, when: datetime) -> JobSpec | None:
        """The spec of the job's occurrence at ``when``; ``None`` if it cannot run here."""
        return self._schedules[job_id].spec_at(when)

    def trigger(self, job_id: str) -> BaseTrigger | None:
        """What APScheduler fires the job by: every span's trigger in its turn; ``None`` if
        no span is this instance's to run."""
        return self._schedules[job_id].trigger

    def __getitem__(self, job_id: str) -> JobSpec:
        spec = self._schedules[job_id].spec_at(timezone.now())
        return spec if spec is not None else self.deployed[job_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schedules)

    def __len__(self) -> int:
        return len(self._schedules)
