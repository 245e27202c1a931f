"""Check messages translated when they are read, not when they are made.

The parsed jobs and their errors are cached across requests and languages: a
message built here reads in whichever language is active when it is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, TypeAlias

from django.core import checks
from django.utils.functional import lazy

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise

#: A message, translated now (``gettext``) or when read (``gettext_lazy``).
Text: TypeAlias = "str | _StrPromise"


def _interpolate(message: Text, params: Mapping[str, object]) -> str:
    return str(message) % params


_lazy_interpolate = lazy(_interpolate, str)


def interpolate(message: Text, /, **params: object) -> str:
    """``message % params``, in the language active when the result is read."""
    return _lazy_interpolate(message, params)


def job_error(job_id: str, message: str, hint: str, code: str) -> checks.Error:
    """A check error about one job, with ``code`` (``"E023"``) as its id's last part."""
    return checks.Error(message, hint=hint, obj=f"job {job_id}", id=f"django_oncejob.{code}")


class Reporter(Protocol):
    """Collects the errors found while reading one job's definition."""

    def error(self, message: Text, hint: Text, code: str, **params: object) -> None: ...
