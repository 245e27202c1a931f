"""The demo's jobs.

Each prints the occurrence it ran and the instance that ran it, so the output of
all instances together shows every scheduled time exactly once.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from django_oncejob import current_occurrence


def tick() -> None:
    """Runs every second."""
    report()


def poll_inbox() -> None:
    """Runs every 5 seconds."""
    report()


async def async_ping(hosts: list[str]) -> None:
    """An async job: pings its hosts concurrently (here: pretends to)."""
    await asyncio.gather(*(asyncio.sleep(0.1) for _ in hosts))
    report(f"pinged {', '.join(hosts)}")


def nightly_report() -> None:
    """Runs every day at 02:30 UTC."""
    report("sent the nightly report")


def once() -> None:
    """Runs once, at the time in DEMO_AT."""
    report("the one-off job")


def report(note: str = "") -> None:
    """Print the current occurrence; with DEMO_RUN_LOG set, also append it to that file."""
    occurrence = current_occurrence()
    if occurrence is None:
        print("Called outside runjobs: no occurrence.", flush=True)
        return
    late = (datetime.now(UTC) - occurrence.scheduled_for).total_seconds()
    print(
        f"{occurrence.job:<14} {occurrence.scheduled_for:%H:%M:%S} UTC  "
        f"ran on {occurrence.owner}, {late * 1000:.0f} ms after its time"
        + (f"; {note}" if note else ""),
        # Output often goes to a pipe, where Python would hold it back in a buffer.
        flush=True,
    )
    run_log = os.environ.get("DEMO_RUN_LOG")
    if run_log:
        line = f"{occurrence.job} {occurrence.scheduled_for.isoformat()} {occurrence.owner}\n"
        # One write() of a short line with O_APPEND never interleaves with another
        # process's, so every instance can record its runs in the same file.
        fd = os.open(run_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
