from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.utils import timezone

from django_oncejob import handoff
from django_oncejob.checks import check_settings
from django_oncejob.conf import DEFAULTS
from django_oncejob.jobs.parser import JOB_KEYS
from django_oncejob.jobs.registry import parse_jobs

ROOT = Path(__file__).resolve().parent.parent

REDIS = {
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": "redis://127.0.0.1:6379/0",
    "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 5},
}
BUILTIN_REDIS = {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": "redis://127.0.0.1:6379/0",
    "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
}


def run(oncejob: Any, **other_settings: Any) -> list[CheckMessage]:
    with override_settings(ONCEJOB=oncejob, **other_settings):
        return check_settings()


def run_job(definition: Any, job_id: str = "x", **top: Any) -> list[CheckMessage]:
    return run({"JOBS": {job_id: definition}, **top})


def cron_job(**extra: Any) -> dict[str, Any]:
    return {"func": "tests.jobs.record", "cron": "0 21 * * *", **extra}


def ids(errors: list[CheckMessage]) -> list[str | None]:
    return [error.id for error in errors]


def only(errors: list[CheckMessage], code: str) -> CheckMessage:
    assert ids(errors) == [f"django_oncejob.{code}"], [str(e) for e in errors]
    (error,) = errors
    assert isinstance(error, Error)
    assert error.hint
    return error


def only_warning(errors: list[CheckMessage], code: str) -> CheckMessage:
    assert ids(errors) == [f"django_oncejob.{code}"], [str(e) for e in errors]
    (warning,) = errors
    assert isinstance(warning, Warning)
    assert warning.hint
    return warning


def run_cache(config: dict[str, Any], **other_settings: Any) -> list[CheckMessage]:
    caches = {"default": REDIS, "claims": config}
    return run({"CACHE": "claims"}, CACHES=caches, **other_settings)


def only_job_error(errors: list[CheckMessage], code: str, key: str, job_id: str = "x") -> str:
    error = only(errors, code)
    assert error.obj == f"job {job_id}"
    assert f"ONCEJOB['JOBS'][{job_id!r}][{key!r}]" in error.msg
    return error.msg


VALID = {
    "CACHE": "default",
    "CLAIM_TIMEOUT": 3600,
    "KEY_PREFIX": "myproject-jobs",
    "TIMEZONE": "Europe/Paris",
    "OWNER": "web-1",
    "MISFIRE_GRACE_TIME": 30,
    "MAX_WORKERS": 4,
    "SHUTDOWN_TIMEOUT": 2.5,
    "ON_CACHE_ERROR": "skip",
    "JOBS": {
        "nightly-report": {
            "func": "tests.jobs.record",
            "cron": "0 21 * * 1-5",
            "description": "Mails the report.",
        },
        "every_second": {"func": "tests.jobs.record", "cron": {"second": "*"}},
        "half.hourly": {
            "func": "tests.jobs.sleep_then_record",
            "interval": {"minutes": 30, "start_date": "2026-01-01T00:15:00+01:00"},
            "args": [0.1],
            "misfire_grace_time": 120,
            "timezone": "Asia/Shanghai",
        },
        "async": {"func": "tests.jobs.async_record", "interval": {"seconds": 1.5}},
        "once": {
            "func": "tests.jobs.record",
            "at": "2026-12-01T09:00:00+08:00",
            "args": (1, 2),
            "kwargs": {"dry_run": True},
            "enabled": False,
        },
        "Fails": {"func": "tests.jobs.fail", "cron": "*/5 * * * *"},
    },
}


def test_valid_config_gives_no_errors() -> None:
    assert run(VALID) == []


def test_empty_config_gives_no_errors() -> None:
    assert run({}) == []


def test_missing_setting_gives_no_errors() -> None:
    with override_settings():
        del settings.ONCEJOB
        assert check_settings() == []


def test_e052_use_tz_false_is_refused() -> None:
    error = only(run({}, USE_TZ=False), "E052")
    assert "USE_TZ = True" in error.msg
    with override_settings(USE_TZ=False), pytest.raises(SystemCheckError, match="E052"):
        call_command("check")


def test_checks_are_bound() -> None:
    with override_settings(ONCEJOB={"CLAIM_TIMEOUT": 0}), pytest.raises(SystemCheckError) as info:
        call_command("check")
    assert "django_oncejob.E005" in str(info.value)


def test_check_command_passes_with_a_valid_config() -> None:
    with override_settings(ONCEJOB=VALID):
        call_command("check", verbosity=0)


@pytest.mark.parametrize("value", [["JOBS"], None, "JOBS"])
def test_e001_setting_not_a_dict(value: object) -> None:
    error = only(run(value), "E001")
    assert "ONCEJOB setting must be a dict" in error.msg
    assert type(value).__name__ in error.msg


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("CLAIM_TIMOUT", "CLAIM_TIMEOUT"),
        ("jobs", "JOBS"),
        ("HEARTBEAT_INTERVALS", "HEARTBEAT_INTERVAL"),
        ("MISFIRE_GRACE", "MISFIRE_GRACE_TIME"),
    ],
)
def test_e002_unknown_top_level_key_suggests_the_close_match(key: str, suggestion: str) -> None:
    error = only(run({key: 60}), "E002")
    assert f"ONCEJOB has an unknown key {key!r}" in error.msg
    assert error.hint is not None
    assert error.hint.startswith(f"Did you mean {suggestion!r}? Valid keys are CACHE, ")


def test_e002_unknown_top_level_key_without_a_close_match() -> None:
    error = only(run({"ZZZ": 1}), "E002")
    assert error.hint == f"Valid keys are {', '.join(DEFAULTS)}."


@pytest.mark.parametrize("alias", ["nope", 5])
def test_e003_cache_alias_not_in_caches(alias: object) -> None:
    error = only(run({"CACHE": alias}), "E003")
    assert f"ONCEJOB['CACHE'] names no cache in CACHES: {alias!r}" in error.msg
    assert error.hint is not None and "'default'" in error.hint


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.dummy.DummyCache",
        "django.core.cache.backends.filebased.FileBasedCache",
    ],
)
def test_e004_cache_cannot_coordinate_processes(backend: str) -> None:
    caches = {"default": REDIS, "claims": {"BACKEND": backend, "LOCATION": "/tmp/oncejob"}}
    error = only(run({"CACHE": "claims"}, CACHES=caches), "E004")
    assert "ONCEJOB['CACHE'] is 'claims'" in error.msg
    assert backend.rsplit(".", 1)[-1] in error.msg


