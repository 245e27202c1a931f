"""Builds a job's trigger from its ``cron``, ``interval`` or ``at`` setting.

Each bad value raises :class:`TriggerError`, whose message and hint the job
parser turns into a system check error.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from apscheduler.triggers.date import DateTrigger
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from django_oncejob.jobs.triggers import (
    DEFAULT_ANCHOR,
    AnchoredIntervalTrigger,
    WallClockCronTrigger,
)
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


class TriggerError(ValueError):
    """A trigger definition that cannot be built; ``hint`` says what would be valid."""

    def __init__(self, message: Text, hint: Text) -> None:
        super().__init__(message)
        self.hint = hint


#: crontab's @ shortcuts, as the five fields they stand for (@reboot has no schedule).
SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def crontab(value: object) -> str:
    """A cron string's five fields, its @ shortcut spelled out; ``""`` for a dict or nothing."""
    if not isinstance(value, str):
        return ""
    return " ".join(SHORTCUTS.get(value.strip().lower(), value).split())


def cron_trigger(value: object, timezone: ZoneInfo) -> WallClockCronTrigger:
    """Build a cron trigger from a crontab string or a dict of CronTrigger fields."""
    if isinstance(value, str):
        fields = SHORTCUTS.get(value.strip().lower(), value).split()
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
            named = {"minute": minute, "hour": hour, "day": day, "month": month}
            with contextlib.suppress(ValueError):  # if it raised, exc says why in our words
                named["day_of_week"] = crontab_days(day_of_week)
            raise TriggerError(
                interpolate(
                    # Translators: error says which field is invalid, e.g. "hour '24' is not …".
                    gettext_lazy("invalid cron string %(value)s: %(error)s"),
                    value=repr(value),
                    error=_field_error(named, timezone, exc, crontab=True),
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
                    # Translators: error says which field is invalid, e.g. "hour 25 is not …".
                    gettext_lazy("invalid cron fields %(fields)s: %(error)s"),
                    fields=repr(dict(value)),
                    error=_field_error(dict(value), timezone, exc),
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


#: Each cron field in words, and the values it takes.
_CRON_FIELD_WORDS: dict[str, tuple[Text, Text]] = {
    "year": (gettext_lazy("year"), "1970-9999"),
    "month": (gettext_lazy("month"), gettext_lazy("1-12 or jan-dec")),
    "day": (gettext_lazy("day"), "1-31"),
    "week": (gettext_lazy("week"), "1-53"),
    "day_of_week": (gettext_lazy("day of week"), gettext_lazy("0-6 from Monday, or mon-sun")),
    "hour": (gettext_lazy("hour"), "0-23"),
    "minute": (gettext_lazy("minute"), "0-59"),
    "second": (gettext_lazy("second"), "0-59"),
    "start_date": (gettext_lazy("start date"), gettext_lazy("a date and time")),
    "end_date": (gettext_lazy("end date"), gettext_lazy("a date and time")),
}


def _field_error(
    fields: Mapping[str, object], timezone: ZoneInfo, exc: Exception, *, crontab: bool = False
) -> Text:
    """Which of ``fields`` makes the trigger fail, in words of our own, not APScheduler's.

    ``crontab``: the fields come from a crontab string, whose days count from Sunday.
    """
    for name, value in fields.items():
        try:
            WallClockCronTrigger(**{name: value}, timezone=timezone)
        except (ValueError, TypeError):
            words, values = _CRON_FIELD_WORDS[name]
            if crontab and name == "day_of_week":
                values = gettext_lazy("0-7 from Sunday, or sun-sat")
            return interpolate(
                # Translators: field is e.g. "hour", values e.g. "0-23".
                gettext_lazy("%(field)s %(value)s is not valid: it takes %(values)s"),
                field=words,
                value=repr(value),
                values=values,
            )
    if exc.args and isinstance(exc.args[0], Promise):
        return cast("Text", exc.args[0])  # ours, from crontab_days(), still lazy
    return str(exc)  # only together are the fields wrong, as APScheduler says


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
                    # Translators: interval is the interval as written, e.g. {'seconds': -5}.
                    "an interval must be at least one second in whole milliseconds, "
                    "got %(interval)s"
                ),
                interval=repr(dict(lengths)),
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
