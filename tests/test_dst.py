"""Cron jobs across daylight saving time changes, as APScheduler asks for their fire times.

The 2026 changes used here, in UTC:

- Europe/Berlin, 2026-03-29 01:00: 02:00 CET becomes 03:00 CEST (02:00-02:59 is skipped).
- Europe/Berlin, 2026-10-25 01:00: 03:00 CEST becomes 02:00 CET (02:00-02:59 happens twice).
- America/New_York, 2026-03-08 07:00: 02:00 EST becomes 03:00 EDT (02:00-02:59 is skipped).
- America/New_York, 2026-11-01 06:00: 02:00 EDT becomes 01:00 EST (01:00-01:59 happens twice).
- Australia/Lord_Howe, half an hour only: 2026-04-04 15:00, 02:00 (+11:00) becomes 01:30
  (+10:30); 2026-10-03 15:30, 02:00 (+10:30) becomes 02:30 (+11:00).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import takewhile
from zoneinfo import ZoneInfo

import pytest
from apscheduler.job import Job
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from django_oncejob.jobs.trigger_parser import cron_trigger
from django_oncejob.jobs.triggers import describe, fire_times

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")

#: (zone, the instant its clock changes), spring then autumn.
CHANGES = [
    pytest.param(BERLIN, "2026-03-29 01:00", id="berlin-spring"),
    pytest.param(BERLIN, "2026-10-25 01:00", id="berlin-autumn"),
    pytest.param(NEW_YORK, "2026-03-08 07:00", id="new-york-spring"),
    pytest.param(NEW_YORK, "2026-11-01 06:00", id="new-york-autumn"),
]
#: With changes by half an hour, where wall-clock order and time order differ most.
ALL_CHANGES = [
    *CHANGES,
    pytest.param(LORD_HOWE, "2026-04-04 15:00", id="lord-howe-autumn"),
    pytest.param(LORD_HOWE, "2026-10-03 15:30", id="lord-howe-spring"),
]

#: Per-second jobs within one minute of one hour.
AT_1_59 = {"hour": 1, "minute": 59, "second": "*/20"}
AT_2_59 = {"hour": 2, "minute": 59, "second": "*/20"}

#: Every kind of job below, for the properties that hold for all of them.
CRONS: list[object] = [
    "30 2 * * *",
    "0 2 * * *",
    "0 3 * * *",
    "30 1 * * *",
    "0 1 * * *",
    "30 1-2 * * *",
    "*/20 2 * * *",
    "30 2,3 * * *",
    "15 */2 * * *",
    "*/30 * * * *",
    "0 * * * *",
    "45 23 * * *",
    {"second": "*/15"},
    AT_1_59,
    AT_2_59,
]


ONE_US = timedelta(microseconds=1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def scheduled(
    trigger: BaseTrigger, since: datetime, until: datetime, delay: timedelta, count: int = 5000
) -> list[datetime]:
    """Up to ``count`` fire times in ``[since, until]``, as APScheduler asks for them.

    Each next time is asked for ``delay`` after the previous one, with the real time
    then as ``now``, as ``BaseScheduler._process_jobs`` does once the job has run.
    """
    fires: list[datetime] = []
    previous: datetime | None = None
    now = since
    while len(fires) < count:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None or fire > until:
            break
        fires.append(fire.astimezone(UTC))
        previous, now = fire, fire.astimezone(UTC) + delay
    return fires


def listed(trigger: BaseTrigger, since: datetime, until: datetime) -> list[datetime]:
    """The fire times in ``[since, until]`` from :func:`fire_times`, as UTC instants."""
    return [
        fire.astimezone(UTC)
        for fire in takewhile(lambda fire: fire <= until, fire_times(trigger, since, 5000))
    ]


def fires(value: object, zone: ZoneInfo, since: datetime, until: datetime) -> list[datetime]:
    """The fire times as UTC instants, the same whichever way they are asked for."""
    trigger = cron_trigger(value, zone)
    result = scheduled(trigger, since, until, ONE_US)
    assert scheduled(trigger, since, until, timedelta(milliseconds=3)) == result
    # The scheduler's clock reads in its own time zone, which may be the job's.
    assert scheduled(trigger, since.astimezone(zone), until, timedelta(seconds=1)) == result
    assert listed(trigger, since, until) == result
    return result


def on_utc_day(value: object, zone: ZoneInfo, day: str) -> str:
    """The fire times during a day in UTC, as space-separated UTC times of day."""
    since = utc(f"{day} 00:00")
    times = fires(value, zone, since, since + timedelta(days=1) - ONE_US)
    return " ".join(f"{time:%H:%M:%S}".removesuffix(":00") for time in times)


@pytest.mark.parametrize(
    ("zone", "cron", "day", "expected"),
    [
        # Spring, Berlin: 02:30 does not exist; it runs at 01:30 UTC, 03:30 CEST, 24 hours
        # after the 02:30 CET before and 23 before the 02:30 CEST after.
        (BERLIN, "30 2 * * *", "2026-03-28", "01:30"),
        (BERLIN, "30 2 * * *", "2026-03-29", "01:30"),
        (BERLIN, "30 2 * * *", "2026-03-30", "00:30"),
        (BERLIN, "0 2 * * *", "2026-03-29", "01:00"),
        (BERLIN, "0 3 * * *", "2026-03-29", "01:00"),
        (BERLIN, "0 1 * * *", "2026-03-29", "00:00 23:00"),
        # Every skipped wall-clock time runs once, as much later as the clock jumped.
        (BERLIN, "30 1-2 * * *", "2026-03-29", "00:30 01:30 23:30"),
        (BERLIN, "*/20 2 * * *", "2026-03-29", "01:00 01:20 01:40"),
        # 02:30 read before the change is 03:30 after it: one occurrence, one run.
        (BERLIN, "30 2,3 * * *", "2026-03-29", "01:30"),
        # Autumn, Berlin: 02:00-02:59 happens twice; a fixed time runs the first time only,
        # in CEST.
        (BERLIN, "30 2 * * *", "2026-10-25", "00:30"),
        (BERLIN, "30 2 * * *", "2026-10-26", "01:30"),
        (BERLIN, "0 2 * * *", "2026-10-25", "00:00"),
        (BERLIN, "0 3 * * *", "2026-10-25", "02:00"),
        (BERLIN, "*/20 2 * * *", "2026-10-25", "00:00 00:20 00:40"),
        # Spring, New York: the same, five hours later in UTC.
        (NEW_YORK, "30 2 * * *", "2026-03-08", "07:30"),
        (NEW_YORK, "0 2 * * *", "2026-03-08", "07:00"),
        (NEW_YORK, "0 3 * * *", "2026-03-08", "07:00"),
        # Autumn, New York: the hour repeated is 01:00-01:59, so 02:00 and 02:30 are plain.
        (NEW_YORK, "30 1 * * *", "2026-11-01", "05:30"),
        (NEW_YORK, "0 1 * * *", "2026-11-01", "05:00"),
        (NEW_YORK, "0 2 * * *", "2026-11-01", "07:00"),
        (NEW_YORK, "30 2 * * *", "2026-11-01", "07:30"),
        # Lord Howe skips 02:00-02:29: 02:00 and 02:20 run at 02:30 and 02:50 (+11:00),
        # and 02:40, which exists, between them.
        (LORD_HOWE, "*/20 2 * * *", "2026-10-03", "15:30 15:40 15:50"),
        # It repeats 01:30-01:59: 01:40 runs at +11:00 only.
        (LORD_HOWE, "*/20 1 * * *", "2026-04-04", "14:00 14:20 14:40"),
        # A per-second job at a fixed hour: as any other fixed time.
        (BERLIN, AT_2_59, "2026-03-29", "01:59 01:59:20 01:59:40"),
        (BERLIN, AT_2_59, "2026-10-25", "00:59 00:59:20 00:59:40"),
        (NEW_YORK, AT_2_59, "2026-03-08", "07:59 07:59:20 07:59:40"),
        (NEW_YORK, AT_1_59, "2026-11-01", "05:59 05:59:20 05:59:40"),
    ],
)
def test_a_fixed_time_runs_once_per_wall_clock_time(
    zone: ZoneInfo, cron: object, day: str, expected: str
) -> None:
    assert on_utc_day(cron, zone, day) == expected


@pytest.mark.parametrize(("zone", "change"), CHANGES)
@pytest.mark.parametrize(
    ("cron", "step"),
    [
        ("*/30 * * * *", timedelta(minutes=30)),
        ("0 * * * *", timedelta(hours=1)),
        ("*/10 * * * *", timedelta(minutes=10)),
        ({"second": "*/15"}, timedelta(seconds=15)),
    ],
)
def test_a_job_on_every_hour_runs_on_elapsed_time(
    zone: ZoneInfo, change: str, cron: object, step: timedelta
) -> None:
    # Through a skipped hour it goes straight on; through a repeated hour it runs in both
    # passes, each being real time.
    since, until = utc(change) - timedelta(hours=2), utc(change) + timedelta(hours=2)
    expected = [since + n * step for n in range((until - since) // step + 1)]
    assert fires(cron, zone, since, until) == expected


@pytest.mark.parametrize(("zone", "change"), ALL_CHANGES)
@pytest.mark.parametrize("value", CRONS, ids=str)
def test_instances_started_at_any_time_agree(zone: ZoneInfo, change: str, value: object) -> None:
    # Each instance builds its own trigger and starts whenever it starts: inside the
    # skipped or repeated hour too. It must compute the others' fire times from then on.
    clock_change = utc(change)
    since, until = clock_change - timedelta(hours=4), clock_change + timedelta(hours=4)
    reference = scheduled(cron_trigger(value, zone), since, until, ONE_US)
    assert reference
    near = [fire for fire in reference if abs(fire - clock_change) <= timedelta(minutes=10)]
    nows = [since + n * timedelta(minutes=7, seconds=13) for n in range(67)]
    nows += [clock_change - ONE_US, clock_change, clock_change + ONE_US]
    for fire in reference[:: len(reference) // 50 + 1] + near:
        nows += [fire - ONE_US, fire, fire + ONE_US]
    for now in nows:
        later = scheduled(cron_trigger(value, zone), now, until, timedelta(milliseconds=3), 30)
        assert later == [fire for fire in reference if fire >= now][:30], now


class Bounded(BaseTrigger):  # type: ignore[misc]
    """Fails, instead of hanging, if APScheduler asks for next times without end."""

    def __init__(self, trigger: BaseTrigger) -> None:
        self.trigger = trigger
        self.calls = 0

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        self.calls += 1
        assert self.calls < 5000, "APScheduler would loop on this trigger"
        fire: datetime | None = self.trigger.get_next_fire_time(previous, now)
        return fire


@pytest.mark.parametrize(("zone", "change"), ALL_CHANGES)
@pytest.mark.parametrize("value", CRONS, ids=str)
def test_fire_times_always_increase(zone: ZoneInfo, change: str, value: object) -> None:
    since, until = utc(change) - timedelta(hours=4), utc(change) + timedelta(hours=4)
    trigger = cron_trigger(value, zone)
    times = listed(trigger, since, until)
    assert times
    assert all(earlier < later for earlier, later in zip(times, times[1:], strict=False))
    # A scheduler that wakes after the whole night (a suspended machine) lists every
    # due time with Job._get_run_times, which would never return if a time repeated.
    job = Job.__new__(Job)
    job.trigger = Bounded(trigger)
    job.next_run_time = trigger.get_next_fire_time(None, since)
    run_times = [fire.astimezone(UTC) for fire in job._get_run_times(until.astimezone(zone))]
    assert run_times == times


def test_a_dst_change_keeps_the_description_and_the_cron_trigger_type() -> None:
    trigger = cron_trigger("30 2 * * *", BERLIN)
    assert isinstance(trigger, CronTrigger)
    assert describe(trigger) == "every day at 02:30 (Europe/Berlin)"


def test_a_fixed_time_keeps_start_and_end_dates() -> None:
    value = {
        "hour": 2,
        "minute": 30,
        "start_date": "2026-10-25T02:15:00+01:00",
        "end_date": "2026-10-27T00:00:00+01:00",
    }
    trigger = cron_trigger(value, BERLIN)
    # The start falls in the second pass of 02:00-02:59, after the first 02:30: the
    # 02:30 that follows it is a repeat, so 2026-10-25 has no run.
    assert list(fire_times(trigger, utc("2026-10-20 00:00"), 10)) == [
        datetime(2026, 10, 26, 2, 30, tzinfo=BERLIN)
    ]
