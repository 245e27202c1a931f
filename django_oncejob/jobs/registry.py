"""The jobs of ``ONCEJOB["JOBS"]`` and of ``@job``: parsed once, then read by every part.

The system checks, ``runjobs``, the admin and the task workers all read
:func:`parsed_jobs`, so they can never disagree about what a valid job is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.core import checks
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _

from django_oncejob.conf import conf
from django_oncejob.jobs.decorator import DECLARED, Declared
from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.messages import interpolate

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

_parsed: list[tuple[tuple[dict[str, JobSpec], list[checks.CheckMessage]], int]] = []


def parsed_jobs() -> tuple[dict[str, JobSpec], list[checks.CheckMessage]]:
    """:func:`parse_jobs` of the ``JOBS`` setting and the ``@job`` declarations, parsed once
    until a setting changes or a job is declared.

    Parsing imports every job's function and builds its trigger: with thousands of
    jobs, the system checks, ``runjobs`` and each admin page would otherwise repeat it.
    The error messages are translated when read, so one parse serves every language.
    """
    if not _parsed or _parsed[0][1] != len(DECLARED):
        _parsed[:] = [(parse_jobs(conf.JOBS, DECLARED), len(DECLARED))]
    return _parsed[0][0]


@receiver(setting_changed)
def _forget_parsed_jobs(**kwargs: Any) -> None:
    _parsed.clear()


def get_jobs() -> dict[str, JobSpec]:
    """The jobs from settings; raises :class:`InvalidJobs` if any definition is invalid."""
    jobs, errors = parsed_jobs()
    if errors:
        raise InvalidJobs(errors)
    return jobs


class InvalidJobs(Exception):
    def __init__(self, errors: list[checks.CheckMessage]) -> None:
        super().__init__("\n".join(f"{e.id}: {e.msg}" for e in errors))
        self.errors = errors


def parse_jobs(
    raw: object, declared: Sequence[Declared] = ()
) -> tuple[dict[str, JobSpec], list[checks.CheckMessage]]:
    """Validate ``ONCEJOB["JOBS"]`` and the jobs ``declared`` with ``@job``, returning the
    valid specs and an error per problem."""
    jobs, errors = _parse_settings(raw)
    places = {job_id.lower(): f"ONCEJOB['JOBS'][{job_id!r}]" for job_id in _ids(raw)}
    for item in declared:
        where = f"@job {item.job_id!r} ({item.module})"
        other = places.get(item.job_id.lower())
        if other is not None:
            errors.append(
                checks.Error(
                    interpolate(
                        _("Job %(job)s is defined twice: by %(where)s and by %(other)s."),
                        job=repr(item.job_id),
                        where=where,
                        other=other,
                    ),
                    hint=interpolate(
                        _(
                            "Give one of them another id: the first argument of @job, or the "
                            "key in ONCEJOB['JOBS']."
                        )
                    ),
                    obj=f"job {item.job_id}",
                    id="django_oncejob.E076",
                )
            )
            jobs.pop(item.job_id, None)
            continue
        places[item.job_id.lower()] = where
        if not isinstance(item.job_id, str) or not JOB_ID.fullmatch(item.job_id):
            errors.append(_invalid_id(item.job_id))
            continue
        spec, job_errors = parse_job(item.job_id, item.definition, where=where, source="code")
        errors.extend(job_errors)
        if spec is not None and not job_errors:
            jobs[item.job_id] = spec
    return jobs, errors


def _ids(raw: object) -> list[str]:
    return [key for key in raw if isinstance(key, str)] if isinstance(raw, Mapping) else []


def _invalid_id(job_id: object) -> checks.Error:
    return checks.Error(
        interpolate(_("ONCEJOB['JOBS'] has an invalid job id %(job)s."), job=repr(job_id)),
        hint=interpolate(
            _(
                "A job id is 1 to 100 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit, e.g. 'nightly-report'."
            )
        ),
        id="django_oncejob.E021",
    )


def _parse_settings(raw: object) -> tuple[dict[str, JobSpec], list[checks.CheckMessage]]:
    if not isinstance(raw, Mapping):
        return {}, [
            checks.Error(
                # Translators: type is a Python type name, e.g. list.
                interpolate(
                    _("ONCEJOB['JOBS'] must be a dict of job id to definition, got %(type)s."),
                    type=type(raw).__name__,
                ),
                hint=interpolate(
                    _("Write ONCEJOB = {'JOBS': {'nightly-report': {'func': ..., 'cron': ...}}}.")
                ),
                id="django_oncejob.E020",
            )
        ]
    jobs: dict[str, JobSpec] = {}
    errors: list[checks.CheckMessage] = []
    seen: dict[str, str] = {}
    for job_id, definition in raw.items():
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            errors.append(_invalid_id(job_id))
            continue
        if job_id.lower() in seen:
            errors.append(
                checks.Error(
                    interpolate(
                        _(
                            "Job %(job)s duplicates job %(other)s: "
                            "job ids in ONCEJOB['JOBS'] must differ in more than letter case."
                        ),
                        job=repr(job_id),
                        other=repr(seen[job_id.lower()]),
                    ),
                    hint=interpolate(
                        _("Rename one of them; many databases compare ids without case.")
                    ),
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
