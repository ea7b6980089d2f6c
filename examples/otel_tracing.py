"""OpenTelemetry: one trace from the publisher, through the broker, to the handler.

Usage::

    pip install 'trio-mqtt[otel]' opentelemetry-sdk
    python examples/otel_tracing.py [mqtt://HOST:PORT]     # or set MQTT_URL

Two connections stand for two programs. The publisher starts a ``checkout`` span and publishes
inside it with :meth:`MqttTelemetry.publish`, which adds a ``send`` span (until the broker's
PUBACK) and writes its trace context into the message's MQTT 5 user properties. The
subscriber handles the message with a handler wrapped by :meth:`MqttTelemetry.traced`, so it
runs in a ``process`` span whose parent is the publisher's ``send`` span: every span below has
the same trace id. The spans are kept in memory and printed as a tree; a real program would
export them to a collector instead. The connections' statistics are exported as metrics, and
the example prints two of them.
"""

from __future__ import annotations

import os
import sys

import trio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from trio_mqtt import MqttOptions, ProtocolVersion, Publish, QoS, open_mqtt_connection
from trio_mqtt.otel import MqttTelemetry

TOPIC = "trio-mqtt/examples/otel/orders"


def broker_url() -> str:
    """The broker URL: the first argument, else $MQTT_URL, else a broker on this machine."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("MQTT_URL", "mqtt://localhost:1883")


def print_tree(spans: tuple[ReadableSpan, ...]) -> None:
    """Print spans indented under their parents, with the trace id they belong to."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)

    def show(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            print(f"{'  ' * depth}{span.name} [{span.kind.name.lower()}]")
            show(span.context.span_id, depth + 1)

    show(None, 0)
    trace_ids = {f"{span.context.trace_id:032x}" for span in spans}
    print(f"{len(spans)} spans, {len(trace_ids)} trace")


async def main() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    telemetry = MqttTelemetry(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    tracer = tracer_provider.get_tracer("shop")
    base = MqttOptions.from_url(broker_url(), protocol_version=ProtocolVersion.V5)
    handled = trio.Event()

    async def fulfil(order: Publish) -> None:
        with tracer.start_as_current_span("reserve stock"):  # the handler's own work
            await trio.lowlevel.checkpoint()
        handled.set()

    with trio.fail_after(10):  # an example must never hang
        async with (
            open_mqtt_connection(base.replace(client_id="trio-mqtt-otel-warehouse")) as warehouse,
            open_mqtt_connection(base.replace(client_id="trio-mqtt-otel-shop")) as shop,
            warehouse.route(TOPIC, qos=QoS.AT_LEAST_ONCE) as orders,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(orders.handle, telemetry.traced(fulfil))
            with telemetry.observe(shop), tracer.start_as_current_span("checkout"):
                await telemetry.publish(shop.client, TOPIC, b'{"sku": 7}', qos=1)
                await handled.wait()
                data = reader.get_metrics_data()
            nursery.cancel_scope.cancel()
    print_tree(exporter.get_finished_spans())
    assert data is not None
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        if metric.name in ("trio_mqtt.publishes_sent", "trio_mqtt.connected"):
            print(f"{metric.name} = {metric.data.data_points[0].value}")  # type: ignore[union-attr]


if __name__ == "__main__":
    trio.run(main)
