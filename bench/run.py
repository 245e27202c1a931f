"""The django-oncejob benchmark: one entry point, run by hand (not in CI).

    python bench/run.py [--seconds 30] [--instances 8] [--jobs 100] [--only systems,micro,...]

It starts its own throwaway redis-server and PostgreSQL cluster on free
loopback ports (so other work on this machine's 6379 and 5432 does not pollute
the counts), runs the same workload under each system in turn, prints a table
and writes bench/results/latest.json and latest.csv. Every process it starts is
stopped at the end, on Ctrl-C and on errors too.

Sections (``--only``):
  systems  the fleet comparison: bare APScheduler (the floor), the seed's
           APScheduler + SET NX EX, django-apscheduler 0.7, django-oncejob
  micro    CPU of one losing occurrence vs one bare redis-py SET NX EX
  burst    start lateness when hundreds of jobs are due in the same second
  startup  runjobs ready time, manage.py check time and memory at 1,000 / 10,000 jobs
  history  1,000,000 history rows: fence insert time, EXPLAIN, admin changelist time
  jobs     10,000 jobs: the Jobs page, a job's page and oncejob_health
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scenarios  # noqa: E402
from bench.harness import (  # noqa: E402
    BENCH,
    RESULTS,
    ROOT,
    TICK,
    Postgres,
    Redis,
    Servers,
    cpu_seconds,
    django_command,
    free_port,
    log,
    machine,
    oncejob_env,
    peak_rss_mib,
    spawn,
    stop,
    stop_all,
    wait_until,
)

#: Instance logs of the runs that missed, duplicated or raised, kept for a look (not committed).
LOGS = RESULTS / "logs"
PEERS_VENV = BENCH / ".venv-peers"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEERS_REQUIREMENTS = [
    "django==5.2.*",
    "django-apscheduler==0.7.*",
    "apscheduler==3.11.*",
    "psycopg[binary]>=3.1",
]
SECTIONS = ("systems", "micro", "burst", "startup", "history", "jobs")


# --- The systems ------------------------------------------------------------------------


@dataclass
class System:
    name: str
    label: str
    instances: int
    database: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def command(self, servers: Servers, jobs: int) -> list[str]:
        if self.name == "oncejob" or self.name.startswith("oncejob-"):
            return [sys.executable, "-m", "django", "runjobs", "--settings=bench.settings"]
        if self.name == "bare":
            return [sys.executable, str(BENCH / "peers.py"), "bare", "--jobs", str(jobs)]
        if self.name == "seed":
            return [sys.executable, str(BENCH / "peers.py"), "seed", "--jobs", str(jobs),
                    "--redis", servers.redis.url]  # fmt: skip
        if self.name == "dja":
            return [str(PEERS_PYTHON), str(BENCH / "peers.py"), "dja", "--jobs", str(jobs),
                    "--database", json.dumps(servers.pg.settings(str(self.database)))]  # fmt: skip
        raise ValueError(self.name)

    def prepare(self, servers: Servers, jobs: int) -> None:
        servers.redis.client.flushall()
        if self.database is None:
            return
        servers.pg.recreate(self.database)
        if self.name == "dja":
            ensure_peers_venv()
            subprocess.run(
                [str(PEERS_PYTHON), str(BENCH / "peers.py"), "dja-migrate",
                 "--database", json.dumps(servers.pg.settings(self.database))],
                check=True, cwd=ROOT, timeout=300,
            )  # fmt: skip
        else:
            django_command(servers, jobs, self.database, ["migrate", "-v", "0"], timeout=300)


def ensure_peers_venv() -> None:
    if PEERS_PYTHON.exists():
        return
    log(f"creating {PEERS_VENV} with django-apscheduler 0.7")
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run(
        [str(PEERS_PYTHON), "-m", "pip", "install", "--quiet", *PEERS_REQUIREMENTS],
        check=True,
        timeout=600,
    )


def peer_versions() -> dict[str, str]:
    if not PEERS_PYTHON.exists():
        return {}
    code = (
        "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
        "('django-apscheduler', 'apscheduler', 'django', 'psycopg')}))"
    )
    out = subprocess.run([str(PEERS_PYTHON), "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def our_versions() -> dict[str, str]:
    import importlib.metadata as m

    names = ("django-oncejob", "django", "apscheduler", "django-redis", "redis", "psycopg")
    return {n: m.version(n) for n in names}


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (ours and everyone else's)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICK


@dataclass
class Snapshot:
    at: float
    machine_busy: float
    fleet_cpu: dict[int, float]
    redis_cpu: float
    pg_cpu: float
    redis_calls: Counter[str]
    db: dict[str, int]


def snapshot(servers: Servers, pids: list[int], database: str | None) -> Snapshot:
    return Snapshot(
        at=time.time(),
        machine_busy=machine_busy_seconds(),
        fleet_cpu={pid: cpu_seconds(pid) for pid in pids},
        redis_cpu=servers.redis.cpu(),
        pg_cpu=servers.pg.cpu(),
        redis_calls=servers.redis.command_calls(),
        db=servers.pg.database_stats(database) if database else {},
    )


#: The harness's own Redis commands, left out of the counts.
HARNESS_COMMANDS = {"info", "ping", "flushall", "config|resetstat", "config"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run_system(
    system: System, servers: Servers, *, jobs: int, seconds: float, warmup: float, spin: int
) -> dict[str, Any]:
    log(f"{system.label}: preparing")
    system.prepare(servers, jobs)
    records = servers.workdir / system.name
    shutil.rmtree(records, ignore_errors=True)
    records.mkdir(parents=True)
    env = {
        **(oncejob_env(servers, jobs, system.database or "") if system.database else os.environ),
        "PYTHONPATH": str(ROOT),
        "BENCH_RECORD_DIR": str(records),
        "BENCH_SPIN": str(spin),
        "BENCH_SYSTEM": "oncejob" if system.name.startswith("oncejob") else system.name,
        **system.env,
    }
    processes = []
    logs = []
    monitor = None
    try:
        if "BENCH_MONITORS" in system.env:
            # A stand-in for Sentry, healthchecks.io and the webhook, answering every request.
            port = free_port()
            monitor = spawn(
                [sys.executable, "-m", "tests.monitor_server", str(port), os.devnull],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            env["BENCH_MONITORS"] = f"127.0.0.1:{port}"
            wait_until(lambda: _answers(port), 10, "the monitor server")
        for index in range(system.instances):
            out = records / f"instance-{index}.log"
            logs.append(out)
            with out.open("wb") as handle:
                processes.append(
                    spawn(
                        system.command(servers, jobs),
                        cwd=ROOT,
                        env={**env, "BENCH_INSTANCE": str(index)},
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                    )
                )
        for process, out in zip(processes, logs, strict=True):
            wait_until(
                lambda o=out, p=process: (
                    "scheduled" in o.read_text(errors="replace") or p.poll() is not None
                ),
                120,
                f"{out} ready",
            )
            if process.poll() is not None:
                raise RuntimeError(f"{system.label} exited early:\n{out.read_text()[-3000:]}")
        log(f"{system.label}: {len(processes)} process(es) ready; warming up {warmup} s")
        time.sleep(warmup)
        pids = [p.pid for p in processes]
        # The window runs from half past one second to half past another, so that it
        # holds exactly ``seconds`` bursts of due jobs and the counters match them.
        time.sleep(0.5 - time.time() % 1 + (1 if time.time() % 1 > 0.4 else 0))
        servers.pg.reset_statements()
        before = snapshot(servers, pids, system.database)
        load_before = os.getloadavg()[0]
        log(f"{system.label}: measuring {seconds} s")
        time.sleep(max(0.0, before.at + seconds - time.time()))
        after = snapshot(servers, pids, system.database)
        statements = servers.pg.statements(system.database) if system.database else []
        rss = [peak_rss_mib(pid) for pid in pids]
        load_after = os.getloadavg()[0]
        # Occurrences due before the window's end may start a little after it.
        time.sleep(3)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            stop(process, timeout=40)
        if monitor is not None:
            stop(monitor)
    errors = sum(out.read_text(errors="replace").count("Traceback") for out in logs if out.exists())
    result = summarise(
        system, records, before, after, statements, rss, jobs, (load_before, load_after), errors
    )
    if result["misses"] or result["duplicates"] or errors:
        # The servers' work directory goes at the end: keep what the instances said.
        kept = LOGS / f"{time.strftime('%Y%m%dT%H%M%S')}-{system.name}"
        kept.mkdir(parents=True)
        for out in logs:
            if out.exists():
                shutil.copy(out, kept / out.name)
        log(f"{system.label}: misses, duplicates or tracebacks; instance logs kept in {kept}")
    return result


def summarise(
    system: System,
    records: Path,
    before: Snapshot,
    after: Snapshot,
    statements: list[tuple[str, int]],
    rss: list[float],
    jobs: int,
    load: tuple[float, float],
    errors: int,
) -> dict[str, Any]:
    first, last = math.ceil(before.at), math.ceil(after.at)  # due times in [first, last)
    expected = jobs * (last - first)
    runs = []
    #: How the runs of each second spread over the fleet: runs per instance and second.
    spread: Counter[tuple[str, int]] = Counter()
    for path in records.glob("runs-*.txt"):
        for line in path.read_text().splitlines():
            job, scheduled, start, pid = line.split()
            when = float(scheduled)
            if first <= round(when) < last:
                runs.append((job, round(when), float(start) - when))
                spread[(pid, round(when))] += 1
    counts = Counter((job, when) for job, when, _ in runs)
    lateness_ms = [late * 1000 for _, _, late in runs]
    fleet_cpu = sum(after.fleet_cpu[pid] - before.fleet_cpu[pid] for pid in after.fleet_cpu)
    redis_calls = after.redis_calls - before.redis_calls
    for name in HARNESS_COMMANDS:
        redis_calls.pop(name, None)
    sql_calls = sum(calls for _, calls in statements)
    writes = sum(
        calls
        for query, calls in statements
        if query.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    )
    db = {key: after.db[key] - before.db[key] for key in after.db}
    per_k = 1000 / expected if expected else float("nan")
    wall = after.at - before.at
    return {
        "system": system.name,
        "label": system.label,
        "instances": system.instances,
        "window_s": round(wall, 2),
        "scheduled": expected,
        "runs": len(runs),
        "occurrences_run": len(counts),
        "duplicates": len(runs) - len(counts),
        "misses": expected - len(counts),
        "late_p50_ms": round(percentile(lateness_ms, 0.50), 1),
        "late_p99_ms": round(percentile(lateness_ms, 0.99), 1),
        "late_max_ms": round(max(lateness_ms, default=float("nan")), 1),
        # An even spread is jobs / instances each; one instance winning whole batches
        # runs many more, one after another on its own GIL.
        "runs_per_instance_s_p90": percentile(list(spread.values()), 0.90),
        "runs_per_instance_s_max": max(spread.values(), default=0),
        "fleet_cpu_s": round(fleet_cpu, 2),
        "fleet_cpu_per_1k": round(fleet_cpu * per_k, 3),
        # A fleet that falls behind runs fewer occurrences than were due: per run, too.
        "fleet_cpu_per_1k_run": round(fleet_cpu * 1000 / len(counts), 3) if counts else None,
        "machine_cores_busy": round((after.machine_busy - before.machine_busy) / wall, 2),
        "fleet_cores_busy": round(fleet_cpu / wall, 2),
        "redis_cpu_per_1k": round((after.redis_cpu - before.redis_cpu) * per_k, 3),
        "pg_cpu_per_1k": round((after.pg_cpu - before.pg_cpu) * per_k, 3),
        "peak_rss_mib_max": round(max(rss), 1),
        "peak_rss_mib_mean": round(statistics.mean(rss), 1),
        "redis_cmds_per_occ": round(sum(redis_calls.values()) / expected, 3) if expected else None,
        "redis_cmds": dict(redis_calls.most_common()),
        "sql_per_occ": round(sql_calls / expected, 3) if expected and statements else 0.0,
        "sql_writes_per_occ": round(writes / expected, 3) if expected and statements else 0.0,
        "pg_sessions_per_occ": round(db.get("sessions", 0) / expected, 3) if expected else 0.0,
        "sql_top": [[calls, " ".join(query.split())[:160]] for query, calls in statements[:12]],
        "loadavg_1m": [round(x, 2) for x in load],
        "tracebacks_in_logs": errors,
    }


# --- Micro: what a losing occurrence costs -------------------------------------------------


def run_micro(servers: Servers, rounds: int, calls: int) -> dict[str, Any]:
    """Run bench/micro.py against the bench's Redis, in a fresh process."""
    log("micro: a losing and a winning occurrence")
    database = "bench_micro"
    servers.pg.recreate(database)
    django_command(servers, 1, database, ["migrate", "-v", "0"], timeout=300)
    out = subprocess.run(
        [sys.executable, str(BENCH / "micro.py"), "--rounds", str(rounds), "--calls", str(calls)],
        env={
            **oncejob_env(servers, 1, database),
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            # A winner's own CPU, not that of opening a connection per occurrence.
            "BENCH_CONN_MAX_AGE": "60",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return dict(json.loads(out.stdout))


# --- Main -------------------------------------------------------------------------------


def calibrate_spin(target_ms: float = 5.0) -> int:
    from bench.workload import spin

    turns = 10_000
    best = float("inf")
    for _ in range(20):
        start = time.thread_time()
        spin(turns)
        best = min(best, time.thread_time() - start)
    return max(1000, int(turns * target_ms / 1000 / best))


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[title for title, _ in columns]] + [
        ["" if row.get(key) is None else str(row.get(key)) for _, key in columns] for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


SYSTEM_COLUMNS = [
    ("system", "label"),
    ("inst", "instances"),
    ("scheduled", "scheduled"),
    ("runs", "runs"),
    ("dupes", "duplicates"),
    ("misses", "misses"),
    ("late p50 ms", "late_p50_ms"),
    ("p99 ms", "late_p99_ms"),
    ("max ms", "late_max_ms"),
    ("runs/inst/s p90", "runs_per_instance_s_p90"),
    ("max", "runs_per_instance_s_max"),
    ("fleet CPU s/1k", "fleet_cpu_per_1k"),
    ("per 1k run", "fleet_cpu_per_1k_run"),
    ("cores", "fleet_cores_busy"),
    ("machine cores", "machine_cores_busy"),
    ("redis CPU s/1k", "redis_cpu_per_1k"),
    ("pg CPU s/1k", "pg_cpu_per_1k"),
    ("RSS MiB", "peak_rss_mib_max"),
    ("redis cmd/occ", "redis_cmds_per_occ"),
    ("SQL/occ", "sql_per_occ"),
    ("writes/occ", "sql_writes_per_occ"),
    ("conn/occ", "pg_sessions_per_occ"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="measured window per system")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before measuring")
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument(
        "--only", default="systems,micro", help=f"comma-separated, of: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--systems",
        default="bare,seed,dja,oncejob,oncejob-persistent",
        help="which systems: bare, seed, dja, oncejob, oncejob-persistent (CONN_MAX_AGE=60), "
        "oncejob-persistent-40 (and MAX_WORKERS=40), oncejob-monitored (every monitor on)",
    )
    parser.add_argument("--burst-jobs", type=int, default=500)
    parser.add_argument("--burst-instances", type=int, default=2)
    parser.add_argument("--burst-seconds", type=int, default=20)
    parser.add_argument("--burst-systems", default="seed,oncejob-persistent")
    parser.add_argument("--output", default="latest", help="name of the files in bench/results")
    options = parser.parse_args()
    sections = [s for s in options.only.split(",") if s]
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections: {sorted(unknown)}")

    # A SIGTERM stops the bench the way Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    os.chdir(ROOT)
    workdir = BENCH / "work"
    workdir.mkdir(exist_ok=True)
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:],
        "machine": machine(),
        "versions": {"oncejob side": our_versions(), "django-apscheduler side": {}},
    }
    pg = None
    redis_server = None
    try:
        redis_server = Redis(workdir)
        pg = Postgres(workdir)
        servers = Servers(redis_server, pg, workdir)
        result["versions"]["redis-server"] = redis_server.version()
        result["versions"]["postgresql"] = pg.version()
        spin = calibrate_spin()
        result["spin_turns_for_5ms"] = spin
        log(f"servers up: redis :{redis_server.port}, postgresql :{pg.port}; spin={spin}")

        if "systems" in sections:
            result["systems"] = []
            for name in options.systems.split(","):
                system = make_system(name, options.instances)
                result["systems"].append(
                    run_system(
                        system,
                        servers,
                        jobs=options.jobs,
                        seconds=options.seconds,
                        warmup=options.warmup,
                        spin=spin,
                    )
                )
                if name == "dja":
                    result["versions"]["django-apscheduler side"] = peer_versions()
            print(table(result["systems"], SYSTEM_COLUMNS))
        if "micro" in sections:
            result["micro"] = run_micro(servers, rounds=15, calls=4000)
            print(json.dumps(result["micro"], indent=2))
        if "burst" in sections:
            result["burst"] = scenarios.burst(
                servers, options, spin, run_system=run_system, make_system=make_system
            )
            print(table(result["burst"], SYSTEM_COLUMNS))
        if "startup" in sections:
            result["startup"] = scenarios.startup(servers)
            print(json.dumps(result["startup"], indent=2))
        if "history" in sections:
            result["history"] = scenarios.history(servers)
            print(json.dumps(result["history"], indent=2))
        if "jobs" in sections:
            result["jobs"] = scenarios.many_jobs(servers)
            print(json.dumps(result["jobs"], indent=2))
    except BaseException as exc:
        log(f"stopping everything after {type(exc).__name__}; partial results are kept")
        result["incomplete"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stop_all()
        if pg is not None:
            pg.close()
        result["machine"]["loadavg_after"] = os.getloadavg()
        write_results(result, options.output)


def make_system(name: str, instances: int) -> System:
    if name == "bare":
        return System("bare", "APScheduler alone (floor)", 1)
    if name == "seed":
        return System("seed", "APScheduler + SET NX EX (seed)", instances)
    if name == "dja":
        return System("dja", "django-apscheduler 0.7", instances, database="bench_dja")
    if name == "oncejob":
        return System("oncejob", "django-oncejob", instances, database="bench_oncejob")
    if name == "oncejob-persistent":
        return System(
            "oncejob-persistent",
            "django-oncejob, CONN_MAX_AGE=60",
            instances,
            database="bench_oncejob",
            env={"BENCH_CONN_MAX_AGE": "60"},
        )
    if name == "oncejob-monitored":
        return System(
            "oncejob-monitored",
            "django-oncejob, Sentry Crons, pings, webhook, Prometheus, OpenTelemetry",
            instances,
            database="bench_oncejob",
            env={"BENCH_MONITORS": ""},
        )
    if name == "oncejob-persistent-40":
        return System(
            "oncejob-persistent-40",
            "django-oncejob, CONN_MAX_AGE=60, MAX_WORKERS=40",
            instances,
            database="bench_oncejob",
            env={"BENCH_CONN_MAX_AGE": "60", "BENCH_MAX_WORKERS": "40"},
        )
    raise ValueError(f"unknown system {name!r}")


def _answers(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def write_results(result: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    rows = [*result.get("systems", []), *result.get("burst", [])]
    if rows:
        keys = [k for k in rows[0] if not isinstance(rows[0][k], dict | list)]
        with (RESULTS / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    log(f"wrote {RESULTS / name}.json and .csv")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
