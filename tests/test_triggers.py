from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.base import BaseTrigger

from django_oncejob.jobs.trigger_parser import (
    TriggerError,
    aware_datetime,
    cron_trigger,
    crontab_days,
    date_trigger,
    interval_trigger,
)
from django_oncejob.jobs.triggers import AnchoredIntervalTrigger, describe, fire_times

PARIS = ZoneInfo("Europe/Paris")
SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC_ZONE = ZoneInfo("UTC")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


Build = Callable[[Any, ZoneInfo], BaseTrigger]


def from_now(trigger: BaseTrigger, now: datetime, count: int) -> list[datetime]:
    return list(fire_times(trigger, now, count))


@pytest.mark.parametrize(
    ("build", "value"),
    [
        (cron_trigger, "*/5 * * * *"),
        (cron_trigger, "17 3,15 * * 1-5"),
        (cron_trigger, {"second": "*/7"}),
        (interval_trigger, {"minutes": 7}),
        (interval_trigger, {"seconds": 1.25}),
        (interval_trigger, {"hours": 5, "start_date": "2026-03-01T00:10:00+02:00"}),
    ],
)
def test_an_instance_started_later_computes_the_same_fire_times(
    build: Build, value: object
) -> None:
    # Two triggers built separately, as two processes would, from just before a DST change.
    early = build(value, PARIS)
    late = build(value, PARIS)
    first = from_now(early, at("2026-03-28T22:58:12.500001+00:00"), 400)
    assert len(first) == 400
    nows = (first[7] - timedelta(microseconds=1), first[123], first[200] + timedelta(seconds=1))
    for now in nows:
        later = from_now(late, now, 50)
        start = next(i for i, fire in enumerate(first) if fire >= now)
        assert later == first[start : start + 50]


@pytest.mark.parametrize(
    ("build", "value"),
    [
        (cron_trigger, "0 */2 * * *"),
        (cron_trigger, {"minute": "*/10"}),
        (interval_trigger, {"minutes": 7}),
        (interval_trigger, {"hours": 1, "start_date": "2026-01-01T00:30:00Z"}),
    ],
)
def test_fire_times_agree_whatever_the_now(build: Build, value: object) -> None:
    trigger = build(value, SHANGHAI)
    reference = from_now(trigger, at("2026-05-31T00:00:00+00:00"), 300)
    nows = [
        at("2026-06-01T00:00:00.000001+00:00"),
        at("2026-06-01T03:17:05.5+00:00"),
        at("2026-06-01T09:59:59.999999+00:00"),
        reference[42],
    ]
    for now in nows:
        fire = trigger.get_next_fire_time(None, now)
        assert fire in reference
        assert fire >= now
        previous = reference[reference.index(fire) - 1]
        assert previous < now
        assert fire.microsecond == 0


def test_anchored_interval_has_no_drift_over_many_steps() -> None:
    interval = timedelta(seconds=1, milliseconds=1)
    trigger = interval_trigger({"seconds": 1.001}, UTC_ZONE)
    assert isinstance(trigger, AnchoredIntervalTrigger)
    assert trigger.interval == interval
    anchor = datetime(2000, 1, 1, tzinfo=UTC)
    previous = None
    for step in range(100_000):
        fire = trigger.get_next_fire_time(previous, anchor)
        assert fire == anchor + step * interval
        previous = fire
    assert previous is not None
    assert previous.microsecond == (99_999 * 1000) % 1_000_000
    # An instance starting at that moment, 27 hours in, lands on the same microsecond.
    assert trigger.get_next_fire_time(None, previous) == previous


def test_anchored_interval_far_from_the_anchor_is_exact() -> None:
    trigger = interval_trigger({"seconds": 1.001}, UTC_ZONE)
    now = at("2031-07-04T12:00:00.123456+00:00")
    fire = trigger.get_next_fire_time(None, now)
    assert fire is not None
    anchor = datetime(2000, 1, 1, tzinfo=UTC)
    assert (fire - anchor) % timedelta(milliseconds=1001) == timedelta(0)
    assert now <= fire < now + timedelta(milliseconds=1001)


