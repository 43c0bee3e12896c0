"""Prometheus metrics (``GET /metrics``), in a registry of the app's own.

Counters and histograms are fed where things happen (a batch of events sent, an upstream
chunk); gauges that are state (active runs, open connections, circuit breakers) are read from
the engine's ``statistics()`` at scrape time, so they can never drift from the truth.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Literal, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.limits.quotas import Quotas
from gateway.telemetry.loop_histogram import LoopHistogram
from gateway.transport.connections import ConnectionStats
from gateway.worker import Worker
from streams.directory import RunDirectory
from streams.runs.manager import RunManager
from streams.runs.run import Run
from streams.upstream.client import UpstreamCall, UpstreamModel

__all__ = [
    "APPROVAL_WAIT_BUCKETS",
    "BREAKER_STATES",
    "GAP_BUCKETS",
    "LATENCY_BUCKETS",
    "GatewayMetrics",
    "Observed",
]

upstream_log = structlog.get_logger("gateway.upstream")
run_log = structlog.get_logger("gateway.runs")

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# A person answering: from a second to the default approval_timeout (600 s) and past it.
APPROVAL_WAIT_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Observed(Protocol):
    """What the metrics read of the gateway at scrape time (its
    :class:`~gateway.state.GatewayState`, which holds these metrics: a protocol here, so
    neither module imports the other)."""

    @property
    def manager(self) -> RunManager: ...

    @property
    def runs(self) -> RunDirectory: ...

    @property
    def quotas(self) -> Quotas: ...

    @property
    def open_streams(self) -> collections.Counter[str]: ...

    @property
    def reader_closes(self) -> collections.Counter[tuple[str, str]]: ...

    @property
    def connections(self) -> ConnectionStats: ...

    def connection_waits(self) -> int: ...

    @property
    def worker(self) -> Worker | None: ...


class GatewayMetrics:
    """The gateway's metrics, fed by the engine's hooks (it is the upstream client's, the
    model groups' and the approvals' observer) and read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_sent = Counter(
            "gateway_events_sent",
            "Run events sent to readers",
            ["channel"],
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "gateway_runs_finished", "Runs by final status", ["status"], registry=self.registry
        )
        self.upstream_requests = Counter(
            "gateway_upstream_requests",
            "Upstream requests (attempts) by outcome",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Upstream failures by error code",
            ["route", "code"],
            registry=self.registry,
        )
        self.failover_switches = Counter(
            "gateway_failover_switches",
            "Steps a model group moved from one route to another, by why it left the route",
            ["group", "route", "reason"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "gateway_upstream_ttft_seconds",
            "Time to first token from the upstream",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Observed for every upstream chunk: a histogram made for the event loop's hot path.
        self.inter_chunk = LoopHistogram(
            "gateway_upstream_inter_chunk_seconds",
            "Time between upstream chunks",
            "route",
            GAP_BUCKETS,
        )
        self.registry.register(self.inter_chunk)
        # Labelled by tool name: the tools are the gateway's and the runs' own (bounded by
        # the specs' tool lists), as the routes of the upstream metrics are the config's.
        self.approvals_requested = Counter(
            "gateway_approvals_requested",
            "Tool calls that waited for a person's approval, by tool",
            ["tool"],
            registry=self.registry,
        )
        self.approvals_answered = Counter(
            "gateway_approvals_answered",
            "Approvals a person answered, by tool and decision",
            ["tool", "decision"],
            registry=self.registry,
        )
        self.approvals_expired = Counter(
            "gateway_approvals_expired",
            "Approvals no one answered within approval_timeout, by tool",
            ["tool"],
            registry=self.registry,
        )
        self.approval_wait = Histogram(
            "gateway_approval_wait_seconds",
            "Time a tool call waited for a person's answer",
            buckets=APPROVAL_WAIT_BUCKETS,
            registry=self.registry,
        )
        self._state: Observed | None = None
        self.registry.register(_StateCollector(self))

    def bind(self, state: Observed) -> None:
        """Read gauges from ``state`` at scrape time."""
        self._state = state

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- hooks the engine calls ---------------------------------------------------------------

    def run_ended(self, run: Run) -> None:
        self.runs_finished.labels(run.status.value).inc()
        duration = (run.ended_at or 0) - (run.started_at or run.created_at)
        run_log.info(
            "run ended",
            run_id=run.id,
            status=run.status.value,
            duration_s=round(duration, 4),
            events=run.log.last_seq,
            reason=run.cancel_reason or (run.error["code"] if run.error else None),
            input_tokens=run.usage["input_tokens"],
            output_tokens=run.usage["output_tokens"],
        )

    def requested(self, tool: str) -> None:
        self.approvals_requested.labels(tool).inc()

    def answered(self, tool: str, decision: Literal["approve", "deny"], seconds: float) -> None:
        self.approvals_answered.labels(tool, decision).inc()
        self.approval_wait.observe(seconds)

    def expired(self, tool: str) -> None:
        self.approvals_expired.labels(tool).inc()

    def chunk_gap(self, route: str, seconds: float) -> None:
        self.inter_chunk.observe(route, seconds)

    def rerouted(self, group: str, route: str, to: str, reason: str) -> None:
        self.failover_switches.labels(group, route, reason).inc()
        upstream_log.info("rerouted", group=group, route=route, to=to, reason=reason)

    def call_finished(self, call: UpstreamCall) -> None:
        outcome = "ok" if call.error is None else call.error
        self.upstream_requests.labels(call.route, outcome).inc()
        if call.error is not None and call.error != "cancelled":
            self.upstream_errors.labels(call.route, call.error).inc()
        if call.ttft is not None:
            self.ttft.labels(call.route).observe(call.ttft)
        upstream_log.info(
            "upstream call",
            route=call.route,
            model=call.upstream_model,
            attempt=call.attempt,
            status=call.status,
            error=call.error,
            ttft_s=None if call.ttft is None else round(call.ttft, 4),
            duration_s=round(call.duration, 4),
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
        )


class _StateCollector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self.metrics._state
        if state is None:
            return
        if state.worker is not None:
            # Each worker of a --workers N gateway is scraped on its own (whichever takes the
            # connection answers): this says which one did, as the other gauges' join key.
            info = GaugeMetricFamily(
                "gateway_worker_info",
                "1: the worker (of a --workers N gateway) and instance that answered",
                labels=["worker", "instance"],
            )
            info.add_metric([str(state.worker.index), state.worker.instance], 1)
            yield info
        stats = state.manager.statistics()
        yield GaugeMetricFamily(
            "gateway_active_runs", "Runs not yet finished", value=stats.active_runs
        )
        connections = GaugeMetricFamily(
            "gateway_active_connections", "Open streams by channel", labels=["channel"]
        )
        for channel, count in sorted(state.open_streams.items()):
            connections.add_metric([channel], count)
        yield connections
        closes = CounterMetricFamily(
            "gateway_reader_disconnects",
            "Readers that went away, by reason",
            labels=["channel", "reason"],
        )
        for (channel, reason), count in sorted(state.reader_closes.items()):
            closes.add_metric([channel, reason], count)
        yield closes
        yield GaugeMetricFamily(
            "gateway_open_connections",
            "TCP connections open to the server (HTTP and WebSocket)",
            value=state.connections.open,
        )
        let_go = CounterMetricFamily(
            "gateway_connections_closed",
            "Connections the server let go on its own, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(state.connections.closed.items()):
            let_go.add_metric([reason], count)
        yield let_go
        waits = CounterMetricFamily(
            "gateway_semaphore_waits",
            "Times a producer or request waited for a slot",
            labels=["kind"],
        )
        waits.add_metric(["connection"], state.connection_waits())
        breaker = GaugeMetricFamily(
            "gateway_circuit_breaker_state", "0 closed, 1 half-open, 2 open", labels=["route"]
        )
        in_flight = GaugeMetricFamily(
            "gateway_upstream_in_flight", "Upstream requests in flight", labels=["route"]
        )
        route_waits = 0
        for model in state.manager.models.models.values():
            if isinstance(model, UpstreamModel):
                breaker.add_metric([model.name], BREAKER_STATES[model.breaker.state.value])
                route = model.statistics()
                in_flight.add_metric([model.name], route.in_flight)
                route_waits += route.slot_waits
        waits.add_metric(["route"], route_waits)
        yield waits
        yield breaker
        yield in_flight
        # The stores' own figures (with Redis: the shared store's; in memory: none).
        for metric in (*state.runs.statistics().metrics(), *state.quotas.statistics().metrics()):
            family = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
            yield family(metric.name, metric.documentation, value=metric.value)