def test_e004_accepts_django_redis_and_djangos_redis_backend() -> None:
    assert run_cache(REDIS) == []
    assert run_cache(BUILTIN_REDIS) == []


@pytest.mark.parametrize("value", [0, -5, 1.5, "86400", None, True])
def test_e005_claim_timeout(value: object) -> None:
    error = only(run({"CLAIM_TIMEOUT": value}), "E005")
    assert f"ONCEJOB['CLAIM_TIMEOUT'] must be a whole number of seconds >= 1, got {value!r}" in (
        error.msg
    )


def test_e006_claim_timeout_equal_to_a_jobs_grace_time() -> None:
    errors = run_job(cron_job(misfire_grace_time=100), CLAIM_TIMEOUT=100)
    error = only(errors, "E006")
    assert error.obj == "job x"
    assert "ONCEJOB['CLAIM_TIMEOUT'] (100)" in error.msg
    assert "job 'x'" in error.msg
    assert "(100 s, from its 'misfire_grace_time'" in error.msg


def test_e006_claim_timeout_below_the_default_grace_time() -> None:
    errors = run({"CLAIM_TIMEOUT": 59, "MISFIRE_GRACE_TIME": 60, "JOBS": {"y": cron_job()}})
    error = only(errors, "E006")
    assert error.obj == "job y"
    assert "(60 s, from its 'misfire_grace_time'" in error.msg


def test_e006_one_error_per_offending_job() -> None:
    jobs = {
        "short": cron_job(misfire_grace_time=10),
        "long": cron_job(misfire_grace_time=600),
        "longer": cron_job(misfire_grace_time=6000),
    }
    errors = run({"CLAIM_TIMEOUT": 600, "JOBS": jobs})
    assert ids(errors) == ["django_oncejob.E006"] * 2
    assert [error.obj for error in errors] == ["job long", "job longer"]


def test_e006_not_raised_when_claim_timeout_exceeds_grace_time() -> None:
    assert run_job(cron_job(misfire_grace_time=99), CLAIM_TIMEOUT=100) == []


def test_e006_not_raised_on_top_of_an_invalid_claim_timeout() -> None:
    assert ids(run_job(cron_job(), CLAIM_TIMEOUT=-1)) == ["django_oncejob.E005"]


@pytest.mark.parametrize("value", ["", "has space", "tab\there", 5, None])
def test_e007_key_prefix(value: object) -> None:
    error = only(run({"KEY_PREFIX": value}), "E007")
    assert f"ONCEJOB['KEY_PREFIX'] must be a non-empty string without spaces, got {value!r}" in (
        error.msg
    )


@pytest.mark.parametrize("value", ["Mars/Olympus", "", "utc", 5, "../etc"])
def test_e008_timezone(value: object) -> None:
    error = only(run({"TIMEZONE": value}), "E008")
    assert f"ONCEJOB['TIMEZONE'] is not a known time zone: {value!r}" in error.msg


@pytest.mark.parametrize("value", [0, -1, 2.0, "10", True])
def test_e009_max_workers(value: object) -> None:
    error = only(run({"MAX_WORKERS": value}), "E009")
    assert f"ONCEJOB['MAX_WORKERS'] must be a whole number >= 1, got {value!r}" in error.msg


@pytest.mark.parametrize("value", [-1, -0.5, "30", None, True, False])
def test_e010_shutdown_timeout(value: object) -> None:
    error = only(run({"SHUTDOWN_TIMEOUT": value}), "E010")
    assert f"ONCEJOB['SHUTDOWN_TIMEOUT'] must be a number of seconds >= 0, got {value!r}" in (
        error.msg
    )


@pytest.mark.parametrize("value", [0, 0.5, 30])
def test_e010_accepts_zero_and_fractions(value: float) -> None:
    assert run({"SHUTDOWN_TIMEOUT": value}) == []


@pytest.mark.parametrize("value", ["ignore", "FENCE", None])
def test_e011_on_cache_error(value: object) -> None:
    error = only(run({"ON_CACHE_ERROR": value}), "E011")
    assert f"ONCEJOB['ON_CACHE_ERROR'] must be 'fence' or 'skip', got {value!r}" in error.msg


@pytest.mark.parametrize("value", ["", "x" * 256, 5])
def test_e012_owner(value: object) -> None:
    error = only(run({"OWNER": value}), "E012")
    assert "ONCEJOB['OWNER'] must be a non-empty string of at most 255 characters" in error.msg


def test_e012_accepts_255_characters() -> None:
    assert run({"OWNER": "x" * 255}) == []


@pytest.mark.parametrize("value", [0, 1.5, "60", True])
def test_e013_misfire_grace_time(value: object) -> None:
    error = only(run({"MISFIRE_GRACE_TIME": value}), "E013")
    assert f"ONCEJOB['MISFIRE_GRACE_TIME'] must be a whole number >= 1, got {value!r}" in (
        error.msg
    )


@pytest.mark.parametrize("value", [None, "abc", "60", True])
def test_e013_with_jobs_is_reported_not_raised(value: object) -> None:
    # Regression: the job default went through int(), which raised or coerced
    # a bad MISFIRE_GRACE_TIME instead of reporting it.
    errors = run({"MISFIRE_GRACE_TIME": value, "JOBS": {"x": cron_job()}})
    assert "django_oncejob.E013" in ids(errors)


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("HEARTBEAT_INTERVAL", "E014"),
        ("HEARTBEAT_TIMEOUT", "E015"),
        ("CONTROL_INTERVAL", "E017"),
        ("MISSED_LOOKBACK", "E018"),
    ],
)
@pytest.mark.parametrize("value", [0, -10, 2.5, "10", None, True])
def test_whole_number_settings(key: str, code: str, value: object) -> None:
    error = only(run({key: value}), code)
    assert f"ONCEJOB[{key!r}] must be a whole number >= 1, got {value!r}" in error.msg
    assert error.hint == f"The default is {DEFAULTS[key]}."


