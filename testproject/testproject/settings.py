"""Settings of the demo project: several ``runjobs`` instances sharing one Redis and one database.

Environment variables:

- ``REDIS_URL``: the Redis every instance claims occurrences in
  (default ``redis://127.0.0.1:6379/0``).
- ``DEMO_DB``: ``sqlite`` (default) or ``postgresql``. PostgreSQL is reached through
  ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD`` and ``PGDATABASE`` and needs
  ``pip install "psycopg[binary]"``.
- ``DEMO_SQLITE_PATH``: the SQLite file (default ``demo.sqlite3`` beside ``manage.py``).
- ``DEMO_AT``: when the one-off job ``once`` runs, an ISO-8601 time with a UTC offset.
  Every instance must be given the same value; without it the job is disabled.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-never-use-in-production")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_oncejob",
    "demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "testproject.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

DEMO_DB = os.environ.get("DEMO_DB", "sqlite")
if DEMO_DB == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # A file, not memory: every runjobs process must see the same history.
            "NAME": os.environ.get("DEMO_SQLITE_PATH", str(BASE_DIR / "demo.sqlite3")),
            # Several processes write at once: wait for the lock rather than fail.
            # demo/apps.py also switches the file to WAL.
            "OPTIONS": {"timeout": 20},
        }
    }
elif DEMO_DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "postgres"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            # A database that drops packets must not hold a job thread for minutes.
            "OPTIONS": {"connect_timeout": 5},
        }
    }
else:
    raise ImproperlyConfigured(f"DEMO_DB must be 'sqlite' or 'postgresql', got {DEMO_DB!r}.")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        # Without timeouts a Redis that stops answering would hang every claim;
        # with them the claim fails fast and ON_CACHE_ERROR decides.
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    }
}

# The instant must come from outside: an instance computing "now + 10 s" itself
# would pick its own instant, and each instance would run its own occurrence.
DEMO_AT = os.environ.get("DEMO_AT", "")

ONCEJOB = {
    "KEY_PREFIX": "oncejob-demo",
    # Claim keys must outlive the longest misfire grace time (60 s here), not a day.
    "CLAIM_TIMEOUT": 3600,
    "SHUTDOWN_TIMEOUT": 10,
    "JOBS": {
        "tick": {
            "func": "demo.jobs.tick",
            "cron": {"second": "*"},
            # A second that is 5 s late is not worth running any more.
            "misfire_grace_time": 5,
            "description": "Prints which instance ran which second.",
        },
        "poll-inbox": {
            "func": "demo.jobs.poll_inbox",
            "interval": {"seconds": 5},
            "description": "Every 5 seconds, counted from 2000-01-01 00:00 UTC.",
        },
        "async-ping": {
            "func": "demo.jobs.async_ping",
            "interval": {"seconds": 3},
            "kwargs": {"hosts": ["db", "cache", "mail"]},
            "description": "An async def job.",
        },
        "nightly-report": {
            "func": "demo.jobs.nightly_report",
            "cron": "30 2 * * *",
            "description": "Every day at 02:30 UTC.",
        },
        "once": {
            "func": "demo.jobs.once",
            "at": DEMO_AT or "2000-01-01T00:00:00+00:00",
            "enabled": bool(DEMO_AT),
            "description": "Runs once, at DEMO_AT.",
        },
    },
}
