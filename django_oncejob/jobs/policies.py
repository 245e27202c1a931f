"""A job's schedule policies: retries, time limit, catch-up, jitter, overlap, failures in a row.

Read from the job's definition key by key, each bad value reported with its own
check id, as the rest of the job is (:mod:`~django_oncejob.jobs.parser`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext_lazy as _

from django_oncejob.conf import number, whole_number
from django_oncejob.messages import Reporter

POLICY_KEYS = (
    "retries",
    "retry_delay",
    "retry_backoff",
    "max_runtime",
    "catchup",
    "catchup_window",
    "jitter",
    "overlap",
    "pause_after_failures",
)
CATCHUP = ("none", "latest", "all")
OVERLAP = ("allow", "skip", "buffer_one")
#: How long a job's lock lives when neither ``lock_timeout`` nor ``max_runtime`` says.
LOCK_LIFETIME = 3600


def parse(reporter: Reporter, definition: Mapping[str, Any], grace: object) -> dict[str, Any]:
    """The policies of one job, as keyword arguments of its ``JobSpec``."""
    found: dict[str, Any] = {}
    found["retries"] = _value(
        reporter,
        definition,
        "retries",
        0,
        whole_number(0),
        _("%(where)s['retries'] must be a whole number >= 0, got %(value)s."),
        _("Write e.g. 'retries': 3 to try a failed occurrence up to 3 more times."),
        "E065",
    )
    found["retry_delay"] = _value(
        reporter,
        definition,
        "retry_delay",
        10,
        number(0, exclusive=True),
        _("%(where)s['retry_delay'] must be a number of seconds > 0, got %(value)s."),
        _("Write e.g. 'retry_delay': 30: the first retry starts 30 s after the failure."),
        "E066",
    )
    found["retry_backoff"] = _value(
        reporter,
        definition,
        "retry_backoff",
        2,
        number(1),
        _("%(where)s['retry_backoff'] must be a number >= 1, got %(value)s."),
        _(
            "Each retry waits retry_backoff times longer than the one before: 1 for a "
            "constant delay, 2 to double it."
        ),
        "E067",
    )
    found["max_runtime"] = _value(
        reporter,
        definition,
        "max_runtime",
        None,
        whole_number(1),
        _(
            "%(where)s['max_runtime'] must be a whole number of seconds >= 1 or None, "
            "got %(value)s."
        ),
        _(
            "Set it above the job's longest normal run, e.g. 'max_runtime': 600: a run past it "
            "is recorded as timed out, and an async job is cancelled."
        ),
        "E068",
    )
    found["catchup"] = _value(
        reporter,
        definition,
        "catchup",
        "none",
        lambda value: value in CATCHUP,
        _("%(where)s['catchup'] must be one of %(choices)s, got %(value)s."),
        _(
            "'none' records the occurrences due while every instance was down as missed; "
            "'latest' runs the last of them; 'all' runs each."
        ),
        "E069",
        choices=", ".join(repr(choice) for choice in CATCHUP),
    )
    found["catchup_window"] = _value(
        reporter,
        definition,
        "catchup_window",
        86400,
        whole_number(1),
        _("%(where)s['catchup_window'] must be a whole number of seconds >= 1, got %(value)s."),
        _("Write e.g. 'catchup_window': 3600: occurrences older than that are not caught up."),
        "E070",
    )
    jitter = _value(
        reporter,
        definition,
        "jitter",
        0,
        number(0),
        _("%(where)s['jitter'] must be a number of seconds >= 0, got %(value)s."),
        _(
            "Write e.g. 'jitter': 30: each occurrence starts up to 30 s after its time, by "
            "an amount every instance computes alike."
        ),
        "E071",
    )
    if number(0)(jitter) and whole_number(1)(grace) and jitter >= grace:
        reporter.error(
            _(
                "%(where)s['jitter'] is %(jitter)s s, not less than its misfire_grace_time of "
                "%(grace)s s: its occurrences would count as missed before they start."
            ),
            _("Make jitter shorter than misfire_grace_time, or raise misfire_grace_time."),
            "E072",
            jitter=jitter,
            grace=grace,
        )
    found["jitter"] = jitter
    implied = "skip" if definition.get("lock_timeout") is not None else "allow"
    found["overlap"] = _value(
        reporter,
        definition,
        "overlap",
        implied,
        lambda value: value in OVERLAP,
        _("%(where)s['overlap'] must be one of %(choices)s, got %(value)s."),
        _(
            "'allow' lets runs overlap; 'skip' skips an occurrence due while a run goes on; "
            "'buffer_one' starts it once that run ends, and skips any more."
        ),
        "E073",
        choices=", ".join(repr(choice) for choice in OVERLAP),
    )
    if "overlap" in definition and found["overlap"] != "allow" and definition.get("enqueue"):
        reporter.error(
            _(
                "%(where)s['overlap'] is %(overlap)s, but the job is handed off (enqueue): "
                "the job's lock is held in runjobs, not by the task worker."
            ),
            _("Leave overlap out for a handed-off job, or let the task queue limit it."),
            "E074",
            overlap=repr(found["overlap"]),
        )
    found["pause_after_failures"] = _value(
        reporter,
        definition,
        "pause_after_failures",
        None,
        whole_number(1),
        _("%(where)s['pause_after_failures'] must be a whole number >= 1 or None, got %(value)s."),
        _("Write e.g. 'pause_after_failures': 5 to pause the job after 5 failures in a row."),
        "E075",
    )
    return found


def _value(
    reporter: Reporter,
    definition: Mapping[str, Any],
    key: str,
    default: Any,
    valid: Any,
    message: Any,
    hint: Any,
    code: str,
    **params: object,
) -> Any:
    value = definition.get(key, default)
    if value is None and default is None:
        return None
    if not valid(value):
        reporter.error(message, hint, code, value=repr(value), **params)
        return default
    return value
