"""Deterministic APScheduler triggers: every instance computes the same fire times.

A claim key carries the occurrence's scheduled time, so two instances only
compete for one occurrence if they compute the very same datetime for it.
Hence no random jitter (a job's ``jitter`` is derived from each occurrence, see
:class:`JitteredTrigger`), no "start from now", and one time zone for all.
:mod:`~django_oncejob.jobs.trigger_parser` builds them from a job's definition.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from django.utils.translation import gettext, ngettext

#: Where an interval without ``start_date`` is counted from, in the job's time zone.
DEFAULT_ANCHOR = datetime(2000, 1, 1)


class AnchoredIntervalTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at ``anchor + n * interval``, computed in exact integer microseconds.

    APScheduler's IntervalTrigger counts from "now" by default and adds float
    timestamps, so two instances can disagree on a fire time by a microsecond.
    """

    __slots__ = ("anchor", "interval", "timezone")

    def __init__(self, interval: timedelta, anchor: datetime, timezone: tzinfo) -> None:
        self.interval = interval
        self.anchor = anchor
        self.timezone = timezone

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is not None:
            steps = (previous_fire_time - self.anchor) // self.interval + 1
        elif now <= self.anchor:
            steps = 0
        else:
            steps = -((self.anchor - now) // self.interval)  # ceiling division
        return (self.anchor + steps * self.interval).astimezone(self.timezone)

    def __str__(self) -> str:
        return f"interval[{self.interval}]"


class WallClockCronTrigger(CronTrigger):  # type: ignore[misc]
    """A CronTrigger with one defined behaviour across daylight saving time changes.

    A job whose hour field matches every hour runs on elapsed time, as APScheduler's
    CronTrigger does: in both passes of an hour repeated in autumn, and not at the
    times a spring change skips. Any other job runs once per matching wall-clock time,
    read as ``datetime(..., tzinfo=zone)`` reads it (``fold=0``): a repeated time at
    its first occurrence only, a skipped time with the UTC offset from before the
    change (02:30 skipped in Europe/Berlin runs at 03:30 CEST).
    """

    __slots__ = ("_every_hour", "_wall_fields", "_wall_clock")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        hour = self.fields[self.FIELD_NAMES.index("hour")]
        self._every_hour = all(hour.get_next_value(datetime(2000, 1, 1, h)) == h for h in range(24))
        self._wall_fields = {key: item for key, item in options.items() if key in self.FIELD_NAMES}
        # Built when first asked for a fire time: validating settings never needs it,
        # and parsing the fields a second time is most of what a job costs to check.
        self._wall_clock: CronTrigger | None = None

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if self._every_hour:
            return super().get_next_fire_time(previous_fire_time, now)  # type: ignore[no-any-return]
        if previous_fire_time is not None:
            start = previous_fire_time.astimezone(UTC) + timedelta(microseconds=1)
        else:
            start = now.astimezone(UTC)
            if self.start_date is not None:
                start = max(start, self.start_date.astimezone(UTC))
        start_wall = _wall_time(start, self.timezone)
        # Just after a spring change, times it skipped may still be due.
        wall = start_wall - _recent_jump(start, self.timezone)
        while (match := self._next_wall_time(wall)) is not None:
            fire = match.replace(tzinfo=self.timezone).astimezone(UTC)
            if fire < start:
                # Passed already, or a repeated time whose first occurrence has passed.
                wall = max(match + timedelta(seconds=1), start_wall)
                continue
            fire_wall = _wall_time(fire, self.timezone)
            if fire_wall != match:
                # Skipped by a spring change, so it runs at ``fire_wall``, later than
                # ``match``: a time on the clock after the change may come first.
                change = _clock_change(
                    match.replace(tzinfo=self.timezone, fold=1), fire, self.timezone
                )
                after = self._next_wall_time(max(_wall_time(change, self.timezone), start_wall))
                if after is not None and after < fire_wall:
                    fire = after.replace(tzinfo=self.timezone).astimezone(UTC)
            if self.end_date is not None and fire > self.end_date:
                return None
            return fire.astimezone(self.timezone)
        return None

    def _next_wall_time(self, wall: datetime) -> datetime | None:
        if self._wall_clock is None:
            # The same fields on a clock that never changes: it finds wall-clock times.
            self._wall_clock = CronTrigger(**self._wall_fields, timezone=UTC)
        match: datetime | None = self._wall_clock.get_next_fire_time(None, wall.replace(tzinfo=UTC))
        return None if match is None else match.replace(tzinfo=None)


def _wall_time(instant: datetime, timezone: tzinfo) -> datetime:
    return instant.astimezone(timezone).replace(tzinfo=None)


def _offset(instant: datetime, timezone: tzinfo) -> timedelta | None:
    return instant.astimezone(timezone).utcoffset()


#: Longer than any jump of a clock in the tz database (Antarctica/Troll jumps 2 hours).
_LONGEST_JUMP = timedelta(hours=3)


def _recent_jump(instant: datetime, timezone: tzinfo) -> timedelta:
    """How far the clock jumped forward, if it did so less than that long before ``instant``."""
    offset, earlier = _offset(instant, timezone), _offset(instant - _LONGEST_JUMP, timezone)
    assert offset is not None and earlier is not None
    jump = offset - earlier
    if jump > timedelta(0) and _offset(instant - jump, timezone) != offset:
        return jump
    return timedelta(0)


def _clock_change(before: datetime, after: datetime, timezone: tzinfo) -> datetime:
    """The whole second in ``(before, after]`` at which ``timezone`` changes its offset."""
    low, high = before.astimezone(UTC), after.astimezone(UTC)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) // 2
        middle -= timedelta(microseconds=middle.microsecond)
        if _offset(middle, timezone) == _offset(low, timezone):
            low = middle
        else:
            high = middle
    return high


