"""Ping URLs (healthchecks.io and the like) and webhooks, delivered by the background sender.

A job's ``ping_url`` gets ``<url>/start?rid=<id>`` at the start, then ``<url>?rid=<id>``
or ``<url>/fail?rid=<id>`` (with the error as the body) at the end, ``id`` being the
check-in id of the occurrence's attempt. A ``webhook`` gets a JSON POST at each.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
    """One request, on the sender's thread and its open connections; a status other than 2xx
    raises."""
    sender().connections.request(url, body, content_type)


class Pings:
    """Each delivery is put together on the sender's thread, off the job's way to its start."""

    def started(self, watch: Watch) -> None:
        if watch.handed_off:
            return  # runjobs pinged the start of a handed-off occurrence
        job = watch.job
        if url := job.ping_url:
            sender().send(
                "ping_url", lambda: deliver(ping_address(url, "/start", watch.check_in_id))
            )
        if job.webhook:
            self._post(job.webhook, watch, "started")

    def ended(self, watch: Watch) -> None:
        if watch.status == "enqueued":
            return  # the worker pings the end
        job = watch.job
        if url := job.ping_url:
            failed = watch.status in ("failed", "timed_out")
            suffix, error = ("/fail", watch.error) if failed else ("", None)

            def ping() -> None:
                body = None if error is None else error[:BODY_LENGTH].encode()
                deliver(ping_address(url, suffix, watch.check_in_id), body)

            sender().send("ping_url", ping)
        if job.webhook:
            self._post(job.webhook, watch, watch.status)

    def _post(self, url: str, watch: Watch, status: str) -> None:
        def post() -> None:
            body = json.dumps(webhook_body(watch, status)).encode()
            deliver(url, body, "application/json")

        sender().send("webhook", post)


def webhook_body(watch: Watch, status: str) -> dict[str, Any]:
    """What the webhook gets when ``watch``'s occurrence reached ``status``."""
    occurrence = watch.occurrence
    ended = status != "started"
    return {
        "job": occurrence.job,
        "scheduled_for": occurrence.scheduled_for.isoformat(),
        "owner": occurrence.owner,
        "attempt": watch.attempt,
        "id": watch.check_in_id,
        "status": status,
        "started_at": None if watch.started_at is None else watch.started_at.isoformat(),
        "duration": watch.duration if ended else None,
        "error": (watch.error or None) if ended else None,
    }
