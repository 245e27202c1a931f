"""One background thread per process that delivers what the monitors send.

A job never waits for a monitor: a send is put on a bounded queue and returns.
In ``runjobs``, a delivery also waits while the instance starts or runs
occurrences, for up to :data:`HOLD` seconds, so that its CPU goes to the jobs
first. A delivery that fails, times out, or finds the queue full is counted, never
retried and never raised; one warning is logged per monitor until it answers again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

from django_oncejob.conf import conf
from django_oncejob.monitoring.connections import Connections

logger = logging.getLogger("django_oncejob")

Delivery = Callable[[], None]

#: The longest a delivery waits for its instance to be done with its occurrences.
HOLD = 1.0


class Sender:
    """Delivers each monitor's sends in order, on one daemon thread started on first use."""

    def __init__(self, size: int, timeout: float) -> None:
        #: The HTTP connections of the sender's thread, for the deliveries that need them.
        self.connections = Connections(timeout)
        self._queue: queue.Queue[tuple[str, Delivery, float]] = queue.Queue(size)
        self._busy: Callable[[], bool] = lambda: False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: Failed deliveries by monitor, since the process started.
        self.failures: Counter[str] = Counter()
        self._failing: set[str] = set()

    def send(self, monitor: str, deliver: Delivery) -> None:
        """Deliver in the background; never blocks, never raises."""
        self._start()
        try:
            self._queue.put_nowait((monitor, deliver, time.monotonic()))
        except queue.Full:
            self._failed(monitor, f"{self._queue.maxsize} deliveries were waiting already")

    def hold_while(self, busy: Callable[[], bool]) -> None:
        """Hold each delivery while ``busy()`` says the process has more pressing work."""
        self._busy = busy

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for what was sent to go out; ``True`` if it did."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline or self._thread is None:
                return False
            time.sleep(0.01)
        return True

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="oncejob-monitors", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            monitor, deliver, sent = self._queue.get()
            while time.monotonic() < sent + HOLD and self._queue_is_held():
                time.sleep(0.005)
            try:
                deliver()
            except Exception as exc:
                self._failed(monitor, f"{type(exc).__name__}: {exc}")
            else:
                if monitor in self._failing:
                    self._failing.discard(monitor)
                    logger.warning("Monitor %s answers again.", monitor)
            finally:
                self._queue.task_done()

    def _queue_is_held(self) -> bool:
        try:
            return self._busy()
        except Exception:
            logger.exception("Could not tell whether to hold the monitors' deliveries.")
            self._busy = lambda: False
            return False

    def _failed(self, monitor: str, reason: str) -> None:
        self.failed(monitor)
        if monitor not in self._failing:
            self._failing.add(monitor)
            logger.warning(
                "Could not deliver to monitor %s: %s. Its deliveries are dropped and counted "
                "until it answers again; no job waits for it.",
                monitor,
                reason,
            )

    def failed(self, monitor: str) -> None:
        """Count a delivery to ``monitor`` that was lost, here or in its own library."""
        self.failures[monitor] += 1
        from django_oncejob.monitoring import metrics

        metrics.delivery_failed(monitor)


_senders: dict[int, Sender] = {}


def sender() -> Sender:
    """This process's sender (a forked child gets one of its own)."""
    pid = os.getpid()
    found = _senders.get(pid)
    if found is None:
        found = _senders.setdefault(pid, Sender(conf.MONITOR_QUEUE_SIZE, conf.MONITOR_TIMEOUT))
    return found
