"""A job's schedule changed from the admin: the override form, the reset, and their record.

Only a job with ``"overridable": True`` can be changed, by a user with the
``change_schedule`` permission, and only its trigger, time zone, arguments and policies:
never the function it runs. An override is validated as settings are, by the same
parser with the same messages, so that a bad one never reaches an instance. It is
saved as a version that every instance switches to at the same instant
(:mod:`~django_oncejob.fleet.schedules`), and logged with its before and after.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from django_oncejob.jobs.parser import parse_job
from django_oncejob.jobs.policies import CATCHUP, OVERLAP, POLICY_KEYS
from django_oncejob.jobs.spec import JobSpec
from django_oncejob.jobs.versions import ScheduleBook, merged, storable
from django_oncejob.models import ScheduleVersion

#: The keys an override may set, beside the trigger.
KEYS = ("timezone", "args", "kwargs", *POLICY_KEYS)


class OverrideForm(forms.Form):
    """A job's trigger, time zone, arguments and policies, as an override of its definition."""

    cron = forms.CharField(
        label=_("Cron"),
        required=False,
        help_text=_("Five crontab fields, e.g. 30 2 * * 1-5; or give an interval."),
    )
    interval = forms.IntegerField(
        label=_("Interval"), required=False, min_value=1, help_text=_("Seconds between runs.")
    )
    timezone = forms.CharField(label=_("Time zone"), required=False)
    args = forms.JSONField(
        label=_("Arguments"),
        required=False,
        help_text=_("A JSON list."),
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )
    kwargs = forms.JSONField(
        label=_("Keyword arguments"),
        required=False,
        help_text=_("A JSON object."),
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )
    retries = forms.IntegerField(label=_("Retries"), required=False)
    retry_delay = forms.FloatField(label=_("Retry delay"), required=False)
    retry_backoff = forms.FloatField(label=_("Retry backoff"), required=False)
    max_runtime = forms.IntegerField(label=_("Time limit"), required=False)
    catchup = forms.ChoiceField(
        label=_("Catch-up"), choices=[(c, c) for c in CATCHUP], required=False
    )
    catchup_window = forms.IntegerField(label=_("Catch-up window"), required=False)
    jitter = forms.FloatField(label=_("Jitter"), required=False)
    overlap = forms.ChoiceField(
        label=_("Overlap"), choices=[(o, o) for o in OVERLAP], required=False
    )
    pause_after_failures = forms.IntegerField(label=_("Pause after failures"), required=False)
    note = forms.CharField(
        label=_("Why"),
        required=False,
        max_length=1000,
        help_text=_("Kept with the change, for whoever reads its history."),
    )

    def __init__(self, job: JobSpec, base: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        self.job = job
        #: The deployed definition the override applies to.
        self.base = dict(base)
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        cron, interval = data.get("cron"), data.get("interval")
        if bool(cron) == (interval is not None):
            raise ValidationError(gettext("Give either a cron or an interval, not both."))
        override: dict[str, Any] = {"cron": cron} if cron else {"interval": {"seconds": interval}}
        # Only what differs from the schedule in force: the rest stays the deployed one's.
        current = initial(self.job)
        for key in KEYS:
            value = data.get(key)
            if value not in (None, "") and value != current.get(key):
                override[key] = value
        definition = merged(self.base, override)
        _spec, errors = parse_job(self.job.id, definition, where=repr(self.job.id))
        if errors:
            raise ValidationError([f"{error.msg} {error.hint}" for error in errors])
        data["override"] = override
        return data


def initial(job: JobSpec) -> dict[str, Any]:
    """The form's fields as the job's definition in force sets them."""
    definition = dict(job.definition)
    values: dict[str, Any] = {}
    cron = definition.get("cron")
    if isinstance(cron, str):
        values["cron"] = cron
    interval = definition.get("interval")
    if isinstance(interval, Mapping):
        seconds = interval.get("seconds", 0) + 60 * interval.get("minutes", 0)
        seconds += 3600 * interval.get("hours", 0) + 86400 * interval.get("days", 0)
        values["interval"] = seconds or None
    values["timezone"] = job.timezone
    values["args"] = list(job.args)
    values["kwargs"] = dict(job.kwargs)
    for key in POLICY_KEYS:
        values[key] = getattr(job, key)
    return values


def in_force(jobs: Mapping[str, JobSpec]) -> ScheduleBook:
    """The jobs with their schedules as the versions in the database say."""
    book = ScheduleBook(jobs)
    book.add(ScheduleVersion.objects.filter(job__in=list(jobs)).order_by("pk"))
    return book


def describe(definition: Mapping[str, Any]) -> str:
    """A definition as the history of changes shows it."""
    return json.dumps(storable(definition), sort_keys=True, ensure_ascii=False)