@pytest.mark.parametrize(("interval", "timeout"), [(10, 19), (30, 59), (1, 1), (60, 60)])
def test_e016_heartbeat_timeout_below_twice_the_interval(interval: int, timeout: int) -> None:
    errors = run({"HEARTBEAT_INTERVAL": interval, "HEARTBEAT_TIMEOUT": timeout})
    error = only(errors, "E016")
    assert (
        f"ONCEJOB['HEARTBEAT_TIMEOUT'] ({timeout}) must be at least twice "
        f"ONCEJOB['HEARTBEAT_INTERVAL'] ({interval})"
    ) in error.msg


def test_e016_with_the_default_interval() -> None:
    assert ids(run({"HEARTBEAT_TIMEOUT": 19})) == ["django_oncejob.E016"]


@pytest.mark.parametrize(("interval", "timeout"), [(10, 20), (1, 2), (10, 60), (5, 3600)])
def test_e016_accepts_twice_the_interval_or_more(interval: int, timeout: int) -> None:
    assert run({"HEARTBEAT_INTERVAL": interval, "HEARTBEAT_TIMEOUT": timeout}) == []


def test_e016_not_raised_on_top_of_an_invalid_heartbeat_setting() -> None:
    errors = run({"HEARTBEAT_INTERVAL": 100, "HEARTBEAT_TIMEOUT": 1.5})
    assert ids(errors) == ["django_oncejob.E015"]


@pytest.mark.parametrize("value", [0, -1, 2.5, "30", True, False, [30]])
def test_e019_retention_days(value: object) -> None:
    error = only(run({"RETENTION_DAYS": value}), "E019")
    assert (
        f"ONCEJOB['RETENTION_DAYS'] must be None or a whole number of days >= 1, got {value!r}."
        == error.msg
    )


@pytest.mark.parametrize("value", [None, 1, 30, 3650])
def test_e019_accepts_none_and_whole_days(value: int | None) -> None:
    assert run({"RETENTION_DAYS": value}) == []


@pytest.mark.parametrize("value", [["x"], "x", None, 5])
def test_e020_jobs_not_a_dict(value: object) -> None:
    error = only(run({"JOBS": value}), "E020")
    assert "ONCEJOB['JOBS'] must be a dict of job id to definition" in error.msg


@pytest.mark.parametrize(
    "job_id", ["", "-starts-with-dash", "has space", "a" * 101, "slash/", "nightly\n", 1]
)
def test_e021_invalid_job_id(job_id: object) -> None:
    error = only(run({"JOBS": {job_id: cron_job()}}), "E021")
    assert f"ONCEJOB['JOBS'] has an invalid job id {job_id!r}" in error.msg


def test_e021_accepts_100_characters() -> None:
    assert run({"JOBS": {"a" * 100: cron_job()}}) == []


def test_e022_job_ids_differing_only_in_case() -> None:
    errors = run({"JOBS": {"Report": cron_job(), "report": cron_job()}})
    error = only(errors, "E022")
    assert "Job 'report' duplicates job 'Report'" in error.msg
    assert "ONCEJOB['JOBS']" in error.msg


@pytest.mark.parametrize("definition", ["tests.jobs.record", None, ["tests.jobs.record"]])
def test_e023_definition_not_a_dict(definition: object) -> None:
    error = only(run_job(definition), "E023")
    assert error.obj == "job x"
    assert f"ONCEJOB['JOBS']['x'] must be a dict, got {type(definition).__name__}" in error.msg


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("intervall", "interval"),
        ("crontab", "cron"),
        ("kwarg", "kwargs"),
        ("misfire_grace", "misfire_grace_time"),
        ("time_zone", "timezone"),
    ],
)
def test_e024_unknown_job_key_suggests_the_close_match(key: str, suggestion: str) -> None:
    error = only(run_job(cron_job(**{key: 1})), "E024")
    assert error.obj == "job x"
    assert f"ONCEJOB['JOBS']['x'] has an unknown key {key!r}" in error.msg
    assert error.hint is not None
    assert error.hint.startswith(f"Did you mean {suggestion!r}? ")


def test_e024_unknown_job_key_without_a_close_match() -> None:
    error = only(run_job(cron_job(zzz=1)), "E024")
    assert error.hint is not None
    assert error.hint.startswith("Valid keys are func, cron, interval, at,")


def test_e024_misspelt_trigger_also_leaves_the_job_without_one() -> None:
    errors = run_job({"func": "tests.jobs.record", "intervall": {"seconds": 30}})
    assert ids(errors) == ["django_oncejob.E024", "django_oncejob.E028"]
    assert errors[0].hint is not None and "Did you mean 'interval'?" in errors[0].hint


@pytest.mark.parametrize("func", ["record", 42, None, ""])
def test_e025_func_not_a_dotted_path(func: object) -> None:
    msg = only_job_error(run_job(cron_job(func=func)), "E025", "func")
    assert f"must be a dotted path to a callable, got {func!r}" in msg


def test_e025_func_missing() -> None:
    msg = only_job_error(run_job({"cron": "0 21 * * *"}), "E025", "func")
    assert "got None" in msg


@pytest.mark.parametrize(
    "func", ["tests.jobs.missing", "tests.nomodule.run", "tests.jobs.", ".jobs", "..", "."]
)
def test_e026_func_cannot_be_imported(func: str) -> None:
    msg = only_job_error(run_job(cron_job(func=func)), "E026", "func")
    assert f"{func!r} cannot be imported" in msg


def test_e026_func_whose_module_raises_while_importing() -> None:
    msg = only_job_error(run_job(cron_job(func="tests.broken_jobs.run")), "E026", "func")
    assert "'tests.broken_jobs.run' cannot be imported: RuntimeError: broken on purpose" in msg


