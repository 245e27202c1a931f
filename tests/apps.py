from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created


def use_wal(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # Several runjobs processes write one SQLite file: WAL lets readers and the
    # writer proceed together, and the busy timeout makes writers queue.
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=20000")


class TestsConfig(AppConfig):
    name = "tests"
    label = "oncejob_tests"

    def ready(self) -> None:
        connection_created.connect(use_wal)
