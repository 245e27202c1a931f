"""The bench's sections beyond the fleet comparison: burst, startup, history at scale."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.harness import BENCH, ROOT, cpu_seconds, log, oncejob_env, peak_rss_mib, spawn, stop


def burst(servers: Any, options: Any, spin: int, *, run_system: Any, make_system: Any) -> list:
    """Hundreds of jobs due in the same second on few instances: does claiming serialize?

    Each due job is a task of its own in a pool of MAX_WORKERS (10) threads, so a
    burst of ``--burst-jobs`` queues; the seed's approach queues the same way.
    The jobs do no work here (``spin=0``), so the lateness is the cost of claiming.
    """
    rows = []
    for name in options.burst_systems.split(","):
        system = make_system(name, options.burst_instances)
        system.label = f"{system.label} [burst {options.burst_jobs} jobs]"
        rows.append(
            run_system(
                system,
                servers,
                jobs=options.burst_jobs,
                seconds=options.burst_seconds,
                warmup=options.warmup,
                # No-op jobs only: what is measured is claiming and dispatching.
                spin=0,
            )
        )
    return rows


def startup(servers: Any, counts: tuple[int, ...] = (0, 1000, 10000)) -> list[dict[str, Any]]:
    """``manage.py check`` and ``runjobs`` start-up time, memory and first-minute CPU per job count.

    The jobs are daily here, so that nothing fires: what is measured is loading,
    validating and scheduling them, and the background threads' first rounds.
    """
    database = "bench_startup"
    servers.pg.recreate(database)
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0", "--settings=bench.settings"],
        env=oncejob_env(servers, 0, database), cwd=ROOT, check=True, timeout=300,
    )  # fmt: skip
    rows = []
    for count in counts:
        env = {**oncejob_env(servers, count, database), "BENCH_TRIGGER": "daily"}
        checks = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "django", "check", "--settings=bench.settings"],
                env=env, cwd=ROOT, check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            checks.append(time.perf_counter() - start)
        log(f"startup: {count} jobs, check {sorted(checks)[1]:.2f} s")
        out = servers.workdir / f"startup-{count}.log"
        readies = []
        for attempt in range(3):
            with out.open("wb") as handle:
                start = time.perf_counter()
                process = spawn(
                    [sys.executable, "-m", "django", "runjobs", "--settings=bench.settings"],
                    env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                )  # fmt: skip
            try:
                deadline = time.monotonic() + 120
                while b"scheduled" not in out.read_bytes():
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"runjobs did not start:\n{out.read_text()[-2000:]}")
                    time.sleep(0.01)
                readies.append(time.perf_counter() - start)
                if attempt == 2:
                    # The first minute after start: the control thread's first sweep for
                    # misses looks at every job, the heartbeat registers the instance.
                    cpu_at_ready = cpu_seconds(process.pid)
                    time.sleep(10)
                    cpu_after = cpu_seconds(process.pid)
                    rss = peak_rss_mib(process.pid)
            finally:
                stop(process, timeout=30)
        rows.append(
            {
                "jobs": count,
                "check_s_median": round(sorted(checks)[1], 3),
                "runjobs_ready_s_median": round(sorted(readies)[1], 3),
                "runjobs_peak_rss_mib": round(rss, 1),
                "cpu_s_first_10s_after_ready": round(cpu_after - cpu_at_ready, 2),
            }
        )
        log(f"startup: {rows[-1]}")
    return rows


#: One million rows: 100 jobs, one occurrence a minute each for 10,000 minutes (about a
#: week), 1% failed and 1% missed, as ``generate_series`` writes them in one statement.
FILL_SQL = """
INSERT INTO django_oncejob_run (job, scheduled_for, owner, status, claimed_at, started_at,
    finished_at, manual, requested_by, attempts, error, traceback, result, task_backend,
    task_id)
SELECT 'job-' || lpad((i % {jobs})::text, 5, '0'),
       t, 'host-' || (i % 8) || ':1',
       CASE WHEN i % 97 = 0 THEN 'failed' WHEN i % 89 = 0 THEN 'missed' ELSE 'succeeded' END,
       t, t + interval '3 ms', t + interval '9 ms', false, '', 1,
       CASE WHEN i % 97 = 0 THEN 'RuntimeError: bench' ELSE '' END, '', '', '', ''
FROM generate_series(0, {rows} - 1) AS i,
     LATERAL (SELECT timestamptz '2026-01-01 00:00+00' + (i / {jobs}) * interval '1 minute')
         AS s(t)
"""


def migrated_database(
    servers: Any, jobs: int, database: str, extra: dict[str, str]
) -> dict[str, str]:
    """Make ``database`` afresh and migrate it; returns the environment of its commands."""
    servers.pg.recreate(database)
    env = {
        **oncejob_env(servers, jobs, database),
        **extra,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        env=env, cwd=ROOT, check=True, timeout=300,
    )  # fmt: skip
    return env


def history(servers: Any, rows: int = 1_000_000) -> dict[str, Any]:
    """The fence insert at 0 and at ``rows`` rows, the plans, and the admin's page times."""
    database = "bench_history"
    env = migrated_database(servers, 100, database, {"BENCH_CONN_MAX_AGE": "60"})

    def probe(phase: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, str(BENCH / "history_probe.py"), phase],
            env=env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        return dict(json.loads(out.stdout))

    result: dict[str, Any] = {"empty": probe("empty")}
    log(f"history: filling {rows:,} rows")
    start = time.perf_counter()
    with servers.pg.connect(database) as conn:
        conn.execute(FILL_SQL.replace("{rows}", str(int(rows))).replace("{jobs}", "100"))
        conn.execute("VACUUM ANALYZE django_oncejob_run")
    result["fill_s"] = round(time.perf_counter() - start, 1)
    log(f"history: filled in {result['fill_s']} s; probing")
    result["full"] = probe("full")
    return result


def many_jobs(servers: Any, jobs: int = 10_000, runs_per_job: int = 20) -> dict[str, Any]:
    """The Jobs page, a job's page and ``oncejob_health`` with ``jobs`` jobs, each with a
    history of ``runs_per_job`` runs."""
    database = "bench_jobs"
    env = migrated_database(servers, jobs, database, {"BENCH_TRIGGER": "daily"})
    with servers.pg.connect(database) as conn:
        sql = FILL_SQL.replace("{rows}", str(jobs * runs_per_job)).replace("{jobs}", str(jobs))
        conn.execute(sql)
        conn.execute("VACUUM ANALYZE django_oncejob_run")
    log(f"jobs: {jobs:,} jobs with {runs_per_job} runs each; probing")
    out = subprocess.run(
        [sys.executable, str(BENCH / "jobs_probe.py")],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return dict(json.loads(out.stdout))
