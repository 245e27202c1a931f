"""Deterministic APScheduler triggers: every instance computes the same fire times.

A claim key carries the occurrence's scheduled time, so two instances only
compete for one occurrence if they compute the very same datetime for it.
Hence no jitter, no "start from now", and one time zone for all.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from django.utils.translation import gettext_lazy

from django_oncejob.messages import Text, interpolate

CRON_FIELDS = (
    "year",
    "month",
    "day",
    "week",
    "day_of_week",
    "hour",
    "minute",
    "second",
    "start_date",
    "end_date",
)
INTERVAL_FIELDS = ("weeks", "days", "hours", "minutes", "seconds", "start_date")

#: Standard crontab numbers days 0-7 from Sunday; APScheduler 3 numbers them from Monday.
_CRONTAB_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMERIC_DAYS = re.compile(r"^(\*|\d+)(?:-(\d+))?(?:/(\d+))?$")

#: Where an interval without ``start_date`` is counted from, in the job's time zone.
DEFAULT_ANCHOR = datetime(2000, 1, 1)


class TriggerError(ValueError):
    """A trigger definition that cannot be built; ``hint`` says what would be valid."""

    def __init__(self, message: Text, hint: Text) -> None:
        super().__init__(message)
        self.hint = hint


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


def cron_trigger(value: object, timezone: ZoneInfo) -> WallClockCronTrigger:
    """Build a cron trigger from a crontab string or a dict of CronTrigger fields."""
    if isinstance(value, str):
        fields = value.split()
        if len(fields) != 5:
            raise TriggerError(
                interpolate(
                    gettext_lazy(
                        "a cron string has 5 fields (minute hour day month day-of-week), "
                        "got %(count)s in %(value)s"
                    ),
                    count=len(fields),
                    value=repr(value),
                ),
                gettext_lazy(
                    "Write e.g. '0 21 * * *', or a dict such as {'second': '*'} for seconds."
                ),
            )
        minute, hour, day, month, day_of_week = fields
        if day != "*" and day_of_week != "*":
            # crontab runs on either; APScheduler would run only when both match.
            raise TriggerError(
                interpolate(
                    gettext_lazy(
                        "%(value)s restricts both the day of the month and the day of the week, "
                        "which crontab reads as 'either' and APScheduler as 'both'"
                    ),
                    value=repr(value),
                ),
                gettext_lazy("Leave one of the two as '*', or define two jobs."),
            )
        try:
            return WallClockCronTrigger(
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=crontab_days(day_of_week),
                timezone=timezone,
            )
        except ValueError as exc:
            raise TriggerError(
                interpolate(
                    # Translators: error is why the cron string is invalid, often from APScheduler.
                    gettext_lazy("invalid cron string %(value)s: %(error)s"),
                    value=repr(value),
                    error=exc,
                ),
                gettext_lazy(
                    "Fields are minute 0-59, hour 0-23, day 1-31, month 1-12, "
                    "day of week 0-7 (0 and 7 are Sunday) or mon-sun."
                ),
            ) from exc
    if isinstance(value, Mapping):
        unknown = [key for key in value if key not in CRON_FIELDS]
        if unknown:
            raise _unknown_field("cron", unknown[0], CRON_FIELDS)
        if not value:
            raise TriggerError(
                gettext_lazy("a cron dict needs at least one field"),
                gettext_lazy("Write e.g. {'second': '*'} or {'hour': 21, 'minute': 0}."),
            )
        for key, item in value.items():
            if not isinstance(item, str | int) or isinstance(item, bool):
                raise TriggerError(
                    interpolate(
                        gettext_lazy(
                            "cron field %(field)s must be a string or an integer, got %(value)s"
                        ),
                        field=repr(key),
                        value=repr(item),
                    ),
                    gettext_lazy("Write e.g. {'minute': '*/5'} or {'hour': 21}."),
                )
        try:
            return WallClockCronTrigger(**dict(value), timezone=timezone)
        except (ValueError, TypeError) as exc:
            raise TriggerError(
                interpolate(
                    # Translators: error is why the fields are invalid, often from APScheduler.
                    gettext_lazy("invalid cron fields %(fields)s: %(error)s"),
                    fields=repr(dict(value)),
                    error=exc,
                ),
                gettext_lazy(
                    "See APScheduler's CronTrigger for each field's syntax; day_of_week "
                    "numbers count from Monday (0) there, so prefer names such as 'mon-fri'."
                ),
            ) from exc
    raise TriggerError(
        interpolate(
            # Translators: type is a Python type name, e.g. int.
            gettext_lazy("'cron' must be a crontab string or a dict, got %(type)s"),
            type=type(value).__name__,
        ),
        gettext_lazy("Write e.g. '0 21 * * *' or {'second': '*'}."),
    )


def _unknown_field(kind: str, key: object, fields: tuple[str, ...]) -> TriggerError:
    if kind == "cron":
        message = gettext_lazy("unknown cron field %(field)s")
    else:
        message = gettext_lazy("unknown interval field %(field)s")
    close = difflib.get_close_matches(str(key).lower(), fields, n=1)
    if close:
        hint = gettext_lazy("Did you mean %(close)s? Valid fields are %(fields)s.")
    else:
        hint = gettext_lazy("Valid fields are %(fields)s.")
    return TriggerError(
        message % {"field": repr(key)},
        hint % {"close": repr(close[0]) if close else "", "fields": ", ".join(fields)},
    )


def crontab_days(field: str) -> str:
    """Translate a crontab day-of-week field (0 = Sunday) into day names for APScheduler."""
    parts = []
    for part in field.split(","):
        match = _NUMERIC_DAYS.match(part)
        if match is None:
            parts.append(part)
            continue
        first, last, step = match.groups()
        if first == "*":
            if last is not None:
                raise ValueError(
                    interpolate(
                        gettext_lazy("Unrecognized day of week expression %(part)s"),
                        part=repr(part),
                    )
                )
            if step is None:
                parts.append("*")
                continue
            start, stop = 0, 6
        else:
            start = int(first)
            stop = int(last) if last is not None else (6 if step else start)
        if not 0 <= start <= 7 or not 0 <= stop <= 7 or start > stop:
            raise ValueError(
                interpolate(
                    gettext_lazy("day of week %(part)s is not within 0-7 (0 and 7 are Sunday)"),
                    part=repr(part),
                )
            )
        increment = int(step) if step else 1
        if increment < 1:
            raise ValueError(gettext_lazy("Increment must be higher than 0"))
        parts.extend(_CRONTAB_DAYS[day] for day in range(start, stop + 1, increment))
    return ",".join(dict.fromkeys(parts))


def interval_trigger(value: object, timezone: ZoneInfo) -> AnchoredIntervalTrigger:
    """Build an interval trigger anchored to ``start_date`` or to 2000-01-01 00:00 local time."""
    if not isinstance(value, Mapping):
        raise TriggerError(
            interpolate(
                # Translators: type is a Python type name, e.g. str.
                gettext_lazy("'interval' must be a dict, got %(type)s"),
                type=type(value).__name__,
            ),
            gettext_lazy(
                "Write e.g. {'seconds': 30} or {'hours': 1, 'start_date': '2026-01-01T00:30:00Z'}."
            ),
        )
    unknown = [key for key in value if key not in INTERVAL_FIELDS]
    if unknown:
        raise _unknown_field("interval", unknown[0], INTERVAL_FIELDS)
    lengths = {key: item for key, item in value.items() if key != "start_date"}
    for key, item in lengths.items():
        if not isinstance(item, int | float) or isinstance(item, bool):
            raise TriggerError(
                interpolate(
                    gettext_lazy("interval field %(field)s must be a number, got %(value)s"),
                    field=repr(key),
                    value=repr(item),
                ),
                gettext_lazy("Write e.g. {'seconds': 30}."),
            )
    try:
        interval = timedelta(**lengths)
    except (OverflowError, ValueError) as exc:
        raise TriggerError(
            interpolate(
                gettext_lazy("interval %(interval)s is not a valid duration: %(error)s"),
                interval=repr(dict(lengths)),
                error=exc,
            ),
            gettext_lazy("Write e.g. {'seconds': 30} or {'days': 7}."),
        ) from exc
    if interval < timedelta(seconds=1) or interval % timedelta(milliseconds=1):
        raise TriggerError(
            interpolate(
                gettext_lazy(
                    # Translators: interval is a duration such as 0:00:00.500000.
                    "an interval must be at least one second in whole milliseconds, "
                    "got %(interval)s"
                ),
                interval=interval,
            ),
            gettext_lazy("Write e.g. {'seconds': 30} or {'minutes': 5}."),
        )
    if "start_date" in value:
        anchor = aware_datetime(value["start_date"], "start_date")
    else:
        anchor = DEFAULT_ANCHOR.replace(tzinfo=timezone)
    try:
        anchor = anchor.astimezone(UTC)
    except OverflowError as exc:
        raise TriggerError(
            interpolate(gettext_lazy("'start_date' is out of range: %(error)s"), error=exc),
            gettext_lazy("Write e.g. '2026-01-01T00:30:00Z'."),
        ) from exc
    return AnchoredIntervalTrigger(interval, anchor, timezone)


def date_trigger(value: object, timezone: ZoneInfo) -> DateTrigger:
    """Build a one-off trigger from an ISO-8601 datetime with an offset."""
    return DateTrigger(run_date=aware_datetime(value, "at"), timezone=timezone)


def aware_datetime(value: object, name: str) -> datetime:
    """Parse an ISO-8601 string (or take a datetime) that must carry a UTC offset."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise TriggerError(
                interpolate(
                    # Translators: name is the key of the job definition, 'at' or 'start_date'.
                    gettext_lazy("%(name)s is not an ISO-8601 datetime: %(error)s"),
                    name=repr(name),
                    error=exc,
                ),
                gettext_lazy("Write e.g. '2026-12-01T09:00:00+08:00'."),
            ) from exc
    if not isinstance(value, datetime):
        raise TriggerError(
            interpolate(
                # Translators: name is the key of the job definition, 'at' or 'start_date'.
                gettext_lazy("%(name)s must be an ISO-8601 string or a datetime, got %(type)s"),
                name=repr(name),
                type=type(value).__name__,
            ),
            gettext_lazy("Write e.g. '2026-12-01T09:00:00+08:00'."),
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise TriggerError(
            interpolate(
                # Translators: name is the key of the job definition, 'at' or 'start_date'.
                gettext_lazy("%(name)s has no UTC offset: %(value)s"),
                name=repr(name),
                value=value.isoformat(),
            ),
            gettext_lazy(
                "Add the offset, e.g. '2026-12-01T09:00:00+08:00' or '2026-12-01T01:00:00Z', "
                "so every instance reads the same instant."
            ),
        )
    return value


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


def describe(trigger: BaseTrigger) -> str:
    """The trigger in words, for ``runjobs --list`` and the admin."""
    if isinstance(trigger, AnchoredIntervalTrigger):
        start = trigger.anchor.astimezone(trigger.timezone)
        return f"every {_duration(trigger.interval)} from {start.isoformat(' ')}"
    if isinstance(trigger, DateTrigger):
        return f"once at {trigger.run_date.isoformat(' ')}"
    if isinstance(trigger, CronTrigger):
        return f"{_cron_words(trigger)} ({trigger.timezone})"
    return str(trigger)


def _duration(interval: timedelta) -> str:
    remaining = int(interval.total_seconds())
    milliseconds = interval.microseconds // 1000
    parts = []
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount} {unit}{'s' if amount != 1 else ''}")
    if remaining or milliseconds or not parts:
        seconds = f"{remaining}.{milliseconds:03d}" if milliseconds else str(remaining)
        parts.append(f"{seconds} second{'s' if seconds != '1' else ''}")
    return " ".join(parts)


def _cron_words(trigger: CronTrigger) -> str:
    fields: dict[str, Any] = {field.name: str(field) for field in trigger.fields}
    date_part = {key: fields[key] for key in ("year", "month", "day", "week", "day_of_week")}
    every_day = all(value == "*" for value in date_part.values())
    hour, minute, second = fields["hour"], fields["minute"], fields["second"]
    if every_day and (hour, minute, second) == ("*", "*", "*"):
        return "every second"
    if every_day and (hour, minute, second) == ("*", "*", "0"):
        return "every minute"
    if every_day and hour == "*" and minute.isdigit() and second == "0":
        return f"every hour at minute {minute}"
    if hour.isdigit() and minute.isdigit() and second.isdigit():
        at = f"{int(hour):02d}:{int(minute):02d}" + (f":{int(second):02d}" if second != "0" else "")
        if every_day:
            return f"every day at {at}"
        others = [f"{k.replace('_', ' ')} {v}" for k, v in date_part.items() if v != "*"]
        return f"at {at} on {', '.join(others)}"
    described = [
        f"{name.replace('_', ' ')} {value}" for name, value in fields.items() if value != "*"
    ]
    return "cron: " + ", ".join(described)
