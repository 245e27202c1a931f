"""Reads one job's definition, key by key, into a :class:`~django_oncejob.jobs.spec.JobSpec`.

Validation and construction are one pass, so the system checks and ``runjobs``
can never disagree about what a valid job is.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from django.core import checks
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

from django_oncejob import handoff
from django_oncejob.conf import conf, time_zone, whole_number
from django_oncejob.handoff import checks as handoff_checks
from django_oncejob.jobs import policies, trigger_parser
from django_oncejob.jobs.policies import POLICY_KEYS
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.messages import Text, interpolate, job_error
from django_oncejob.monitoring import checks as monitoring_checks

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
    "enqueue",
    "backend",
    "queue",
    "task",
    "sentry",
    "ping_url",
    "webhook",
    *POLICY_KEYS,
    "overridable",
)
TRIGGER_KEYS = ("cron", "interval", "at")


def parse_job(
    job_id: str, definition: object, *, where: str | None = None, source: str = "settings"
) -> tuple[JobSpec | None, list[checks.CheckMessage]]:
    """Validate one job definition. ``where`` names it in the messages: by default, its
    place in ``ONCEJOB["JOBS"]``; ``source`` is where it came from."""
    parser = JobParser(job_id, where)
    if not isinstance(definition, Mapping):
        parser.error(
            # Translators: where is the setting, e.g. ONCEJOB['JOBS']['nightly-report'];
            # type is a Python type name, e.g. str.
            _("%(where)s must be a dict, got %(type)s."),
            _("Write %(where)s = {'func': 'app.jobs.run', 'cron': '0 21 * * *'}."),
            "E023",
            type=type(definition).__name__,
        )
        return None, parser.errors
    spec = parser.parse(definition)
    if spec is not None:
        spec = dataclasses.replace(spec, definition=dict(definition), source=source)
    return (None, parser.errors) if parser.errors else (spec, [])


class JobParser:
    """Reads one job's definition key by key, collecting an error per problem."""

    def __init__(self, job_id: str, where: str | None = None) -> None:
        self.job_id = job_id
        self.where = where or f"ONCEJOB['JOBS'][{job_id!r}]"
        self.errors: list[checks.CheckMessage] = []

    def error(self, message: Text, hint: Text, code: str, **params: object) -> None:
        params["where"] = self.where
        self.errors.append(
            job_error(
                self.job_id, interpolate(message, **params), interpolate(hint, **params), code
            )
        )

    def parse(self, definition: Mapping[str, Any]) -> JobSpec | None:
        self.unknown_keys(definition)
        by_name = "task" in definition
        func = self.func(definition, by_name)
        timezone = self.timezone(definition)
        trigger = self.trigger(definition, timezone)
        args, kwargs = self.arguments(definition)
        grace = self.whole_seconds(
            definition,
            "misfire_grace_time",
            conf.MISFIRE_GRACE_TIME,
            _(
                "%(where)s['misfire_grace_time'] must be a whole number of seconds >= 1, "
                "got %(value)s."
            ),
            _("Write e.g. 'misfire_grace_time': 60."),
            "E034",
        )
        enabled = self.flag(
            definition,
            "enabled",
            True,
            _("%(where)s['enabled'] must be True or False, got %(value)s."),
            _("Write 'enabled': False to keep a job defined but not scheduled."),
            "E035",
        )
        description = self.description(definition)
        lock_timeout = self.whole_seconds(
            definition,
            "lock_timeout",
            None,
            _(
                "%(where)s['lock_timeout'] must be a whole number of seconds >= 1 or None, "
                "got %(value)s."
            ),
            _(
                "Set it above the job's longest run, e.g. 'lock_timeout': 3600; "
                "leave it out to allow overlapping runs."
            ),
            "E039",
        )
        rerun = self.flag(
            definition,
            "rerun_abandoned",
            False,
            _("%(where)s['rerun_abandoned'] must be True or False, got %(value)s."),
            _(
                "Write 'rerun_abandoned': True to run an occurrence again when the instance "
                "running it dies."
            ),
            "E040",
        )
        overridable = self.flag(
            definition,
            "overridable",
            False,
            _("%(where)s['overridable'] must be True or False, got %(value)s."),
            _(
                "Write 'overridable': True to let people with the permission change the job's "
                "schedule, arguments and policies in the admin."
            ),
            "E077",
        )
        enqueue = handoff_checks.parse(self, definition)
        sentry, ping_url, webhook = monitoring_checks.parse(self, definition)
        found = policies.parse(self, definition, grace)
        if not self.errors and func:
            self.signature(func, args, kwargs)
        if self.errors or trigger is None:
            return None
        return JobSpec(
            id=self.job_id,
            func=func,
            trigger=trigger,
            args=tuple(args),
            kwargs=dict(kwargs),
            misfire_grace_time=int(grace),
            enabled=bool(enabled),
            timezone=str(timezone),
            description=description,
            lock_timeout=lock_timeout,
            rerun_abandoned=bool(rerun),
            enqueue=enqueue,
            backend=definition.get("backend", handoff.DEFAULT_TASKS_ALIAS),
            queue=definition.get("queue"),
            task=definition.get("task", ""),
            cron=trigger_parser.crontab(definition.get("cron")),
            sentry=sentry,
            ping_url=ping_url,
            webhook=webhook,
            overridable=bool(overridable),
            **found,
        )

    def unknown_keys(self, definition: Mapping[str, Any]) -> None:
        for key in definition:
            if key in JOB_KEYS:
                continue
            close = difflib.get_close_matches(str(key), JOB_KEYS, n=1)
            if close:
                hint = _("Did you mean %(close)s? Valid keys are %(keys)s.")
            else:
                hint = _("Valid keys are %(keys)s.")
            self.error(
                _("%(where)s has an unknown key %(key)s."),
                hint,
                "E024",
                key=repr(key),
                close=repr(close[0]) if close else "",
                keys=", ".join(JOB_KEYS),
            )

    def func(self, definition: Mapping[str, Any], by_name: bool) -> str:
        """The job's dotted path, or ``""`` for a Celery task sent by name."""
        if by_name:
            if "func" in definition:
                self.error(
                    _(
                        "%(where)s has both 'func' and 'task': it runs either a function or a "
                        "Celery task by name, not both."
                    ),
                    _(
                        "Keep 'func' to have the function called (in runjobs, or by oncejob's "
                        "own task in a worker); keep 'task' to send your own Celery task by name."
                    ),
                    "E051",
                )
            return ""
        path = definition.get("func")
        if not isinstance(path, str) or "." not in path:
            self.error(
                _("%(where)s['func'] must be a dotted path to a callable, got %(value)s."),
                _("Set %(where)s['func'] to e.g. 'reports.jobs.send_nightly_report'."),
                "E025",
                value=repr(path),
            )
            return ""
        try:
            func = import_string(path)
        except Exception as exc:  # '.x' raises ValueError, '..' TypeError, a module anything
            self.error(
                # Translators: error is Python's import error, e.g. No module named 'reports'.
                _("%(where)s['func'] %(func)s cannot be imported: %(error)s."),
                _("Check the module path and the function name, and that its app is installed."),
                "E026",
                func=repr(path),
                error=exc if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}",
            )
            return ""
        if not callable(func) or inspect.isclass(func):
            self.error(
                # Translators: type is a Python type name, e.g. module.
                _("%(where)s['func'] %(func)s is not a function, it is %(type)s."),
                _("Point 'func' at a function (sync or async def)."),
                "E027",
                func=repr(path),
                type=type(func).__name__,
            )
            return ""
        return path

    def timezone(self, definition: Mapping[str, Any]) -> ZoneInfo:
        # A bad project-wide TIMEZONE is reported once, by its own check, and reads as
        # its default here, rather than being blamed on every job that did not set one.
        name = definition.get("timezone", conf.TIMEZONE)
        if time_zone(name):
            return ZoneInfo(name)
        self.error(
            _("%(where)s['timezone'] is not a known time zone: %(zone)s."),
            _("Use an IANA name such as 'UTC' or 'Asia/Shanghai'."),
            "E036",
            zone=repr(name),
        )
        return ZoneInfo("UTC")

    def trigger(self, definition: Mapping[str, Any], timezone: ZoneInfo) -> BaseTrigger | None:
        given = [key for key in TRIGGER_KEYS if key in definition]
        if len(given) != 1:
            if given:
                message = _(
                    "%(where)s needs exactly one trigger of 'cron', 'interval' or 'at'; "
                    "found %(found)s."
                )
            else:
                message = _(
                    "%(where)s needs exactly one trigger of 'cron', 'interval' or 'at'; found none."
                )
            self.error(
                message,
                _(
                    "Give e.g. 'cron': '0 21 * * *', 'interval': {'seconds': 30} or "
                    "'at': '2026-12-01T09:00:00+08:00'."
                ),
                "E028",
                found=", ".join(repr(key) for key in given),
            )
            return None
        [kind] = given
        build, code = TRIGGERS[kind]
        try:
            return build(definition[kind], timezone)
        except trigger_parser.TriggerError as exc:
            self.error(
                # Translators: error says what is wrong with the trigger, e.g. "a cron string
                # has 5 fields (minute hour day month day-of-week), got 4 in '0 21 * *'".
                _("%(where)s[%(kind)s]: %(error)s."),
                exc.hint,
                code,
                kind=repr(kind),
                error=exc,
            )
            return None

    def arguments(self, definition: Mapping[str, Any]) -> tuple[Any, Any]:
        args = definition.get("args", ())
        if not isinstance(args, list | tuple):
            self.error(
                _("%(where)s['args'] must be a list, got %(type)s."),
                _("Write e.g. 'args': [1, 'two']."),
                "E032",
                type=type(args).__name__,
            )
        kwargs = definition.get("kwargs", {})
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            self.error(
                _("%(where)s['kwargs'] must be a dict with string keys, got %(value)s."),
                _("Write e.g. 'kwargs': {'dry_run': False}."),
                "E033",
                value=repr(kwargs),
            )
        return args, kwargs

    def signature(self, path: str, args: Any, kwargs: Any) -> None:
        try:
            signature = inspect.signature(import_string(path))
        except (TypeError, ValueError):
            return  # Some builtins have no signature to compare against.
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            hint = _("Give the arguments the function takes, or change its parameters.")
            names = list(signature.parameters)
            unknown = [key for key in kwargs if key not in names]
            close = difflib.get_close_matches(unknown[0], names, n=1) if unknown else []
            if close:
                # Translators: key is the kwargs key as given, close the parameter it may mean.
                hint = _("Did you mean %(close)s for %(key)s in 'kwargs'?")
            self.error(
                # Translators: function is the function with its parameters, e.g.
                # tests.jobs.record(value); error is Python's, e.g. missing a required argument.
                _("%(where)s['args'] and ['kwargs'] do not fit %(function)s: %(error)s."),
                hint,
                "E038",
                function=f"{path}{signature}",
                error=exc,
                key=repr(unknown[0]) if unknown else "",
                close=repr(close[0]) if close else "",
            )

    def whole_seconds(
        self,
        definition: Mapping[str, Any],
        key: str,
        default: int | None,
        message: Text,
        hint: Text,
        code: str,
    ) -> Any:
        value = definition.get(key, default)
        if value is None and default is None:
            return None
        if not whole_number(1)(value):
            self.error(message, hint, code, value=repr(value))
        return value

    def flag(
        self,
        definition: Mapping[str, Any],
        key: str,
        default: bool,
        message: Text,
        hint: Text,
        code: str,
    ) -> Any:
        value = definition.get(key, default)
        if not isinstance(value, bool):
            self.error(message, hint, code, value=repr(value))
        return value

    def description(self, definition: Mapping[str, Any]) -> str:
        description = definition.get("description", "")
        if not isinstance(description, str):
            self.error(
                _("%(where)s['description'] must be a string, got %(type)s."),
                _("Write e.g. 'description': 'Mails the daily sales report.'."),
                "E037",
                type=type(description).__name__,
            )
            return ""
        return description


#: Each trigger key's builder, and the check id of a value it cannot build.
TRIGGERS: dict[str, tuple[Callable[[Any, ZoneInfo], BaseTrigger], str]] = {
    "cron": (trigger_parser.cron_trigger, "E029"),
    "interval": (trigger_parser.interval_trigger, "E030"),
    "at": (trigger_parser.date_trigger, "E031"),
}
