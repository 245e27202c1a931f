"""The database's clock as this instance reads it: its own, less the offset its heartbeat measures.

Every instance of a fleet decides "due", "too late" and "missed" by the one clock
they share, so that one host whose clock runs fast or slow neither runs
occurrences early nor records them missed before the others could run them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone


class DatabaseClock:
    """``now()`` on the database's clock, as of the last measured ``offset``."""

    def __init__(self) -> None:
        #: Seconds this host's clock is ahead of the database's; 0 until first measured.
        self.offset = 0.0

    def now(self) -> datetime:
        """:func:`django.utils.timezone.now`, on the database's clock."""
        return timezone.now() - timedelta(seconds=self.offset)

    def utc_now(self) -> datetime:
        """An aware datetime in UTC, on the database's clock, whatever ``USE_TZ`` says."""
        return datetime.now(UTC) - timedelta(seconds=self.offset)