def fire_times(trigger: BaseTrigger, now: datetime, count: int) -> Iterator[datetime]:
    """The trigger's next ``count`` fire times after ``now``."""
    previous: datetime | None = None
    for _ in range(count):
        fire_time: datetime | None = trigger.get_next_fire_time(previous, now)
        # A DateTrigger answers with its date even when that has passed.
        if fire_time is None or (previous is None and fire_time < now):
            return
        yield fire_time
        previous = fire_time
        # CronTrigger starts from min(now, previous + 1 µs): move now along too.
        # In UTC: local arithmetic would drop the fold of an autumn repeated hour.
        now = fire_time.astimezone(UTC) + timedelta(microseconds=1)


def next_fire_time(trigger: BaseTrigger, after: datetime) -> datetime | None:
    """The trigger's first fire time after ``after``."""
    return next(fire_times(trigger, after + timedelta(microseconds=1), 1), None)


def jitter_delay(job_id: str, scheduled_for: datetime, jitter: float) -> timedelta:
    """How long after ``scheduled_for`` the occurrence starts: under ``jitter`` seconds, the
    same on every instance, since it is a hash of the job id and the scheduled time."""
    name = f"{job_id}:{scheduled_for.astimezone(UTC).isoformat()}".encode()
    fraction = int.from_bytes(hashlib.sha256(name).digest()[:8], "big") / 2**64
    return timedelta(microseconds=int(fraction * jitter * 1_000_000))


class JitteredTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at each of ``trigger``'s times plus its :func:`jitter_delay`, for APScheduler.

    The claim key and the history keep the scheduled time: :meth:`scheduled_for`
    finds it back from the time APScheduler fires.
    """

    __slots__ = ("trigger", "job_id", "jitter")

    def __init__(self, trigger: BaseTrigger, job_id: str, jitter: float) -> None:
        self.trigger = trigger
        self.job_id = job_id
        self.jitter = jitter

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        start = now - timedelta(seconds=self.jitter)
        if previous_fire_time is not None:
            # Fire times are in order as long as jitter is shorter than the period.
            start = max(start, self.scheduled_for(previous_fire_time) + timedelta(microseconds=1))
        for scheduled in fire_times(self.trigger, start, 10_000):
            fire = scheduled + jitter_delay(self.job_id, scheduled, self.jitter)
            if fire >= now and (previous_fire_time is None or fire > previous_fire_time):
                return fire
        return None

    def scheduled_for(self, fired: datetime) -> datetime:
        """The scheduled time of the occurrence that fires at ``fired``."""
        start = fired - timedelta(seconds=self.jitter)
        for scheduled in fire_times(self.trigger, start, 10_000):
            if scheduled > fired:
                break
            if scheduled + jitter_delay(self.job_id, scheduled, self.jitter) == fired:
                return scheduled
        return fired

    def __str__(self) -> str:
        return f"{self.trigger} + jitter[{self.jitter}]"


def describe(trigger: BaseTrigger) -> str:
    """The trigger in words, for ``runjobs --list`` and the admin, in the active language."""
    in_force = getattr(trigger, "in_force", None)
    if in_force is not None:
        # A schedule of several versions: the one in force now.
        found = in_force(datetime.now(UTC))
        return describe(found) if found is not None else gettext("not run by this instance")
    if isinstance(trigger, AnchoredIntervalTrigger):
        every = gettext("every %(duration)s") % {"duration": _duration(trigger.interval)}
        if trigger.anchor == DEFAULT_ANCHOR.replace(tzinfo=trigger.timezone):
            return every  # counted from the default start: nothing to say of it
        start = trigger.anchor.astimezone(trigger.timezone)
        # Translators: every is e.g. "every 2 hours", start a date and time.
        return gettext("%(every)s from %(start)s") % {"every": every, "start": start.isoformat(" ")}
    if isinstance(trigger, DateTrigger):
        return gettext("once at %(when)s") % {"when": trigger.run_date.isoformat(" ")}
    if isinstance(trigger, CronTrigger):
        # Translators: schedule is e.g. "every day at 21:00", zone a time zone name.
        return gettext("%(schedule)s (%(zone)s)") % {
            "schedule": _cron_words(trigger),
            "zone": trigger.timezone,
        }
    return str(trigger)


def _unit(name: str, amount: int | str) -> str:
    """``amount`` of a unit of time, in words: "1 hour", "1.500 seconds"."""
    count = 1 if str(amount) == "1" else 2
    forms = {
        "week": ngettext("%(amount)s week", "%(amount)s weeks", count),
        "day": ngettext("%(amount)s day", "%(amount)s days", count),
        "hour": ngettext("%(amount)s hour", "%(amount)s hours", count),
        "minute": ngettext("%(amount)s minute", "%(amount)s minutes", count),
        "second": ngettext("%(amount)s second", "%(amount)s seconds", count),
    }
    return forms[name] % {"amount": amount}


def _duration(interval: timedelta) -> str:
    remaining = int(interval.total_seconds())
    milliseconds = interval.microseconds // 1000
    parts = []
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(_unit(unit, amount))
    if remaining or milliseconds or not parts:
        seconds = f"{remaining}.{milliseconds:03d}" if milliseconds else str(remaining)
        parts.append(_unit("second", seconds))
    return " ".join(parts)


def _field_names() -> dict[str, str]:
    return {
        "year": gettext("year"),
        "month": gettext("month"),
        "day": gettext("day"),
        "week": gettext("week"),
        "day_of_week": gettext("day of week"),
        "hour": gettext("hour"),
        "minute": gettext("minute"),
        "second": gettext("second"),
    }


def _cron_words(trigger: CronTrigger) -> str:
    fields: dict[str, Any] = {field.name: str(field) for field in trigger.fields}
    date_part = {key: fields[key] for key in ("year", "month", "day", "week", "day_of_week")}
    every_day = all(value == "*" for value in date_part.values())
    hour, minute, second = fields["hour"], fields["minute"], fields["second"]
    if every_day and (hour, minute, second) == ("*", "*", "*"):
        return gettext("every second")
    if every_day and (hour, minute, second) == ("*", "*", "0"):
        return gettext("every minute")
    if every_day and hour == "*" and minute.isdigit() and second == "0":
        return gettext("every hour at minute %(minute)s") % {"minute": minute}
    # A step in one field, the finer ones at their start: "every 20 seconds".
    for unit, step, finer, coarser in (
        ("second", second, (), (minute, hour)),
        ("minute", minute, (second,), (hour,)),
        ("hour", hour, (second, minute), ()),
    ):
        plain = all(v == "0" for v in finer) and all(v == "*" for v in coarser)
        if every_day and plain and re.fullmatch(r"\*/\d+", step):
            return gettext("every %(duration)s") % {"duration": _unit(unit, step[2:])}
    names = _field_names()
    # Translators: joins the parts of a schedule, e.g. "month 1, day 1".
    comma = gettext(", ")
    if hour.isdigit() and minute.isdigit() and second.isdigit():
        at = f"{int(hour):02d}:{int(minute):02d}" + (f":{int(second):02d}" if second != "0" else "")
        if every_day:
            return gettext("every day at %(time)s") % {"time": at}
        others = comma.join(f"{names[k]} {v}" for k, v in date_part.items() if v != "*")
        # Translators: time is e.g. 09:00, days e.g. "day of week mon,tue".
        return gettext("at %(time)s on %(days)s") % {"time": at, "days": others}
    described = comma.join(
        f"{names[name]} {value}" for name, value in fields.items() if value != "*"
    )
    return gettext("cron: %(fields)s") % {"fields": described}
