"""The database's clock as this instance reads it: its own, less the offset its heartbeat measures.

Every instance of a fleet decides "due", "too late" and "missed" by the one clock
they share, so that one host whose clock runs fast or slow neither runs
occurrences early nor records them missed before the others could run them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from django.db import connections
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


#: Seconds since the epoch on the database's clock, whatever its session's time zone
#: and ``USE_TZ``: the one reading of its clock that means the same on every backend.
_EPOCH_SQL = {
    "postgresql": "SELECT EXTRACT(EPOCH FROM CLOCK_TIMESTAMP())",
    "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
    "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
}


def measure_offset(using: str) -> float:
    """By how many seconds this host's clock is ahead of the database ``using``'s.

    0 on a database whose clock cannot be read here.
    """
    connection = connections[using]
    sql = _EPOCH_SQL.get(connection.vendor)
    if sql is None:
        return 0.0
    with connection.cursor() as cursor:
        before = time.time()
        cursor.execute(sql)
        after = time.time()
        (epoch,) = cursor.fetchone()
    return (before + after) / 2 - float(epoch)
