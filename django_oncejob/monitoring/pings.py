"""Ping URLs (healthchecks.io and the like) and webhooks, delivered by the background sender.

A job's ``ping_url`` gets ``<url>/start?rid=<id>`` at the start, then ``<url>?rid=<id>``
or ``<url>/fail?rid=<id>`` (with the error as the body) at the end, ``id`` being the
check-in id of the occurrence's attempt. A ``webhook`` gets a JSON POST at each.
"""

from __future__ import annotations

import json
import urllib.request
from importlib.metadata import version
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django_oncejob.conf import conf
from django_oncejob.monitoring.sender import sender

if TYPE_CHECKING:
    from django_oncejob.monitoring.watch import Watch

#: healthchecks.io keeps 100 kB of a ping's body.
BODY_LENGTH = 10_000


def ping_address(url: str, suffix: str, rid: str) -> str:
    """``url`` with ``suffix`` added to its path and ``rid`` to its query."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query), ("rid", rid)])
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix, query=query))


def deliver(url: str, body: bytes | None = None, content_type: str = "text/plain") -> None:
    """One request, in ``MONITOR_TIMEOUT`` seconds; a status other than 2xx raises."""
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "User-Agent": f"django-oncejob/{version('django-oncejob')}",
            "Content-Type": content_type,
        },
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=conf.MONITOR_TIMEOUT) as response:
        response.read()


class Pings:
    def started(self, watch: Watch) -> None:
        if watch.handed_off:
            return  # runjobs pinged the start of a handed-off occurrence
        job = watch.job
        if job.ping_url:
            url = ping_address(job.ping_url, "/start", watch.check_in_id)
            sender().send("ping_url", lambda: deliver(url))
        if job.webhook:
            self._post(job.webhook, watch)

    def ended(self, watch: Watch) -> None:
        if watch.status == "enqueued":
            return  # the worker pings the end
        job = watch.job
        if job.ping_url:
            failed = watch.status == "failed"
            url = ping_address(job.ping_url, "/fail" if failed else "", watch.check_in_id)
            body = watch.error[:BODY_LENGTH].encode() if failed else b""
            sender().send("ping_url", lambda: deliver(url, body))
        if job.webhook:
            self._post(job.webhook, watch)

    def _post(self, url: str, watch: Watch) -> None:
        body = json.dumps(webhook_body(watch)).encode()
        sender().send("webhook", lambda: deliver(url, body, "application/json"))


def webhook_body(watch: Watch) -> dict[str, Any]:
    occurrence = watch.occurrence
    return {
        "job": occurrence.job,
        "scheduled_for": occurrence.scheduled_for.isoformat(),
        "owner": occurrence.owner,
        "attempt": watch.attempt,
        "id": watch.check_in_id,
        "status": watch.status,
        "started_at": None if watch.started_at is None else watch.started_at.isoformat(),
        "duration": None if watch.status == "started" else watch.duration,
        "error": watch.error or None,
    }