@pytest.mark.parametrize(
    ("func", "kind"), [("tests.jobs.not_callable", "int"), ("datetime.datetime", "type")]
)
def test_e027_func_not_a_function(func: str, kind: str) -> None:
    msg = only_job_error(run_job(cron_job(func=func)), "E027", "func")
    assert f"{func!r} is not a function, it is {kind}" in msg


def test_e028_no_trigger() -> None:
    error = only(run_job({"func": "tests.jobs.record"}), "E028")
    assert error.obj == "job x"
    assert "ONCEJOB['JOBS']['x'] needs exactly one trigger" in error.msg
    assert "found none" in error.msg


def test_e028_two_triggers() -> None:
    error = only(run_job(cron_job(interval={"seconds": 30})), "E028")
    assert "found 'cron', 'interval'" in error.msg


@pytest.mark.parametrize(
    ("cron", "detail"),
    [
        ("0 21 * *", "a cron string has 5 fields"),
        ("0 21 * * * *", "got 6"),
        ("61 * * * *", "invalid cron string"),
        ("0 24 * * *", "invalid cron string"),
        ("0 0 32 * *", "invalid cron string"),
        ("0 0 0 * *", "invalid cron string"),
        ("0 0 * 13 *", "invalid cron string"),
        ("*/0 * * * *", "invalid cron string"),
        ("-1 * * * *", "invalid cron string"),
        ("0 0 * * 8", "not within 0-7"),
        ("0 0 * * 5-1", "not within 0-7"),
        ("0 0 * * funday", "invalid cron string"),
        ({"minutes": 5}, "unknown cron field 'minutes'"),
        ({}, "needs at least one field"),
        ({"hour": True}, "must be a string or an integer, got True"),
        ({"hour": 1.5}, "must be a string or an integer"),
        ({"day_of_week": 7}, "invalid cron fields"),
        ({"hour": 25}, "invalid cron fields"),
        ({"minute": "0-60"}, "invalid cron fields"),
        ({"start_date": 5}, "invalid cron fields"),
        (5, "must be a crontab string or a dict, got int"),
    ],
)
def test_e029_invalid_cron(cron: object, detail: str) -> None:
    msg = only_job_error(run_job({"func": "tests.jobs.record", "cron": cron}), "E029", "cron")
    assert detail in msg


@pytest.mark.parametrize(
    ("field", "suggestion"),
    [
        ("minutes", "minute"),
        ("hours", "hour"),
        ("days_of_week", "day_of_week"),
        ("Month", "month"),
        ("seconds", "second"),
        ("start", "start_date"),
    ],
)
def test_e029_misspelt_cron_field_suggests_the_close_match(field: str, suggestion: str) -> None:
    errors = run_job({"func": "tests.jobs.record", "cron": {field: 5}})
    error = only(errors, "E029")
    assert f"unknown cron field {field!r}" in error.msg
    assert error.hint == (
        f"Did you mean {suggestion!r}? Valid fields are year, month, day, week, day_of_week, "
        "hour, minute, second, start_date, end_date."
    )


def test_e029_unknown_cron_field_without_a_close_match() -> None:
    error = only(run_job({"func": "tests.jobs.record", "cron": {"zzz": 5}}), "E029")
    assert error.hint is not None and error.hint.startswith("Valid fields are year, ")


@pytest.mark.parametrize(
    ("interval", "detail"),
    [
        (30, "'interval' must be a dict, got int"),
        ({"second": 30}, "unknown interval field 'second'"),
        ({"seconds": True}, "must be a number, got True"),
        ({"seconds": "30"}, "must be a number, got '30'"),
        ({}, "at least one second"),
        ({"seconds": 0.5}, "at least one second"),
        ({"seconds": -30}, "at least one second"),
        ({"seconds": 1.0005}, "whole milliseconds"),
        ({"seconds": 10**20}, "not a valid duration"),
        ({"seconds": float("nan")}, "not a valid duration"),
        ({"seconds": 30, "start_date": "2026-01-01T00:00:00"}, "no UTC offset"),
        ({"seconds": 30, "start_date": "tomorrow"}, "not an ISO-8601 datetime"),
        ({"seconds": 30, "start_date": "0001-01-01T00:00:00+01:00"}, "out of range"),
    ],
)
def test_e030_invalid_interval(interval: object, detail: str) -> None:
    definition = {"func": "tests.jobs.record", "interval": interval}
    msg = only_job_error(run_job(definition), "E030", "interval")
    assert detail in msg


@pytest.mark.parametrize(
    ("field", "suggestion"),
    [("second", "seconds"), ("minute", "minutes"), ("hrs", "hours"), ("start", "start_date")],
)
def test_e030_misspelt_interval_field_suggests_the_close_match(field: str, suggestion: str) -> None:
    errors = run_job({"func": "tests.jobs.record", "interval": {field: 5}})
    error = only(errors, "E030")
    assert f"unknown interval field {field!r}" in error.msg
    assert error.hint == (
        f"Did you mean {suggestion!r}? Valid fields are weeks, days, hours, minutes, seconds, "
        "start_date."
    )


@pytest.mark.parametrize(
    "interval",
    [{"seconds": 0}, {"minutes": 0}, {"seconds": -1}, {"hours": -1, "minutes": 30}, {"days": -7}],
)
def test_e030_interval_of_zero_or_negative_length(interval: dict[str, int]) -> None:
    definition = {"func": "tests.jobs.record", "interval": interval}
    msg = only_job_error(run_job(definition), "E030", "interval")
    assert "an interval must be at least one second" in msg


@pytest.mark.parametrize(
    ("at", "detail"),
    [
        ("2026-12-01T09:00:00", "'at' has no UTC offset"),
        (datetime(2026, 12, 1, 9), "'at' has no UTC offset"),
        ("2026-13-01T09:00:00+00:00", "'at' is not an ISO-8601 datetime"),
        ("", "'at' is not an ISO-8601 datetime"),
        ("next tuesday", "'at' is not an ISO-8601 datetime"),
        (20261201, "must be an ISO-8601 string or a datetime, got int"),
    ],
)
def test_e031_invalid_at(at: object, detail: str) -> None:
    msg = only_job_error(run_job({"func": "tests.jobs.record", "at": at}), "E031", "at")
    assert detail in msg


