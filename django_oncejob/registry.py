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
from importlib.util import find_spec
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from django.conf import global_settings, settings
from django.core import checks
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from django_oncejob import triggers
from django_oncejob.conf import DEFAULTS, ENQUEUE_CHOICES, conf, user_config

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
)
TRIGGER_KEYS = ("cron", "interval", "at")
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: The tasks framework, by preference: Django's own (6.0+), then the django-tasks backport.
TASKS_MODULES = ("django.tasks", "django_tasks")
#: django.tasks' name for the backend and the queue a task uses unless told otherwise.
DEFAULT_TASKS_ALIAS = DEFAULT_TASKS_QUEUE = "default"


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
    #: ``None``: run in runjobs. ``"tasks"`` or ``"celery"``: hand each occurrence to that queue.
    enqueue: str | None = None
    #: The django.tasks backend alias, with ``enqueue="tasks"``.
    backend: str = DEFAULT_TASKS_ALIAS
    #: The queue to hand occurrences to; ``None`` is the backend's default.
    queue: str | None = None
    #: A Celery task name to send instead of running ``func``, with ``enqueue="celery"``.
    task: str = ""

    def resolve(self) -> Callable[..., Any]:
        """Import the job's callable."""
        if not self.func:
            return _runs_as_celery_task
        func: Callable[..., Any] = import_string(self.func)
        return func

    @property
    def trigger_text(self) -> str:
        return triggers.describe(self.trigger)

    @property
    def target(self) -> str:
        """What an occurrence runs, and where, in words."""
        if self.task:
            return f"Celery task {self.task!r}"
        if self.enqueue == "tasks":
            return f"{self.func}, handed to django.tasks backend {self.backend!r}"
        if self.enqueue == "celery":
            return f"{self.func}, handed to Celery"
        return self.func


