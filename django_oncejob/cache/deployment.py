"""The deployment's key, which every claim and lock key carries.

Two deployments that share a cache (staging and production on one Redis
database, two developers on one server) would otherwise take each other's
occurrences. The key is a row of the history's database, written by
``migrate``: every instance of one deployment reads the same one, and another
deployment's database holds another.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any

from django.core.signals import setting_changed
from django.db import DatabaseError, router
from django.dispatch import receiver

from django_oncejob.db import drop_broken_connections

logger = logging.getLogger("django_oncejob")

#: Seconds between reads of a database that did not answer, while an instance starts.
RETRY_DELAY = 1.0

_lock = threading.Lock()
_key: str | None = None


def new_key() -> str:
    return secrets.token_hex(8)


def deployment_key() -> str:
    """This deployment's key, read from the history's database once per process."""
    global _key
    if _key is None:
        with _lock:
            if _key is None:
                _key = _read()
    return _key


def wait_for_deployment_key() -> str:
    """:func:`deployment_key`, waiting for a database that does not answer yet.

    An instance claims nothing before it knows its deployment: under a key of
    another, its claims would not keep out its own fleet.
    """
    warned = False
    while True:
        try:
            return deployment_key()
        except DatabaseError as exc:
            if not warned:
                logger.warning(
                    "The database does not answer (%s); waiting for it, to read this "
                    "deployment's key before claiming anything.",
                    exc,
                )
                warned = True
            drop_broken_connections()
            time.sleep(RETRY_DELAY)


def _read() -> str:
    from django_oncejob.models import Deployment

    alias = router.db_for_write(Deployment)
    # One row, by its primary key: instances that find none (a flushed table) and
    # create it at once all end up with the one that was inserted first.
    row, _ = Deployment.objects.using(alias).get_or_create(pk=1, defaults={"key": new_key()})
    return row.key


def forget() -> None:
    """Read the key again at its next use."""
    global _key
    _key = None


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATABASES":
        forget()
