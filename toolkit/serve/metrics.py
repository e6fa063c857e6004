"""The service's Prometheus metrics (prometheus_client, a registry of its own):

- `centerface_requests_total{code}`: requests answered, by HTTP status;
- `centerface_errors_total{kind}`: refusals by kind (bad_image, too_large, overloaded, unready, device, timeout,
  unauthorised);
- `centerface_request_seconds`: latency of answered detections (histogram);
- `centerface_batch_size`: images in each batch the runner inferred (histogram);
- `centerface_queue_depth`: requests in flight (admitted, not yet answered);
- `centerface_model_info{target, precision, emulated}`: 1, naming the precision in force."""

from __future__ import annotations

class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.content_type = CONTENT_TYPE_LATEST
        self.requests = Counter("centerface_requests", "Requests answered, by HTTP status", ["code"],
                                registry=self.registry)
        self.errors = Counter("centerface_errors", "Requests refused, by kind", ["kind"], registry=self.registry)
        self.latency = Histogram("centerface_request_seconds", "Latency of answered detections", registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batches = Histogram("centerface_batch_size", "Images in each inferred batch", registry=self.registry,
                                 buckets=(1, 2, 4, 8, 16, 32, 64))
        self.depth = Gauge("centerface_queue_depth", "Requests in flight", registry=self.registry)
        self.info = Gauge("centerface_model_info", "The deployment served and its precision in force",
                          ["target", "precision", "emulated"], registry=self.registry)

    def model(self, target: str, precision: str, emulated: bool) -> None:
        """The deployment served, once loaded (its runner says the precision in force)."""
        self.info.labels(target, precision, str(emulated).lower()).set(1)

    def answered(self, seconds: float) -> None:
        self.requests.labels("200").inc()
        self.latency.observe(seconds)

    def refused(self, status: int, kind: str) -> None:
        self.requests.labels(str(status)).inc()
        self.errors.labels(kind).inc()

    def batch(self, size: int) -> None:
        self.batches.observe(size)

    def queue_depth(self, depth: int) -> None:
        self.depth.set(depth)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