def _runs_as_celery_task(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("This job sends a Celery task by name; runjobs never calls it.")


def tasks_module_name() -> str | None:
    """The tasks framework that can be imported here, or ``None`` if neither is installed."""
    return next((name for name in TASKS_MODULES if find_spec(name) is not None), None)


def celery_installed() -> bool:
    """Whether Celery can be imported here."""
    return find_spec("celery") is not None


#: By language, since the error messages are written in the active one.
_parsed: dict[str | None, tuple[dict[str, JobSpec], list[checks.CheckMessage]]] = {}


def settings_jobs() -> tuple[dict[str, JobSpec], list[checks.CheckMessage]]:
    """:func:`parse_jobs` of the ``JOBS`` setting, parsed once until a setting changes.

    Parsing imports every job's function and builds its trigger: with thousands of
    jobs, the system checks, ``runjobs`` and each admin page would otherwise repeat it.
    """
    language = get_language()
    if language not in _parsed:
        _parsed[language] = parse_jobs(conf.JOBS)
    return _parsed[language]


@receiver(setting_changed)
def _forget_parsed_jobs(**kwargs: Any) -> None:
    _parsed.clear()


def load_jobs() -> dict[str, JobSpec]:
    """The jobs from settings; raises :class:`InvalidJobs` if any definition is invalid."""
    jobs, errors = settings_jobs()
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
                # Translators: type is a Python type name, e.g. list.
                _("ONCEJOB['JOBS'] must be a dict of job id to definition, got %(type)s.")
                % {"type": type(raw).__name__},
                hint=_("Write ONCEJOB = {'JOBS': {'nightly-report': {'func': ..., 'cron': ...}}}."),
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
                    _("ONCEJOB['JOBS'] has an invalid job id %(job)s.") % {"job": repr(job_id)},
                    hint=_(
                        "A job id is 1 to 100 letters, digits, '_', '.' or '-', "
                        "starting with a letter or digit, e.g. 'nightly-report'."
                    ),
                    id="django_oncejob.E021",
                )
            )
            continue
        if job_id.lower() in seen:
            errors.append(
                checks.Error(
                    _(
                        "Job %(job)s duplicates job %(other)s: "
                        "job ids in ONCEJOB['JOBS'] must differ in more than letter case."
                    )
                    % {"job": repr(job_id), "other": repr(seen[job_id.lower()])},
                    hint=_("Rename one of them; many databases compare ids without case."),
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
                # Translators: where is the setting, e.g. ONCEJOB['JOBS']['nightly-report'];
                # type is a Python type name, e.g. str.
                _("%(where)s must be a dict, got %(type)s.")
                % {"where": where, "type": type(definition).__name__},
                _("Write %(where)s = {'func': 'app.jobs.run', 'cron': '0 21 * * *'}.")
                % {"where": where},
                "E023",
            )
        ]
    errors: list[checks.CheckMessage] = []
    for key in definition:
        if key not in JOB_KEYS:
            close = difflib.get_close_matches(str(key), JOB_KEYS, n=1)
            if close:
                hint = _("Did you mean %(close)s? Valid keys are %(keys)s.")
            else:
                hint = _("Valid keys are %(keys)s.")
            errors.append(
                _error(
                    job_id,
                    _("%(where)s has an unknown key %(key)s.") % {"where": where, "key": repr(key)},
                    hint % {"close": repr(close[0]) if close else "", "keys": ", ".join(JOB_KEYS)},
                    "E024",
                )
            )

    func_path = definition.get("func")
    by_name = "task" in definition
    if by_name and "func" in definition:
        errors.append(
            _error(
                job_id,
                _(
                    "%(where)s has both 'func' and 'task': it runs either a function or a Celery "
                    "task by name, not both."
                )
                % {"where": where},
                _(
                    "Keep 'func' to have the function called (in runjobs, or by oncejob's own "
                    "task in a worker); keep 'task' to send your own Celery task by name."
                ),
                "E051",
            )
        )
    elif not by_name:
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
                _("%(where)s['timezone'] is not a known time zone: %(zone)s.")
                % {"where": where, "zone": repr(timezone_name)},
                _("Use an IANA name such as 'UTC' or 'Asia/Shanghai'."),
                "E036",
            )
        )
        timezone = ZoneInfo("UTC")

    trigger = None
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
        errors.append(
            _error(
                job_id,
                message % {"where": where, "found": ", ".join(repr(key) for key in given)},
                _(
                    "Give e.g. 'cron': '0 21 * * *', 'interval': {'seconds': 30} or "
                    "'at': '2026-12-01T09:00:00+08:00'."
                ),
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
            # Translators: error says what is wrong with the trigger, e.g. "a cron string
            # has 5 fields (minute hour day month day-of-week), got 4 in '0 21 * *'".
            message = _("%(where)s[%(kind)s]: %(error)s.")
            errors.append(
                _error(
                    job_id,
                    message % {"where": where, "kind": repr(kind), "error": exc},
                    exc.hint,
                    code,
                )
            )

    args = definition.get("args", ())
    if not isinstance(args, list | tuple):
        errors.append(
            _error(
                job_id,
                _("%(where)s['args'] must be a list, got %(type)s.")
                % {"where": where, "type": type(args).__name__},
                _("Write e.g. 'args': [1, 'two']."),
                "E032",
            )
        )
    kwargs = definition.get("kwargs", {})
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        errors.append(
            _error(
                job_id,
                _("%(where)s['kwargs'] must be a dict with string keys, got %(value)s.")
                % {"where": where, "value": repr(kwargs)},
                _("Write e.g. 'kwargs': {'dry_run': False}."),
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
                _(
                    "%(where)s['misfire_grace_time'] must be a whole number of seconds >= 1, "
                    "got %(value)s."
                )
                % {"where": where, "value": repr(grace)},
                _("Write e.g. 'misfire_grace_time': 60."),
                "E034",
            )
        )
    enabled = definition.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append(
            _error(
                job_id,
                _("%(where)s['enabled'] must be True or False, got %(value)s.")
                % {"where": where, "value": repr(enabled)},
                _("Write 'enabled': False to keep a job defined but not scheduled."),
                "E035",
            )
        )
    description = definition.get("description", "")
    if not isinstance(description, str):
        errors.append(
            _error(
                job_id,
                _("%(where)s['description'] must be a string, got %(type)s.")
                % {"where": where, "type": type(description).__name__},
                _("Write e.g. 'description': 'Mails the daily sales report.'."),
                "E037",
            )
        )
    lock_timeout = definition.get("lock_timeout")
    if lock_timeout is not None and not _whole_seconds(lock_timeout):
        errors.append(
            _error(
                job_id,
                _(
                    "%(where)s['lock_timeout'] must be a whole number of seconds >= 1 or None, "
                    "got %(value)s."
                )
                % {"where": where, "value": repr(lock_timeout)},
                _(
                    "Set it above the job's longest run, e.g. 'lock_timeout': 3600; "
                    "leave it out to allow overlapping runs."
                ),
                "E039",
            )
        )
    rerun = definition.get("rerun_abandoned", False)
    if not isinstance(rerun, bool):
        errors.append(
            _error(
                job_id,
                _("%(where)s['rerun_abandoned'] must be True or False, got %(value)s.")
                % {"where": where, "value": repr(rerun)},
                _(
                    "Write 'rerun_abandoned': True to run an occurrence again when the instance "
                    "running it dies."
                ),
                "E040",
            )
        )
    enqueue, handoff_errors = _check_handoff(job_id, where, definition)
    errors.extend(handoff_errors)
    if not errors and not by_name:
        errors.extend(_check_signature(job_id, where, str(func_path), args, kwargs))
    if errors or trigger is None:
        return None, errors
    return (
        JobSpec(
            id=job_id,
            func="" if by_name else str(func_path),
            trigger=trigger,
            args=tuple(args),
            kwargs=dict(kwargs),
            misfire_grace_time=int(grace),
            enabled=bool(enabled),
            timezone=str(timezone),
            description=str(description),
            lock_timeout=lock_timeout,
            rerun_abandoned=rerun,
            enqueue=enqueue,
            backend=definition.get("backend", DEFAULT_TASKS_ALIAS),
            queue=definition.get("queue"),
            task=definition.get("task", ""),
        ),
        [],
    )


def _check_handoff(
    job_id: str, where: str, definition: Mapping[str, Any]
) -> tuple[str | None, list[checks.CheckMessage]]:
    """Validate ``enqueue`` and the keys that go with it; returns the job's ``enqueue``."""
    # A bad project-wide ENQUEUE is reported once by its own check, as for TIMEZONE.
    default = user_config().get("ENQUEUE")
    enqueue = definition.get("enqueue", default if default in ENQUEUE_CHOICES else None)
    if enqueue not in ENQUEUE_CHOICES:
        return None, [
            _error(
                job_id,
                _("%(where)s['enqueue'] must be None, 'tasks' or 'celery', got %(value)s.")
                % {"where": where, "value": repr(enqueue)},
                _(
                    "Leave it out (or None) to run the job in runjobs; 'tasks' hands each "
                    "occurrence to a django.tasks backend, 'celery' to Celery."
                ),
                "E042",
            )
        ]
    errors: list[checks.CheckMessage] = []
    queue = definition.get("queue")
    given = {key for key in ("backend", "task") if key in definition}
    if queue is not None:
        given.add("queue")
    fits = {"backend": ("tasks",), "queue": ("tasks", "celery"), "task": ("celery",)}
    for key, modes in fits.items():
        if key in given and enqueue not in modes:
            if len(modes) == 1:
                message = _(
                    "%(where)s[%(key)s] is only used with 'enqueue': %(mode)s, and the job's "
                    "'enqueue' is %(enqueue)s."
                )
                hint = _("Set %(where)s['enqueue'] to %(mode)s, or remove %(key)s.")
            else:
                message = _(
                    "%(where)s[%(key)s] is only used with 'enqueue': %(mode)s or %(other)s, "
                    "and the job's 'enqueue' is %(enqueue)s."
                )
                hint = _("Set %(where)s['enqueue'] to %(mode)s or %(other)s, or remove %(key)s.")
            values = {
                "where": where,
                "key": repr(key),
                "mode": repr(modes[0]),
                "other": repr(modes[-1]),
                "enqueue": repr(enqueue),
            }
            errors.append(_error(job_id, message % values, hint % values, "E050"))
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        errors.append(
            _error(
                job_id,
                _("%(where)s['queue'] must be a queue name, got %(value)s.")
                % {"where": where, "value": repr(queue)},
                _(
                    "Write e.g. 'queue': 'jobs', or leave it out (or None) for the backend's "
                    "default queue."
                ),
                "E047",
            )
        )
    task = definition.get("task")
    if "task" in definition and (not isinstance(task, str) or not task.strip()):
        errors.append(
            _error(
                job_id,
                _("%(where)s['task'] must be the name of a Celery task, got %(value)s.")
                % {"where": where, "value": repr(task)},
                _(
                    "Write e.g. 'task': 'reports.tasks.send_nightly_report', the name the task "
                    "is registered under in your Celery workers."
                ),
                "E049",
            )
        )
    if enqueue == "celery" and not celery_installed():
        errors.append(
            _error(
                job_id,
                _("%(where)s['enqueue'] is 'celery', but Celery is not installed.")
                % {"where": where},
                _(
                    "pip install 'django-oncejob[celery]' (or celery), or run the job in runjobs "
                    "by removing 'enqueue'."
                ),
                "E043",
            )
        )
    if enqueue == "tasks":
        errors.extend(_check_tasks_backend(job_id, where, definition, queue))
    return enqueue, errors


def _check_tasks_backend(
    job_id: str, where: str, definition: Mapping[str, Any], queue: object
) -> list[checks.CheckMessage]:
    if tasks_module_name() is None:
        return [
            _error(
                job_id,
                _(
                    "%(where)s['enqueue'] is 'tasks', but neither django.tasks (Django 6.0 and "
                    "later) nor the django-tasks backport can be imported."
                )
                % {"where": where},
                _(
                    "On Django 5.2 and earlier, pip install 'django-oncejob[tasks]' "
                    "(django-tasks); or remove 'enqueue' to run the job in runjobs."
                ),
                "E044",
            )
        ]
    backends = getattr(settings, "TASKS", None)
    # From Django 6.0 a project that sets no TASKS gets the default, an ImmediateBackend.
    unset = backends is None or backends is getattr(global_settings, "TASKS", None)
    if unset or not isinstance(backends, Mapping) or not backends:
        return [
            _error(
                job_id,
                _(
                    "%(where)s['enqueue'] is 'tasks', but the TASKS setting is not set: the "
                    "default backend would run the task at once, inside runjobs."
                )
                % {"where": where},
                _(
                    "Configure a backend with a worker in TASKS, e.g. {'default': {'BACKEND': "
                    "'django_tasks_db.DatabaseBackend'}}, and run its worker."
                ),
                "E045",
            )
        ]
    alias = definition.get("backend", DEFAULT_TASKS_ALIAS)
    if not isinstance(alias, str) or alias not in backends:
        return [
            _error(
                job_id,
                _("%(where)s['backend'] names no backend in TASKS: %(alias)s.")
                % {"where": where, "alias": repr(alias)},
                # Translators: aliases is a list of TASKS aliases, e.g. 'default', 'mails'.
                _("Use one of %(aliases)s, or leave it out for %(default)s.")
                % {
                    "aliases": ", ".join(map(repr, backends)),
                    "default": repr(DEFAULT_TASKS_ALIAS),
                },
                "E046",
            )
        ]
    queues = backends[alias].get("QUEUES", [DEFAULT_TASKS_QUEUE])
    name = DEFAULT_TASKS_QUEUE if queue is None else queue
    if isinstance(name, str) and name.strip() and queues and name not in queues:
        return [
            _error(
                job_id,
                _(
                    # Translators: queues is the list of queue names the backend has.
                    "%(where)s hands off to queue %(queue)s, which TASKS[%(alias)s]['QUEUES'] "
                    "does not list (%(queues)s)."
                )
                % {
                    "where": where,
                    "queue": repr(name),
                    "alias": repr(alias),
                    "queues": ", ".join(map(repr, queues)),
                },
                _(
                    "Set %(where)s['queue'] to one of them, or add %(queue)s to the backend's "
                    "QUEUES."
                )
                % {"where": where, "queue": repr(name)},
                "E048",
            )
        ]
    return []


def _check_func(job_id: str, where: str, func_path: object) -> list[checks.CheckMessage]:
    if not isinstance(func_path, str) or "." not in func_path:
        return [
            _error(
                job_id,
                _("%(where)s['func'] must be a dotted path to a callable, got %(value)s.")
                % {"where": where, "value": repr(func_path)},
                _("Set %(where)s['func'] to e.g. 'reports.jobs.send_nightly_report'.")
                % {"where": where},
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
                # Translators: error is Python's import error, e.g. No module named 'reports'.
                _("%(where)s['func'] %(func)s cannot be imported: %(error)s.")
                % {"where": where, "func": repr(func_path), "error": detail},
                _("Check the module path and the function name, and that its app is installed."),
                "E026",
            )
        ]
    if not callable(func) or inspect.isclass(func):
        return [
            _error(
                job_id,
                # Translators: type is a Python type name, e.g. module.
                _("%(where)s['func'] %(func)s is not a function, it is %(type)s.")
                % {"where": where, "func": repr(func_path), "type": type(func).__name__},
                _("Point 'func' at a function (sync or async def)."),
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
                # Translators: function is the function with its parameters, e.g.
                # tests.jobs.record(value); error is Python's, e.g. missing a required argument.
                _("%(where)s['args'] and ['kwargs'] do not fit %(function)s: %(error)s.")
                % {"where": where, "function": f"{func_path}{signature}", "error": exc},
                _("Give the arguments the function takes, or change its parameters."),
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
