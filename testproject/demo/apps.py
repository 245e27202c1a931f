from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created


def use_sqlite_wal(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Let several runjobs processes write one SQLite file at once.

    In WAL mode readers no longer block the writer, and the busy timeout makes a
    writer wait for the lock instead of failing with "database is locked". A signal
    rather than the "init_command" option, which only Django 5.1+ has.
    """
    if connection.vendor != "sqlite":
        return
    timeout = float(connection.settings_dict.get("OPTIONS", {}).get("timeout", 5))
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")


class DemoConfig(AppConfig):
    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        connection_created.connect(use_sqlite_wal, dispatch_uid="demo.use_sqlite_wal")
