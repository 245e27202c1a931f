"""Turns the ``ONCEJOB["JOBS"]`` setting into validated job specs.

Validation and construction are one pass, so the system checks and
``runjobs`` can never disagree about what a valid job is.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from django.core import checks
from django.utils.module_loading import import_string

from django_oncejob import triggers
from django_oncejob.conf import DEFAULTS, conf, user_config

JOB_KEYS = (
    "func",
    "cron",
    "interval",
    "at",
    "args",
    "kwargs",
    "misfire_grace_time",
    "enabled",
    "timezone",
    "description",
    "lock_timeout",
    "rerun_abandoned",
)
TRIGGER_KEYS = ("cron", "interval", "at")
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class JobSpec:
    """One validated job from settings."""

    id: str
    func: str
    trigger: BaseTrigger = field(compare=False)
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    misfire_grace_time: int = 60
    enabled: bool = True
    timezone: str = "UTC"
    description: str = ""
    #: Seconds a job-wide lock lives while a run is going: no overlapping runs. ``None``: off.
    lock_timeout: int | None = None
    #: Run an occurrence again when the instance running it is found dead.
    rerun_abandoned: bool = False

    def resolve(self) -> Callable[..., Any]:
        """Import the job's callable."""
        func: Callable[..., Any] = import_string(self.func)
        return func

    @property
    def trigger_text(self) -> str:
        return triggers.describe(self.trigger)


def load_jobs() -> dict[str, JobSpec]:
    """The jobs from settings; raises :class:`InvalidJobs` if any definition is invalid."""
    jobs, errors = parse_jobs(conf.JOBS)
    if errors:
        raise InvalidJobs(errors)
    return jobs


class InvalidJobs(Exception):
    def __init__(self, errors: list[checks.CheckMessage]) -> None:
        super().__init__("\n".join(f"{e.id}: {e.msg}" for e in errors))
        self.errors = errors


def parse_jobs(raw: object) -> tuple[dict[str, JobSpec], list[checks.CheckMessage]]:
    """Validate ``ONCEJOB["JOBS"]``, returning the valid specs and an error per problem."""
    if not isinstance(raw, Mapping):
        return {}, [
            checks.Error(
                f"ONCEJOB['JOBS'] must be a dict of job id to definition, "
                f"got {type(raw).__name__}.",
                hint="Write ONCEJOB = {'JOBS': {'nightly-report': {'func': ..., 'cron': ...}}}.",
                id="django_oncejob.E020",
            )
        ]
    jobs: dict[str, JobSpec] = {}
    errors: list[checks.CheckMessage] = []
    seen: dict[str, str] = {}
    for job_id, definition in raw.items():
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            errors.append(
                checks.Error(
                    f"ONCEJOB['JOBS'] has an invalid job id {job_id!r}.",
                    hint="A job id is 1 to 100 letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit, e.g. 'nightly-report'.",
                    id="django_oncejob.E021",
                )
            )
            continue
        if job_id.lower() in seen:
            errors.append(
                checks.Error(
                    f"Job {job_id!r} duplicates job {seen[job_id.lower()]!r}: "
                    f"job ids in ONCEJOB['JOBS'] must differ in more than letter case.",
                    hint="Rename one of them; many databases compare ids without case.",
                    id="django_oncejob.E022",
                )
            )
            continue
        seen[job_id.lower()] = job_id
        spec, job_errors = parse_job(job_id, definition)
        errors.extend(job_errors)
        if spec is not None and not job_errors:
            jobs[job_id] = spec
    return jobs, errors