@pytest.mark.parametrize("args", ["abc", 5, {"a": 1}, None, {1, 2}])
def test_e032_args_not_a_list(args: object) -> None:
    msg = only_job_error(run_job(cron_job(args=args)), "E032", "args")
    assert f"must be a list, got {type(args).__name__}" in msg


@pytest.mark.parametrize("kwargs", [[("a", 1)], {1: "one"}, "a=1"])
def test_e033_kwargs_not_a_dict_of_strings(kwargs: object) -> None:
    msg = only_job_error(run_job(cron_job(kwargs=kwargs)), "E033", "kwargs")
    assert "must be a dict with string keys" in msg


@pytest.mark.parametrize("grace", [0, -1, 1.5, "60", None, True])
def test_e034_misfire_grace_time(grace: object) -> None:
    errors = run_job(cron_job(misfire_grace_time=grace))
    msg = only_job_error(errors, "E034", "misfire_grace_time")
    assert f"must be a whole number of seconds >= 1, got {grace!r}" in msg


@pytest.mark.parametrize("enabled", [1, 0, "yes", None])
def test_e035_enabled_not_a_bool(enabled: object) -> None:
    msg = only_job_error(run_job(cron_job(enabled=enabled)), "E035", "enabled")
    assert f"must be True or False, got {enabled!r}" in msg


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", 8])
def test_e036_job_timezone(zone: object) -> None:
    msg = only_job_error(run_job(cron_job(timezone=zone)), "E036", "timezone")
    assert f"is not a known time zone: {zone!r}" in msg


@pytest.mark.parametrize("description", [5, ["a"], None])
def test_e037_description_not_a_string(description: object) -> None:
    msg = only_job_error(run_job(cron_job(description=description)), "E037", "description")
    assert f"must be a string, got {type(description).__name__}" in msg


@pytest.mark.parametrize("value", [0, -1, 1.5, "3600", True, False])
def test_e039_lock_timeout(value: object) -> None:
    msg = only_job_error(run_job(cron_job(lock_timeout=value)), "E039", "lock_timeout")
    assert f"must be a whole number of seconds >= 1 or None, got {value!r}" in msg


@pytest.mark.parametrize("value", [None, 1, 3600])
def test_e039_accepts_none_and_whole_seconds(value: int | None) -> None:
    assert run_job(cron_job(lock_timeout=value)) == []


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_e040_rerun_abandoned_not_a_bool(value: object) -> None:
    msg = only_job_error(run_job(cron_job(rerun_abandoned=value)), "E040", "rerun_abandoned")
    assert f"must be True or False, got {value!r}" in msg


@pytest.mark.parametrize("value", [True, False])
def test_e040_accepts_a_bool(value: bool) -> None:
    assert run_job(cron_job(rerun_abandoned=value)) == []


@pytest.mark.parametrize(
    ("func", "extra"),
    [
        ("tests.jobs.sleep_then_record", {}),
        ("tests.jobs.sleep_then_record", {"args": [1, 2]}),
        ("tests.jobs.sleep_then_record", {"kwargs": {"secs": 1}}),
        ("tests.jobs.fail", {"args": [1]}),
        ("tests.jobs.async_record", {"kwargs": {"when": "now"}}),
    ],
)
def test_e038_arguments_do_not_fit_the_function(func: str, extra: dict[str, Any]) -> None:
    msg = only_job_error(run_job(cron_job(func=func, **extra)), "E038", "args")
    assert f"do not fit {func}(" in msg


def test_e038_suggests_the_parameter_a_misspelled_kwarg_means() -> None:
    errors = run_job(cron_job(func="tests.jobs.sleep_then_record", kwargs={"second": 1}))
    [error] = errors
    assert error.id == "django_oncejob.E038"
    assert error.hint == "Did you mean 'seconds' for 'second' in 'kwargs'?"


def test_e038_not_reported_on_top_of_other_errors() -> None:
    definition = cron_job(func="tests.jobs.sleep_then_record", enabled="yes")
    assert ids(run_job(definition)) == ["django_oncejob.E035"]


def test_arguments_that_fit_give_no_error() -> None:
    assert run_job(cron_job(func="tests.jobs.sleep_then_record", kwargs={"seconds": 1})) == []
    assert run_job(cron_job(args=[1, "two"], kwargs={"three": 3})) == []


def test_every_problem_of_a_job_is_reported_at_once() -> None:
    definition = {
        "func": "tests.jobs.not_callable",
        "cron": "0 21 * *",
        "args": "a",
        "kwargs": [],
        "misfire_grace_time": 0,
        "enabled": "no",
        "timezone": "Nowhere/Town",
        "description": 1,
        "colour": "red",
        "lock_timeout": 0,
        "rerun_abandoned": "no",
    }
    assert sorted(str(code) for code in ids(run_job(definition))) == [
        f"django_oncejob.{code}"
        for code in (
            *("E024", "E027", "E029", "E032", "E033", "E034", "E035", "E036", "E037"),
            *("E039", "E040"),
        )
    ]


def test_errors_of_several_jobs_name_each_job() -> None:
    errors = run({"JOBS": {"a": cron_job(enabled=1), "b": cron_job(args=5), "c": cron_job()}})
    assert [(error.id, error.obj) for error in errors] == [
        ("django_oncejob.E035", "job a"),
        ("django_oncejob.E032", "job b"),
    ]


@pytest.mark.parametrize(
    ("key", "valid"), [("E002", list(DEFAULTS)), ("E024", list(JOB_KEYS))], ids=["E002", "E024"]
)
def test_docs_name_every_valid_key(key: str, valid: list[str]) -> None:
    docs = (ROOT / "docs" / "checks.rst").read_text()
    row = docs.split(f"``django_oncejob.{key}``")[1].split("* - ``django_oncejob.")[0]
    assert [name for name in valid if f"``{name}``" not in row] == []


def test_w001_database_cache() -> None:
    config = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache"}
    warning = only_warning(run_cache(config), "W001")
    assert warning.obj == "CACHES['claims']"
    assert "ONCEJOB['CACHE'] is 'claims', a DatabaseCache" in warning.msg
    assert "MAX_ENTRIES" in warning.msg
    assert warning.hint is not None and "history table" in warning.hint


