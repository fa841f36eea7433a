"""A real OTLP/HTTP receiver for tests: what a collector's `otlphttp` receiver does, in a thread.

It accepts `POST /v1/traces` and `POST /v1/metrics` (protobuf, optionally gzip), decodes them with the
OpenTelemetry protocol's own message classes (opentelemetry-proto), answers as a collector does, keeps the raw
bytes too (to prove what never left the process), and lets a test wait for what it expects.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def any_value(value) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def attributes(kvs) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


class OtlpReceiver:
    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.raw: list[bytes] = []
        self.spans: list[dict[str, Any]] = []
        self.points: list[dict[str, Any]] = []  # one per metric data point, latest exports last
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), "the expected telemetry never arrived"

    def metric(self, name: str, **attrs: Any) -> float | None:
        """The latest value of a counter/gauge data point (sum/count for a histogram) whose attributes include
        `attrs`; None if none arrived yet."""
        with self.changed:
            for point in reversed(self.points):
                if point["name"] == name and all(point["attributes"].get(k) == v for k, v in attrs.items()):
                    return point["value"]
        return None

    def latest(self, name: str) -> list[dict[str, Any]]:
        """The latest data point of `name` for each attribute set (cumulative: the running totals)."""
        with self.changed:
            found = {}
            for point in self.points:
                if point["name"] == name:
                    found[tuple(sorted(point["attributes"].items()))] = point
        return list(found.values())

    def resources(self) -> list[dict[str, Any]]:
        with self.changed:
            return [s["resource"] for s in self.spans]

    def _take_traces(self, body: bytes) -> bytes:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    self.spans.append({
                        "name": span.name, "attributes": attributes(span.attributes), "resource": resource,
                        "scope": ss.scope.name, "events": [(e.name, attributes(e.attributes)) for e in span.events],
                        "status": span.status.code, "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                    })
        return ExportTraceServiceResponse().SerializeToString()

    def _take_metrics(self, body: bytes) -> bytes:
        request = ExportMetricsServiceRequest.FromString(body)
        for rm in request.resource_metrics:
            resource = attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for p in getattr(metric, kind).data_points:
                        point = {"name": metric.name, "kind": kind, "unit": metric.unit, "resource": resource,
                                 "attributes": attributes(p.attributes)}
                        if kind == "histogram":
                            point.update(value=p.count, sum=p.sum, bounds=list(p.explicit_bounds),
                                         counts=list(p.bucket_counts))
                        else:
                            point["value"] = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                        self.points.append(point)
        return ExportMetricsServiceResponse().SerializeToString()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                takes = {"/v1/traces": receiver._take_traces, "/v1/metrics": receiver._take_metrics}
                take = takes.get(self.path)
                if take is None or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404 if take is None else 415)
                    self.end_headers()
                    return
                with receiver.changed:
                    receiver.raw.append(body)
                    answer = take(body)
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return Handler
