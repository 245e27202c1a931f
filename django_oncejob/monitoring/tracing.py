"""An OpenTelemetry span for each occurrence run here, wherever opentelemetry-api is installed.

The span begins when the claim was won and ends with the run, so the job's own
spans are its children. A hand-off carries its context to the task worker, whose
span of the run is a child of the one ``runjobs`` began.
"""

from __future__ import annotations

import functools
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from django_oncejob.conf import conf

if TYPE_CHECKING:
    from django_oncejob.monitoring.watch import Watch


@functools.cache
def _installed() -> bool:
    return find_spec("opentelemetry") is not None and find_spec("opentelemetry.trace") is not None


def enabled() -> bool:
    return conf.TRACING and _installed()


class Tracing:
    def __init__(self) -> None:
        from importlib.metadata import version

        from opentelemetry import trace

        self.tracer = trace.get_tracer("django_oncejob", version("django-oncejob"))

    def started(self, watch: Watch) -> None:
        from opentelemetry import context, propagate, trace

        parent = propagate.extract(dict(watch.trace)) if watch.handed_off else None
        began = watch.claimed_at if not watch.handed_off else watch.started_at
        occurrence = watch.occurrence
        span = self.tracer.start_span(
            f"oncejob run {occurrence.job}" if watch.handed_off else f"oncejob {occurrence.job}",
            context=parent,
            kind=trace.SpanKind.CONSUMER if watch.handed_off else trace.SpanKind.INTERNAL,
            start_time=None if began is None else int(began.timestamp() * 1e9),
            attributes={
                "oncejob.job_id": occurrence.job,
                "oncejob.scheduled_for": occurrence.scheduled_for.isoformat(),
                "oncejob.owner": occurrence.owner,
                "oncejob.attempt": watch.attempt,
                "oncejob.lag_seconds": watch.lag,
            },
        )
        span.add_event("oncejob.started")
        token = context.attach(trace.set_span_in_context(span))
        watch.state["tracing"] = (span, token)

    def ended(self, watch: Watch) -> None:
        from opentelemetry import context, trace

        if "tracing" not in watch.state:
            return  # started on another instance, which had the span
        span, token = watch.state.pop("tracing")
        span.set_attribute("oncejob.outcome", watch.status)
        if watch.status in ("failed", "timed_out"):
            span.set_status(trace.Status(trace.StatusCode.ERROR, watch.error[:1000]))
        span.end()
        context.detach(token)


def trace_context() -> dict[str, str]:
    """The current trace context, to hand off with an occurrence; ``{}`` without tracing."""
    if not enabled():
        return {}
    from opentelemetry import propagate

    carrier: dict[str, Any] = {}
    propagate.inject(carrier)
    return {str(key): str(value) for key, value in carrier.items()}
