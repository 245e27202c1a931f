"""What the world outside sees of each occurrence: check-ins, pings, metrics and traces.

Only the instance that runs an occurrence reports it, so each monitor hears of it
once however many instances raced for it. The pipeline hands :func:`start` a
:class:`~django_oncejob.monitoring.watch.Watch` when the occurrence starts here (or is
handed off), and :func:`end` at its end; each
monitor turns the two into what it sends, through the background
:mod:`~django_oncejob.monitoring.sender` where that means a network call.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Protocol

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone

from django_oncejob.monitoring.watch import Watch

logger = logging.getLogger("django_oncejob")


class Monitor(Protocol):
    def started(self, watch: Watch) -> None: ...

    def ended(self, watch: Watch) -> None: ...


def start(watch: Watch) -> Watch:
    """Tell every monitor that ``watch``'s occurrence starts here (or is handed off) now."""
    watch.started_at = timezone.now()
    watch.began = time.monotonic()
    for monitor in monitors():
        _tell(monitor.started, watch)
    return watch


def end(watch: Watch, status: str, error: str = "") -> None:
    """Tell every monitor, in the reverse order, how ``watch``'s occurrence ended here."""
    watch.status, watch.error = status, error
    watch.duration = time.monotonic() - watch.began
    for monitor in reversed(monitors()):
        _tell(monitor.ended, watch)


def _tell(method: Any, watch: Watch) -> None:
    try:
        method(watch)
    except Exception:
        logger.exception("Monitor %r failed on job %r.", method.__self__, watch.job.id)


@functools.cache
def monitors() -> tuple[Monitor, ...]:
    """The monitors the settings and the installed libraries turn on, in start order."""
    from django_oncejob.monitoring import metrics, pings, sentry, tracing

    found: list[Monitor] = []
    if metrics.installed():
        found.append(metrics.Metrics())
    if tracing.enabled():
        found.append(tracing.Tracing())
    found.append(pings.Pings())
    if sentry.enabled():
        found.append(sentry.SentryCrons())
    return tuple(found)


def flush(timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the check-ins, pings and webhooks sent to go out."""
    from django_oncejob.monitoring import sentry
    from django_oncejob.monitoring.sender import sender

    deadline = time.monotonic() + timeout
    done = sender().drain(timeout)
    if sentry.enabled():
        import sentry_sdk

        sentry_sdk.flush(max(0.0, deadline - time.monotonic()))
    return done


@receiver(setting_changed)
def _forget_monitors(**kwargs: Any) -> None:
    monitors.cache_clear()
