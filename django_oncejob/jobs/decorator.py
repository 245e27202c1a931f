"""Jobs declared next to their code, with :func:`job`, in the ``jobs.py`` module of an app.

Django imports each installed app's ``jobs`` module when django-oncejob is ready, as the
admin imports ``admin`` modules; every :func:`job` in it adds its job to :data:`DECLARED`.
The registry then reads these beside ``ONCEJOB["JOBS"]``, through the same parser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.utils.module_loading import autodiscover_modules

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Declared:
    """A job declared with :func:`job`: its definition, as ``ONCEJOB["JOBS"]`` would give it."""

    job_id: str
    definition: dict[str, Any]
    #: The module it was declared in.
    module: str


#: The jobs declared with :func:`job`, in the order they were declared.
DECLARED: list[Declared] = []


def job(job_id: str | None = None, /, **definition: Any) -> Callable[[F], F]:
    """Declare the decorated function a job, with the keys a job takes in ``ONCEJOB["JOBS"]``
    but ``func``::

        import django_oncejob as oncejob

        @oncejob.job(cron="30 2 * * *", retries=2)
        def nightly_report():
            ...

    The job id is ``job_id``, or the function's name. The function is returned as it is.
    """

    def declare(func: F) -> F:
        path = f"{func.__module__}.{func.__qualname__}"
        found = Declared(job_id or func.__name__, {"func": path, **definition}, func.__module__)
        # A module imported twice (an autoreloader) declares its jobs again, alike.
        if found not in DECLARED:
            DECLARED.append(found)
        return func

    return declare


def autodiscover() -> None:
    """Import the ``jobs`` module of every installed app that has one."""
    autodiscover_modules("jobs")