def parse_job(job_id: str, definition: object) -> tuple[JobSpec | None, list[checks.CheckMessage]]:
    """Validate one job definition."""
    where = f"ONCEJOB['JOBS'][{job_id!r}]"
    if not isinstance(definition, Mapping):
        return None, [
            _error(
                job_id,
                f"{where} must be a dict, got {type(definition).__name__}.",
                f"Write {where} = {{'func': 'app.jobs.run', 'cron': '0 21 * * *'}}.",
                "E023",
            )
        ]
    errors: list[checks.CheckMessage] = []
    for key in definition:
        if key not in JOB_KEYS:
            close = difflib.get_close_matches(str(key), JOB_KEYS, n=1)
            suggestion = f"Did you mean {close[0]!r}? " if close else ""
            errors.append(
                _error(
                    job_id,
                    f"{where} has an unknown key {key!r}.",
                    f"{suggestion}Valid keys are {', '.join(JOB_KEYS)}.",
                    "E024",
                )
            )

    func_path = definition.get("func")
    errors.extend(_check_func(job_id, where, func_path))

    # A bad project-wide TIMEZONE or MISFIRE_GRACE_TIME is reported once, by its own
    # check, rather than blamed on every job that did not set its own.
    timezone_name = definition.get("timezone", _valid_zone(conf.TIMEZONE) or "UTC")
    try:
        if not isinstance(timezone_name, str):
            raise ZoneInfoNotFoundError(timezone_name)
        timezone = ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(
            _error(
                job_id,
                f"{where}['timezone'] is not a known time zone: {timezone_name!r}.",
                "Use an IANA name such as 'UTC' or 'Asia/Shanghai'.",
                "E036",
            )
        )
        timezone = ZoneInfo("UTC")

    trigger = None
    given = [key for key in TRIGGER_KEYS if key in definition]
    if len(given) != 1:
        found = ", ".join(repr(key) for key in given) or "none"
        errors.append(
            _error(
                job_id,
                f"{where} needs exactly one trigger of 'cron', 'interval' or 'at'; found {found}.",
                "Give e.g. 'cron': '0 21 * * *', 'interval': {'seconds': 30} or "
                "'at': '2026-12-01T09:00:00+08:00'.",
                "E028",
            )
        )
    else:
        kind = given[0]
        build = {
            "cron": triggers.cron_trigger,
            "interval": triggers.interval_trigger,
            "at": triggers.date_trigger,
        }[kind]
        try:
            trigger = build(definition[kind], timezone)
        except triggers.TriggerError as exc:
            code = {"cron": "E029", "interval": "E030", "at": "E031"}[kind]
            errors.append(_error(job_id, f"{where}['{kind}']: {exc}.", exc.hint, code))

    args = definition.get("args", ())
    if not isinstance(args, list | tuple):
        errors.append(
            _error(
                job_id,
                f"{where}['args'] must be a list, got {type(args).__name__}.",
                "Write e.g. 'args': [1, 'two'].",
                "E032",
            )
        )
    kwargs = definition.get("kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        errors.append(
            _error(
                job_id,
                f"{where}['kwargs'] must be a dict with string keys, got {kwargs!r}.",
                "Write e.g. 'kwargs': {'dry_run': False}.",
                "E033",
            )
        )
    default_grace = user_config().get("MISFIRE_GRACE_TIME", DEFAULTS["MISFIRE_GRACE_TIME"])
    if not _whole_seconds(default_grace):
        default_grace = DEFAULTS["MISFIRE_GRACE_TIME"]
    grace = definition.get("misfire_grace_time", default_grace)
    if not _whole_seconds(grace):
        errors.append(
            _error(
                job_id,
                f"{where}['misfire_grace_time'] must be a whole number of seconds >= 1, "
                f"got {grace!r}.",
                "Write e.g. 'misfire_grace_time': 60.",
                "E034",
            )
        )
    enabled = definition.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append(
            _error(
                job_id,
                f"{where}['enabled'] must be True or False, got {enabled!r}.",
                "Write 'enabled': False to keep a job defined but not scheduled.",
                "E035",
            )
        )
    description = definition.get("description", "")
    if not isinstance(description, str):
        errors.append(
            _error(
                job_id,
                f"{where}['description'] must be a string, got {type(description).__name__}.",
                "Write e.g. 'description': 'Mails the daily sales report.'.",
                "E037",
            )
        )
    lock_timeout = definition.get("lock_timeout")
    if lock_timeout is not None and not _whole_seconds(lock_timeout):
        errors.append(
            _error(
                job_id,
                f"{where}['lock_timeout'] must be a whole number of seconds >= 1 or None, "
                f"got {lock_timeout!r}.",
                "Set it above the job's longest run, e.g. 'lock_timeout': 3600; "
                "leave it out to allow overlapping runs.",
                "E039",
            )
        )
    rerun = definition.get("rerun_abandoned", False)
    if not isinstance(rerun, bool):
        errors.append(
            _error(
                job_id,
                f"{where}['rerun_abandoned'] must be True or False, got {rerun!r}.",
                "Write 'rerun_abandoned': True to run an occurrence again when the instance "
                "running it dies.",
                "E040",
            )
        )
    if not errors:
        errors.extend(_check_signature(job_id, where, str(func_path), args, kwargs))
    if errors or trigger is None:
        return None, errors
    return (
        JobSpec(
            id=job_id,
            func=str(func_path),
            trigger=trigger,
            args=tuple(args),
            kwargs=dict(kwargs),
            misfire_grace_time=int(grace),
            enabled=bool(enabled),
            timezone=str(timezone),
            description=str(description),
            lock_timeout=lock_timeout,
            rerun_abandoned=rerun,
        ),
        [],
    )


def _check_func(job_id: str, where: str, func_path: object) -> list[checks.CheckMessage]:
    if not isinstance(func_path, str) or "." not in func_path:
        return [
            _error(
                job_id,
                f"{where}['func'] must be a dotted path to a callable, got {func_path!r}.",
                f"Set {where}['func'] to e.g. 'reports.jobs.send_nightly_report'.",
                "E025",
            )
        ]
    try:
        func = import_string(func_path)
    except Exception as exc:  # '.x' raises ValueError, '..' TypeError, a module anything
        detail = exc if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        return [
            _error(
                job_id,
                f"{where}['func'] {func_path!r} cannot be imported: {detail}.",
                "Check the module path and the function name, and that its app is installed.",
                "E026",
            )
        ]
    if not callable(func) or inspect.isclass(func):
        return [
            _error(
                job_id,
                f"{where}['func'] {func_path!r} is not a function, it is {type(func).__name__}.",
                "Point 'func' at a function (sync or async def).",
                "E027",
            )
        ]
    return []


def _check_signature(
    job_id: str, where: str, func_path: str, args: Any, kwargs: Any
) -> list[checks.CheckMessage]:
    try:
        signature = inspect.signature(import_string(func_path))
    except (TypeError, ValueError):
        return []  # Some builtins have no signature to compare against.
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        return [
            _error(
                job_id,
                f"{where}['args'] and ['kwargs'] do not fit {func_path}{signature}: {exc}.",
                "Give the arguments the function takes, or change its parameters.",
                "E038",
            )
        ]
    return []


def _valid_zone(name: object) -> str | None:
    try:
        return str(ZoneInfo(name)) if isinstance(name, str) else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _whole_seconds(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _error(job_id: str, message: str, hint: str, code: str) -> checks.Error:
    return checks.Error(message, hint=hint, obj=f"job {job_id}", id=f"django_oncejob.{code}")
