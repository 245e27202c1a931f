"""The history's date hierarchy, found with index probes instead of a read of the history.

Django's ``{% date_hierarchy %}`` asks the database for the distinct years, months or
days of every row in view: over a long history, a read of the whole table on every
page load. This tag draws the same links from one ``EXISTS`` probe per period that
could hold rows (a year's months, a month's days: at most 31), each a range read of
the index on ``scheduled_for``. The links, titles and template are Django's own.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from typing import Any

from django import template
from django.conf import settings
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.main import ChangeList
from django.db.models import Max, Min
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext

register = template.Library()


def date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    """The context of Django's ``admin/date_hierarchy.html`` for ``cl``.

    ``field_name``, the field's verbose name, labels the links from Django 6.0 on.
    """
    field = cl.date_hierarchy
    label = {"field_name": get_fields_from_path(cl.model, field)[-1].verbose_name}
    year_field, month_field, day_field = f"{field}__year", f"{field}__month", f"{field}__day"
    year, month, day = (cl.params.get(name) for name in (year_field, month_field, day_field))
    first = last = None
    if not year:
        # The years in view, from two reads of the index's ends. A month or a day given
        # without its year narrows them, as in Django's own tag.
        ends = cl.queryset.aggregate(first=Min(field), last=Max(field))
        if ends["first"] is None or ends["last"] is None:
            return {"show": True, "back": None, "choices": [], **label}
        first, last = _local_date(ends["first"]), _local_date(ends["last"])
    if not (year or month or day) and first is not None and last is not None:
        # Django's choice of the starting level.
        year = str(first.year) if first.year == last.year else None
        if year and first.month == last.month:
            month = str(first.month)

    def link(filters: dict[str, Any]) -> str:
        return str(cl.get_query_string(filters, [f"{field}__"]))

    def has_rows(start: date, end: date) -> bool:
        return bool(
            cl.queryset.filter(
                **{f"{field}__gte": _midnight(start), f"{field}__lt": _midnight(end)}
            ).exists()
        )

    if year and month and day:
        chosen = date(int(year), int(month), int(day))
        return {
            **label,
            "show": True,
            "back": {
                "link": link({year_field: year, month_field: month}),
                "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    if year and month:
        days = calendar.monthrange(int(year), int(month))[1]
        candidates = [date(int(year), int(month), number) for number in range(1, days + 1)]
        return {
            **label,
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: each.day}),
                    "title": capfirst(formats.date_format(each, "MONTH_DAY_FORMAT")),
                }
                for each in _within(candidates, first, last)
                if has_rows(each, each + timedelta(days=1))
            ],
        }
    if year:
        candidates = [date(int(year), number, 1) for number in range(1, 13)]
        return {
            **label,
            "show": True,
            "back": {"link": link({}), "title": gettext("All dates")},
            "choices": [
                {
                    "link": link({year_field: year, month_field: each.month}),
                    "title": capfirst(formats.date_format(each, "YEAR_MONTH_FORMAT")),
                }
                for each in _within(candidates, first, last, monthly=True)
                if has_rows(each, _next_month(each))
            ],
        }
    # Set above: every branch for a given year has returned.
    assert first is not None and last is not None
    return {
        **label,
        "show": True,
        "back": None,
        "choices": [
            {"link": link({year_field: str(number)}), "title": str(number)}
            for number in range(first.year, last.year + 1)
            if has_rows(date(number, 1, 1), date(number + 1, 1, 1))
        ],
    }


def _local_date(value: datetime) -> date:
    return (timezone.localtime(value) if timezone.is_aware(value) else value).date()


def _midnight(day: date) -> datetime:
    """The start of ``day`` in the current time zone, as the admin's own date filters take it."""
    start = datetime.combine(day, time.min)
    return timezone.make_aware(start) if settings.USE_TZ else start


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _within(
    candidates: list[date], first: date | None, last: date | None, *, monthly: bool = False
) -> list[date]:
    """The candidates between the history's ends, when those are known."""
    if first is None or last is None:
        return candidates
    if monthly:
        first, last = first.replace(day=1), last.replace(day=1)
    return [each for each in candidates if first <= each <= last]


@register.inclusion_tag("admin/date_hierarchy.html")
def oncejob_date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    """Django's ``{% date_hierarchy cl %}``, with the links of :func:`date_hierarchy`."""
    return date_hierarchy(cl)
