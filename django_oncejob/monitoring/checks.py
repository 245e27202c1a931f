"""Checks of the monitors: a job's ``sentry``, ``ping_url`` and ``webhook``, and their libraries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from django.core import checks
from django.utils.translation import gettext_lazy as _

from django_oncejob.conf import conf, web_address, whole_number
from django_oncejob.messages import Reporter, interpolate

if TYPE_CHECKING:
    from django_oncejob.jobs.spec import JobSpec

#: What a job's ``sentry`` dict may set in the monitor's ``monitor_config``, beside its schedule.
SENTRY_KEYS = ("checkin_margin", "max_runtime", "failure_issue_threshold", "recovery_threshold")


def parse(
    parser: Reporter, definition: Mapping[str, Any]
) -> tuple[dict[str, int] | None, str | None, str | None]:
    """The job's Sentry options (``None``: no check-ins), ping URL and webhook."""
    sentry = _sentry(parser, definition.get("sentry", True))
    ping_url = definition.get("ping_url")
    if ping_url is not None and not web_address(ping_url):
        parser.error(
            _("%(where)s['ping_url'] must be an http(s) URL, got %(value)s."),
            _(
                "Give the check's ping URL, e.g. 'https://hc-ping.com/<uuid>': /start, "
                "/fail and the URL itself are called with a rid for each occurrence."
            ),
            "E061",
            value=repr(ping_url),
        )
    webhook = definition.get("webhook", conf.WEBHOOK)
    if webhook is not None and not web_address(webhook):
        parser.error(
            _("%(where)s['webhook'] must be None or an http(s) URL, got %(value)s."),
            _(
                "Give a URL that takes a JSON POST at each start and end, or None to send "
                "none for this job."
            ),
            "E062",
            value=repr(webhook),
        )
    return sentry, ping_url, webhook


def _sentry(parser: Reporter, value: object) -> dict[str, int] | None:
    if isinstance(value, bool):
        return {} if value and conf.SENTRY_CRONS else None
    if not isinstance(value, Mapping):
        parser.error(
            _("%(where)s['sentry'] must be True, False or a dict, got %(value)s."),
            _(
                "False sends no check-ins for this job; a dict such as "
                "{'max_runtime': 30, 'failure_issue_threshold': 2} adds to its monitor_config."
            ),
            "E060",
            value=repr(value),
        )
        return None
    options: dict[str, int] = {}
    for key, number in value.items():
        if key not in SENTRY_KEYS or not whole_number(1)(number):
            parser.error(
                _("%(where)s['sentry'] has %(key)s: %(value)s, which Sentry Crons cannot take."),
                _("Its keys are %(keys)s, each a whole number >= 1 (minutes for the first two)."),
                "E060",
                key=repr(key),
                value=repr(number),
                keys=", ".join(SENTRY_KEYS),
            )
        else:
            options[str(key)] = int(number)
    return options if conf.SENTRY_CRONS else None


def check(jobs: Iterable[JobSpec]) -> list[checks.CheckMessage]:
    """The libraries the monitors need, and the jobs Sentry Crons cannot schedule."""
    from django_oncejob.monitoring.sentry import monitor_config

    errors: list[checks.CheckMessage] = []
    if conf.SENTRY_CRONS and find_spec("sentry_sdk") is None:
        errors.append(
            checks.Error(
                interpolate(_("ONCEJOB['SENTRY_CRONS'] is True, but sentry-sdk is not installed.")),
                hint=interpolate(
                    _("pip install 'django-oncejob[sentry]', or set SENTRY_CRONS to False.")
                ),
                id="django_oncejob.E063",
            )
        )
    if conf.METRICS_PORT is not None and find_spec("prometheus_client") is None:
        errors.append(
            checks.Error(
                interpolate(
                    _("ONCEJOB['METRICS_PORT'] is set, but prometheus-client is not installed.")
                ),
                hint=interpolate(
                    _("pip install 'django-oncejob[prometheus]', or set METRICS_PORT to None.")
                ),
                id="django_oncejob.E064",
            )
        )
    for job in jobs:
        if job.sentry is not None and "schedule" not in monitor_config(job):
            errors.append(
                checks.Warning(
                    interpolate(
                        _(
                            "Job %(job)s sends Sentry Crons check-ins, but its schedule, "
                            "%(schedule)s, is none that Sentry can take: its monitor gets "
                            "no schedule from here."
                        ),
                        job=repr(job.id),
                        schedule=job.trigger_text,
                    ),
                    hint=interpolate(
                        _(
                            "Sentry takes crontabs, and intervals in whole minutes, and limits "
                            "how many check-ins one monitor takes a minute. Set 'sentry': False "
                            "on the job, or create its monitor in Sentry by hand."
                        )
                    ),
                    obj=f"job {job.id}",
                    id="django_oncejob.W012",
                )
            )
    return errors
