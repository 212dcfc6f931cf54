"""Prometheus metrics of one engine (its own registry, so tests can run several engines)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128)


class EngineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("imagebind_requests", "Requests by transport, endpoint and outcome",
                                ["transport", "endpoint", "status"], registry=r)
        self.request_seconds = Histogram("imagebind_request_seconds", "Request latency",
                                         ["transport", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.items = Counter("imagebind_items", "Items embedded, by input kind", ["kind"], registry=r)
        self.errors = Counter("imagebind_errors", "Rejected items and failed requests by kind and reason",
                              ["kind", "reason"], registry=r)
        self.batch_rows = Histogram("imagebind_batch_rows", "Forward passes per model call", ["kind"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_items = Histogram("imagebind_batch_items", "Items per model call", ["kind"],
                                     buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("imagebind_queue_depth", "Forward passes admitted and not yet computed",
                                 ["kind"], registry=r)
        self.expected_wait = Gauge("imagebind_expected_wait_seconds",
                                   "Expected seconds until an item of this kind admitted now is computed "
                                   "(what admission compares with the queue time budget)", ["kind"], registry=r)
        self.pace = Gauge("imagebind_queue_pace",
                          "Finished items' real time from admission over the time predicted then (running mean; "
                          "scales the expected wait), per kind", ["kind"], registry=r)
        self.preemptions = Counter("imagebind_preemptions", "Forwards paused between two steps for more urgent work",
                                   ["kind"], registry=r)
        self.model_cost = Gauge("imagebind_model_seconds_per_row",
                                "Learned seconds per forward pass at the kind's most efficient batch size", ["kind"],
                                registry=r)
        self.stage_seconds = Histogram("imagebind_stage_seconds", "Time per item in each stage",
                                       ["kind", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.cache = Counter("imagebind_cache_lookups", "Vector cache lookups", ["kind", "result"], registry=r)
        self.connections = Gauge("imagebind_connections", "Open client connections", ["transport"], registry=r)
        self.connections_closed = Counter("imagebind_connections_closed",
                                          "Connections the server closed or refused, by reason (idle_timeout, "
                                          "header_timeout, write_timeout, evicted, refused, tls_handshake)",
                                          ["transport", "reason"], registry=r)
        self.ready = Gauge("imagebind_ready", "1 once the model is loaded and the server accepts work",
                           registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
