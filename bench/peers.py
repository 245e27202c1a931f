"""The systems django-oncejob is compared with, one process each.

    python bench/peers.py bare --jobs 100
        plain APScheduler 3.11: no claim, no history (the floor).
    python bench/peers.py seed --jobs 100 --redis redis://127.0.0.1:PORT/0
        plain APScheduler plus one redis-py ``SET NX EX`` per occurrence, no history.
    python bench/peers.py dja --jobs 100 --database DSN-JSON
        django-apscheduler 0.7: DjangoJobStore on a shared PostgreSQL, as its docs
        set it up (run it with the interpreter of bench/.venv-peers).
    python bench/peers.py dja-migrate --database DSN-JSON

Every job fires every second, on the same whole seconds as django-oncejob's
``{"interval": {"seconds": 1}}``, with the same misfire grace time (60 s),
``coalesce=True`` and ``max_instances=1``. Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apscheduler.schedulers.background import BackgroundScheduler  # noqa: E402
from apscheduler.triggers.interval import IntervalTrigger  # noqa: E402

from bench.workload import ANCHOR, RecordingExecutor, job_table  # noqa: E402


def add_jobs(scheduler: BackgroundScheduler, count: int, **extra: object) -> None:
    for job_id, func in job_table(count):
        scheduler.add_job(
            func.replace("bench.workload.", "bench.workload:"),
            trigger=IntervalTrigger(seconds=1, start_date=ANCHOR, timezone="UTC"),
            args=[job_id],
            id=job_id,
            misfire_grace_time=60,
            coalesce=True,
            max_instances=1,
            **extra,
        )


def setup_django(database: dict[str, str]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", **database}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_apscheduler"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()


def serve(scheduler: BackgroundScheduler) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    scheduler.start()
    print(f"{os.getpid()} scheduled", flush=True)
    while not stop.wait(0.5):
        pass
    scheduler.shutdown(wait=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["bare", "seed", "dja", "dja-migrate"])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--redis", default="")
    parser.add_argument("--database", default="{}")
    options = parser.parse_args()

    if options.mode == "dja-migrate":
        setup_django(json.loads(options.database))
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return

    claim = None
    if options.mode == "seed":
        import redis

        # The socket timeouts of the cache django-oncejob claims on (bench/settings.py):
        # with a timeout, redis-py polls the socket before each read, which is part of
        # any client's round trip that cannot hang, not a cost of coordination.
        client = redis.Redis.from_url(options.redis, socket_timeout=5, socket_connect_timeout=2)
        owner = f"{socket.gethostname()}:{os.getpid()}"

        def claim(job_id, run_time):  # type: ignore[no-untyped-def]
            key = f"seed:{job_id}:{run_time.isoformat()}"
            return bool(client.set(key, owner, nx=True, ex=86400))

    scheduler = BackgroundScheduler(
        timezone="UTC", executors={"default": RecordingExecutor(10, claim=claim)}
    )
    if options.mode == "dja":
        setup_django(json.loads(options.database))
        from django_apscheduler.jobstores import DjangoJobStore

        scheduler.add_jobstore(DjangoJobStore(), "default")
        add_jobs(scheduler, options.jobs, replace_existing=True)
    else:
        add_jobs(scheduler, options.jobs)
    serve(scheduler)


if __name__ == "__main__":
    main()