@pytest.mark.parametrize("backend", ["PyMemcacheCache", "PyLibMCCache"])
def test_w002_memcached(backend: str) -> None:
    config = {
        "BACKEND": f"django.core.cache.backends.memcached.{backend}",
        "LOCATION": "127.0.0.1:11211",
        "OPTIONS": {"retry_attempts": 0} if backend == "PyMemcacheCache" else {},
    }
    warning = only_warning(run_cache(config), "W002")
    assert f"ONCEJOB['CACHE'] is 'claims', a {backend}: Memcached evicts keys" in warning.msg
    assert warning.hint is not None and "noeviction" in warning.hint


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_w008_database_cache_on_sqlite() -> None:
    config = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache"}
    sqlite = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"}}
    errors = run_cache(config, DATABASES=sqlite)
    assert ids(errors) == ["django_oncejob.W008", "django_oncejob.W001"]
    assert "'database is locked'" in errors[0].msg
    assert errors[0].obj == "CACHES['claims']"


def test_w009_pymemcache_that_retries_a_dead_server() -> None:
    config = {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "127.0.0.1:11211",
    }
    errors = run_cache(config)
    assert ids(errors) == ["django_oncejob.W009", "django_oncejob.W002"]
    assert "CACHES['claims']['OPTIONS']['retry_attempts']" in errors[0].msg
    assert errors[0].hint is not None and "'retry_attempts': 0" in errors[0].hint


def test_w010_django_redis_sentinel_client() -> None:
    options = {**REDIS["OPTIONS"], "CLIENT_CLASS": "django_redis.client.SentinelClient"}
    warning = only_warning(run_cache({**REDIS, "OPTIONS": options}), "W010")
    assert "SentinelClient" in warning.msg
    assert warning.hint is not None and "SentinelConnectionFactory" in warning.hint


def test_w003_django_redis_ignoring_exceptions() -> None:
    config = {**REDIS, "OPTIONS": {**REDIS["OPTIONS"], "IGNORE_EXCEPTIONS": True}}
    warning = only_warning(run_cache(config), "W003")
    assert "CACHES['claims']['OPTIONS']['IGNORE_EXCEPTIONS'] set" in warning.msg
    assert warning.hint is not None and "'IGNORE_EXCEPTIONS': False" in warning.hint


def test_w003_from_the_project_wide_setting() -> None:
    warning = only_warning(run_cache(REDIS, DJANGO_REDIS_IGNORE_EXCEPTIONS=True), "W003")
    assert "settings.DJANGO_REDIS_IGNORE_EXCEPTIONS set" in warning.msg


def test_w003_option_false_wins_over_the_setting() -> None:
    config = {**REDIS, "OPTIONS": {**REDIS["OPTIONS"], "IGNORE_EXCEPTIONS": False}}
    assert run_cache(config, DJANGO_REDIS_IGNORE_EXCEPTIONS=True) == []


def test_w003_not_for_djangos_redis_backend() -> None:
    assert run_cache(BUILTIN_REDIS, DJANGO_REDIS_IGNORE_EXCEPTIONS=True) == []


def test_w004_django_redis_shard_client() -> None:
    config = {
        **REDIS,
        "LOCATION": ["redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1"],
        "OPTIONS": {**REDIS["OPTIONS"], "CLIENT_CLASS": "django_redis.client.ShardClient"},
    }
    # Shards are not replicas: no W005 on top.
    warning = only_warning(run_cache(config), "W004")
    assert "a django-redis cache with the ShardClient" in warning.msg
    assert warning.hint is not None and "CACHES['claims']['OPTIONS']['CLIENT_CLASS']" in (
        warning.hint
    )


@pytest.mark.parametrize(
    "location",
    [
        "redis://127.0.0.1:6379/0,redis://127.0.0.1:6380/0",
        ["redis://127.0.0.1:6379/0", "redis://127.0.0.1:6380/0"],
    ],
)
def test_w005_django_redis_with_read_replicas(location: object) -> None:
    warning = only_warning(run_cache({**REDIS, "LOCATION": location}), "W005")
    assert "a Redis cache with 2 locations: the first is the primary" in warning.msg
    assert "Claims and job locks are taken with add(), a write" in warning.msg
    assert warning.hint is not None
    assert warning.hint.startswith(
        "Set CACHES['claims']['LOCATION'] to the primary alone, e.g. 'redis://127.0.0.1:6379/0'"
    )


@pytest.mark.parametrize(
    "location", ["redis://127.0.0.1:6379/0;redis://127.0.0.1:6380/0;redis://127.0.0.1:6381/0"]
)
def test_w005_djangos_redis_backend_with_read_replicas(location: str) -> None:
    warning = only_warning(run_cache({**BUILTIN_REDIS, "LOCATION": location}), "W005")
    assert "a Redis cache with 3 locations" in warning.msg


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"SOCKET_CONNECT_TIMEOUT": 2},
        {"SOCKET_TIMEOUT": None, "SOCKET_CONNECT_TIMEOUT": 2},
        {"SOCKET_TIMEOUT": 0},
        {"socket_timeout": 5},
    ],
)
def test_w006_django_redis_without_a_socket_timeout(options: dict[str, Any]) -> None:
    warning = only_warning(run_cache({**REDIS, "OPTIONS": options}), "W006")
    assert (
        "ONCEJOB['CACHE'] is 'claims', a Redis cache without a socket timeout "
        "(CACHES['claims']['OPTIONS']['SOCKET_TIMEOUT'] is not set)"
    ) in warning.msg
    assert warning.hint == (
        "Set CACHES['claims']['OPTIONS']['SOCKET_TIMEOUT'] and ['SOCKET_CONNECT_TIMEOUT'] to a "
        "few seconds, e.g. {'SOCKET_TIMEOUT': 5, 'SOCKET_CONNECT_TIMEOUT': 2}."
    )


