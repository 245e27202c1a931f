"""Times on the jobs overview, counted as the rest of the admin counts them."""

from __future__ import annotations

from datetime import datetime

from django import template

from django_oncejob.admin import base

register = template.Library()


@register.filter
def oncejob_ago(value: datetime) -> str:
    return base.ago(value)


@register.filter
def oncejob_until(value: datetime) -> str:
    return base.until(value)
