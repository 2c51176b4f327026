"""The gateway's Prometheus metrics, served at ``/metrics`` behind the admin token.

Counted as they happen, in the ingest core's one entry point (``IngestCore.submit``, for HTTP
and MQTT alike): accepted messages and readings, and refusals by their code.  Read from the health
monitor's cache when scraped, never from the chain or the store: the outbox's backlog and how
far the last anchor trails the last sealed block.

Why a registry per gateway, not prometheus-client's global one: a test process runs many
gateways, and each must count only its own.  Labels are codes and component names only; no
device, patient or reading value ever becomes a label (docs/threat-model.md: no identity in
logs or metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vitalchain.wire.telemetry import Ack

__all__ = ["CONTENT_TYPE", "IngestMetrics", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class IngestMetrics:
    """What the ingest core did: messages and readings accepted, refusals by code."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._messages = Counter(
            "vitalchain_ingest_messages",
            "Data messages accepted (stored durably, then acknowledged).",
            registry=self.registry,
        )
        self._readings = Counter(
            "vitalchain_ingest_readings", "Readings accepted.", registry=self.registry
        )
        self._refusals = Counter(
            "vitalchain_ingest_refusals",
            "Data messages refused, by the refusal's code (docs/spec/telemetry.md).",
            ["code"],
            registry=self.registry,
        )

    def accepted(self, ack: Ack) -> None:
        self._messages.inc()
        self._readings.inc(ack.accepted)

    def refused(self, code: str) -> None:
        self._refusals.labels(code=code).inc()


class _HealthCollector(Collector):
    """Gauges from the health monitor's last probes and the sealer's status, at scrape time."""

    def __init__(
        self,
        backlog: Callable[[], Mapping[str, Any] | None],
        sealing: Callable[[], Mapping[str, Any]] | None,
    ) -> None:
        self._backlog = backlog
        self._sealing = sealing

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = self._backlog()
        if backlog is not None:
            depth = GaugeMetricFamily(
                "vitalchain_outbox_depth",
                "Chain writes of the outbox: queued, or sent and not yet mined.",
                labels=["state"],
            )
            depth.add_metric(["queued"], float(backlog["queued"]))
            depth.add_metric(["in_flight"], float(backlog["in_flight"]))
            yield depth
        status = self._sealing() if self._sealing is not None else None
        sealed = status.get("last_seal_at_ms") if status is not None else None
        anchored = status.get("last_anchor_at_ms") if status is not None else None
        if sealed is not None and anchored is not None:  # undefined until both happened
            yield GaugeMetricFamily(
                "vitalchain_anchor_lag_seconds",
                "How far the last recorded anchor trails the last sealed block (0: caught up).",
                value=max(0, sealed - anchored) / 1000,
            )


def exposition(
    metrics: IngestMetrics,
    backlog: Callable[[], Mapping[str, Any] | None],
    sealing: Callable[[], Mapping[str, Any]] | None,
    others: Iterable[CollectorRegistry] = (),
) -> bytes:
    """The text exposition of the counters, of the gauges read now, and of ``others`` (the
    registries of the rooms a node mounts beside the gateway: the alarm service's latency)."""
    gauges = CollectorRegistry()
    gauges.register(_HealthCollector(backlog, sealing))
    registries = [metrics.registry, gauges, *others]
    return b"".join(generate_latest(r) for r in registries)
