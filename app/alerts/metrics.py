"""The alerts' Prometheus metrics, registered on the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.fired = Counter(
            "vtfpar_alerts_fired", "Alerts fired, by the track's source (stream, upload)", ["source"], registry=registry
        )
        self.deliveries = Counter(
            "vtfpar_alert_deliveries",
            "Delivery attempts by channel (webhook, mqtt) and outcome (delivered, retry, failed)",
            ["channel", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "vtfpar_alert_delivery_latency_seconds",
            "From the window that decided the match to the delivery's acknowledgement, by channel",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.outbox = Gauge("vtfpar_alert_outbox_depth", "Deliveries waiting in the outbox", registry=registry)