@pytest.mark.parametrize("options", [{}, {"SOCKET_TIMEOUT": 5}, {"socket_connect_timeout": 2}])
def test_w006_djangos_redis_backend_without_a_socket_timeout(options: dict[str, Any]) -> None:
    warning = only_warning(run_cache({**BUILTIN_REDIS, "OPTIONS": options}), "W006")
    assert "(CACHES['claims']['OPTIONS']['socket_timeout'] is not set)" in warning.msg
    assert warning.hint is not None and "'socket_connect_timeout': 2" in warning.hint


@pytest.mark.parametrize(
    "config",
    [
        # redis-py bounds the connect by socket_timeout when socket_connect_timeout is unset.
        {**REDIS, "OPTIONS": {"SOCKET_TIMEOUT": 5}},
        {**REDIS, "OPTIONS": {"CONNECTION_POOL_KWARGS": {"socket_timeout": 5}}},
        {**REDIS, "OPTIONS": {}, "LOCATION": "redis://127.0.0.1:6379/0?socket_timeout=5"},
        {**BUILTIN_REDIS, "OPTIONS": {"socket_timeout": 0.5}},
        {**BUILTIN_REDIS, "OPTIONS": {}, "LOCATION": "redis://127.0.0.1:6379/0?socket_timeout=5"},
    ],
)
def test_w006_accepts_a_socket_timeout_from_any_source(config: dict[str, Any]) -> None:
    assert run_cache(config) == []


def test_w006_needs_the_timeout_in_every_location() -> None:
    location = "redis://127.0.0.1:6379/0?socket_timeout=5,redis://127.0.0.1:6380/0"
    warnings = run_cache({**REDIS, "OPTIONS": {}, "LOCATION": location})
    assert ids(warnings) == ["django_oncejob.W005", "django_oncejob.W006"]


def test_cache_warnings_add_up() -> None:
    config = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/0,redis://127.0.0.1:6380/0",
        "OPTIONS": {"IGNORE_EXCEPTIONS": True},
    }
    assert ids(run_cache(config)) == [
        "django_oncejob.W003",
        "django_oncejob.W005",
        "django_oncejob.W006",
    ]


def test_cache_warnings_do_not_stop_the_check_command() -> None:
    config = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache"}
    with override_settings(
        ONCEJOB={"CACHE": "claims"}, CACHES={"default": REDIS, "claims": config}
    ):
        call_command("check", verbosity=0)


@pytest.mark.parametrize(
    "at", ["2001-01-01T00:00:00Z", datetime(2020, 6, 1, 12, tzinfo=ZoneInfo("Asia/Shanghai"))]
)
def test_w007_at_in_the_past(at: object) -> None:
    warning = only_warning(run_job({"func": "tests.jobs.record", "at": at}), "W007")
    assert warning.obj == "job x"
    assert "ONCEJOB['JOBS']['x']['at'] (" in warning.msg
    assert "is more than its misfire grace time (60 s) in the past: the job will never run" in (
        warning.msg
    )


def test_w007_not_within_the_misfire_grace_time() -> None:
    at = (timezone.now() - timedelta(seconds=30)).isoformat()
    assert run_job({"func": "tests.jobs.record", "at": at, "misfire_grace_time": 120}) == []
    warnings = run_job({"func": "tests.jobs.record", "at": at, "misfire_grace_time": 10})
    assert ids(warnings) == ["django_oncejob.W007"]


def test_w007_not_for_a_disabled_job_or_a_future_date() -> None:
    assert (
        run_job({"func": "tests.jobs.record", "at": "2001-01-01T00:00:00Z", "enabled": False}) == []
    )
    assert run_job({"func": "tests.jobs.record", "at": "2999-01-01T00:00:00Z"}) == []


# Hand-off to a task queue. The checks look for Celery and django.tasks without importing
# them, so these tests say which are installed rather than depend on the environment.

DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}


@pytest.fixture
def frameworks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "celery_installed", lambda: True)
    monkeypatch.setattr(handoff, "tasks_module_name", lambda: "django_tasks")


def tasks_job(**extra: Any) -> dict[str, Any]:
    return cron_job(enqueue="tasks", **extra)


def run_with_tasks(definition: Any, tasks: Any) -> list[CheckMessage]:
    return run({"JOBS": {"x": definition}}, TASKS=tasks)


@pytest.mark.usefixtures("frameworks")
def test_handoff_jobs_give_no_errors() -> None:
    tasks = {
        "default": {"BACKEND": "django_tasks_db.DatabaseBackend"},
        "jobs": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["reports"]},
    }
    jobs = {
        "tasks": tasks_job(),
        "tasks-queue": tasks_job(backend="jobs", queue="reports"),
        "celery": cron_job(enqueue="celery", queue="jobs"),
        "by-name": {"task": "reports.tasks.send", "enqueue": "celery", "cron": "0 21 * * *"},
        "inherits": {"task": "reports.tasks.send", "args": [1], "cron": "0 21 * * *"},
        "here": cron_job(enqueue=None),
    }
    assert run({"ENQUEUE": "celery", "JOBS": jobs}, TASKS=tasks) == []


@pytest.mark.usefixtures("frameworks")
def test_handoff_job_specs() -> None:
    with override_settings(TASKS=DATABASE_TASKS):
        jobs, errors = parse_jobs(
            {
                "a": tasks_job(queue="jobs"),
                "b": {"task": "reports.tasks.send", "enqueue": "celery", "cron": "0 21 * * *"},
                "c": cron_job(),
            }
        )
    assert errors == []
    assert (jobs["a"].enqueue, jobs["a"].backend, jobs["a"].queue) == ("tasks", "default", "jobs")
    assert jobs["a"].target == "tests.jobs.record, handed to django.tasks backend 'default'"
    assert (jobs["b"].func, jobs["b"].task) == ("", "reports.tasks.send")
    assert jobs["b"].target == "Celery task 'reports.tasks.send'"
    assert (jobs["c"].enqueue, jobs["c"].target) == (None, "tests.jobs.record")


@pytest.mark.parametrize("value", ["Tasks", "rq", 1, True, ["celery"]])
def test_e041_enqueue_setting(value: object) -> None:
    error = only(run({"ENQUEUE": value}), "E041")
    assert f"ONCEJOB['ENQUEUE'] must be None, 'tasks' or 'celery', got {value!r}" in error.msg