def test_anchored_interval_includes_now_when_now_is_a_fire_time() -> None:
    trigger = interval_trigger({"minutes": 5}, UTC_ZONE)
    on_time = at("2026-05-05T10:05:00+00:00")
    assert trigger.get_next_fire_time(None, on_time) == on_time
    just_after = on_time + timedelta(microseconds=1)
    assert trigger.get_next_fire_time(None, just_after) == at("2026-05-05T10:10:00+00:00")


def test_anchored_interval_defaults_to_midnight_2000_in_the_jobs_time_zone() -> None:
    trigger = interval_trigger({"hours": 5}, SHANGHAI)
    assert isinstance(trigger, AnchoredIntervalTrigger)
    assert trigger.anchor == datetime(1999, 12, 31, 16, 0, tzinfo=UTC)
    fires = from_now(trigger, at("2026-01-09T00:00:01+08:00"), 3)
    # 2026-01-09 is 9505 days after the anchor, a multiple of 5: local midnight is on the grid.
    assert fires == [
        at("2026-01-09T05:00:00+08:00"),
        at("2026-01-09T10:00:00+08:00"),
        at("2026-01-09T15:00:00+08:00"),
    ]
    assert all(fire.tzinfo is SHANGHAI for fire in fires)


def test_anchored_interval_default_anchor_differs_by_time_zone() -> None:
    now = at("2026-01-09T00:00:01+00:00")
    in_utc = interval_trigger({"hours": 5}, UTC_ZONE).get_next_fire_time(None, now)
    in_shanghai = interval_trigger({"hours": 5}, SHANGHAI).get_next_fire_time(None, now)
    assert in_utc == at("2026-01-09T05:00:00+00:00")
    # 08:00:01 in Shanghai: the local grid is 00:00, 05:00, 10:00.
    assert in_shanghai == at("2026-01-09T10:00:00+08:00")


def test_anchored_interval_honours_start_date() -> None:
    trigger = interval_trigger({"hours": 1, "start_date": "2026-01-01T00:30:00Z"}, PARIS)
    assert trigger.get_next_fire_time(None, at("2025-06-01T00:00:00+00:00")) == at(
        "2026-01-01T00:30:00+00:00"
    )
    fires = from_now(trigger, at("2026-05-05T10:00:00+00:00"), 2)
    assert fires == [at("2026-05-05T10:30:00+00:00"), at("2026-05-05T11:30:00+00:00")]
    assert fires[0].tzinfo is PARIS


def test_anchored_interval_accepts_an_aware_datetime_start_date() -> None:
    start = datetime(2026, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=8)))
    trigger = interval_trigger({"days": 1, "start_date": start}, UTC_ZONE)
    assert trigger.get_next_fire_time(None, at("2026-02-01T02:00:00+00:00")) == at(
        "2026-02-02T01:00:00+00:00"
    )


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ({"seconds": 0.999}, "at least one second"),
        ({"seconds": -5}, "got {'seconds': -5}"),
        ({"seconds": 1.0001}, "whole milliseconds"),
        ({"minutes": 1, "start_date": "2026-01-01T00:00:00"}, "no UTC offset"),
        ({"minute": 1}, "unknown interval field 'minute'"),
        ({"seconds": False}, "must be a number"),
        ({"days": 10**10}, "not a valid duration"),
        ([30], "'interval' must be a dict"),
    ],
)
def test_interval_trigger_rejects(value: object, detail: str) -> None:
    with pytest.raises(TriggerError, match=detail) as info:
        interval_trigger(value, UTC_ZONE)
    assert info.value.hint


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("0,7", "sun"),
        ("1", "mon"),
        ("6", "sat"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0-6", "sun,mon,tue,wed,thu,fri,sat"),
        ("0-7", "sun,mon,tue,wed,thu,fri,sat"),
        ("6-7", "sat,sun"),
        ("*/2", "sun,tue,thu,sat"),
        ("*/3", "sun,wed,sat"),
        ("1-5/2", "mon,wed,fri"),
        ("1/2", "mon,wed,fri"),
        ("1,3,5", "mon,wed,fri"),
        ("mon-fri", "mon-fri"),
        ("sat,sun", "sat,sun"),
        ("1,mon", "mon"),
        ("5,sun", "fri,sun"),
    ],
)
def test_crontab_days_counts_from_sunday(field: str, expected: str) -> None:
    assert crontab_days(field) == expected


