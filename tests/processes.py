"""Real ``runjobs`` processes for the end-to-end tests.

Each process is ``python -m django runjobs`` with the test settings, pointed at
the test database and the real Redis, with the jobs and settings of the test.
Every wait is bounded, and every process started is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    log: Path
    started: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Fleet:
    """A set of runjobs processes sharing one configuration."""

    workdir: Path
    jobs: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"oncejob-e2e-{uuid.uuid4().hex[:8]}")
    instances: list[Instance] = field(default_factory=list)

    @property
    def record_file(self) -> Path:
        return self.workdir / "runs.txt"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        database = connection.settings_dict
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "ONCEJOB_DB_NAME": str(database["NAME"]),
            "ONCEJOB_TEST_JOBS": json.dumps(self.jobs),
            "ONCEJOB_TEST_SETTINGS": json.dumps(self.settings),
            "ONCEJOB_TEST_PREFIX": self.prefix,
            "ONCEJOB_TEST_RECORD": str(self.record_file),
        }
        env.update(extra or {})
        return env

    def start(
        self,
        count: int = 1,
        *,
        stagger: float = 0.0,
        wrapper: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> list[Instance]:
        """Start ``count`` instances, ``stagger`` seconds apart, and wait until each is ready."""
        started = []
        for _ in range(count):
            index = len(self.instances)
            log = self.workdir / f"instance-{index}.log"
            command = [sys.executable, "-m", "django", "runjobs", "-v", "2"]
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [*(wrapper or []), *command],
                    cwd=ROOT,
                    env=self.env(env),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            instance = Instance(process, log, time.monotonic())
            self.instances.append(instance)
            started.append(instance)
            if stagger:
                time.sleep(stagger)
        for instance in started:
            wait_for(lambda i=instance: "scheduled" in i.output(), 20, f"{instance.log} ready")
        return started

    def signal_all(self, signum: int = signal.SIGTERM) -> None:
        for instance in self.instances:
            if instance.process.poll() is None:
                instance.process.send_signal(signum)

    def wait_all(self, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for instance in self.instances:
            try:
                codes.append(instance.process.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                instance.process.kill()
                codes.append(instance.process.wait(5))
        return codes

    def stop(self, timeout: float = 30) -> list[int]:
        """SIGTERM every instance and return their exit codes."""
        self.signal_all(signal.SIGTERM)
        return self.wait_all(timeout)

    def kill_all(self) -> None:
        for instance in self.instances:
            if instance.process.poll() is None:
                instance.process.kill()
                instance.process.wait(5)

    def runs(self) -> list[tuple[str, datetime, int]]:
        """What the jobs themselves recorded: (job, scheduled_for, pid) per run."""
        if not self.record_file.exists():
            return []
        runs = []
        for line in self.record_file.read_text().splitlines():
            job, scheduled_for, pid = line.split()
            runs.append((job, datetime.fromisoformat(scheduled_for), int(pid)))
        return runs

    def run_counts(self) -> Counter[tuple[str, datetime]]:
        return Counter((job, scheduled_for) for job, scheduled_for, _ in self.runs())

    def logs(self, tail: int | None = 3000) -> str:
        """Every instance's output, the last ``tail`` characters of each (all if ``None``)."""
        return "\n".join(
            f"--- {i.log.name}\n{i.output()[-tail if tail else 0 :]}" for i in self.instances
        )


def start_worker(command: list[str], env: dict[str, str], ready: str, log: Path) -> Instance:
    """Start a task worker and wait until its output says ``ready``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Instance(process, log, time.monotonic())
    try:
        wait_for(lambda: ready in worker.output(), 30, f"{log.name} ready")
    except AssertionError:
        stop_worker(worker)
        raise
    return worker


def stop_worker(worker: Instance) -> int:
    """SIGTERM a worker and return its exit code; kill it if it does not stop in 15 s."""
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
    try:
        return worker.process.wait(15)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        return worker.process.wait(5)


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that nothing listens on."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def redis_server_program() -> str:
    """The program of the Redis servers a test starts: ONCEJOB_REDIS_SERVER (which
    scripts/test sets), else redis-server or valkey-server on PATH."""
    found = (
        os.environ.get("ONCEJOB_REDIS_SERVER")
        or shutil.which("redis-server")
        or shutil.which("valkey-server")
    )
    if not found:
        raise AssertionError(
            "No redis-server: run the tests with ./scripts/test, which finds or installs one, "
            "install Redis or Valkey, or set ONCEJOB_REDIS_SERVER to a redis-server program."
        )
    return found


#: Where Debian and Ubuntu install libfaketime (the ``faketime`` package).
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def faketime_env(offset: str) -> dict[str, str]:
    """Environment that shifts a process's wall clock by ``offset``, e.g. ``"-0.4s"``.

    What ``faketime -f OFFSET`` sets, without its wrapper process: ``faketime``
    forks, so signals sent to the Popen pid would not reach ``runjobs``.
    Monotonic time stays real, as it does on a host whose clock is off.
    """
    if not LIBFAKETIME.exists():
        raise FileNotFoundError(f"{LIBFAKETIME} is missing: apt-get install faketime")
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def clock_offset(env: dict[str, str]) -> float:
    """Seconds by which a Python started with ``env`` sees ``time.time()`` ahead of ours."""
    probe = "import sys, time; sys.stdout.write(repr(time.time()))"
    before = time.time()
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    after = time.time()
    return float(result.stdout) - (before + after) / 2


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}.")