def test_e041_is_not_blamed_on_every_job() -> None:
    assert ids(run({"ENQUEUE": "rq", "JOBS": {"a": cron_job(), "b": cron_job()}})) == [
        "django_oncejob.E041"
    ]


@pytest.mark.parametrize("value", ["Celery", "rq", 0, False])
def test_e042_job_enqueue(value: object) -> None:
    msg = only_job_error(run_job(cron_job(enqueue=value)), "E042", "enqueue")
    assert f"must be None, 'tasks' or 'celery', got {value!r}" in msg


def test_e043_celery_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "celery_installed", lambda: False)
    msg = only_job_error(run_job(cron_job(enqueue="celery")), "E043", "enqueue")
    assert "Celery is not installed" in msg


def test_e043_from_the_project_wide_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "celery_installed", lambda: False)
    assert ids(run({"ENQUEUE": "celery", "JOBS": {"x": cron_job()}})) == ["django_oncejob.E043"]


def test_e044_no_tasks_framework(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff, "tasks_module_name", lambda: None)
    error = only(run_with_tasks(tasks_job(), DATABASE_TASKS), "E044")
    assert "neither django.tasks (Django 6.0 and later) nor the django-tasks backport" in error.msg
    assert error.hint is not None and "django-oncejob[tasks]" in error.hint


@pytest.mark.usefixtures("frameworks")
def test_e045_tasks_setting_missing() -> None:
    with override_settings(ONCEJOB={"JOBS": {"x": tasks_job()}}):
        if hasattr(settings, "TASKS"):
            del settings.TASKS
        error = only(check_settings(), "E045")
    assert "the TASKS setting is not set" in error.msg


@pytest.mark.usefixtures("frameworks")
def test_e045_tasks_setting_empty() -> None:
    assert ids(run_with_tasks(tasks_job(), {})) == ["django_oncejob.E045"]


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize("backend", ["jobs", 1, None])
def test_e046_backend_not_in_tasks(backend: object) -> None:
    msg = only_job_error(
        run_with_tasks(tasks_job(backend=backend), DATABASE_TASKS), "E046", "backend"
    )
    assert f"names no backend in TASKS: {backend!r}" in msg


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize("queue", ["", " ", 5, ["jobs"]])
def test_e047_queue_not_a_name(queue: object) -> None:
    msg = only_job_error(run_with_tasks(tasks_job(queue=queue), DATABASE_TASKS), "E047", "queue")
    assert f"must be a queue name, got {queue!r}" in msg


@pytest.mark.usefixtures("frameworks")
def test_e047_for_celery_too() -> None:
    assert ids(run_job(cron_job(enqueue="celery", queue=""))) == ["django_oncejob.E047"]


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize(
    ("queues", "extra", "name"),
    [
        (["jobs"], {}, "default"),
        (["jobs"], {"queue": "reports"}, "reports"),
        (None, {"queue": "reports"}, "reports"),
    ],
)
def test_e048_queue_not_in_the_backends_queues(
    queues: list[str] | None, extra: dict[str, Any], name: str
) -> None:
    backend: dict[str, Any] = {"BACKEND": "django_tasks_db.DatabaseBackend"}
    if queues is not None:
        backend["QUEUES"] = queues
    error = only(run_with_tasks(tasks_job(**extra), {"default": backend}), "E048")
    assert f"hands off to queue {name!r}, which TASKS['default']['QUEUES'] does not list" in (
        error.msg
    )


@pytest.mark.usefixtures("frameworks")
def test_e048_accepts_any_queue_when_queues_is_empty() -> None:
    assert run_with_tasks(tasks_job(queue="anything"), DATABASE_TASKS) == []


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize("task", ["", 5, None])
def test_e049_task_not_a_name(task: object) -> None:
    definition = {"task": task, "enqueue": "celery", "cron": "0 21 * * *"}
    msg = only_job_error(run_job(definition), "E049", "task")
    assert f"must be the name of a Celery task, got {task!r}" in msg


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize(
    ("definition", "key"),
    [
        (cron_job(enqueue="celery", backend="default"), "backend"),
        (cron_job(backend="default"), "backend"),
        (cron_job(queue="jobs"), "queue"),
        ({"task": "reports.send", "cron": "0 21 * * *"}, "task"),
        ({"task": "reports.send", "enqueue": "tasks", "cron": "0 21 * * *"}, "task"),
    ],
)
def test_e050_handoff_key_that_does_not_fit(definition: dict[str, Any], key: str) -> None:
    msg = only_job_error(run_with_tasks(definition, DATABASE_TASKS), "E050", key)
    assert "is only used with 'enqueue':" in msg


@pytest.mark.usefixtures("frameworks")
def test_e050_not_for_a_queue_of_none() -> None:
    assert run_job(cron_job(queue=None)) == []


@pytest.mark.usefixtures("frameworks")
def test_e051_func_and_task() -> None:
    error = only(run_job(cron_job(enqueue="celery", task="reports.send")), "E051")
    assert "has both 'func' and 'task'" in error.msg


@pytest.mark.usefixtures("frameworks")
@pytest.mark.parametrize(
    ("backend", "effect"),
    [
        ("django.tasks.backends.immediate.ImmediateBackend", "runs each task at once"),
        ("django_tasks.backends.immediate.ImmediateBackend", "runs each task at once"),
        ("django_tasks.backends.dummy.DummyBackend", "never runs it"),
    ],
)
def test_w011_backend_without_workers(backend: str, effect: str) -> None:
    tasks = {"default": {"BACKEND": backend, "QUEUES": []}}
    warning = only_warning(run_with_tasks(tasks_job(), tasks), "W011")
    assert warning.obj == "job x"
    assert effect in warning.msg


def test_handoff_errors_stop_the_check_command() -> None:
    oncejob = {"JOBS": {"x": cron_job(queue="jobs")}}
    with override_settings(ONCEJOB=oncejob), pytest.raises(SystemCheckError) as info:
        call_command("check")
    assert "django_oncejob.E050" in str(info.value)