@pytest.mark.parametrize("field", ["8", "0-8", "5-1", "*/0", "1-5/0", "*-3"])
def test_crontab_days_rejects(field: str) -> None:
    with pytest.raises(ValueError):
        crontab_days(field)


@pytest.mark.parametrize(
    ("crontab", "weekdays"),
    [
        # Python's weekday(): Monday is 0, Sunday is 6.
        ("0 9 * * 1-5", {0, 1, 2, 3, 4}),
        ("0 9 * * 0", {6}),
        ("0 9 * * 7", {6}),
        ("0 9 * * 6,0", {5, 6}),
        ("0 9 * * */2", {6, 1, 3, 5}),
        ("0 9 * * mon,wed", {0, 2}),
    ],
)
def test_cron_string_fires_on_the_crontab_days(crontab: str, weekdays: set[int]) -> None:
    trigger = cron_trigger(crontab, PARIS)
    fires = from_now(trigger, at("2026-03-01T00:00:00+01:00"), 3 * len(weekdays))
    assert {fire.weekday() for fire in fires} == weekdays
    assert all((fire.hour, fire.minute, fire.second) == (9, 0, 0) for fire in fires)
    assert fires[-1] - fires[0] < timedelta(days=21)


def test_cron_string_is_in_the_jobs_time_zone() -> None:
    fires = from_now(cron_trigger("0 21 * * *", SHANGHAI), at("2026-01-01T00:00:00+00:00"), 2)
    assert fires == [at("2026-01-01T21:00:00+08:00"), at("2026-01-02T21:00:00+08:00")]


def test_cron_dict_day_of_week_uses_apscheduler_numbering() -> None:
    fires = from_now(
        cron_trigger({"day_of_week": 0, "hour": 9}, UTC_ZONE), at("2026-03-01T00:00Z"), 2
    )
    assert [fire.weekday() for fire in fires] == [0, 0]


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("0 21 * *", "5 fields"),
        ("60 * * * *", "invalid cron string"),
        ("0 0 * * 8", "not within 0-7"),
        ("0 0 1 * 1", "both the day of the month and the day of the week"),
        ({"minutes": 1}, "unknown cron field 'minutes'"),
        ({}, "at least one field"),
        ({"hour": None}, "string or an integer"),
        ({"start_date": 5}, "invalid cron fields"),
        (["0", "21"], "crontab string or a dict"),
    ],
)
def test_cron_trigger_rejects(value: object, detail: str) -> None:
    with pytest.raises(TriggerError, match=detail) as info:
        cron_trigger(value, UTC_ZONE)
    assert info.value.hint


def test_fire_times_counts_and_never_repeats() -> None:
    trigger = cron_trigger("0 * * * *", UTC_ZONE)
    fires = from_now(trigger, at("2026-01-01T12:00:00+00:00"), 4)
    assert fires == [at(f"2026-01-01T{hour}:00:00+00:00") for hour in (12, 13, 14, 15)]
    assert from_now(trigger, at("2026-01-01T12:00:00+00:00"), 0) == []


def test_fire_times_of_a_date_trigger() -> None:
    trigger = date_trigger("2026-12-01T09:00:00+08:00", PARIS)
    assert from_now(trigger, at("2026-01-01T00:00:00+00:00"), 3) == [
        at("2026-12-01T01:00:00+00:00")
    ]
    assert from_now(trigger, at("2027-01-01T00:00:00+00:00"), 3) == []


