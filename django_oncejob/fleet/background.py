"""The shape of runjobs's background threads: one round of database work every few seconds."""

from __future__ import annotations

import logging
import threading

from django_oncejob.db import close_own_connections, drop_broken_connections

logger = logging.getLogger("django_oncejob")


class BackgroundThread(threading.Thread):
    """Calls :meth:`work` now and then every ``interval`` seconds, until :meth:`stop`.

    Whatever a round raises costs that round only: it is logged with :attr:`failure`
    (which takes the owner), a connection that broke is dropped, and the next round
    tries again while the scheduler and the claims carry on. The thread's connection
    otherwise stays open from round to round, whatever ``CONN_MAX_AGE`` says.
    """

    failure = "A background round of %s failed."

    def __init__(self, name: str, owner: str, *, interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.owner = owner
        self.interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            while True:
                self.tick()
                if self._stopped.wait(self.interval):
                    return
        finally:
            close_own_connections()

    def tick(self) -> None:
        try:
            self.work()
        except Exception:
            logger.warning(self.failure, self.owner, exc_info=True)
            drop_broken_connections()

    def work(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=self.interval + 5)
