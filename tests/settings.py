"""Settings for the test suite and for the runjobs processes the tests start.

The processes get their jobs and database through environment variables, so
a test can start several instances of one configuration.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_oncejob",
    "tests",
    # Apps that declare jobs with @job, for the tests that need them.
    *json.loads(os.environ.get("ONCEJOB_TEST_APPS", "[]")),
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

TEST_DB = os.environ.get("ONCEJOB_TEST_DB", "postgresql")
TEST_DB_NAME = os.environ.get("ONCEJOB_TEST_DB_NAME", "test_oncejob")
if TEST_DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("ONCEJOB_DB_NAME", "postgres"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            # A database that drops packets must not hold a job thread for minutes.
            "OPTIONS": {"connect_timeout": 5},
            "TEST": {"NAME": TEST_DB_NAME},
        }
    }
elif TEST_DB == "sqlite":
    # A file, not memory: the runjobs processes must share the test database.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("ONCEJOB_DB_NAME", str(BASE_DIR / "oncejob.sqlite3")),
            "OPTIONS": {"timeout": 20},
            "TEST": {"NAME": str(BASE_DIR / f"{TEST_DB_NAME}.sqlite3")},
        }
    }
else:
    raise ValueError(f"ONCEJOB_TEST_DB must be 'postgresql' or 'sqlite', got {TEST_DB!r}")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    },
    "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
# More aliases, for the tests of other claim caches (tests/test_caches.py): a JSON
# object of CACHES entries, which may add aliases but not replace the ones above.
_extra_caches = json.loads(os.environ.get("ONCEJOB_TEST_CACHES", "{}"))
if redefined := sorted(_extra_caches.keys() & CACHES.keys()):
    raise ValueError(f"ONCEJOB_TEST_CACHES may only add aliases, not redefine {redefined}")
CACHES.update(_extra_caches)

ONCEJOB = {
    "KEY_PREFIX": os.environ.get("ONCEJOB_TEST_PREFIX", "oncejob-tests"),
    "JOBS": json.loads(os.environ.get("ONCEJOB_TEST_JOBS", "{}")),
    **json.loads(os.environ.get("ONCEJOB_TEST_SETTINGS", "{}")),
}

STATIC_URL = "/static/"


def _version(distribution: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version(distribution).split(".")[:2])
    except PackageNotFoundError:
        return None


# Hand-off to django.tasks (tests/test_handoff.py), only where a backend with a worker
# is installed: django-tasks-db, or the database backend django-tasks had before 0.12
# (for the backport only, so not on Django 6.0+). Without one, the rest of the suite
# runs as ever.
TASKS_DATABASE_BACKEND: str | None = None
if _version("django-tasks-db") is not None:
    INSTALLED_APPS += ["django_tasks_db"]
    TASKS_DATABASE_BACKEND = "django_tasks_db.DatabaseBackend"
elif find_spec("django.tasks") is None and (0, 7) <= (_version("django-tasks") or ()) < (0, 12):
    INSTALLED_APPS += ["django_tasks", "django_tasks.backends.database"]
    TASKS_DATABASE_BACKEND = "django_tasks.backends.database.DatabaseBackend"
if TASKS_DATABASE_BACKEND is not None:
    TASKS = {
        "default": {
            "BACKEND": TASKS_DATABASE_BACKEND,
            # The tasks live in the test database: concurrent runs never share them.
            "QUEUES": ["default", "jobs"],
        }
    }

# Hand-off to Celery, with a Redis database of its own as the broker; each test gives
# its worker a queue of its own, so that concurrent runs never take each other's tasks.
if find_spec("celery") is not None:
    # Database 14 of the tests' Redis, wherever REDIS_URL puts it.
    CELERY_BROKER_URL = os.environ.get(
        "ONCEJOB_TEST_CELERY_BROKER", urlunsplit(urlsplit(REDIS_URL)._replace(path="/14"))
    )
    CELERY_RESULT_BACKEND = CELERY_BROKER_URL
    CELERY_RESULT_EXPIRES = 3600
    CELERY_TASK_DEFAULT_QUEUE = os.environ.get("ONCEJOB_TEST_CELERY_QUEUE", "oncejob-tests")
    CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False

# Monitors (tests/test_monitoring.py): Sentry pointed at a stand-in for its ingest
# endpoint, and every span written to a file.
if sentry_dsn := os.environ.get("ONCEJOB_TEST_SENTRY_DSN"):
    import sentry_sdk

    sentry_sdk.init(dsn=sentry_dsn, default_integrations=False, auto_enabling_integrations=False)
if spans_file := os.environ.get("ONCEJOB_TEST_SPANS"):
    from tests.tracing import record_spans

    record_spans(spans_file)