def test_fire_times_stops_at_a_cron_end_date() -> None:
    trigger = cron_trigger({"hour": 12, "end_date": "2026-01-03"}, UTC_ZONE)
    assert from_now(trigger, at("2026-01-01T00:00:00+00:00"), 10) == [
        at("2026-01-01T12:00:00+00:00"),
        at("2026-01-02T12:00:00+00:00"),
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0 21 * * *", "every day at 21:00 (Europe/Paris)"),
        ("* * * * *", "every minute (Europe/Paris)"),
        ("30 * * * *", "every hour at minute 30 (Europe/Paris)"),
        ("0 9 * * 1-5", "at 09:00 on day of week mon,tue,wed,thu,fri (Europe/Paris)"),
        ("15 6 1 1 *", "at 06:15 on month 1, day 1 (Europe/Paris)"),
        ("*/5 * * * *", "every 5 minutes (Europe/Paris)"),
        ("0 */2 * * *", "every 2 hours (Europe/Paris)"),
        ({"second": "*/20"}, "every 20 seconds (Europe/Paris)"),
        ("*/5 9-17 * * *", "cron: hour 9-17, minute */5, second 0 (Europe/Paris)"),
        ({"second": "*"}, "every second (Europe/Paris)"),
        ({"hour": 21}, "every day at 21:00 (Europe/Paris)"),
        ({"hour": 21, "minute": 30, "second": 15}, "every day at 21:30:15 (Europe/Paris)"),
    ],
)
def test_describe_cron(value: object, text: str) -> None:
    assert describe(cron_trigger(value, PARIS)) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"seconds": 1}, "every 1 second"),
        ({"seconds": 30}, "every 30 seconds"),
        ({"seconds": 1.5}, "every 1.500 seconds"),
        ({"minutes": 90}, "every 1 hour 30 minutes"),
        ({"days": 1}, "every 1 day"),
        ({"weeks": 2}, "every 2 weeks"),
        (
            {"hours": 1, "start_date": "2026-01-01T00:30:00Z"},
            "every 1 hour from 2026-01-01 01:30:00+01:00",
        ),
    ],
)
def test_describe_interval(value: object, text: str) -> None:
    assert describe(interval_trigger(value, PARIS)) == text


def test_describe_date() -> None:
    trigger = date_trigger("2026-12-01T09:00:00+08:00", PARIS)
    assert describe(trigger) == "once at 2026-12-01 09:00:00+08:00"


@pytest.mark.parametrize(
    "value", ["2026-12-01T09:00:00", "2026-12-01", datetime(2026, 12, 1, 9, 0)]
)
def test_aware_datetime_refuses_naive_datetimes(value: object) -> None:
    with pytest.raises(TriggerError, match="'at' has no UTC offset") as info:
        aware_datetime(value, "at")
    assert "offset" in info.value.hint


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-01T09:00:00+08:00", datetime(2026, 12, 1, 1, 0, tzinfo=UTC)),
        ("2026-12-01T01:00:00Z", datetime(2026, 12, 1, 1, 0, tzinfo=UTC)),
        (datetime(2026, 12, 1, 2, 0, tzinfo=PARIS), datetime(2026, 12, 1, 1, 0, tzinfo=UTC)),
    ],
)
def test_aware_datetime_accepts_an_offset(value: object, expected: datetime) -> None:
    parsed = aware_datetime(value, "at")
    assert parsed == expected
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize(
    ("value", "detail"),
    [("soon", "not an ISO-8601 datetime"), (1764550800, "got int"), (None, "got NoneType")],
)
def test_aware_datetime_rejects_other_values(value: object, detail: str) -> None:
    with pytest.raises(TriggerError, match=detail):
        aware_datetime(value, "start_date")


@pytest.mark.parametrize(
    ("shortcut", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_crontab_shortcuts_mean_their_five_fields(shortcut: str, fields: str) -> None:
    now = at("2026-02-03T04:05:06+00:00")
    given = list(fire_times(cron_trigger(shortcut, UTC_ZONE), now, 5))
    assert given == list(fire_times(cron_trigger(fields, UTC_ZONE), now, 5))
    assert len(given) == 5


def test_reboot_is_not_a_schedule() -> None:
    with pytest.raises(TriggerError, match="5 fields"):
        cron_trigger("@reboot", UTC_ZONE)
