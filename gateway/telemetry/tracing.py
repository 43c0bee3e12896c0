"""OpenTelemetry tracing: a tracer provider of the app's own (not the global one), so each
app, and each test, sees its own spans.

Spans: one per request (W3C trace context accepted from the client), per run, per producer
and per upstream call (whose context goes upstream in ``traceparent``). Spans are exported
with OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, to a given exporter in tests, and
otherwise nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

__all__ = ["Telemetry"]


class Telemetry:
    def __init__(
        self,
        *,
        exporter: SpanExporter | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": "agent-gateway"}))
        self.tracer: trace.Tracer
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            # Imported only when used: the exporter pulls in protobuf and requests.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            # Spans nobody exports cost per request, per run and per producer: none at all.
            self.tracer = trace.NoOpTracer()
            return
        self.tracer = self.provider.get_tracer("agent-gateway")

    def shutdown(self) -> None:
        """Flush what is batched and stop (at the end of the lifespan)."""
        self.provider.shutdown()
