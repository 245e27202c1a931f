"""What every bench section shares: the throwaway servers, child processes, and /proc.

run.py and scenarios.py both import from here, and neither from the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
TICK = os.sysconf("SC_CLK_TCK")

#: Every child process and server, so that they are all stopped whatever happens.
_children: list[subprocess.Popen[bytes]] = []


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args, **kwargs)
    _children.append(process)
    return process


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process in _children:
        _children.remove(process)


def stop_all() -> None:
    for process in list(reversed(_children)):
        stop(process, timeout=10)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


# --- /proc ------------------------------------------------------------------------------


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of a process (all its threads), plus its reaped children's if asked."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child_pids(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    mem = Path("/proc/meminfo").read_text().split()[1]
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg(),
    }


# --- Servers ----------------------------------------------------------------------------


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = spawn(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(workdir),
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        self.client = redis.Redis(port=self.port)
        wait_until(self._ping, 10, "redis-server")

    def _ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def command_calls(self) -> Counter[str]:
        stats = self.client.info("commandstats")
        return Counter({name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()})

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])


class Postgres:
    """A throwaway cluster with pg_stat_statements, owned by ``postgres`` when run as root."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="oncejob-bench-pg-"))
        bindir = Path(
            subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
            or "/usr/lib/postgresql/15/bin"
        )
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            as_user = {"user": "postgres", "group": "postgres"}
        subprocess.run(
            [bindir / "initdb", "-D", self.dir / "data", "-U", "postgres", "-A", "trust",
             "--no-sync", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL, **as_user,
        )  # fmt: skip
        self.log = (workdir / "postgres.log").open("wb")
        self.process = spawn(
            [
                bindir / "postgres", "-D", self.dir / "data",
                "-p", str(self.port), "-k", self.dir,
                "-c", "listen_addresses=127.0.0.1",
                "-c", "shared_preload_libraries=pg_stat_statements",
                "-c", "pg_stat_statements.track=all",
                "-c", "max_connections=300",
                "-c", "shared_buffers=256MB",
            ],
            stdout=subprocess.DEVNULL, stderr=self.log, **as_user,
        )  # fmt: skip
        wait_until(self._ready, 30, "PostgreSQL")
        self.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def settings(self, name: str) -> dict[str, str]:
        return {"NAME": name, "USER": "postgres", "HOST": "127.0.0.1", "PORT": str(self.port)}

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def _ready(self) -> bool:
        try:
            self.connect().close()
            return True
        except Exception:
            return False

    def sql(self, query: str, params: Any = None, dbname: str = "postgres") -> list[Any]:
        with self.connect(dbname) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def recreate(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.sql(f'CREATE DATABASE "{name}"')

    def reset_statements(self) -> None:
        self.sql("SELECT pg_stat_statements_reset()")

    def statements(self, name: str) -> list[tuple[str, int]]:
        return [
            (query, int(calls))
            for query, calls in self.sql(
                "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d "
                "ON d.oid = s.dbid WHERE d.datname = %s ORDER BY calls DESC",
                [name],
            )
        ]

    def database_stats(self, name: str) -> dict[str, int]:
        (row,) = self.sql(
            "SELECT xact_commit, sessions, tup_inserted, tup_updated FROM pg_stat_database "
            "WHERE datname = %s",
            [name],
        )
        return dict(zip(("commits", "sessions", "inserted", "updated"), map(int, row), strict=True))

    def cpu(self) -> float:
        """The cluster's CPU: the postmaster with its exited backends, plus the live ones."""
        pid = self.process.pid
        return cpu_seconds(pid, children=True) + sum(cpu_seconds(c) for c in child_pids(pid))

    def version(self) -> str:
        return str(self.sql("SHOW server_version")[0][0])

    def close(self) -> None:
        stop(self.process, signal.SIGINT, timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Servers:
    redis: Redis
    pg: Postgres
    workdir: Path


def oncejob_env(servers: Servers, jobs: int, database: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_PG": json.dumps(servers.pg.settings(database)),
        "BENCH_REDIS": servers.redis.url,
        "BENCH_JOBS": str(jobs),
    }


def django_command(
    servers: Servers, jobs: int, database: str, args: list[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args, "--settings=bench.settings"],
        env=oncejob_env(servers, jobs, database),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
