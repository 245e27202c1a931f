"""Django settings of the bench project: django-oncejob on the bench's own Redis and PostgreSQL.

run.py passes the servers and the workload through environment variables:
BENCH_PG (a JSON dict of connection settings), BENCH_REDIS (a URL), BENCH_JOBS
(how many jobs), BENCH_CONN_MAX_AGE (Django's CONN_MAX_AGE, default 0 as in Django).
"""

from __future__ import annotations

import json
import os

from bench.workload import job_table

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_oncejob",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "bench.urls"
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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        **json.loads(os.environ.get("BENCH_PG", '{"NAME": "bench_oncejob", "HOST": "127.0.0.1"}')),
        "CONN_MAX_AGE": int(os.environ.get("BENCH_CONN_MAX_AGE", "0")),
    }
}
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15"),
        "OPTIONS": {"SOCKET_TIMEOUT": 5, "SOCKET_CONNECT_TIMEOUT": 2},
    }
}
#: BENCH_TRIGGER: "second" (every job every second, the load test) or "daily" (start-up test).
_trigger = (
    {"cron": "0 3 * * *"}
    if os.environ.get("BENCH_TRIGGER") == "daily"
    else {"interval": {"seconds": 1}}
)
ONCEJOB = {
    "KEY_PREFIX": "bench",
    "MAX_WORKERS": int(os.environ.get("BENCH_MAX_WORKERS", "10")),
    "JOBS": {
        job_id: {"func": func, "args": [job_id], **_trigger}
        for job_id, func in job_table(int(os.environ.get("BENCH_JOBS", "100")))
    },
}
STATIC_URL = "/static/"

# BENCH_MONITORS (host:port of a stand-in server): every monitor on, as a project would
# have them, for the lateness they cost.
if monitors := os.environ.get("BENCH_MONITORS"):
    import sentry_sdk
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class _Discard(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sentry_sdk.init(dsn=f"http://public@{monitors}/1", default_integrations=False)
    _provider = TracerProvider()
    _provider.add_span_processor(BatchSpanProcessor(_Discard()))
    trace.set_tracer_provider(_provider)
    ONCEJOB.update(
        {
            "SENTRY_CRONS": True,
            "WEBHOOK": f"http://{monitors}/webhook",
            "METRICS_PORT": 29400 + int(os.environ.get("BENCH_INSTANCE", "0")),
            "METRICS_ADDRESS": "127.0.0.1",
        }
    )
    for _job_id, _job in ONCEJOB["JOBS"].items():
        _job["ping_url"] = f"http://{monitors}/ping/{_job_id}"
