"""The shape of runjobs's background threads: one round of database work every few seconds."""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, close_old_connections

logger = logging.getLogger("django_oncejob")


class PeriodicThread(threading.Thread):
    """Calls :meth:`work` now and then every ``interval`` seconds, until :meth:`stop`.

    A database error costs one round only: it is logged with :attr:`failure` (which
    takes the owner) and the next round tries again, while the scheduler and the
    claims carry on.
    """

    failure = "A background round of %s failed."

    def __init__(self, name: str, owner: str, *, interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.owner = owner
        self.interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while True:
            self.tick()
            if self._stopped.wait(self.interval):
                return

    def tick(self) -> None:
        close_old_connections()
        try:
            self.work()
        except DatabaseError:
            logger.warning(self.failure, self.owner, exc_info=True)
        finally:
            close_old_connections()

    def work(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive():
            self.join(timeout=self.interval + 5)
