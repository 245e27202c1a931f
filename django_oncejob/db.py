"""Connection care for the threads django-oncejob owns, and for the calls it makes in others.

Two rules. A thread of ours (the history writer, the heartbeat, the control
thread) keeps its connection open whatever ``CONN_MAX_AGE`` says, and drops it
only when it failed: with Django's default of 0, closing it after each round
would open a PostgreSQL connection per occurrence. And nothing here closes a
connection inside an ``atomic()`` block, which would lose the caller's writes.
"""

from __future__ import annotations

import contextlib

from django.db import InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

#: What a database raises when the connection, not the statement, is at fault:
#: InterfaceError is not a DatabaseError.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


def close_old_connections() -> None:
    """Django's ``close_old_connections()``, leaving alone connections inside ``atomic()``."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def drop_broken_connections() -> None:
    """Close this thread's connections that no longer answer, outside ``atomic()``.

    Called by a thread of ours after a round raised: the next round reconnects.
    """
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block or connection.connection is None:
            continue
        try:
            usable = connection.is_usable()
        except Exception:
            usable = False
        if not usable:
            _close(connection)


def close_own_connections() -> None:
    """Close every connection of this thread, which is ending."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            _close(connection)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the database or the link to it failed, so a retry may succeed."""
    return isinstance(exc, CONNECTION_ERRORS)


def _close(connection: BaseDatabaseWrapper) -> None:
    # Outside atomic(), close() forgets the connection even when closing it fails.
    with contextlib.suppress(Exception):
        connection.close()
